"""The measured program for gpu.sh: 2 s idle holding a CUDA context, SECONDS of bf16 8192² matrix products,
2 s idle. Writes 'load_start NS' and 'load_end NS' (CLOCK_REALTIME) to MARKS. Without PyTorch or a GPU (a
rehearsal on a machine without one), a CPU loop stands in and the marks say so."""
import sys, time

seconds, marks = float(sys.argv[1]), open(sys.argv[2], "w", buffering=1)
try:
    import torch
    assert torch.cuda.is_available()
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    sync, work, what = torch.cuda.synchronize, (lambda: a @ b), "gpu"
except (ImportError, AssertionError):
    sync, work, what = (lambda: None), (lambda: sum(range(100000))), "cpu_standin"
time.sleep(2)
marks.write(f"load_start {time.time_ns()} {what}\n")
end, n = time.time() + seconds, 0
while time.time() < end:
    for _ in range(10):
        work()
    sync()
    n += 10
marks.write(f"load_end {time.time_ns()} {n}\n")
time.sleep(2)

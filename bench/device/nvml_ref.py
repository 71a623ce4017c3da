"""Reference reader for gpu.sh: NVML's energy counter and power of GPU 0, read through Python's ctypes (not
the plugin's code), every 50 ms until the stop file exists. CSV: CLOCK_REALTIME ns, energy mJ, power mW."""
import ctypes, os, sys, time

lib = ctypes.CDLL(os.environ.get("ALUMET_NVML_LIBRARY") or "libnvidia-ml.so.1")
assert lib.nvmlInit_v2() == 0, "nvmlInit_v2 failed"
h = ctypes.c_void_p()
assert lib.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(h)) == 0, "no GPU 0"
e, p = ctypes.c_ulonglong(), ctypes.c_uint()
out, stop = open(sys.argv[1], "w", buffering=1), sys.argv[2]
out.write("t_ns,energy_mJ,power_mW\n")
while not os.path.exists(stop):
    t = time.time_ns()
    r1 = lib.nvmlDeviceGetTotalEnergyConsumption(h, ctypes.byref(e))
    r2 = lib.nvmlDeviceGetPowerUsage(h, ctypes.byref(p))
    out.write(f"{t},{e.value if r1 == 0 else ''},{p.value if r2 == 0 else ''}\n")
    time.sleep(0.05)
lib.nvmlShutdown()

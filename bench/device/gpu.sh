#!/usr/bin/env bash
# Checks on a lent machine with an NVIDIA GPU (the workplace's device tool), in one call:
#   1. what the machine has (GPU, driver, RAPL, PMU, hwmon, cgroups) and what `alumet doctor` says of it;
#   2. the nvml plugin against the real driver: NVML's start-up, one poll point by point, the cost of a poll;
#   3. `alumet exec` of a PyTorch program (2 s idle, matrix products, 2 s idle) with nvml at 100 ms, while
#      NVML's counters are read beside it through ctypes and nvidia-smi logs the GPU and its processes; then
#      compare.ts sets one against the other;
#   4. the same program under `alumet exec` as a new user runs it (no config);
#   5. issue 12's figures on a 16-core machine: ticks on time at 1 ms against the C loop, `bench exec`;
#   6. the test suite, as far as the remaining minutes allow;
#   and, named on the command line only: realtime (whether the kernel grants SCHED_FIFO), rapl (the power PMU
#   read by perf stat and by the plugin), overhead (`bench/overhead.ts`, 5 rounds, from the root cgroup).
# Usage: bash bench/device/gpu.sh [SECTION…]   (default: machine doctor nvml exec default sampling bench-exec tests)
# Deno and its cache travel with the call, as the device tool's notes say (nothing can be fetched there):
#   mkdir -p .dev; xz -T0 -c "$(readlink -f "$(command -v deno)")" > .dev/deno.xz
#   DENO_DIR=/tmp/dd deno cache …; tar cJf .dev/denodir.tar.xz -C /tmp dd   (see the CHANGELOG for the list)
# and `.dev` is named in the call's carry. Everything lands in $OUT (log.txt and the data compare.ts reads).
# A rehearsal without a GPU (sections 1-4): GPU_SH_QUICK=1 ALUMET_NVML_LIBRARY=<the stand-in built from
# plugins/nvml/testdata/nvml_standin.c> bash bench/device/gpu.sh
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
section() { echo; echo "=== $* ($(date -u +%T))"; }

if [ -f .dev/deno.xz ] && ! deno --version >/dev/null 2>&1; then
  xz -T0 -dc .dev/deno.xz >/tmp/deno && chmod +x /tmp/deno && export PATH=/tmp:$PATH
fi
if [ -f .dev/denodir.tar.xz ]; then
  tar xJf .dev/denodir.tar.xz -C /tmp && export DENO_DIR=/tmp/dd
fi
if [ -f .dev/perf.tar.xz ] && ! command -v perf >/dev/null; then
  # linux-perf's binary with its libraries, from a Debian machine (the device has no perf)
  tar xJf .dev/perf.tar.xz -C /tmp && mkdir -p /tmp/perfbin &&
    printf '#!/bin/sh\nLD_LIBRARY_PATH=/tmp/perfb/lib exec /tmp/perfb/perf "$@"\n' >/tmp/perfbin/perf &&
    chmod +x /tmp/perfbin/perf && export PATH=/tmp/perfbin:$PATH
fi
export HOME=${HOME:-/root} NO_COLOR=1
SECTIONS=" ${*:-machine doctor nvml exec default sampling bench-exec tests} "
want() { [[ $SECTIONS == *" $1 "* ]]; }

if want machine; then
section "the machine"
uname -a; echo "nproc $(nproc), uid $(id -u)"; grep -m1 'model name' /proc/cpuinfo
deno --version | head -1
nvidia-smi -L
nvidia-smi --query-gpu=name,driver_version,pci.bus_id,power.limit,persistence_mode,mig.mode.current --format=csv
echo "powercap: $(ls /sys/class/powercap 2>&1 | tr '\n' ' ')"
echo "PMUs: $(ls /sys/bus/event_source/devices 2>&1 | tr '\n' ' ')"
echo "perf_event_paranoid: $(cat /proc/sys/kernel/perf_event_paranoid)"
echo "hwmon: $(cat /sys/class/hwmon/*/name 2>/dev/null | tr '\n' ' ')"
echo "cgroup: $(stat -fc %T /sys/fs/cgroup)"; echo "gcc: $(gcc --version 2>&1 | head -1)"
echo "python3: $(command -v python3) $(python3 --version 2>&1)"; echo "perf: $(perf --version 2>&1)"
fi

section "bundle"
timeout 90 deno task bundle
if want doctor; then
section "doctor"
timeout 60 deno task alumet doctor
fi

if want nvml; then
section "nvml plugin against this driver"
timeout 90 deno run -A bench/device/nvml_real.ts
fi

if want realtime; then
section "realtime: does the kernel grant SCHED_FIFO here, and in the root cgroup"
cat /proc/self/cgroup; echo "subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control 2>&1)"
(zcat /proc/config.gz 2>/dev/null || cat "/boot/config-$(uname -r)" 2>/dev/null) | grep -E "RT_GROUP_SCHED" || echo "no kernel config visible"
fifo='import os; os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10)); print("SCHED_FIFO granted")'
python3 -c "$fifo" 2>&1 | tail -1
sh -c 'echo $$ >/sys/fs/cgroup/cgroup.procs && exec python3 -c "$0"' "$fifo" 2>&1 | tail -1
timeout 30 deno task alumet --config-override sampling_realtime=true \
  --config-override 'plugins.procfs.kernel.poll_interval="1ms"' exec -- sleep 0.5 2>&1 | grep -i "realtime"
fi

if want rapl; then
section "rapl: the power PMU read by perf stat, and by the plugin"
ls /sys/bus/event_source/devices/power/events/
for e in /sys/bus/event_source/devices/power/events/energy-*.scale; do echo "$e: $(cat "$e")"; done
perf stat -a -e power/energy-psys/ -- sleep 2 2>&1 | grep -E "Joules|elapsed"
timeout 60 deno task alumet --plugins rapl,csv exec --output-file /tmp/rapl.csv -- sleep 2 2>&1 | grep -E "J |rapl|WARN|ERROR"
grep -c rapl /tmp/rapl.csv; head -3 /tmp/rapl.csv
fi

if want exec; then
section "alumet exec of a GPU program, with references beside it"
Q=timestamp,power.draw.instant,power.draw.average,temperature.gpu,utilization.gpu,memory.used,clocks.sm
nvidia-smi --query-gpu=$Q --format=csv,nounits >/dev/null 2>&1 || Q=timestamp,power.draw,temperature.gpu,utilization.gpu,memory.used,clocks.sm
nvidia-smi --query-gpu=$Q --format=csv,nounits -lms 200 >"$OUT/smi.csv" 2>&1 &
smi=$!
nvidia-smi --query-compute-apps=pid,used_memory --format=csv,nounits -lms 500 >"$OUT/apps.csv" 2>&1 &
apps=$!
rm -f /tmp/ref.stop
python3 bench/device/nvml_ref.py "$OUT/ref.csv" /tmp/ref.stop &
ref=$!
cat >/tmp/gpu.toml <<'TOML'
[plugins.procfs]
[plugins.nvml]
poll_interval = "100ms"
flush_interval = "1s"
[plugins.csv]
TOML
sleep 1
timeout 180 deno task alumet exec --config /tmp/gpu.toml --json "$OUT/exec.json" --output-file "$OUT/nvml.csv" \
  -- python3 bench/device/gpu_load.py 8 "$OUT/marks.txt"
echo "exit code $?"
sleep 0.5
touch /tmp/ref.stop
kill $smi $apps 2>/dev/null
wait $ref
deno run -A bench/device/compare.ts "$OUT"
fi

if want default; then
section "alumet exec of the same program with no config, as a new user runs it"
# the built-in defaults, as with no config file (ALUMET_CONFIG names one that does not exist)
ALUMET_CONFIG=/nonexistent/alumet-config.toml timeout 120 deno task alumet exec --output-file /tmp/default.csv \
  -- python3 bench/device/gpu_load.py 3 /tmp/marks2.txt
echo "exit code $?"
fi
[ -n "${GPU_SH_QUICK:-}" ] && { section "done (GPU_SH_QUICK: the rest skipped)"; exit 0; }

if want sampling; then
section "issue 12 on this machine: ticks on time at 1 ms, Worker and C loop"
timeout 90 deno run -A bench/device/sampling.ts 3 5
fi

if want bench-exec; then
section "issue 12 on this machine: deno task bench exec"
timeout 150 deno task bench exec
fi

if want tests; then
section "the test suite"
timeout 240 deno task test >"$OUT/tests.txt" 2>&1
echo "exit code $?"
grep -E "^(ok|FAILED)|passed|failed" "$OUT/tests.txt" | tail -5
grep -A40 " ERRORS" "$OUT/tests.txt" | head -80
grep -E "crosscheck|this machine|realtime|exec_hot" "$OUT/tests.txt" | grep -E "ok|FAILED|ignored" | head -20
fi

if want overhead; then
section "issue 12 on this machine: deno task bench overhead, 5 rounds, from the root cgroup (realtime allowed)"
sh -c 'echo $$ >/sys/fs/cgroup/cgroup.procs; exec timeout 360 deno run -A bench/overhead.ts 5' 2>&1 | tee "$OUT/overhead.txt" | tail -40
fi
section "done"

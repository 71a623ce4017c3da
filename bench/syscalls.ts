/**
 * The raw calls of the FFI layer next to the same system calls in a C loop built here with gcc:
 * - one `read` of a perf group of 3 software counters (task-clock, page-faults, context-switches) of this
 *   process, with its error check; and the same read plus decoding (`PerfGroup.read()`), reported apart;
 * - one `pread` of an open `/proc/stat` into a reusable buffer (`ProcFile.read()`), with its error check.
 * Each figure is the mean over `n` calls in a tight loop, in ns per call.
 */
import { libc, unwrap } from "../src/ffi/libc.ts";
import { attrWithMode, openPerfEvent, PERF_FORMAT_GROUP, PerfGroup } from "../src/ffi/perf_event.ts";
import { parsePerfEvent } from "../src/ffi/perf_events_parse.ts";
import { ProcFile } from "../src/ffi/proc_file.ts";

const C_SOURCE = `#include <linux/perf_event.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <fcntl.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static long open_ev(int config, int group) {
  struct perf_event_attr a; memset(&a, 0, sizeof a);
  a.size = sizeof a; a.type = PERF_TYPE_SOFTWARE; a.config = config;
  a.read_format = PERF_FORMAT_GROUP | PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING | PERF_FORMAT_ID;
  return syscall(SYS_perf_event_open, &a, 0, -1, group, PERF_FLAG_FD_CLOEXEC);
}
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
int main(int argc, char **argv) {
  long n = atol(argv[1]);
  int l = open_ev(PERF_COUNT_SW_TASK_CLOCK, -1); open_ev(PERF_COUNT_SW_PAGE_FAULTS, l); open_ev(PERF_COUNT_SW_CONTEXT_SWITCHES, l);
  if (l < 0) { perror("perf_event_open"); return 1; }
  char buf[256]; double t = now();
  for (long i = 0; i < n; i++) if (read(l, buf, sizeof buf) < 0) { perror("read"); return 1; }
  double perf_ns = (now() - t) / n;
  int f = open("/proc/stat", O_RDONLY | O_CLOEXEC); char big[16384]; t = now();
  for (long i = 0; i < n; i++) if (pread(f, big, sizeof big, 0) < 0) { perror("pread"); return 1; }
  printf("%f %f\\n", perf_ns, (now() - t) / n);
  return 0;
}`;

export interface SyscallFigures {
  cPerfReadNs: number;
  ffiPerfReadNs: number;
  ffiPerfReadDecodeNs: number;
  cProcPreadNs: number;
  ffiProcPreadNs: number;
}

/** Undefined when gcc is missing. */
export async function runSyscalls(n = 200_000): Promise<SyscallFigures | undefined> {
  const dir = await Deno.makeTempDir({ prefix: "alumet-syscalls-" });
  try {
    await Deno.writeTextFile(`${dir}/loop.c`, C_SOURCE);
    const cc = await new Deno.Command("gcc", { args: ["-O2", "-o", `${dir}/loop`, `${dir}/loop.c`] }).output()
      .catch(() => undefined);
    if (cc === undefined || cc.code !== 0) return undefined;
    const out = await new Deno.Command(`${dir}/loop`, { args: [String(n)] }).output();
    const [cPerfReadNs, cProcPreadNs] = new TextDecoder().decode(out.stdout).trim().split(" ").map(Number);

    const events = ["task-clock", "page-faults", "context-switches"].map((e) => parsePerfEvent(e));
    const mode = { read_format: PERF_FORMAT_GROUP | 0b111 };
    const leader = openPerfEvent(attrWithMode(events[0]!, mode), { pid: 0, cpu: -1 });
    const members = events.slice(1).map((e) =>
      openPerfEvent(attrWithMode(e, mode), { pid: 0, cpu: -1, groupFd: leader })
    );
    const { read, close } = libc();
    const buf = new Uint8Array(256);
    let t = performance.now();
    for (let i = 0; i < n; i++) unwrap(read(leader, buf, 256n), "read");
    const ffiPerfReadNs = (performance.now() - t) * 1e6 / n;
    for (const fd of [leader, ...members]) close(fd);

    using group = PerfGroup.open(events, { pid: 0, cpu: -1 });
    t = performance.now();
    for (let i = 0; i < n; i++) group.read();
    const ffiPerfReadDecodeNs = (performance.now() - t) * 1e6 / n;

    using stat = ProcFile.open("/proc/stat", 16384);
    t = performance.now();
    for (let i = 0; i < n; i++) stat.read();
    const ffiProcPreadNs = (performance.now() - t) * 1e6 / n;
    return {
      cPerfReadNs: cPerfReadNs!,
      ffiPerfReadNs,
      ffiPerfReadDecodeNs,
      cProcPreadNs: cProcPreadNs!,
      ffiProcPreadNs,
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

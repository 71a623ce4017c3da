/**
 * Realtime scheduling of the sampling Worker (`sampling_realtime`): its priority, and what a refusal says.
 *
 * @module
 */
import { ERRNO_NAMES, strerror } from "../ffi/libc.ts";

/** The sampling thread's `SCHED_FIFO` priority when the config asks for realtime: 55, Alumet's choice (56 % of 99). */
export const REALTIME_PRIORITY = 55;
const EPERM = 1;

/**
 * Why the kernel refused `SCHED_FIFO`, and what to do. As root, EPERM comes from RT group scheduling
 * (`CONFIG_RT_GROUP_SCHED`): a cgroup other than the root one may run realtime threads only within its
 * `cpu.rt_runtime_us` budget, 0 unless given (cgroup v1), and not at all under cgroup v2's cpu controller.
 *
 * @example
 * ```ts
 * import { realtimeRefused } from "./realtime.ts";
 * import assert from "node:assert/strict";
 * assert.match(realtimeRefused(1, false), /root or CAP_SYS_NICE/);
 * assert.match(realtimeRefused(1, true), /cgroup/);
 * ```
 */
export function realtimeRefused(code: number, root: boolean): string {
  const why = `${strerror(code)} (${ERRNO_NAMES[code] ?? `errno ${code}`})`;
  const fix = code !== EPERM
    ? "poll less often, or set sampling_realtime = false"
    : root
    ? "as root, this is the kernel's RT group scheduling: this process's cgroup has no realtime budget " +
      "(cgroup v2 with the cpu controller, or cpu.rt_runtime_us = 0 under cgroup v1). Run the agent in the " +
      "root cgroup, or give its cgroup a cpu.rt_runtime_us budget (cgroup v1)"
    : "it needs root or CAP_SYS_NICE (or ulimit -r of at least " + REALTIME_PRIORITY + ")";
  return `sampling_realtime: the kernel refused SCHED_FIFO for the sampling thread: ${why}; ${fix}. ` +
    "Sampling goes on at normal priority: ticks may be late on a loaded machine.";
}

/**
 * Realtime scheduling of the sampling Worker (`sampling_realtime`): its priority, and what a refusal says.
 *
 * @module
 */
import { ERRNO_NAMES, libc, SCHED_FIFO, strerror } from "../ffi/libc.ts";

/** The sampling thread's `SCHED_FIFO` priority when the config asks for realtime: 55, as Alumet (56 % of 99). */
export const REALTIME_PRIORITY = 55;
const EPERM = 1;
const CAP_SYS_NICE = 23n;

/** Effective capabilities of this process, from /proc/self/status (`CapEff`); 0 when unreadable. */
export function capEff(): bigint {
  try {
    const m = /CapEff:\s*([0-9a-f]+)/.exec(Deno.readTextFileSync("/proc/self/status"));
    return m ? BigInt(`0x${m[1]}`) : 0n;
  } catch {
    return 0n;
  }
}

/** Root, or `CAP_SYS_NICE`: what SCHED_FIFO needs before the kernel's other limits (RLIMIT_RTPRIO, cgroups). */
export function privilegedForRealtime(): boolean {
  return Deno.uid() === 0 || (capEff() >> CAP_SYS_NICE & 1n) === 1n;
}

/**
 * Whether the kernel gives this thread SCHED_FIFO at {@linkcode REALTIME_PRIORITY}, tried and then put back
 * to the thread's own policy and priority. Privileges are not enough where RT group scheduling leaves this
 * process's cgroup no realtime budget; `ulimit -r` can be enough without them.
 */
export function realtimeGranted(): boolean {
  try {
    const c = libc();
    const policy = c.sched_getscheduler(0);
    const param = new Int32Array(1);
    if (policy < 0 || c.sched_getparam(0, param) !== 0) return false;
    if (c.sched_setscheduler(0, SCHED_FIFO, new Int32Array([REALTIME_PRIORITY])) !== 0) return false;
    c.sched_setscheduler(0, policy, param);
    return true;
  } catch {
    return false;
  }
}

/**
 * Why the kernel refused `SCHED_FIFO`, and what to do (`privileged`: root or CAP_SYS_NICE). With the
 * privileges, EPERM comes from RT group scheduling (`CONFIG_RT_GROUP_SCHED`): a cgroup other than the root one
 * may run realtime threads only within its `cpu.rt_runtime_us` budget, 0 unless given (cgroup v1), and not at
 * all under cgroup v2's cpu controller.
 *
 * @example
 * ```ts
 * import { realtimeRefused } from "./realtime.ts";
 * import assert from "node:assert/strict";
 * assert.match(realtimeRefused(1, false), /root or CAP_SYS_NICE/);
 * assert.match(realtimeRefused(1, true), /cgroup/);
 * ```
 */
export function realtimeRefused(code: number, privileged: boolean): string {
  const why = `${strerror(code)} (${ERRNO_NAMES[code] ?? `errno ${code}`})`;
  const fix = code !== EPERM
    ? "poll less often, or set sampling_realtime = false"
    : privileged
    ? "with root or CAP_SYS_NICE, this is the kernel's RT group scheduling: this process's cgroup has no " +
      "realtime budget (cgroup v2 with the cpu controller, or cpu.rt_runtime_us = 0 under cgroup v1). Run the " +
      "agent in the root cgroup, or give its cgroup a cpu.rt_runtime_us budget (cgroup v1)"
    : "it needs root or CAP_SYS_NICE (or ulimit -r of at least " + REALTIME_PRIORITY + ")";
  return `sampling_realtime: the kernel refused SCHED_FIFO for the sampling thread: ${why}; ${fix}. ` +
    "Sampling goes on at normal priority: ticks may be late on a loaded machine.";
}

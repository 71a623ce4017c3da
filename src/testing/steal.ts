/**
 * Time the hypervisor took from this virtual machine's CPUs. On a shared VM it is what separates perf's clocks
 * (a task's or a cgroup's `task-clock`, which run on while a vCPU is stolen) from the scheduler's accounting
 * (`cpu.stat`, rusage, which leave it out): a comparison of the two over a window allows for what was stolen in
 * it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { stolenMs } from "./steal.ts";
 * const before = stolenMs();
 * assert.ok(before >= 0 && stolenMs() >= before);
 * ```
 *
 * @module
 */
import { auxvInfo } from "../sys/system.ts";

/** Steal time of all CPUs so far (the `steal` column of `/proc/stat`'s `cpu` line), ms; 0 where there is none. */
export function stolenMs(root = "/proc"): number {
  const line = Deno.readTextFileSync(`${root}/stat`).split("\n").find((l) => l.startsWith("cpu "));
  const steal = Number(line?.trim().split(/\s+/)[8] ?? 0);
  return Number.isFinite(steal) ? steal * 1000 / auxvInfo().userHz : 0;
}

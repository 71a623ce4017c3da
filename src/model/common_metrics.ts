/**
 * The generic metrics several plugins share (procfs for processes, cgroups for control groups), as Alumet
 * shares them: one spec, so that the registry sees identical metrics and hands out one id.
 *
 * @module
 */
import type { MetricDefinition } from "./metric_set.ts";
import { unit } from "./units.ts";

/** `cpu_time_delta`: u64 ns, delta; attribute `kind` says which CPU time. */
export const CPU_TIME_DELTA: MetricDefinition<"u64"> = Object.freeze({
  name: "cpu_time_delta",
  unit: unit("s", "nano"),
  valueType: "u64",
  kind: "delta",
  description: "Time spent executing on the CPU since the previous measurement",
});

/** `cpu_percent`: f64 %, share of the whole machine (0–100). */
export const CPU_PERCENT: MetricDefinition<"f64"> = Object.freeze({
  name: "cpu_percent",
  unit: unit("%"),
  valueType: "f64",
  kind: "gauge",
  description: "Share of the whole machine's CPU time used since the previous measurement (0 to 100)",
});

/** `memory_usage`: u64 bytes, gauge; attribute `kind` says which memory. */
export const MEMORY_USAGE: MetricDefinition<"u64"> = Object.freeze({
  name: "memory_usage",
  unit: unit("By"),
  valueType: "u64",
  kind: "gauge",
  description: "Memory usage",
});

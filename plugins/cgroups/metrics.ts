/**
 * The metrics of the cgroups plugin, with Alumet's names, units and value types (its
 * `util-cgroups-plugins/src/metrics.rs`), the kind (gauge, delta, counter) this project adds, and the CPU and
 * memory pressure metrics named after Alumet's `io_pressure_*`. Declared once in {@linkcode CGROUP_METRICS}:
 * the plugin creates them in `start`, and the README's metrics table is checked against them.
 *
 * `cpu_time_delta`, `cpu_percent` and `memory_usage` are the generic metrics of `src/model/common_metrics.ts`,
 * which the procfs plugin uses too: both plugins share them.
 *
 * @module
 */
import { CPU_PERCENT, CPU_TIME_DELTA, MEMORY_USAGE } from "../../src/model/common_metrics.ts";
import type { MetricId } from "../../src/model/metrics.ts";
import { defineMetrics, type MetricDefinition, type MetricIds } from "../../src/model/metric_set.ts";
import { unit } from "../../src/model/units.ts";

/** A memory size in bytes, u64 gauge. */
function bytes(name: string, description: string): MetricDefinition<"u64"> {
  return { name, unit: unit("By"), valueType: "u64", kind: "gauge", description };
}

/** A limit in bytes, f64 gauge (-1 when unlimited). */
function limit(name: string, description: string): MetricDefinition<"f64"> {
  return { name, unit: unit("By"), valueType: "f64", kind: "gauge", description };
}

/** Pages since the cgroup was created, u64 counter. */
function pages(name: string, description: string): MetricDefinition<"u64"> {
  return { name, unit: unit("1"), valueType: "u64", kind: "counter", description };
}

/** Stall time (PSI `total=`) since the previous measurement, u64 µs delta. */
function stall(name: string, who: string, what: string): MetricDefinition<"u64"> {
  return {
    name,
    unit: unit("s", "micro"),
    valueType: "u64",
    kind: "delta",
    description: `Time with ${who} stalled on ${what} since the previous measurement`,
  };
}

/**
 * Every metric a cgroup probe pushes.
 *
 * @example
 * ```ts
 * import { CGROUP_METRICS } from "./metrics.ts";
 * import { registerMetrics } from "../../src/model/metric_set.ts";
 * import { MetricRegistry } from "../../src/model/metrics.ts";
 * import assert from "node:assert/strict";
 * const registry = new MetricRegistry();
 * const m = registerMetrics(registry, "cgroups", CGROUP_METRICS);
 * assert.equal(registry.get(m.ioPressureSome).name, "io_pressure_some_total");
 * assert.equal(registry.get(m.memoryMax).valueType, "f64");
 * ```
 */
export const CGROUP_METRICS = defineMetrics({
  /** `cpu_time_delta`: u64 ns, delta, attribute `kind` = total|user|system. */
  cpuTimeDelta: CPU_TIME_DELTA,
  /** `cpu_percent`: f64 %, gauge, attribute `kind`; share of the whole machine. */
  cpuPercent: CPU_PERCENT,
  /** `memory_usage`: u64 By, gauge. */
  memoryUsage: MEMORY_USAGE,
  memoryMax: limit("memory_max", "Memory limit of the cgroup (-1: unlimited)"),
  memoryAnonymous: bytes("cgroup_memory_anonymous", "Memory used in anonymous mappings"),
  memoryFile: bytes("cgroup_memory_file", "Memory used to cache filesystem data, including tmpfs and shm"),
  memoryKernelStack: bytes("cgroup_memory_kernel_stack", "Memory allocated to kernel stacks"),
  memoryPagetables: bytes("cgroup_memory_pagetables", "Memory allocated to page tables"),
  memorySwapCurrent: bytes("cgroup_memory_swap_current", "Swap used by the cgroup"),
  memorySwapMax: limit("cgroup_memory_swap_max", "Swap limit of the cgroup (-1: unlimited)"),
  slabReclaimable: bytes("cgroup_slab_reclaimable", "Reclaimable kernel slab memory used by the cgroup"),
  pswpin: pages("cgroup_pswpin", "Pages swapped in since the cgroup was created"),
  pswpout: pages("cgroup_pswpout", "Pages swapped out since the cgroup was created"),
  cpuPressureSome: stall("cpu_pressure_some_total", "at least one task", "the CPU"),
  cpuPressureFull: stall("cpu_pressure_full_total", "all non-idle tasks", "the CPU"),
  memoryPressureSome: stall("memory_pressure_some_total", "at least one task", "memory"),
  memoryPressureFull: stall("memory_pressure_full_total", "all non-idle tasks", "memory"),
  ioPressureSome: stall("io_pressure_some_total", "at least one task", "I/O"),
  ioPressureFull: stall("io_pressure_full_total", "all non-idle tasks", "I/O"),
});

/** The ids of {@linkcode CGROUP_METRICS}, as `ctx.createMetrics` returns them. */
export type CgroupMetrics = MetricIds<typeof CGROUP_METRICS>;

/** The pressure (PSI) metrics of one resource: time with some or all tasks stalled. */
export interface PressureMetrics {
  /** `<resource>_pressure_some_total`: u64 µs, delta. */
  readonly some: MetricId<"u64">;
  /** `<resource>_pressure_full_total`: u64 µs, delta. */
  readonly full: MetricId<"u64">;
}

/**
 * The metrics of the cgroups plugin, with Alumet's names, units and value types (its
 * `util-cgroups-plugins/src/metrics.rs`), the kind (gauge, delta, counter) this project adds, and the CPU and
 * memory pressure metrics named after Alumet's `io_pressure_*`. Created once, in the plugin's `start`.
 *
 * `cpu_time_delta`, `cpu_percent` and `memory_usage` have the same name, unit, type and kind as the procfs
 * plugin's, so both plugins share them.
 *
 * @module
 */
import { CPU_PERCENT, CPU_TIME_DELTA, MEMORY_USAGE } from "../../src/model/common_metrics.ts";
import type { MetricId, MetricSpec, ValueType } from "../../src/model/metrics.ts";
import { unit } from "../../src/model/units.ts";

/** Creates (or reuses) a metric: `StartContext.createMetric`, or a registry's `register` in tests. */
export type CreateMetric = <T extends ValueType>(spec: MetricSpec<T>) => MetricId<T>;

/** The pressure (PSI) metrics of one resource: time with some or all tasks stalled. */
export interface PressureMetrics {
  /** `<resource>_pressure_some_total`: u64 µs, delta. */
  readonly some: MetricId<"u64">;
  /** `<resource>_pressure_full_total`: u64 µs, delta. */
  readonly full: MetricId<"u64">;
}

/** Every metric a cgroup probe pushes. */
export interface CgroupMetrics {
  /** `cpu_time_delta`: u64 ns, delta, attribute `kind` = total|user|system. */
  readonly cpuTimeDelta: MetricId<"u64">;
  /** `cpu_percent`: f64 %, gauge, attribute `kind`; share of the whole machine. */
  readonly cpuPercent: MetricId<"f64">;
  /** `memory_usage`: u64 By, gauge. */
  readonly memoryUsage: MetricId<"u64">;
  /** `memory_max`: f64 By, gauge; -1 when unlimited. */
  readonly memoryMax: MetricId<"f64">;
  /** `cgroup_memory_anonymous`: u64 By, gauge. */
  readonly memoryAnonymous: MetricId<"u64">;
  /** `cgroup_memory_file`: u64 By, gauge. */
  readonly memoryFile: MetricId<"u64">;
  /** `cgroup_memory_kernel_stack`: u64 By, gauge. */
  readonly memoryKernelStack: MetricId<"u64">;
  /** `cgroup_memory_pagetables`: u64 By, gauge. */
  readonly memoryPagetables: MetricId<"u64">;
  /** `cgroup_memory_swap_current`: u64 By, gauge. */
  readonly memorySwapCurrent: MetricId<"u64">;
  /** `cgroup_memory_swap_max`: f64 By, gauge; -1 when unlimited. */
  readonly memorySwapMax: MetricId<"f64">;
  /** `cgroup_slab_reclaimable`: u64 By, gauge. */
  readonly slabReclaimable: MetricId<"u64">;
  /** `cgroup_pswpin`: u64 pages, counter (since the cgroup was created). */
  readonly pswpin: MetricId<"u64">;
  /** `cgroup_pswpout`: u64 pages, counter (since the cgroup was created). */
  readonly pswpout: MetricId<"u64">;
  /** `cpu_pressure_some_total`, `cpu_pressure_full_total`. */
  readonly cpuPressure: PressureMetrics;
  /** `memory_pressure_some_total`, `memory_pressure_full_total`. */
  readonly memoryPressure: PressureMetrics;
  /** `io_pressure_some_total`, `io_pressure_full_total`. */
  readonly ioPressure: PressureMetrics;
}

/**
 * Registers the cgroup metrics.
 *
 * @example
 * ```ts
 * import { createCgroupMetrics } from "./metrics.ts";
 * import { MetricRegistry } from "../../src/model/metrics.ts";
 * import assert from "node:assert/strict";
 * const registry = new MetricRegistry();
 * const m = createCgroupMetrics((spec) => registry.register("cgroups", spec));
 * assert.equal(registry.get(m.ioPressure.some).name, "io_pressure_some_total");
 * assert.equal(registry.get(m.memoryMax).valueType, "f64");
 * ```
 */
export function createCgroupMetrics(create: CreateMetric): CgroupMetrics {
  const bytes = unit("By");
  const gauge = (name: string, description: string) =>
    create({ name, unit: bytes, valueType: "u64", kind: "gauge", description });
  const limit = (name: string, description: string) =>
    create({ name, unit: bytes, valueType: "f64", kind: "gauge", description });
  const pages = (name: string, description: string) =>
    create({ name, unit: unit("1"), valueType: "u64", kind: "counter", description });
  const pressure = (resource: string, what: string): PressureMetrics => ({
    some: create({
      name: `${resource}_pressure_some_total`,
      unit: unit("s", "micro"),
      valueType: "u64",
      kind: "delta",
      description: `Time with at least one task stalled on ${what} since the previous measurement`,
    }),
    full: create({
      name: `${resource}_pressure_full_total`,
      unit: unit("s", "micro"),
      valueType: "u64",
      kind: "delta",
      description: `Time with all non-idle tasks stalled on ${what} since the previous measurement`,
    }),
  });
  return {
    cpuTimeDelta: create(CPU_TIME_DELTA),
    cpuPercent: create(CPU_PERCENT),
    memoryUsage: create(MEMORY_USAGE),
    memoryMax: limit("memory_max", "Memory limit of the cgroup (-1: unlimited)"),
    memoryAnonymous: gauge("cgroup_memory_anonymous", "Memory used in anonymous mappings"),
    memoryFile: gauge("cgroup_memory_file", "Memory used to cache filesystem data, including tmpfs and shm"),
    memoryKernelStack: gauge("cgroup_memory_kernel_stack", "Memory allocated to kernel stacks"),
    memoryPagetables: gauge("cgroup_memory_pagetables", "Memory allocated to page tables"),
    memorySwapCurrent: gauge("cgroup_memory_swap_current", "Swap used by the cgroup"),
    memorySwapMax: limit("cgroup_memory_swap_max", "Swap limit of the cgroup (-1: unlimited)"),
    slabReclaimable: gauge("cgroup_slab_reclaimable", "Reclaimable kernel slab memory used by the cgroup"),
    pswpin: pages("cgroup_pswpin", "Pages swapped in since the cgroup was created"),
    pswpout: pages("cgroup_pswpout", "Pages swapped out since the cgroup was created"),
    cpuPressure: pressure("cpu", "the CPU"),
    memoryPressure: pressure("memory", "memory"),
    ioPressure: pressure("io", "I/O"),
  };
}

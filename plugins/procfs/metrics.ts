/**
 * The metrics of the procfs plugin, with Alumet's names, units and value types, and the kind (delta or gauge)
 * this project adds. Each set is declared once ({@linkcode defineMetrics}) and created in the plugin's `start`
 * (`ctx.createMetrics(set)`); the README's metrics table is checked against these sets. The meminfo metrics
 * are a family, one per configured key ({@linkcode meminfoMetric}).
 *
 * @module
 */
import { CPU_PERCENT, CPU_TIME_DELTA, MEMORY_USAGE } from "../../src/model/common_metrics.ts";
import {
  defineMetrics,
  type MetricDefinition,
  type MetricDefinitions,
  type MetricIds,
} from "../../src/model/metric_set.ts";
import type { MetricId, MetricSpec, ValueType } from "../../src/model/metrics.ts";
import { unit } from "../../src/model/units.ts";

/** Creates (or reuses) a metric: `StartContext.createMetric`, or a registry's `register` in tests. */
export type CreateMetric = <T extends ValueType>(spec: MetricSpec<T>) => MetricId<T>;

/** Metrics of the `kernel` source (`/proc/stat`). */
export const KERNEL_METRICS = defineMetrics({
  cpuTime: {
    name: "kernel_cpu_time",
    unit: unit("s", "milli"),
    valueType: "u64",
    kind: "delta",
    description: "CPU time spent in each state since the previous measurement",
  },
  contextSwitches: {
    name: "kernel_context_switches",
    unit: unit("1"),
    valueType: "u64",
    kind: "delta",
    description: "Context switches since the previous measurement",
  },
  newForks: {
    name: "kernel_new_forks",
    unit: unit("1"),
    valueType: "u64",
    kind: "delta",
    description: "Processes and threads created (forks) since the previous measurement",
  },
  procsRunning: {
    name: "kernel_n_procs_running",
    unit: unit("1"),
    valueType: "u64",
    kind: "gauge",
    description: "Processes in a runnable state",
  },
  procsBlocked: {
    name: "kernel_n_procs_blocked",
    unit: unit("1"),
    valueType: "u64",
    kind: "gauge",
    description: "Processes blocked on I/O",
  },
});

/** Metrics of the `network` source (`/proc/net/dev`), all deltas with attributes `interface` and `direction`. */
export const NETWORK_METRICS = defineMetrics({
  bytes: {
    name: "network_bytes",
    unit: unit("By"),
    valueType: "u64",
    kind: "delta",
    description: "Bytes received or sent per interface since the previous measurement",
  },
  packets: {
    name: "network_packets",
    unit: unit("1"),
    valueType: "u64",
    kind: "delta",
    description: "Packets received or sent per interface since the previous measurement",
  },
  drops: {
    name: "network_packet_drops",
    unit: unit("1"),
    valueType: "u64",
    kind: "delta",
    description: "Packets dropped per interface since the previous measurement",
  },
  errors: {
    name: "network_errors",
    unit: unit("1"),
    valueType: "u64",
    kind: "delta",
    description: "Receive or transmit errors per interface since the previous measurement",
  },
});

/**
 * Metrics of the process sources (`/proc/<pid>/stat`, `statm`, `smaps_rollup`), shared with other plugins
 * (src/model/common_metrics.ts):
 * - `cpu_time_delta`: u64 ns, delta, attribute `kind` = user|system|guest;
 * - `cpu_percent`: f64 %, gauge, attribute `kind` = user|system|total; share of the whole machine;
 * - `memory_usage`: u64 By, gauge, attribute `kind` = resident|shared|virtual|proportional.
 */
export const PROCESS_METRICS = defineMetrics({
  cpuTimeDelta: CPU_TIME_DELTA,
  cpuPercent: CPU_PERCENT,
  memoryUsage: MEMORY_USAGE,
});

/** Ids of the kernel metrics. */
export type KernelMetrics = MetricIds<typeof KERNEL_METRICS>;
/** Ids of the network metrics. */
export type NetworkMetrics = MetricIds<typeof NETWORK_METRICS>;
/** Ids of the process metrics. */
export type ProcessMetrics = MetricIds<typeof PROCESS_METRICS>;

/**
 * Creates every metric of a set with `create` (a registry's `register`, in tests and scripts that run a
 * source without an agent); a plugin uses `ctx.createMetrics(set)`.
 */
export function createMetricSet<D extends MetricDefinitions>(create: CreateMetric, set: D): MetricIds<D> {
  const out: Record<string, MetricId> = {};
  for (const [key, spec] of Object.entries(set)) out[key] = create(spec);
  return Object.freeze(out) as MetricIds<D>;
}

/** Registers the kernel metrics. */
export const createKernelMetrics = (create: CreateMetric): KernelMetrics =>
  createMetricSet(create, KERNEL_METRICS);
/** Registers the network metrics. */
export const createNetworkMetrics = (create: CreateMetric): NetworkMetrics =>
  createMetricSet(create, NETWORK_METRICS);
/** Registers the process metrics. */
export const createProcessMetrics = (create: CreateMetric): ProcessMetrics =>
  createMetricSet(create, PROCESS_METRICS);

/**
 * The metric of one `/proc/meminfo` key: u64 bytes, gauge, named by {@linkcode meminfoMetricName}. One per
 * configured key, so a family rather than a set.
 *
 * @example
 * ```ts
 * import { meminfoMetric } from "./metrics.ts";
 * import assert from "node:assert/strict";
 * assert.equal(meminfoMetric("Active(anon)").name, "active(anon)");
 * assert.equal(meminfoMetric("MemTotal").unit.code, "By");
 * ```
 */
export function meminfoMetric(key: string): MetricDefinition<"u64"> {
  return {
    name: meminfoMetricName(key),
    unit: unit("By"),
    valueType: "u64",
    kind: "gauge",
    description: `${key} in /proc/meminfo`,
  };
}

/**
 * The metric name of a `/proc/meminfo` key: Alumet's `convert_to_snake_case` (plugins/procfs/src/lib.rs),
 * exactly. A key of one character or less is kept as it is; a key that holds `_` is only lowercased
 * (`HugePages_Total` → `hugepages_total`, `NFS_Unstable` → `nfs_unstable`); in any other key each character is
 * lowercased, with a `_` before an upper-case letter that follows a letter (`MemTotal` → `mem_total`,
 * `SReclaimable` → `s_reclaimable`, `DirectMap4k` → `direct_map4k`, `DirectMap2M` → `direct_map2m`). Other
 * characters are kept: `Active(anon)` → `active(anon)`.
 *
 * @example
 * ```ts
 * import { meminfoMetricName } from "./metrics.ts";
 * import assert from "node:assert/strict";
 * assert.equal(meminfoMetricName("MemTotal"), "mem_total");
 * assert.equal(meminfoMetricName("SwapCached"), "swap_cached");
 * assert.equal(meminfoMetricName("Committed_AS"), "committed_as");
 * assert.equal(meminfoMetricName("Active(anon)"), "active(anon)");
 * assert.equal(meminfoMetricName("ShmemPmdMapped"), "shmem_pmd_mapped");
 * ```
 */
export function meminfoMetricName(key: string): string {
  if (key.length <= 1) return key;
  if (key.includes("_")) return lowerAscii(key);
  let out = lowerAscii(key[0]!);
  let prevLetter = isLetter(key[0]!);
  for (let i = 1; i < key.length; i++) {
    const c = key[i]!;
    if (prevLetter && c >= "A" && c <= "Z") out += "_";
    out += lowerAscii(c);
    prevLetter = isLetter(c);
  }
  return out;
}

const isLetter = (c: string) => (c >= "a" && c <= "z") || (c >= "A" && c <= "Z");
/** ASCII lowercase only, as Rust's `to_ascii_lowercase`. */
const lowerAscii = (s: string) => s.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));

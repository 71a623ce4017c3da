/**
 * The metrics of the procfs plugin, with Alumet's names, units and value types, and the kind (delta or gauge)
 * this project adds. Each set is created once, in the plugin's `start`.
 *
 * @module
 */
import { CPU_PERCENT, CPU_TIME_DELTA, MEMORY_USAGE } from "../../src/model/common_metrics.ts";
import type { MetricId, MetricSpec, ValueType } from "../../src/model/metrics.ts";
import { unit } from "../../src/model/units.ts";

/** Creates (or reuses) a metric: `StartContext.createMetric`, or a registry's `register` in tests. */
export type CreateMetric = <T extends ValueType>(spec: MetricSpec<T>) => MetricId<T>;

/** Metrics of the `kernel` source (`/proc/stat`). */
export interface KernelMetrics {
  /** `kernel_cpu_time`: u64 ms, delta, attribute `cpu_state`. */
  readonly cpuTime: MetricId<"u64">;
  /** `kernel_context_switches`: u64, delta. */
  readonly contextSwitches: MetricId<"u64">;
  /** `kernel_new_forks`: u64, delta. */
  readonly newForks: MetricId<"u64">;
  /** `kernel_n_procs_running`: u64, gauge. */
  readonly procsRunning: MetricId<"u64">;
  /** `kernel_n_procs_blocked`: u64, gauge. */
  readonly procsBlocked: MetricId<"u64">;
}

/** Registers the kernel metrics. */
export function createKernelMetrics(create: CreateMetric): KernelMetrics {
  const one = unit("1");
  return {
    cpuTime: create({
      name: "kernel_cpu_time",
      unit: unit("s", "milli"),
      valueType: "u64",
      kind: "delta",
      description: "CPU time spent in each state since the previous measurement",
    }),
    contextSwitches: create({
      name: "kernel_context_switches",
      unit: one,
      valueType: "u64",
      kind: "delta",
      description: "Context switches since the previous measurement",
    }),
    newForks: create({
      name: "kernel_new_forks",
      unit: one,
      valueType: "u64",
      kind: "delta",
      description: "Processes and threads created (forks) since the previous measurement",
    }),
    procsRunning: create({
      name: "kernel_n_procs_running",
      unit: one,
      valueType: "u64",
      kind: "gauge",
      description: "Processes in a runnable state",
    }),
    procsBlocked: create({
      name: "kernel_n_procs_blocked",
      unit: one,
      valueType: "u64",
      kind: "gauge",
      description: "Processes blocked on I/O",
    }),
  };
}

/** Metrics of the `network` source (`/proc/net/dev`), all deltas with attributes `interface` and `direction`. */
export interface NetworkMetrics {
  /** `network_bytes`: u64 By. */
  readonly bytes: MetricId<"u64">;
  /** `network_packets`: u64. */
  readonly packets: MetricId<"u64">;
  /** `network_packet_drops`: u64. */
  readonly drops: MetricId<"u64">;
  /** `network_errors`: u64. */
  readonly errors: MetricId<"u64">;
}

/** Registers the network metrics. */
export function createNetworkMetrics(create: CreateMetric): NetworkMetrics {
  const delta = (name: string, u: "By" | "1", description: string) =>
    create({ name, unit: unit(u), valueType: "u64", kind: "delta", description });
  return {
    bytes: delta(
      "network_bytes",
      "By",
      "Bytes received or sent per interface since the previous measurement",
    ),
    packets: delta(
      "network_packets",
      "1",
      "Packets received or sent per interface since the previous measurement",
    ),
    drops: delta("network_packet_drops", "1", "Packets dropped per interface since the previous measurement"),
    errors: delta(
      "network_errors",
      "1",
      "Receive or transmit errors per interface since the previous measurement",
    ),
  };
}

/** Metrics of the process sources (`/proc/<pid>/stat`, `statm`, `smaps_rollup`). */
export interface ProcessMetrics {
  /** `cpu_time_delta`: u64 ns, delta, attribute `kind` = user|system|guest. */
  readonly cpuTimeDelta: MetricId<"u64">;
  /** `cpu_percent`: f64 %, gauge, attribute `kind` = user|system|total; share of the whole machine. */
  readonly cpuPercent: MetricId<"f64">;
  /** `memory_usage`: u64 By, gauge, attribute `kind` = resident|shared|virtual|proportional. */
  readonly memoryUsage: MetricId<"u64">;
}

/** Registers the process metrics. */
export function createProcessMetrics(create: CreateMetric): ProcessMetrics {
  return {
    cpuTimeDelta: create(CPU_TIME_DELTA),
    cpuPercent: create(CPU_PERCENT),
    memoryUsage: create(MEMORY_USAGE),
  };
}

/**
 * The metric name of a `/proc/meminfo` key, as Alumet converts it to snake case (`MemTotal` → `mem_total`,
 * `SReclaimable` → `s_reclaimable`, `HugePages_Total` → `hugepages_total`), then with every character that
 * a metric name cannot hold replaced by `_` (`Active(anon)` → `active_anon`, where Alumet keeps the
 * parentheses).
 *
 * @example
 * ```ts
 * import { meminfoMetricName } from "./metrics.ts";
 * import assert from "node:assert/strict";
 * assert.equal(meminfoMetricName("MemTotal"), "mem_total");
 * assert.equal(meminfoMetricName("SwapCached"), "swap_cached");
 * assert.equal(meminfoMetricName("Committed_AS"), "committed_as");
 * assert.equal(meminfoMetricName("Active(anon)"), "active_anon");
 * ```
 */
export function meminfoMetricName(key: string): string {
  return alumetSnakeCase(key).replace(/[^a-z0-9_]+/g, "_").replace(/^_+|_+$/g, "") || "_";
}

const LOWER = 0;
const UPPER = 1;
const OTHER = 2;

function charKind(c: string): number {
  if (c >= "a" && c <= "z") return LOWER;
  if (c >= "A" && c <= "Z") return UPPER;
  return OTHER;
}

/** Alumet's `convert_to_snake_case`: a key with `_` is lowercased; else `_` before each upper after a letter. */
function alumetSnakeCase(s: string): string {
  if (s.length <= 1) return s;
  if (s.includes("_")) return s.toLowerCase();
  let out = s[0]!.toLowerCase();
  let prev = charKind(s[0]!);
  for (let i = 1; i < s.length; i++) {
    const c = s[i]!;
    const kind = charKind(c);
    if (kind === UPPER && prev !== OTHER) out += "_";
    out += c.toLowerCase();
    prev = kind;
  }
  return out;
}

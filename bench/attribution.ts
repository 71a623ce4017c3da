/**
 * The cost of `energy-attribution` (default mode) for `deno task bench attribution`: 1 000 processes followed
 * at 1 s (what procfs pushes for each: `memory_usage` ×3, `cpu_time_delta` ×3, `cpu_percent` ×3), the kernel
 * source's `kernel_cpu_time` on 2 × 32 CPUs, and RAPL on two sockets (package and dram, plus the `_total`
 * sums), each second. The batches are built first; what is measured is the transform alone (ingest, then
 * emit): CPU time per 1 s interval, median of the intervals after a warm-up, and as a share of one core.
 *
 * @module
 */
import process from "node:process";
import { Batch } from "../src/model/batch.ts";
import { MetricRegistry } from "../src/model/metrics.ts";
import { registerMetrics } from "../src/model/metric_set.ts";
import { Consumer, Resource } from "../src/model/resources.ts";
import type { ElementContext } from "../src/plugin/plugin.ts";
import { ATTRIBUTION_METRICS, EnergyAttributor } from "../plugins/energy-attribution/mod.ts";
import { RAPL_METRICS } from "../plugins/rapl/mod.ts";
import { createKernelMetrics, createProcessMetrics } from "../plugins/procfs/metrics.ts";

/** What {@linkcode attributionCost} measured. */
export interface AttributionCost {
  readonly processes: number;
  readonly intervals: number;
  /** Median CPU time (user + system) of the transform per 1 s interval, ms. */
  readonly cpuMsPerInterval: number;
  /** The same as a share of one core at a 1 s interval, %. */
  readonly percentOfCore: number;
  /** Points the transform read per interval. */
  readonly pointsIn: number;
  /** `attributed_energy` points it wrote per interval. */
  readonly pointsOut: number;
  /** Largest relative conservation error seen. */
  readonly maxConservationError: number;
}

/**
 * Runs the attribution over `processes` processes for `intervals` seconds of data.
 *
 * @param processes number of processes (default 1 000)
 * @param intervals number of 1 s intervals (default 60; the first 5 are a warm-up)
 */
export function attributionCost(processes = 1000, intervals = 60): AttributionCost {
  const r = new MetricRegistry();
  const ctx: ElementContext = { metric: (id) => r.get(id) };
  const out = registerMetrics(r, "energy-attribution", ATTRIBUTION_METRICS).attributed;
  const energy = registerMetrics(r, "rapl", RAPL_METRICS).energy;
  const pm = createProcessMetrics((s) => r.register("procfs", s));
  const km = createKernelMetrics((s) => r.register("procfs", s));
  const s = 1_000_000_000n;
  const t0 = 1_700_000_000n * s;
  const kinds = ["user", "system", "guest"].map((kind) => Object.freeze({ kind }));
  const mems = ["resident", "shared", "virtual"].map((kind) => Object.freeze({ kind }));
  const pct = ["user", "system", "total"].map((kind) => Object.freeze({ kind }));
  const consumers = Array.from({ length: processes }, (_, i) => Consumer.process(1000 + i));
  const cores = Array.from({ length: 64 }, (_, i) => Resource.cpuCore(i));
  const states = ["user", "system", "idle"].map((cpu_state) => Object.freeze({ cpu_state }));
  const domains = ["package", "dram"].map((domain) => Object.freeze({ domain }));
  const totals = ["package_total", "dram_total"].map((domain) => Object.freeze({ domain }));
  const batches: Batch[] = [];
  for (let k = 0; k <= intervals; k++) {
    // procfs at whole seconds, RAPL 0.3 s later: the interpolation is exercised.
    const ts = t0 + BigInt(k) * s;
    const b = new Batch(processes * 9 + 256);
    b.timestamp = ts;
    for (let i = 0; i < processes; i++) {
      const consumer = consumers[i]!;
      for (const a of mems) b.push(pm.memoryUsage, 4096 * (i + 1), { consumer, attributes: a });
      if (k > 0) {
        const ns = ((i * 7919 + k * 104729) % 50) * 1_000_000; // 0 to 49 ms a second
        b.push(pm.cpuTimeDelta, ns, { consumer, attributes: kinds[0]! });
        b.push(pm.cpuTimeDelta, ns / 2, { consumer, attributes: kinds[1]! });
        b.push(pm.cpuTimeDelta, 0, { consumer, attributes: kinds[2]! });
        for (const a of pct) b.push(pm.cpuPercent, ns / 1e7 / 64, { consumer, attributes: a });
      }
    }
    b.push(km.procsRunning, 3);
    if (k > 0) {
      for (const core of cores) {
        for (const a of states) b.push(km.cpuTime, 333, { resource: core, attributes: a });
      }
      for (const a of states) b.push(km.cpuTime, 333 * 64, { attributes: a });
    }
    batches.push(b);
    if (k > 0) {
      const e = new Batch(16);
      e.timestamp = ts + 300_000_000n;
      for (let p = 0; p < 2; p++) {
        e.push(energy, 80 + p, { resource: Resource.cpuPackage(p), attributes: domains[0]! });
        e.push(energy, 12 + p, { resource: Resource.dram(p), attributes: domains[1]! });
      }
      e.push(energy, 161, { attributes: totals[0]! });
      e.push(energy, 25, { attributes: totals[1]! });
      batches.push(e);
    }
  }
  const a = new EnergyAttributor({ output: out, maxWaitMs: 1e12, clock: () => 0 });
  const costs: number[] = [];
  let pointsIn = 0, pointsOut = 0;
  const sink = new Batch(8192);
  for (let j = 0; j < batches.length; j += 2) {
    const pair = batches.slice(j, j + 2);
    sink.clear();
    const c0 = process.cpuUsage();
    for (const b of pair) {
      a.ingest(b, ctx);
      a.emit(sink);
    }
    const c1 = process.cpuUsage(c0);
    if (j / 2 >= 5) {
      costs.push((c1.user + c1.system) / 1000);
      pointsIn += pair.reduce((n, b) => n + b.length, 0);
      pointsOut += sink.length;
    }
  }
  costs.sort((x, y) => x - y);
  const median = costs[Math.floor(costs.length / 2)] ?? NaN;
  const measured = costs.length;
  return {
    processes,
    intervals: measured,
    cpuMsPerInterval: median,
    percentOfCore: median / 10,
    pointsIn: Math.round(pointsIn / measured),
    pointsOut: Math.round(pointsOut / measured),
    maxConservationError: a.stats.maxConservationError,
  };
}

if (import.meta.main) {
  const n = Number(Deno.args[0] ?? 1000);
  const r = attributionCost(n);
  // deno-lint-ignore no-console
  console.log(
    `attribution: ${r.processes} processes at 1 s: ${r.cpuMsPerInterval.toFixed(2)} ms CPU per interval ` +
      `(${r.percentOfCore.toFixed(3)} % of one core; median of ${r.intervals} intervals), ` +
      `${r.pointsIn} points in, ${r.pointsOut} attributed_energy points out, ` +
      `conservation error ≤ ${(r.maxConservationError * 100).toExponential(1)} %`,
  );
}

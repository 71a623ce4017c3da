/**
 * Cost per poll of the rapl source's powercap path on a fixture tree (`testdata/intel_desktop_1s`: 4 zones),
 * polled at 1 kHz for `N` polls (default 2000): a code-path cost (one `pread` of `energy_uj` per zone, the
 * parse, the counter, the points), not a real RAPL read, which is a cross-CPU MSR read.
 *
 * `deno run -A plugins/rapl/bench_powercap.ts [N]`
 *
 * @module
 */
import { Batch } from "../../src/model/batch.ts";
import { MetricRegistry } from "../../src/model/metrics.ts";
import { registerMetrics } from "../../src/model/metric_set.ts";
import { RAPL_METRICS, RaplSource, scanPowercap } from "./mod.ts";

const n = Number(Deno.args[0] ?? 2000);
const root = new URL("./testdata/intel_desktop_1s/sys", import.meta.url).pathname;
const { energy } = registerMetrics(new MetricRegistry(), "rapl", RAPL_METRICS);
const zones = scanPowercap(root).zones;
const source = RaplSource.open({ metric: energy, channels: zones });
const batch = new Batch();
const costs = new Float64Array(n);
const start = performance.now();
for (let i = 0; i < n; i++) {
  while (performance.now() < start + i) { /* 1 kHz pacing */ }
  batch.clear();
  const t0 = performance.now();
  source.poll(batch);
  costs[i] = (performance.now() - t0) * 1000;
}
source.close();
costs.sort();
const q = (p: number) => costs[Math.min(n - 1, Math.floor(p * n))]!.toFixed(1);
// deno-lint-ignore no-console
console.log(
  `rapl powercap path, ${zones.length} zones on the fixture tree, ${n} polls at 1 kHz: ` +
    `median ${q(0.5)} µs/poll, p90 ${q(0.9)}, p99 ${q(0.99)} (code-path cost: a real energy_uj read is a ` +
    "cross-CPU MSR read)",
);

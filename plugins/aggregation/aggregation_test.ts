import assert from "node:assert/strict";
import { Batch } from "../../src/model/batch.ts";
import { MetricRegistry } from "../../src/model/metrics.ts";
import { Consumer, Resource } from "../../src/model/resources.ts";
import { unit } from "../../src/model/units.ts";
import { MEMORY_USAGE } from "../../src/model/common_metrics.ts";
import { AlumetError } from "../../src/errors.ts";
import { validatePluginConfig } from "../../src/plugin/config.ts";
import { definePlugin } from "../../src/plugin/define.ts";
import { Agent } from "../../src/agent/agent.ts";
import { Logger, type LogSink, setLogSink } from "../../src/log.ts";
import { checkConfigBlock, checkMetricsTable } from "../../src/testing/readme.ts";
import { type AggregationFunction, aggregationPlugin, Aggregator, registerAggregates } from "./mod.ts";

/** A multiple of 10 s since the epoch: window starts fall on T0 + k × 10 s. */
const T0 = 1_700_000_000_000_000_000n;
const S = 1_000_000_000n;

function captureLogs(): { lines: string[]; [Symbol.dispose](): void } {
  const lines: string[] = [];
  const prev = setLogSink((level, scope, msg) => lines.push(`${level} ${scope}: ${msg}`));
  return { lines, [Symbol.dispose]: () => void setLogSink(prev as LogSink) };
}

function setup(fn: AggregationFunction, keepOriginal = false) {
  const r = new MetricRegistry();
  const energy = r.register("rapl", {
    name: "rapl_consumed_energy",
    unit: unit("J"),
    valueType: "f64",
    kind: "delta",
  });
  const mem = r.register("procfs", MEMORY_USAGE);
  const other = r.register("x", { name: "untouched", unit: unit("1"), valueType: "f64" });
  const metrics = registerAggregates(r, "aggregation", {
    metrics: ["rapl_consumed_energy", "memory_usage"],
    function: fn,
  });
  const agg = new Aggregator({ intervalMs: 10_000, function: fn, metrics, keepOriginal });
  const show = (b: Batch) =>
    [...b].map((p) =>
      `+${(p.timestamp - T0) / S}s ${r.get(p.metric).name} ${p.resource.kind}:${p.resource.id} ` +
      `${p.consumer.kind}:${p.consumer.id} ${p.value}`
    );
  return { r, energy, mem, other, agg, show };
}

Deno.test("Aggregator Sum: one point per series and 10 s window, at the window's start, by hand", () => {
  const { energy, other, agg, show } = setup("sum");
  const pkg0 = { resource: Resource.cpuPackage(0) };
  const pkg1 = { resource: Resource.cpuPackage(1) };
  const b1 = new Batch();
  b1.push(energy, 1.5, { ...pkg0, timestamp: T0 + 5n * S });
  b1.push(energy, 7, { ...pkg1, timestamp: T0 + 5n * S });
  b1.push(other, 42, { timestamp: T0 + 5n * S });
  b1.push(energy, 2, { ...pkg0, timestamp: T0 + 12n * S }); // closes [0, 10) of pkg0: 1.5
  agg.apply(b1);
  assert.deepEqual(show(b1), [
    "+5s untouched local_machine: local_machine: 42",
    "+0s rapl_consumed_energy_sum cpu_package:0 local_machine: 1.5",
  ]);
  const b2 = new Batch();
  b2.push(energy, 3.25, { ...pkg0, timestamp: T0 + 19n * S });
  b2.push(energy, 4, { ...pkg0, timestamp: T0 + 20n * S }); // [10, 20) of pkg0: 2 + 3.25 = 5.25
  b2.push(energy, 8, { ...pkg1, timestamp: T0 + 31n * S }); // [0, 10) of pkg1: 7 (nothing in [10, 30))
  agg.apply(b2);
  assert.deepEqual(show(b2), [
    "+10s rapl_consumed_energy_sum cpu_package:0 local_machine: 5.25",
    "+0s rapl_consumed_energy_sum cpu_package:1 local_machine: 7",
  ]);
  // At shutdown, the open windows are emitted, partial: [20, 30) of pkg0 = 4, [30, 40) of pkg1 = 8.
  assert.deepEqual(show(agg.drain()), [
    "+20s rapl_consumed_energy_sum cpu_package:0 local_machine: 4",
    "+30s rapl_consumed_energy_sum cpu_package:1 local_machine: 8",
  ]);
  assert.equal(agg.drain().length, 0);
});

Deno.test("Aggregator Mean: f64 mean, u64 mean rounded down as Alumet, series kept apart by consumer", () => {
  const { energy, mem, agg, show } = setup("mean");
  const b = new Batch();
  const p1 = { consumer: Consumer.process(1), attributes: { kind: "resident" } };
  const p2 = { consumer: Consumer.process(2), attributes: { kind: "resident" } };
  for (const [t, v1, v2] of [[1n, 10, 100], [4n, 15, 100], [9n, 20, 101]] as const) {
    b.push(mem, v1, { ...p1, timestamp: T0 + t * S });
    b.push(mem, v2, { ...p2, timestamp: T0 + t * S });
  }
  b.push(energy, 1, { timestamp: T0 + 1n * S });
  b.push(energy, 2.5, { timestamp: T0 + 2n * S });
  agg.apply(b);
  assert.equal(
    b.length,
    0,
    "the aggregated points are replaced (Alumet's behaviour), and no window closed yet",
  );
  // (10 + 15 + 20) / 3 = 15; (100 + 100 + 101) / 3 = 100.33 → 100 (u64); (1 + 2.5) / 2 = 1.75
  assert.deepEqual(show(agg.drain()), [
    "+0s memory_usage_mean local_machine: process:1 15",
    "+0s memory_usage_mean local_machine: process:2 100",
    "+0s rapl_consumed_energy_mean local_machine: local_machine: 1.75",
  ]);
});

Deno.test("Aggregator keep_original keeps the input points; a late point is dropped, counted and logged once", () => {
  using logs = captureLogs();
  const r = new MetricRegistry();
  const energy = r.register("rapl", { name: "e", unit: unit("J"), valueType: "f64", kind: "delta" });
  const agg = new Aggregator({
    intervalMs: 10_000,
    function: "sum",
    metrics: registerAggregates(r, "aggregation", { metrics: ["e"], function: "sum" }),
    keepOriginal: true,
    log: new Logger("aggregation"),
  });
  const b = new Batch();
  b.push(energy, 1, { timestamp: T0 + 1n * S });
  b.push(energy, 2, { timestamp: T0 + 11n * S });
  b.push(energy, 5, { timestamp: T0 + 3n * S }); // its window [0, 10) was emitted just before
  agg.apply(b);
  assert.deepEqual([...b].map((p) => [r.get(p.metric).name, p.value]), [["e", 1], ["e", 2], ["e", 5], [
    "e_sum",
    1,
  ]]);
  assert.equal(agg.latePoints, 1);
  assert.equal(logs.lines.filter((l) => /came after its 10000 ms window/.test(l)).length, 1);
});

Deno.test("aggregation config: Alumet's keys, Sum or sum, and a clear error for an unknown metric", async (t) => {
  const validate = (table: Record<string, unknown>) =>
    validatePluginConfig(aggregationPlugin, { name: "aggregation", table }, "alumet-config.toml");
  await t.step(
    "defaults",
    () =>
      assert.deepEqual(validate({}), {
        interval: 60_000,
        function: "sum",
        metrics: [],
        keep_original: false,
      }),
  );
  await t.step('Alumet writes "Sum" and "Mean"; lower case works too', () => {
    assert.equal(validate({ function: "Sum" }).function, "sum");
    assert.equal(validate({ function: "Mean" }).function, "mean");
    assert.equal(validate({ function: "mean" }).function, "mean");
    assert.throws(
      () => validate({ function: "avg" }),
      /plugins\.aggregation\.function: expected one of "Sum", "Mean", "sum", "mean", not "avg"/,
    );
  });
  await t.step("a metric no plugin creates stops the start with its name", () => {
    assert.throws(
      () => registerAggregates(new MetricRegistry(), "aggregation", { metrics: ["nope"], function: "sum" }),
      (e: unknown) =>
        e instanceof AlumetError && /metrics names "nope", which no enabled plugin creates/.test(e.message),
    );
  });
  await t.step("the aggregated metric has the original's unit, type and kind", () => {
    const r = new MetricRegistry();
    r.register("procfs", MEMORY_USAGE);
    const map = registerAggregates(r, "aggregation", { metrics: ["memory_usage"], function: "mean" });
    const out = r.get([...map.values()][0]!.out);
    assert.deepEqual([out.name, out.unit.code, out.valueType, out.kind], [
      "memory_usage_mean",
      "By",
      "u64",
      "gauge",
    ]);
  });
});

Deno.test("aggregation README: default config block and metrics table", async () => {
  const text = await Deno.readTextFile(new URL("./README.md", import.meta.url));
  checkConfigBlock(text, aggregationPlugin);
  checkMetricsTable(text);
});

Deno.test("aggregation in an agent: 10 s sums of a fixture source's energy, the partial last window at stop", async () => {
  using _ = captureLogs();
  const seen: string[] = [];
  const fixture = definePlugin({
    name: "fixture",
    start(ctx) {
      const e = ctx.createMetric({
        name: "rapl_consumed_energy",
        unit: unit("J"),
        valueType: "f64",
        kind: "delta",
      });
      // One point a second for 25 s, 1 J each, in batches of 4 polls.
      const batches: Batch[] = [];
      for (let t = 0; t < 25; t += 4) {
        const b = new Batch();
        for (let k = t; k < Math.min(t + 4, 25); k++) b.push(e, 1, { timestamp: T0 + BigInt(k) * S });
        batches.push(b);
      }
      ctx.addAutonomousSource("replay", () => ReadableStream.from(batches));
    },
  });
  const sink = definePlugin({
    name: "sink",
    start: (ctx) =>
      ctx.addOutput("out", {
        write(b: Batch, c) {
          for (const p of b) {
            const name = c.metric(p.metric).name;
            if (!name.startsWith("alumet_")) seen.push(`+${(p.timestamp - T0) / S}s ${name} ${p.value}`);
          }
        },
      }),
  });
  {
    await using agent = new Agent({
      plugins: [fixture, {
        plugin: aggregationPlugin,
        config: { interval: "10s", function: "Sum", metrics: ["rapl_consumed_energy"] },
      }, sink],
      selfInterval: 3_600_000,
    });
    await agent.start();
    for (let i = 0; i < 200 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 25));
    await agent.stop();
  }
  // [0, 10) and [10, 20): 10 J each, emitted when a point of the next window arrives; [20, 25): 5 J, at stop.
  assert.deepEqual(seen, [
    "+0s rapl_consumed_energy_sum 10",
    "+10s rapl_consumed_energy_sum 10",
    "+20s rapl_consumed_energy_sum 5",
  ]);
});

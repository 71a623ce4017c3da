import assert from "node:assert/strict";
import type { Batch } from "../model/batch.ts";
import { MetricRegistry } from "../model/metrics.ts";
import { unit } from "../model/units.ts";
import { type LogSink, setLogSink } from "../log.ts";
import { Pipeline } from "./pipeline.ts";

const MODULE = new URL("./testdata/counter_source.ts", import.meta.url);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function setup() {
  const registry = new MetricRegistry();
  const m = registry.register("test", { name: "seq", unit: unit("1"), valueType: "u64" });
  const pipeline = new Pipeline(registry, { selfInterval: 3_600_000 });
  const got: number[] = [];
  pipeline.addOutput("test", "out", {
    write(b: Batch) {
      for (let i = 0; i < b.length; i++) if (b.metricAt(i) === m) got.push(Number(b.valueAt(i)));
    },
  });
  return { m, pipeline, got };
}

Deno.test("The sampling Worker polls a hot source at 1 ms and drains it with no point lost or duplicated", async () => {
  const { m, pipeline, got } = setup();
  await pipeline.addManagedSource("test", "hot", { module: MODULE, config: { metric: m } }, {
    pollInterval: "1ms",
    flushInterval: "50ms",
  });
  pipeline.start();
  assert.equal(pipeline.control.list("source/test/hot")[0]!.state, "running");
  await sleep(500);
  await pipeline.stop();
  const stats = pipeline.stats().sources.get("source/test/hot")!;
  assert.ok(got.length >= 200, `only ${got.length} points in 500 ms at 1 ms`);
  assert.deepEqual(got, Array.from({ length: got.length }, (_, i) => i + 1), "lost, duplicated or reordered");
  assert.equal(stats.polls, got.length);
  assert.equal(stats.points, got.length);
});

Deno.test("The sampling Worker obeys the control handle", async (t) => {
  const { m, pipeline, got } = setup();
  await pipeline.addManagedSource("test", "hot", { module: MODULE, config: { metric: m } }, {
    pollInterval: "2ms",
    flushInterval: "1s",
  });
  pipeline.start();
  await t.step("flushNow delivers what was polled", async () => {
    await sleep(50);
    await pipeline.control.flushNow("source/test/hot");
    await sleep(20);
    assert.ok(got.length > 5, `${got.length} points after flushNow`);
  });
  await t.step("pause stops polling; triggerNow still polls", async () => {
    await pipeline.control.pause("source/test/hot");
    const polls = pipeline.stats().sources.get("source/test/hot")!.polls;
    await sleep(50);
    await pipeline.control.triggerNow("source/test/hot");
    await pipeline.control.flushNow("source/test/hot");
    await sleep(20);
    assert.equal(pipeline.stats().sources.get("source/test/hot")!.polls, polls + 1);
  });
  await t.step("resume and setPollInterval", async () => {
    await pipeline.control.resume("source/test/hot");
    assert.equal(pipeline.control.setPollInterval("source/test/hot", "500us"), 1);
    await sleep(100);
    await pipeline.control.flushNow("source/test/hot");
    await sleep(20);
    assert.equal(pipeline.control.list("source/test/hot")[0]!.pollInterval, 0.5);
  });
  await pipeline.stop();
  assert.deepEqual(got, Array.from({ length: got.length }, (_, i) => i + 1));
  assert.ok(got.length > 100, `${got.length} points`);
});

Deno.test("A failing hot source stops alone and keeps the points it polled", async () => {
  const lines: string[] = [];
  const prev = setLogSink((level, scope, msg) => lines.push(`${level} ${scope}: ${msg}`));
  try {
    const { m, pipeline, got } = setup();
    await pipeline.addManagedSource("test", "bad", { module: MODULE, config: { metric: m, failAt: 20 } }, {
      pollInterval: "1ms",
      flushInterval: "1s",
    });
    pipeline.start();
    await sleep(150);
    assert.equal(pipeline.control.list("source/test/bad")[0]!.state, "stopped");
    await pipeline.stop();
    assert.deepEqual(got, Array.from({ length: 19 }, (_, i) => i + 1));
    assert.ok(
      lines.some((l) => l.startsWith("error source/test/bad") && l.includes("failed at poll 20")),
      lines.join("\n"),
    );
  } finally {
    setLogSink(prev as LogSink);
  }
});

Deno.test("A hot source whose module cannot load fails at add time with its error", async () => {
  const { m, pipeline } = setup();
  await assert.rejects(
    pipeline.addManagedSource("test", "nope", {
      module: new URL("./testdata/missing.ts", import.meta.url),
      config: { metric: m },
    }, {
      pollInterval: "1ms",
    }),
    /missing\.ts/,
  );
  await pipeline.stop();
});

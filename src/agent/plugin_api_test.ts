/**
 * The plugin-facing API of the agent: tasks, source handles scoped to a plugin, metric sets, declared events,
 * blocking sources, transform `close`, and what outputs say of where their data went.
 */
import assert from "node:assert/strict";
import { Agent } from "./agent.ts";
import { definePlugin } from "../plugin/define.ts";
import { defineEvent } from "../plugin/events.ts";
import { defineMetrics } from "../model/metric_set.ts";
import type { Batch } from "../model/batch.ts";
import { unit } from "../model/units.ts";
import type { SourceHandle, StartContext } from "../plugin/plugin.ts";
import { type LogSink, setLogSink } from "../log.ts";
import { withTimeout } from "../testing/timeout.ts";
import { duration, z } from "../plugin/schema.ts";
import { defaultConfigOf, validatePluginConfig } from "../plugin/config.ts";

const METRICS = defineMetrics({
  n: { name: "api_n", unit: unit("1"), valueType: "u64", kind: "gauge", description: "A number" },
  where: { name: "api_where", unit: unit("1"), valueType: "u64", kind: "gauge", description: "Where it ran" },
});

/** Polls until `cond` holds, or fails after `ms`. */
async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function collector() {
  const values: { metric: string; value: number; attrs: Record<string, unknown> }[] = [];
  const plugin = definePlugin({
    name: "collect",
    start(ctx) {
      ctx.addOutput("out", {
        write(b: Batch, e) {
          for (const p of b) {
            values.push({
              metric: e.metric(p.metric).name,
              value: Number(p.value),
              attrs: { ...p.attributes },
            });
          }
        },
        describe: () => "memory of the test",
      });
    },
  });
  return { values, plugin };
}

Deno.test("tasks run once the pipeline runs, on their interval, never overlapping, and stop before the drain", async () => {
  const log: string[] = [];
  const previous = setLogSink((_level, scope, message) => void log.push(`${scope}: ${message}`));
  let runs = 0;
  let active = 0;
  let maxActive = 0;
  let runsAtPostStart = -1;
  const seenDuringStop: number[] = [];
  const p = definePlugin({
    name: "tasker",
    start(ctx) {
      ctx.addTask("scan", async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        runs++;
        await new Promise((r) => setTimeout(r, 15)); // longer than the interval: runs must still not overlap
        active--;
        if (runs === 2) throw new Error("second run fails");
      }, { interval: "1ms" });
    },
    postStart() {
      runsAtPostStart = runs;
    },
    stop() {
      seenDuringStop.push(runs, active);
    },
  });
  const { plugin } = collector();
  try {
    const agent = new Agent({ plugins: [p, plugin], selfInterval: 3_600_000 });
    await agent.start();
    assert.ok(runsAtPostStart >= 1, "the first run starts before postStart");
    await until(() => runs >= 4, "4 runs");
    await agent.stop();
    const after = runs;
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(runs, after, "no run after the stop");
    assert.equal(maxActive, 1, "runs overlapped");
    assert.deepEqual(
      seenDuringStop,
      [after, 0],
      "the task had stopped (no run in flight) when the plugin stopped",
    );
    assert.equal(
      log.filter((l) => l.includes("Task scan failed: second run fails")).length,
      1,
      log.join("\n"),
    );
  } finally {
    setLogSink(previous);
  }
});

Deno.test("a plugin's sources are controlled through their handles, with names scoped to the plugin", async (t) => {
  const { values, plugin: out } = collector();
  let startCtx: StartContext | undefined;
  let handle: SourceHandle | undefined;
  let n = 0;
  const p = definePlugin({
    name: "handled",
    start(ctx) {
      startCtx = ctx;
      const m = ctx.createMetrics(METRICS);
      handle = ctx.addSource("s", { poll: (b: Batch) => b.push(m.n, ++n) }, { pollInterval: "1h" });
    },
  });
  await using agent = new Agent({ plugins: [p, out], selfInterval: 3_600_000 });
  await agent.start();
  const h = handle!;
  await t.step("the handle names the source in its plugin", async () => {
    await h.ready;
    assert.equal(h.fullName, "source/handled/s");
    assert.equal(h.state, "running");
  });
  await t.step("trigger polls it now; pause and resume", async () => {
    await h.trigger();
    await h.flush();
    await until(() => values.some((v) => v.metric === "api_n" && v.value === 1), "the first point");
    await h.pause();
    assert.equal(h.state, "paused");
    await h.resume();
    assert.equal(h.state, "running");
  });
  await t.step(
    "a second source with a taken name rejects its ready promise, and its handle does nothing",
    async () => {
      const dup = startCtx!.addSource("s", { poll() {} }, { pollInterval: "1h" });
      await assert.rejects(dup.ready, RangeError);
      await dup.stop(); // no effect on the first one
      assert.equal(h.state, "running");
    },
  );
  await t.step("sources added while running are scoped to the plugin too", async () => {
    const live = startCtx!.addSource("live", {
      poll: (b: Batch) => b.push(agent.metrics.byName("api_n")!.id, 99),
    }, {
      pollInterval: "1h",
    });
    await live.ready;
    assert.deepEqual(agent.control.list("source/handled/*").map((e) => e.name).sort(), [
      "source/handled/live",
      "source/handled/s",
    ]);
    await live.trigger();
    await live.stop();
    assert.equal(live.state, "stopped");
    await until(() => values.some((v) => v.value === 99), "the live source's point");
  });
  await t.step("stop ends it; the name can be used again", async () => {
    await h.stop();
    assert.equal(h.state, "stopped");
    const again = startCtx!.addSource("s", { poll() {} }, { pollInterval: "1h" });
    await again.ready;
    assert.equal(again.state, "running");
  });
  await t.step("the outputs say where their data went", () => {
    assert.deepEqual(agent.outputs(), [{ name: "output/collect/out", description: "memory of the test" }]);
  });
});

Deno.test("a blocking source runs in a Worker of its own whatever its period; others stay where they were", async () => {
  const { values, plugin: out } = collector();
  const module = new URL("../pipeline/testdata/where_source.ts", import.meta.url);
  const handles: SourceHandle[] = [];
  const p = definePlugin({
    name: "where",
    start(ctx) {
      const m = ctx.createMetrics(METRICS);
      handles.push(
        ctx.addSource("blocking", { module, config: { metric: m.where }, blocking: true }, {
          pollInterval: "1h",
        }),
        ctx.addSource("plain", { module, config: { metric: m.where } }, { pollInterval: "1h" }),
      );
    },
  });
  {
    await using agent = new Agent({ plugins: [p, out], selfInterval: 3_600_000 });
    await agent.start();
    for (const h of handles) await h.trigger();
  }
  const threads = values.filter((v) => v.metric === "api_where").map((v) => v.attrs.thread).sort();
  assert.ok(threads.includes("alumet-blocking"), `blocking source ran on: ${threads.join(", ")}`);
  assert.ok(threads.includes("main"), `plain source ran on: ${threads.join(", ")}`);
  assert.ok(!threads.includes("alumet-sampler"));
});

Deno.test("plugins declare their own events without touching the core", async () => {
  const deviceAdded = defineEvent<{ index: number }>("gpu/deviceAdded");
  const seen: number[] = [];
  const producer = definePlugin({
    name: "producer",
    start() {},
    async postStart(ctx) {
      await ctx.events.publish(deviceAdded, { index: 3 });
    },
  });
  const consumer = definePlugin({
    name: "consumer",
    start() {},
    preStart(ctx) {
      ctx.events.on(deviceAdded, (d) => void seen.push(d.index));
    },
  });
  await using agent = new Agent({ plugins: [producer, consumer], selfInterval: 3_600_000 });
  await agent.start();
  assert.deepEqual(seen, [3]);
  assert.throws(() => defineEvent("processExit"), /built in/);
});

Deno.test("Transform.close is called at shutdown; the deprecated finish still is when close is absent", async () => {
  const closed: string[] = [];
  const p = definePlugin({
    name: "tr",
    start(ctx) {
      ctx.addTransform("new", { apply() {}, close: () => void closed.push("close") });
      ctx.addTransform("old", { apply() {}, finish: () => void closed.push("finish") });
    },
  });
  const { plugin: out } = collector();
  {
    await using agent = new Agent({ plugins: [p, out], selfInterval: 3_600_000 });
    await agent.start();
  }
  assert.deepEqual(closed.sort(), ["close", "finish"]);
});

Deno.test("createMetrics registers a set and returns typed ids by key", async () => {
  let ids: Record<string, number> = {};
  const p = definePlugin({
    name: "m",
    start(ctx) {
      ids = { ...ctx.createMetrics(METRICS) };
    },
  });
  await using agent = new Agent({ plugins: [p], selfInterval: 3_600_000 });
  const previous = setLogSink((() => {}) as LogSink); // "no output" warning
  try {
    await agent.start();
  } finally {
    setLogSink(previous);
  }
  assert.equal(agent.metrics.get(ids.n!).name, "api_n");
  assert.equal(agent.metrics.get(ids.where!).plugin, "m");
});

Deno.test("a handle controls the source it added, not a later one that reuses its name", async () => {
  let ctx: StartContext | undefined;
  const p = definePlugin({ name: "reuse", start: (c) => void (ctx = c) });
  await using agent = new Agent({ plugins: [p, collector().plugin], selfInterval: 3_600_000 });
  await agent.start();
  const first = ctx!.addSource("pid-1", { poll() {} }, { pollInterval: "1h" });
  await first.ready;
  await first.stop();
  const second = ctx!.addSource("pid-1", { poll() {} }, { pollInterval: "1h" });
  await second.ready;
  assert.equal(first.state, "stopped");
  await first.stop();
  await first.pause();
  assert.equal(second.state, "running", "the old handle stopped or paused the new source");
  assert.equal(agent.control.list("source/reuse/pid-1")[0]?.state, "running");
});

Deno.test("blocking sources run in Workers of their own: one blocked in its poll never stalls another", async () => {
  const module = new URL("../pipeline/testdata/gate_source.ts", import.meta.url);
  const gate = new Int32Array(new SharedArrayBuffer(8));
  const handles: SourceHandle[] = [];
  const p = definePlugin({
    name: "gated",
    start(ctx) {
      const m = ctx.createMetrics(METRICS);
      const trigger = { pollInterval: "1h" };
      handles.push(
        ctx.addSource(
          "slow",
          { module, config: { metric: m.n, gate: gate.buffer }, blocking: true },
          trigger,
        ),
        ctx.addSource("fast", { module, config: { metric: m.n }, blocking: true }, trigger),
      );
    },
  });
  await using agent = new Agent({ plugins: [p, collector().plugin], selfInterval: 3_600_000 });
  await agent.start();
  const [slow, fast] = handles as [SourceHandle, SourceHandle];
  const slowPoll = slow.trigger();
  try {
    await until(() => Atomics.load(gate, 1) === 1, "the slow source to block in its poll");
    // Sharing a Worker, this poll would wait for the slow one forever (until its 30 s gate times out).
    await withTimeout(fast.trigger(), 10_000, "a poll of the fast source while the slow one blocks");
  } finally {
    Atomics.store(gate, 0, 1);
    Atomics.notify(gate, 0);
    await slowPoll;
  }
});

Deno.test("a source added after start that cannot be added is logged, even when nobody awaits it", async () => {
  const lines: string[] = [];
  const previous = setLogSink((level, scope, message) => void lines.push(`${level} ${scope}: ${message}`));
  try {
    let ctx: StartContext | undefined;
    const p = definePlugin({ name: "late", start: (c) => void (ctx = c) });
    await using agent = new Agent({ plugins: [p, collector().plugin], selfInterval: 3_600_000 });
    await agent.start();
    const h = ctx!.addSource("bad name!", { poll() {} }, { pollInterval: "1h" });
    await assert.rejects(h.ready, RangeError);
    await until(() => lines.some((l) => l.startsWith("warn late: Cannot add source")), "the warning");
  } finally {
    setLogSink(previous);
  }
});

Deno.test("task lifecycle: runNow before start never overlaps the first run; a stopped task frees its name; no task once stopped", async () => {
  let active = 0;
  let maxActive = 0;
  let ctx: StartContext | undefined;
  const slow = async () => {
    active++;
    maxActive = Math.max(maxActive, active);
    await new Promise((r) => setTimeout(r, 20));
    active--;
  };
  const p = definePlugin({
    name: "tasks",
    start(c) {
      ctx = c;
      void c.addTask("scan", slow, { interval: "1h" }).runNow(); // asked for before the pipeline runs
    },
  });
  const agent = new Agent({ plugins: [p, collector().plugin], selfInterval: 3_600_000 });
  await agent.start();
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(maxActive, 1, "the first run overlapped a run asked for earlier");
  const t = ctx!.addTask("refresh", () => {}, { interval: "1h" });
  await t.stop();
  const again = ctx!.addTask("refresh", () => {}, { interval: "1s" }); // re-timed: stopped, then added again
  assert.equal(again.name, "refresh");
  await agent.stop();
  assert.throws(() => ctx!.addTask("later", () => {}, { interval: "1s" }), /the agent is idle/);
  await agent.start(); // a restart is not broken by a task added through a stale context
  await agent[Symbol.asyncDispose]();
});

Deno.test("a .default() over a transform is applied by the schema, and config regen leaves it out", () => {
  const p = definePlugin({
    name: "d",
    config: z.strictObject({ period: duration().default(1000), label: z.string().default("x") }),
    init: () => ({ start() {} }),
  });
  assert.deepEqual(validatePluginConfig(p, { name: "d", table: {} }, "a.toml"), { period: 1000, label: "x" });
  assert.deepEqual(validatePluginConfig(p, { name: "d", table: { period: "2s" } }, "a.toml").period, 2000);
  assert.deepEqual(defaultConfigOf(p), { label: "x" });
});

import assert from "node:assert/strict";
import type { Batch } from "../model/batch.ts";
import { unit } from "../model/units.ts";
import { Consumer } from "../model/resources.ts";
import { ConfigError, PluginError } from "../errors.ts";
import { type LogSink, setLogSink } from "../log.ts";
import type { Plugin, PluginMetadata } from "../plugin/plugin.ts";
import { duration, z } from "../plugin/schema.ts";
import { Agent, definePlugin } from "./agent.ts";
import { withTimeout } from "../testing/timeout.ts";

/** How long a lifecycle step may take before the test fails instead of hanging (a regression deadlocks). */
const LIMIT = 20_000;

type Phase = "init" | "start" | "preStart" | "postStart" | "stop" | "dispose";

/** A plugin that records each lifecycle call in `calls`, and fails in `failIn` if given. */
function tracer(name: string, calls: string[], failIn?: Phase): PluginMetadata<{ period: number }> {
  const maybeFail = (phase: Phase) => {
    calls.push(`${name}.${phase}`);
    if (phase === failIn) throw new Error(`${phase} exploded`);
  };
  return {
    name,
    version: "1.0.0",
    defaultConfig: () => ({ period: "1h" }),
    configSchema: z.strictObject({ period: duration() }),
    init(config) {
      maybeFail("init");
      assert.equal(config.period, 3_600_000);
      const p: Plugin = {
        start(ctx) {
          maybeFail("start");
          const m = ctx.createMetric({ name: `${name}_n`, unit: unit("1"), valueType: "u64" });
          ctx.addSource("in", { poll: (b: Batch) => b.push(m, 1) }, { pollInterval: config.period });
        },
        preStart(ctx) {
          maybeFail("preStart");
          assert.ok(ctx.metrics.byName(`${name}_n`), "preStart does not see the plugin's metric");
        },
        postStart(ctx) {
          maybeFail("postStart");
          assert.ok(ctx.control.list("source").length > 0);
        },
        stop() {
          maybeFail("stop");
        },
        [Symbol.asyncDispose]() {
          maybeFail("dispose");
          return Promise.resolve();
        },
      };
      return p;
    },
  };
}

function quietLogs(): { lines: string[]; restore: () => void } {
  const lines: string[] = [];
  const prev = setLogSink((level, scope, msg) => lines.push(`${level} ${scope}: ${msg}`));
  return { lines, restore: () => setLogSink(prev as LogSink) };
}

Deno.test("Agent runs the lifecycle in order, and restarts without a second init", async () => {
  const calls: string[] = [];
  const agent = new Agent({ plugins: [tracer("a", calls), tracer("b", calls)] });
  await agent.start();
  assert.deepEqual(calls, [
    "a.init",
    "b.init",
    "a.start",
    "b.start",
    "a.preStart",
    "b.preStart",
    "a.postStart",
    "b.postStart",
  ]);
  calls.length = 0;
  await withTimeout(agent.stop(), LIMIT, "stop()");
  assert.deepEqual(calls, ["a.stop", "b.stop"]);
  calls.length = 0;
  await withTimeout(agent.start(), LIMIT, "the second start()");
  assert.deepEqual(calls, ["a.start", "b.start", "a.preStart", "b.preStart", "a.postStart", "b.postStart"]);
  calls.length = 0;
  await withTimeout(agent[Symbol.asyncDispose](), LIMIT, "dispose");
  await withTimeout(agent[Symbol.asyncDispose](), LIMIT, "the second dispose");
  assert.deepEqual(calls, ["a.stop", "b.stop", "a.dispose", "b.dispose"]);
});

Deno.test("Agent start-up errors name the plugin and the phase, and undo what was started", async (t) => {
  for (const phase of ["init", "start", "preStart", "postStart"] as const) {
    await t.step(`failure in ${phase}`, async () => {
      const logs = quietLogs();
      try {
        const calls: string[] = [];
        const agent = new Agent({ plugins: [tracer("a", calls), tracer("b", calls, phase)] });
        const err = await agent.start().then(() => undefined, (e) => e);
        assert.ok(err instanceof PluginError, `expected a PluginError, got ${err}`);
        assert.equal(err.plugin, "b");
        assert.equal(err.phase, phase);
        assert.equal(err.message, `Plugin "b" failed in ${phase}: ${phase} exploded`);
        // Every plugin whose start ran is stopped again.
        if (phase !== "init") {
          assert.ok(calls.includes("a.stop"), `a was not stopped after b failed in ${phase}: ${calls}`);
          assert.equal(calls.includes("b.stop"), phase !== "start");
        }
        assert.equal(agent.state, "idle");
        await agent[Symbol.asyncDispose]();
      } finally {
        logs.restore();
      }
    });
  }
});

Deno.test("Agent stop reports a failing plugin and still stops the others", async () => {
  const logs = quietLogs();
  try {
    const calls: string[] = [];
    const agent = new Agent({ plugins: [tracer("a", calls, "stop"), tracer("b", calls)] });
    await agent.start();
    const failures = await withTimeout(agent.stop(), LIMIT, "stop() with a failing plugin");
    assert.equal(failures.length, 1);
    assert.equal(failures[0]!.message, 'Plugin "a" failed in stop: stop exploded');
    assert.ok(calls.includes("b.stop"));
    assert.ok(logs.lines.some((l) => l.includes('Plugin "a" failed in stop')));
    await agent[Symbol.asyncDispose]();
  } finally {
    logs.restore();
  }
});

Deno.test("Agent validates plugin config before init", async () => {
  const calls: string[] = [];
  const agent = new Agent({ plugins: [{ plugin: tracer("a", calls), config: { period: "soon" } }] });
  const err = await agent.start().then(() => undefined, (e) => e);
  assert.ok(err instanceof ConfigError, String(err));
  assert.match(err.message, /plugins\.a\.period/);
  assert.deepEqual(calls, []);
});

Deno.test("Agent rejects an incompatible duplicate metric, naming both plugins", async () => {
  const mk = (name: string, u: "J" | "W") =>
    definePlugin({
      name,
      start(ctx) {
        ctx.createMetric({ name: "power", unit: unit(u), valueType: "f64" });
      },
    });
  await using agent = new Agent({ plugins: [mk("first", "W"), mk("second", "J")] });
  const err = await agent.start().then(() => undefined, (e) => e);
  assert.ok(err instanceof PluginError);
  assert.match(err.message, /Metric "power" from plugin "second".*plugin "first"/);
});

Deno.test("Agent delivers events from exec-like publishers to plugins that subscribe in preStart", async () => {
  const seen: string[] = [];
  const sub = definePlugin({
    name: "sub",
    start() {},
    preStart(ctx) {
      ctx.events.on(
        "startConsumerMeasurement",
        (cs) => void seen.push(...cs.map((c) => `+${c.kind}:${c.id}`)),
      );
      ctx.events.on("endConsumerMeasurement", (cs) => void seen.push(...cs.map((c) => `-${c.kind}:${c.id}`)));
    },
  });
  await using agent = new Agent({ plugins: [sub] });
  await agent.start();
  await agent.events.publish("startConsumerMeasurement", [Consumer.process(7)]);
  await agent.events.publish("endConsumerMeasurement", [Consumer.cgroup("/x")]);
  assert.deepEqual(seen, ["+process:7", "-cgroup:/x"]);
  await agent.stop();
  // Subscriptions end with the run: a restart subscribes again, without duplicates.
  await agent.start();
  await agent.events.publish("startConsumerMeasurement", [Consumer.process(8)]);
  assert.deepEqual(seen.slice(2), ["+process:8"]);
});

Deno.test("Agent control.shutdown() resolves shutdownRequested", async () => {
  await using agent = new Agent({ plugins: [] });
  const logs = quietLogs();
  try {
    await agent.start();
  } finally {
    logs.restore();
  }
  agent.control.shutdown();
  await withTimeout(agent.shutdownRequested, LIMIT, "shutdownRequested after control.shutdown()");
});

Deno.test("Agent loads a source from a module URL and a serialisable config", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const modPath = `${dir}/src.ts`;
    await Deno.writeTextFile(
      modPath,
      `export function createSource(cfg) { return { poll(b) { b.push(cfg.metric, cfg.value); } }; }`,
    );
    const got: number[] = [];
    const plugin = definePlugin({
      name: "modsrc",
      start(ctx) {
        const m = ctx.createMetric({ name: "from_module", unit: unit("1"), valueType: "u64" });
        ctx.addSource("in", { module: new URL(`file://${modPath}`), config: { metric: m, value: 5 } }, {
          pollInterval: "1h",
        });
        ctx.addOutput("out", { write: (b: Batch) => void got.push(...[...b].map((p) => Number(p.value))) });
      },
    });
    await using agent = new Agent({ plugins: [plugin] });
    await agent.start();
    await agent.control.triggerNow("source/modsrc/*");
    await agent.stop();
    assert.deepEqual(got, [5]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Agent stop during start waits for the start, then stops; dispose leaves nothing running", async () => {
  const calls: string[] = [];
  const agent = new Agent({ plugins: [tracer("a", calls)] });
  const started = agent.start();
  const stopped = agent.stop();
  await withTimeout(started, LIMIT, "start() with a stop() pending");
  await withTimeout(stopped, LIMIT, "stop() called during start()");
  assert.equal(agent.state, "idle");
  assert.deepEqual(calls.slice(-1), ["a.stop"]);
  await withTimeout(agent[Symbol.asyncDispose](), LIMIT, "dispose after a stop during start");
  assert.equal(agent.state, "disposed");
  await assert.rejects(agent.start(), /disposed/);
});

Deno.test("Agent runs init once per plugin, even after a failed start", async () => {
  const logs = quietLogs();
  try {
    const calls: string[] = [];
    let fail = true;
    const flaky: PluginMetadata = {
      name: "flaky",
      version: "1.0.0",
      defaultConfig: () => undefined,
      init() {
        calls.push("flaky.init");
        if (fail) throw new Error("not yet");
        return { start() {} };
      },
    };
    const agent = new Agent({ plugins: [tracer("a", calls), flaky] });
    await assert.rejects(withTimeout(agent.start(), LIMIT, "the failing start()"), /not yet/);
    fail = false;
    await withTimeout(agent.start(), LIMIT, "start() after a failed start");
    assert.equal(calls.filter((c) => c === "a.init").length, 1);
    assert.equal(calls.filter((c) => c === "flaky.init").length, 2);
    await agent[Symbol.asyncDispose]();
  } finally {
    logs.restore();
  }
});

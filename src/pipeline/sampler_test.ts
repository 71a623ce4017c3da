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

const SIGNALS_TESTDATA = new URL("../../tests/testdata/signals/", import.meta.url);

/** `p`, or a rejection after 60 s: a stop that hangs fails the test instead of hanging it. */
function bounded<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within 60 s`)), 60_000);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Runs `fn` with the log lines collected. */
async function withLogLines(fn: (lines: string[]) => Promise<void>): Promise<void> {
  const lines: string[] = [];
  const prev = setLogSink((level, scope, msg) => lines.push(`${level} ${scope}: ${msg}`));
  try {
    await fn(lines);
  } finally {
    setLogSink(prev as LogSink);
  }
}

/** A pipeline with two counting metrics, `a` and `b`, and an output collecting their values. */
function setupTwo() {
  const registry = new MetricRegistry();
  const a = registry.register("test", { name: "seq_a", unit: unit("1"), valueType: "u64" });
  const b = registry.register("test", { name: "seq_b", unit: unit("1"), valueType: "u64" });
  const pipeline = new Pipeline(registry, { selfInterval: 3_600_000 });
  const got = { a: [] as number[], b: [] as number[] };
  pipeline.addOutput("test", "out", {
    write(batch: Batch) {
      for (let i = 0; i < batch.length; i++) {
        if (batch.metricAt(i) === a) got.a.push(Number(batch.valueAt(i)));
        else if (batch.metricAt(i) === b) got.b.push(Number(batch.valueAt(i)));
      }
    },
  });
  return { a, b, pipeline, got };
}

const upTo = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

for (const how of ["timer", "rejection"] as const) {
  Deno.test(`A hot source failing outside its poll (${how}) is reported in one line; the sampling Worker loses nothing`, async () => {
    await withLogLines(async (lines) => {
      const { a, b, pipeline, got } = setupTwo();
      await pipeline.addManagedSource("test", "counter", { module: MODULE, config: { metric: a } }, {
        pollInterval: "1ms",
        flushInterval: "20ms",
      });
      await pipeline.addManagedSource("test", "bad", {
        module: new URL("async_throw_source.ts", SIGNALS_TESTDATA),
        config: { metric: b, throwAt: 5, how },
      }, { pollInterval: "1ms", flushInterval: "20ms" });
      pipeline.start();
      // Timers and rejections of the Worker run when it turns its event loop, at each command.
      while (pipeline.stats().sources.get("source/test/bad")!.polls < 10) {
        await pipeline.control.flushNow("source/test/bad");
        await sleep(10);
      }
      await bounded(pipeline.stop(), "stop");
      const stats = pipeline.stats().sources;
      assert.deepEqual(got.a, upTo(stats.get("source/test/counter")!.polls), "the other source lost points");
      assert.deepEqual(got.b, upTo(stats.get("source/test/bad")!.polls), "the failing source lost points");
      const reported = lines.filter((l) => l.includes("asynchronous failure after poll 5"));
      assert.equal(reported.length, 1, lines.join("\n"));
      assert.match(reported[0]!, /^error /);
      assert.ok(!lines.some((l) => /\n\s+at /.test(l)), "a stack trace was logged");
    });
  });
}

Deno.test("A source whose poll never returns does not make stopping hang; the other sources keep their points", async () => {
  await withLogLines(async (lines) => {
    const { a, b, pipeline, got } = setupTwo();
    await pipeline.addManagedSource("test", "counter", { module: MODULE, config: { metric: a } }, {
      pollInterval: "2ms",
      flushInterval: "10ms",
    });
    const flag = new Int32Array(new SharedArrayBuffer(4));
    await pipeline.addManagedSource("test", "stuck", {
      module: new URL("stuck_source.ts", SIGNALS_TESTDATA),
      config: { metric: b, stuckAt: 5, flag: flag.buffer },
      blocking: true,
    }, { pollInterval: "2ms", flushInterval: "2ms" });
    pipeline.start();
    while (Atomics.load(flag, 0) === 0) await sleep(10);
    await bounded(pipeline.stop(), "stop");
    assert.deepEqual(got.b, upTo(4), "the points the stuck source had sent");
    assert.ok(got.a.length > 0);
    assert.deepEqual(got.a, upTo(pipeline.stats().sources.get("source/test/counter")!.polls));
    const reported = lines.filter((l) => l.startsWith("error "));
    assert.equal(reported.length, 1, lines.join("\n"));
    assert.match(reported[0]!, /source\/test\/stuck/);
    // Everything it polled was sent; what the poll in progress measured is unknown.
    const stuck = pipeline.stats().sources.get("source/test/stuck")!;
    assert.equal(stuck.lostPoints, 0);
    assert.equal(stuck.lossUnknown, true);
  });
});

Deno.test("A sampling Worker stuck in a poll counts the points its sources polled and had not sent as lost", async () => {
  await withLogLines(async () => {
    const { a, b, pipeline, got } = setupTwo();
    // A flush every 500 polls: the points polled before the stuck poll (the 30th) are all still in the Worker.
    await pipeline.addManagedSource("test", "counter", { module: MODULE, config: { metric: a } }, {
      pollInterval: "2ms",
      flushInterval: "1s",
    });
    const flag = new Int32Array(new SharedArrayBuffer(4));
    await pipeline.addManagedSource("test", "stuck", {
      module: new URL("stuck_source.ts", SIGNALS_TESTDATA),
      config: { metric: b, stuckAt: 30, flag: flag.buffer },
    }, { pollInterval: "2ms", flushInterval: "1s" });
    pipeline.start();
    while (Atomics.load(flag, 0) === 0) await sleep(10);
    await bounded(pipeline.stop(), "stop");
    const stats = pipeline.stats().sources;
    assert.deepEqual(got.b, []);
    const stuck = stats.get("source/test/stuck")!;
    assert.equal(stuck.lostPoints, 29, "the points polled before the stuck poll");
    assert.equal(stuck.lossUnknown, true, "cut off in a poll");
    // The other source of the Worker was cut off between two polls: its loss is exact.
    const counter = stats.get("source/test/counter")!;
    assert.deepEqual(got.a, []);
    assert.ok(counter.lostPoints! > 0, `lost ${counter.lostPoints}`);
    assert.equal(counter.lossUnknown, false);
  });
});

Deno.test("A hot source stopped normally loses nothing", async () => {
  const { m, pipeline, got } = setup();
  await pipeline.addManagedSource("test", "hot", { module: MODULE, config: { metric: m } }, {
    pollInterval: "2ms",
    flushInterval: "1s",
  });
  pipeline.start();
  while (got.length === 0 && pipeline.stats().sources.get("source/test/hot")!.polls < 10) {
    await pipeline.control.flushNow("source/test/hot");
    await sleep(10);
  }
  await bounded(pipeline.stop(), "stop");
  const stats = pipeline.stats().sources.get("source/test/hot")!;
  assert.deepEqual(got, upTo(stats.points));
  assert.equal(stats.lostPoints ?? 0, 0);
  assert.equal(stats.lossUnknown ?? false, false);
});

Deno.test("A main-thread source whose close() never returns is left behind with one warning; nothing is lost", async () => {
  await withLogLines(async (lines) => {
    const { a, pipeline, got } = setupTwo();
    let n = 0;
    await pipeline.addManagedSource("test", "slow", {
      poll(batch: Batch) {
        batch.push(a, ++n);
      },
      close: () => new Promise<void>(() => {}),
    }, { pollInterval: "10ms" });
    pipeline.start();
    while (n < 3) await sleep(10);
    await bounded(pipeline.stop(), "stop");
    assert.deepEqual(got.a, upTo(n));
    const warned = lines.filter((l) => l.startsWith("warn "));
    assert.equal(warned.length, 1, lines.join("\n"));
    assert.match(warned[0]!, /^warn source\/test\/slow: close\(\) did not return within 5 s/);
    const stats = pipeline.stats().sources.get("source/test/slow")!;
    assert.equal(stats.lostPoints ?? 0, 0);
    assert.equal(stats.lossUnknown ?? false, false);
  });
});

Deno.test("A main-thread source whose poll never returns does not make stopping hang", async () => {
  await withLogLines(async (lines) => {
    const { a, b, pipeline, got } = setupTwo();
    const { createSource } = await import(new URL("stuck_source.ts", SIGNALS_TESTDATA).href);
    const flag = new Int32Array(new SharedArrayBuffer(4));
    await pipeline.addManagedSource("test", "counter", { module: MODULE, config: { metric: a } }, {
      pollInterval: "10ms",
    });
    await pipeline.addManagedSource(
      "test",
      "stuck",
      createSource({ metric: b, stuckAt: 5, flag: flag.buffer }),
      {
        pollInterval: "10ms",
      },
    );
    pipeline.start();
    while (Atomics.load(flag, 0) === 0) await sleep(10);
    await bounded(pipeline.stop(), "stop");
    assert.deepEqual(got.b, upTo(4), "the points the stuck source had polled");
    assert.deepEqual(got.a, upTo(pipeline.stats().sources.get("source/test/counter")!.polls));
    const reported = lines.filter((l) => l.startsWith("error "));
    assert.equal(reported.length, 1, lines.join("\n"));
    assert.match(reported[0]!, /^error source\/test\/stuck: /);
    assert.equal(pipeline.stats().sources.get("source/test/stuck")!.lossUnknown, true, "given up in a poll");
  });
});

Deno.test("A sampling Worker whose own loop fails posts what its sources polled, says so in one line, and stopping does not hang", async () => {
  await withLogLines(async (lines) => {
    const { a, b, pipeline, got } = setupTwo();
    await pipeline.addManagedSource("test", "counter", { module: MODULE, config: { metric: a } }, {
      pollInterval: "2ms",
      flushInterval: "1s",
    });
    await pipeline.addManagedSource("test", "breaker", {
      module: new URL("clock_breaking_source.ts", SIGNALS_TESTDATA),
      config: { metric: b, breakAt: 20 },
    }, { pollInterval: "2ms", flushInterval: "1s" });
    pipeline.start();
    while (pipeline.control.list("source/test/breaker")[0]!.state !== "stopped") await sleep(10);
    await bounded(pipeline.stop(), "stop");
    assert.deepEqual(got.b, upTo(20), "the points polled before the failure");
    assert.ok(got.a.length >= 19, `${got.a.length} points of the other source`);
    assert.deepEqual(got.a, upTo(pipeline.stats().sources.get("source/test/counter")!.polls));
    const reported = lines.filter((l) => l.startsWith("error "));
    assert.equal(reported.length, 1, lines.join("\n"));
    assert.match(reported[0]!, /^error sampler: The sampling Worker failed: the clock is broken/);
  });
});

Deno.test("A blocking source whose Worker fails does not make stopping hang", async () => {
  await withLogLines(async (lines) => {
    const { a, b, pipeline, got } = setupTwo();
    await pipeline.addManagedSource("test", "counter", { module: MODULE, config: { metric: a } }, {
      pollInterval: "10ms",
    });
    await pipeline.addManagedSource("test", "bad", {
      module: new URL("async_throw_source.ts", SIGNALS_TESTDATA),
      config: { metric: b, throwAt: 2, how: "rejection" },
      blocking: true,
    }, { pollInterval: "10ms" });
    pipeline.start();
    while (pipeline.stats().sources.get("source/test/bad")!.polls < 4) await sleep(10);
    await bounded(pipeline.stop(), "stop");
    const stats = pipeline.stats().sources;
    assert.deepEqual(got.b, upTo(stats.get("source/test/bad")!.polls));
    assert.ok(got.a.length > 0);
    assert.equal(
      lines.filter((l) => l.includes("asynchronous failure after poll 2")).length,
      1,
      lines.join("\n"),
    );
  });
});

/** The `deno run …` command a file's header documents (the first line starting with `deno run`). */
async function documentedCommand(file: URL): Promise<string[]> {
  const line = (await Deno.readTextFile(file)).split("\n").map((l) => l.trim().replace(/^\*\s*/, ""))
    .find((l) => l.startsWith("deno run "));
  assert.ok(line, `no "deno run" line in ${file.pathname}`);
  return line.split(/\s+/).slice(2);
}

Deno.test("examples/fast_sampling.ts runs with exactly the permissions its header documents", async () => {
  const example = new URL("../../examples/fast_sampling.ts", import.meta.url);
  const args = await documentedCommand(example);
  const root = new URL("../../", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...args],
    cwd: root,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  const text = dec.decode(out.stdout) + dec.decode(out.stderr);
  assert.equal(out.code, 0, `deno run ${args.join(" ")}:\n${text}`);
  assert.match(text, /\d+ points; \d+ context switches in between/);
});

Deno.test("the main thread never evaluates the Worker's module: an uncaught error there stays the runtime's", async () => {
  // sampler_worker.ts installs error handlers on its global scope; imported on the main thread (for a constant),
  // they swallowed every uncaught error of the agent and failed on `self.postMessage`.
  const mod = new URL("../../mod.ts", import.meta.url).href;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", `import ${JSON.stringify(mod)}; Promise.reject(new Error("boom-from-main"));`],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 1, stderr);
  assert.match(stderr, /boom-from-main/);
  assert.doesNotMatch(stderr, /postMessage/);
});

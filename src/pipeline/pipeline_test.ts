import assert from "node:assert/strict";
import { Batch } from "../model/batch.ts";
import { type MetricId, MetricRegistry } from "../model/metrics.ts";
import { unit } from "../model/units.ts";
import { NormalStop, RetryableError } from "../errors.ts";
import { type LogSink, setLogSink } from "../log.ts";
import type { Output, Source } from "../plugin/plugin.ts";
import { Pipeline, triggerIntervals } from "./pipeline.ts";
import { withTimeout } from "../testing/timeout.ts";
import { OutputBlockedError } from "./output.ts";

function setup(): { registry: MetricRegistry; m: MetricId<"u64">; pipeline: Pipeline } {
  const registry = new MetricRegistry();
  const m = registry.register("test", { name: "seq", unit: unit("1"), valueType: "u64", kind: "counter" });
  return { registry, m, pipeline: new Pipeline(registry, { selfInterval: 3_600_000 }) };
}

/** A source pushing 1, 2, 3… one point per poll; `polled` counts them. */
function counter(m: MetricId<"u64">): Source & { polled: number } {
  return {
    polled: 0,
    poll(b) {
      b.push(m, ++this.polled);
    },
  };
}

/** An output that records the values it received, per batch. */
function recorder(
  m: MetricId<"u64">,
  delayMs = 0,
): Output & { values: number[]; batches: number; points: number; closed: number } {
  return {
    values: [],
    batches: 0,
    points: 0,
    closed: 0,
    async write(b) {
      if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
      this.batches++;
      this.points += b.length;
      for (let i = 0; i < b.length; i++) if (b.metricAt(i) === m) this.values.push(Number(b.valueAt(i)));
    },
    close() {
      this.closed++;
    },
  };
}

function captureLogs(): { lines: string[]; restore: () => void } {
  const lines: string[] = [];
  const prev = setLogSink((level, scope, msg) => lines.push(`${level} ${scope}: ${msg}`));
  return { lines, restore: () => setLogSink(prev as LogSink) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What an output that honours the contract of `Output.write` throws on a full disk, having written nothing. */
function blockedByFullDisk(): OutputBlockedError {
  const cause = Object.assign(new Error("No space left on device (os error 28)"), { code: "ENOSPC" });
  return new OutputBlockedError("Cannot write out: No space left on device (os error 28)", { cause });
}

Deno.test("Pipeline drains on shutdown: every polled point reaches every output exactly once", async () => {
  const { m, pipeline } = setup();
  const sources = [counter(m), counter(m), counter(m)];
  sources.forEach((s, i) =>
    pipeline.addManagedSource("test", `s${i}`, s, { pollInterval: 2, flushInterval: 20 })
  );
  const outs = [recorder(m), recorder(m, 3)];
  outs.forEach((o, i) => pipeline.addOutput("test", `o${i}`, o));
  await Promise.resolve();
  pipeline.start();
  await sleep(150);
  await pipeline.stop();
  const polled = sources.reduce((n, s) => n + s.polled, 0);
  assert.ok(polled > 20, `only ${polled} polls`);
  for (const o of outs) {
    assert.equal(o.values.length, polled, "points lost or duplicated");
    // Each source's sequence arrives complete and in order: 1..n for each.
    const sorted = [...o.values].sort((a, b) => a - b);
    const expected = sources.flatMap((s) => Array.from({ length: s.polled }, (_, i) => i + 1)).sort((a, b) =>
      a - b
    );
    assert.deepEqual(sorted, expected);
    assert.equal(o.closed, 1);
  }
});

Deno.test("Pipeline backpressure: a blocking slow output holds the sources back, losing nothing", async () => {
  const { m, pipeline } = setup();
  const src = counter(m);
  await pipeline.addManagedSource("test", "fast", src, { pollInterval: 1, flushInterval: 1 });
  const slow = recorder(m, 40);
  pipeline.addOutput("test", "slow", slow, { queue: 1, whenFull: "block" });
  pipeline.start();
  await sleep(400);
  await pipeline.stop();
  // The source waited: far fewer than the ~400 polls it would have made unhindered.
  assert.ok(src.polled < 150, `source was not held back (${src.polled} polls)`);
  assert.equal(slow.values.length, src.polled);
  assert.equal(pipeline.stats().outputs.get("output/test/slow")!.droppedPoints, 0);
});

Deno.test("Pipeline drop-oldest: a slow output drops and counts, the fast one gets everything", async () => {
  const logs = captureLogs();
  try {
    const registry = new MetricRegistry();
    const m = registry.register("test", { name: "seq", unit: unit("1"), valueType: "u64" });
    const pipeline = new Pipeline(registry, { selfInterval: 50 });
    const src = counter(m);
    await pipeline.addManagedSource("test", "fast", src, { pollInterval: 2, flushInterval: 2 });
    const slow = recorder(m, 60);
    const fast = recorder(m);
    const dropMetric = registry.byName("alumet_dropped_points")!.id;
    const drops: number[] = [];
    pipeline.addOutput("test", "slow", slow, { queue: 2, whenFull: "drop-oldest" });
    pipeline.addOutput("test", "fast", {
      write(b, ctx) {
        for (let i = 0; i < b.length; i++) if (b.metricAt(i) === dropMetric) drops.push(Number(b.valueAt(i)));
        return fast.write(b, ctx);
      },
    });
    pipeline.start();
    await sleep(400);
    await pipeline.stop();
    const stats = pipeline.stats().outputs.get("output/test/slow")!;
    assert.ok(stats.droppedPoints > 0, "nothing was dropped");
    assert.equal(
      slow.points + stats.droppedPoints,
      fast.points,
      "slow output: written + dropped != what the fast one got",
    );
    assert.equal(fast.values.length, src.polled, "the fast output lost points");
    assert.ok(drops.length > 0, "no alumet_dropped_points point reached the outputs");
    assert.ok(drops.every((d, i) => i === 0 || d >= drops[i - 1]!), "the drop counter went down");
    assert.ok(logs.lines.some((l) => l.includes("Dropped a batch") && l.includes("output/test/slow")));
  } finally {
    logs.restore();
  }
});

Deno.test("Pipeline error isolation", async (t) => {
  await t.step("a failing source stops alone; its points so far are kept", async () => {
    const logs = captureLogs();
    try {
      const { m, pipeline } = setup();
      let n = 0;
      await pipeline.addManagedSource("test", "bad", {
        poll(b) {
          if (++n === 4) throw new Error("disk on fire");
          b.push(m, n);
        },
      }, { pollInterval: 2, flushInterval: 100 });
      const good = counter(m);
      await pipeline.addManagedSource("test", "good", good, { pollInterval: 2, flushInterval: 2 });
      const out = recorder(m);
      pipeline.addOutput("test", "out", out);
      pipeline.start();
      await sleep(100);
      assert.equal(pipeline.control.list("source/test/bad")[0]!.state, "stopped");
      assert.equal(pipeline.control.list("source/test/good")[0]!.state, "running");
      await pipeline.stop();
      assert.equal(out.values.length, 3 + good.polled);
      assert.ok(logs.lines.some((l) => l.startsWith("error source/test/bad") && l.includes("disk on fire")));
    } finally {
      logs.restore();
    }
  });

  await t.step("a retryable poll error is logged and polling goes on; NormalStop stops quietly", async () => {
    const logs = captureLogs();
    try {
      const { m, pipeline } = setup();
      let n = 0;
      await pipeline.addManagedSource("test", "flaky", {
        poll(b) {
          n++;
          if (n % 2 === 0) throw new RetryableError("busy");
          if (n >= 9) throw new NormalStop("done");
          b.push(m, n);
        },
      }, { pollInterval: 2, flushInterval: 2 });
      const out = recorder(m);
      pipeline.addOutput("test", "out", out);
      pipeline.start();
      await sleep(100);
      await pipeline.stop();
      assert.deepEqual(out.values, [1, 3, 5, 7]);
      assert.equal(pipeline.stats().sources.get("source/test/flaky")!.errors, 4);
      assert.ok(!logs.lines.some((l) => l.startsWith("error")));
    } finally {
      logs.restore();
    }
  });

  await t.step("a failing output stops alone; the other output gets everything", async () => {
    const logs = captureLogs();
    try {
      const { m, pipeline } = setup();
      const src = counter(m);
      await pipeline.addManagedSource("test", "in", src, { pollInterval: 2, flushInterval: 2 });
      let calls = 0;
      pipeline.addOutput("test", "bad", {
        write() {
          if (++calls === 3) throw new Error("connection refused");
        },
      });
      const good = recorder(m);
      pipeline.addOutput("test", "good", good);
      pipeline.start();
      await sleep(100);
      await pipeline.stop();
      assert.equal(calls, 3);
      assert.equal(good.values.length, src.polled);
      assert.equal(pipeline.control.list("out/test/bad")[0]!.state, "stopped");
    } finally {
      logs.restore();
    }
  });

  await t.step("a retryable write is retried and succeeds", async () => {
    const logs = captureLogs();
    try {
      const { m, pipeline } = setup();
      const src = counter(m);
      await pipeline.addManagedSource("test", "in", src, { pollInterval: 1000 });
      let calls = 0;
      const out = recorder(m);
      pipeline.addOutput("test", "flaky", {
        write(b, ctx) {
          if (++calls === 1) throw new RetryableError("503");
          return out.write(b, ctx);
        },
      });
      pipeline.start();
      await pipeline.control.triggerNow();
      await pipeline.stop();
      assert.deepEqual(out.values, [1]);
      assert.equal(pipeline.stats().outputs.get("output/test/flaky")!.retries, 1);
    } finally {
      logs.restore();
    }
  });

  await t.step("a failing transform is disabled; batches flow on through the others", async () => {
    const logs = captureLogs();
    try {
      const { m, pipeline } = setup();
      const src = counter(m);
      await pipeline.addManagedSource("test", "in", src, { pollInterval: 2, flushInterval: 2 });
      let seen = 0;
      pipeline.addTransform("test", "bad", {
        apply() {
          if (++seen === 2) throw new Error("bug");
        },
      });
      pipeline.addTransform("test", "double", {
        apply(b) {
          const out = new Batch();
          for (let i = 0; i < b.length; i++) {
            out.push(m, Number(b.valueAt(i)) * 2, { timestamp: b.timestampAt(i) });
          }
          return out;
        },
      });
      const out = recorder(m);
      pipeline.addOutput("test", "out", out);
      pipeline.start();
      await sleep(60);
      await pipeline.stop();
      assert.equal(out.values.length, src.polled);
      assert.deepEqual(out.values, Array.from({ length: src.polled }, (_, i) => (i + 1) * 2));
      assert.equal(pipeline.control.list("transform/test/bad")[0]!.state, "stopped");
    } finally {
      logs.restore();
    }
  });

  await t.step("a failing TransformStream is bypassed without breaking the pipeline", async () => {
    const logs = captureLogs();
    try {
      const { m, pipeline } = setup();
      const src = counter(m);
      await pipeline.addManagedSource("test", "in", src, { pollInterval: 2, flushInterval: 2 });
      let n = 0;
      pipeline.addTransform(
        "test",
        "stream",
        new TransformStream<Batch, Batch>({
          transform(b, c) {
            if (++n === 3) throw new Error("stream bug");
            c.enqueue(b);
          },
        }),
      );
      const out = recorder(m);
      pipeline.addOutput("test", "out", out);
      pipeline.start();
      await sleep(60);
      await pipeline.stop();
      assert.equal(out.values.length, src.polled);
      assert.ok(logs.lines.some((l) => l.includes("transform/test/stream") && l.includes("stream bug")));
    } finally {
      logs.restore();
    }
  });
});

Deno.test("Pipeline control handle", async (t) => {
  const { m, pipeline } = setup();
  const a = counter(m);
  const b = counter(m);
  await pipeline.addManagedSource("test", "a", a, { pollInterval: 3_600_000 });
  await pipeline.addManagedSource("other", "b", b, { pollInterval: 3_600_000 });
  const out = recorder(m);
  pipeline.addOutput("test", "out", out);
  pipeline.start();

  await t.step("list selects by kind/plugin/name patterns", () => {
    assert.deepEqual(pipeline.control.list("src/test/*").map((e) => e.name), ["source/test/a"]);
    assert.deepEqual(pipeline.control.list("output").map((e) => e.name), ["output/test/out"]);
    assert.equal(pipeline.control.list("*").length, 4); // a, b, alumet/self, out
    assert.throws(() => pipeline.control.list("sink/*"), /unknown kind "sink"/);
  });
  await t.step("triggerNow polls matching sources at once", async () => {
    assert.equal(await pipeline.control.triggerNow("source/test/a"), 1);
    assert.equal(a.polled, 1);
    assert.equal(b.polled, 0);
  });
  await t.step("flushNow sends what was polled", async () => {
    await pipeline.control.flushNow();
    await sleep(10);
    assert.deepEqual(out.values, [1]);
  });
  await t.step("pause and resume", async () => {
    assert.equal(await pipeline.control.pause("source/other/*"), 1);
    assert.equal(pipeline.control.list("source/other/b")[0]!.state, "paused");
    await pipeline.control.triggerNow("source/other/b");
    assert.equal(b.polled, 1, "a paused source can still be triggered by hand");
    await pipeline.control.resume("source/other/*");
    assert.equal(pipeline.control.list("source/other/b")[0]!.state, "running");
  });
  await t.step("setPollInterval changes the period", async () => {
    assert.equal(pipeline.control.setPollInterval("source/test/a", "5ms"), 1);
    await sleep(100);
    assert.ok(a.polled > 5, `only ${a.polled} polls after setting 5ms`);
    assert.equal(pipeline.control.list("source/test/a")[0]!.pollInterval, 5);
    assert.throws(() => pipeline.control.setPollInterval("source/test/a", "soon"), /Invalid poll interval/);
  });
  await t.step("addSource at run time", async () => {
    const c = counter(m);
    await pipeline.control.addSource("late", c, { pollInterval: 3_600_000 });
    assert.equal(pipeline.control.list("source/script/late").length, 1);
    await pipeline.control.triggerNow("source/script/late");
    assert.equal(c.polled, 1);
  });
  await t.step("stop a source", async () => {
    assert.equal(await pipeline.control.stop("source/test/a"), 1);
    assert.equal(pipeline.control.list("source/test/a")[0]!.state, "stopped");
  });
  await pipeline.stop();
  const total = a.polled + b.polled + 1;
  assert.equal(out.values.length, total);
});

Deno.test("Pipeline runs autonomous sources and WritableStream outputs, and closes them at shutdown", async () => {
  const { m, pipeline } = setup();
  let aborted = false;
  pipeline.addAutonomousSource("test", "auto", (signal) => {
    let n = 0;
    return new ReadableStream<Batch>({
      async pull(c) {
        if (signal.aborted) {
          aborted = true;
          const last = new Batch();
          last.push(m, 1000);
          c.enqueue(last);
          c.close();
          return;
        }
        await sleep(5);
        const b = new Batch();
        b.push(m, ++n);
        c.enqueue(b);
      },
    });
  });
  const got: number[] = [];
  pipeline.addOutput(
    "test",
    "stream",
    new WritableStream<Batch>({
      write(b) {
        for (let i = 0; i < b.length; i++) if (b.metricAt(i) === m) got.push(Number(b.valueAt(i)));
      },
    }),
  );
  pipeline.start();
  await sleep(60);
  await pipeline.stop();
  assert.ok(aborted, "the autonomous source was not told to stop");
  assert.equal(got.at(-1), 1000, "the last batch of the autonomous source was lost");
  assert.deepEqual(got.slice(0, -1), Array.from({ length: got.length - 1 }, (_, i) => i + 1));
});

Deno.test("Pipeline rejects duplicate element names and bad triggers", async () => {
  const { m, pipeline } = setup();
  await pipeline.addManagedSource("p", "x", counter(m), { pollInterval: "1s" });
  await assert.rejects(
    pipeline.addManagedSource("p", "x", counter(m), { pollInterval: "1s" }),
    /two elements/,
  );
  await assert.rejects(
    pipeline.addManagedSource("p", "y", counter(m), { pollInterval: "often" }),
    /Invalid pollInterval "often"/,
  );
  assert.throws(
    () => pipeline.addOutput("p", "o", recorder(m), { queue: 0 }),
    /queue must be a positive integer/,
  );
});

Deno.test("ManagedSource counts late and missed ticks instead of catching up", async () => {
  const { m, pipeline } = setup();
  let polls = 0;
  await pipeline.addManagedSource("test", "slow", {
    poll(b) {
      polls++;
      const end = performance.now() + 25; // busy for 25 ms on a 5 ms period
      while (performance.now() < end) { /* spin */ }
      b.push(m, polls);
    },
  }, { pollInterval: 5, flushInterval: 5 });
  pipeline.addOutput("test", "out", recorder(m));
  pipeline.start();
  await sleep(200);
  await pipeline.stop();
  const s = pipeline.stats().sources.get("source/test/slow")!;
  assert.ok(s.missed > polls, `missed ${s.missed} ticks for ${polls} polls`);
  assert.ok(polls < 12, `it caught up with a burst (${polls} polls in 200 ms)`);
});

Deno.test("Pipeline frees the name of a stopped source and keeps its counts", async () => {
  const { m, pipeline } = setup();
  const out = recorder(m);
  pipeline.addOutput("test", "out", out);
  pipeline.start();
  for (let round = 0; round < 3; round++) {
    const c = counter(m);
    await pipeline.control.addSource("pid-42", c, { pollInterval: "1h" });
    await pipeline.control.triggerNow("source/script/pid-42");
    await assert.rejects(
      pipeline.control.addSource("pid-42", counter(m), { pollInterval: "1h" }),
      /two elements/,
    );
    await pipeline.control.stop("source/script/pid-42");
  }
  await pipeline.stop();
  assert.equal(out.values.length, 3);
  const total = [...pipeline.stats().sources.values()].reduce((n, s) => n + s.points, 0);
  assert.equal(total, 3, "the counts of replaced sources were lost");
});

Deno.test("Pipeline shutdown does not hang", async (t) => {
  await t.step(
    "an autonomous source that ignores its signal is cancelled after the grace period",
    async () => {
      const logs = captureLogs();
      try {
        const { m, pipeline } = setup();
        pipeline.addAutonomousSource("test", "stuck", () =>
          new ReadableStream<Batch>({
            start(c) {
              const b = new Batch();
              b.push(m, 1);
              c.enqueue(b);
            },
            pull: () => new Promise(() => {}), // never produces, never closes
          }));
        const out = recorder(m);
        pipeline.addOutput("test", "out", out);
        pipeline.start();
        await sleep(20);
        await pipeline.stop(100);
        assert.deepEqual(out.values, [1]);
        assert.equal(out.closed, 1);
        assert.ok(logs.lines.some((l) => l.includes("source/test/stuck") && l.includes("cancelled")));
      } finally {
        logs.restore();
      }
    },
  );
  await t.step("a paused blocking output with a full queue drains at shutdown", async () => {
    const logs = captureLogs();
    try {
      const { m, pipeline } = setup();
      const src = counter(m);
      await pipeline.addManagedSource("test", "in", src, { pollInterval: 2, flushInterval: 2 });
      const out = recorder(m);
      pipeline.addOutput("test", "out", out, { queue: 2, whenFull: "block" });
      pipeline.start();
      await pipeline.control.pause("output/test/out");
      await sleep(80);
      await pipeline.stop();
      assert.equal(out.values.length, src.polled);
    } finally {
      logs.restore();
    }
  });
});

Deno.test("Pipeline: an output blocked by a full disk holds the sources back, resumes, and loses nothing", async () => {
  const logs = captureLogs();
  try {
    const { m, registry } = setup();
    const pipeline = new Pipeline(registry, {
      selfInterval: 3_600_000,
      outputBlockedGraceMs: 200,
      sourceChannelSize: 2,
    });
    const src = counter(m);
    await pipeline.addManagedSource("test", "in", src, { pollInterval: 2, flushInterval: 2 });
    let full = false;
    const out = recorder(m);
    const write = out.write.bind(out);
    out.write = (b, ctx) => {
      if (full) throw blockedByFullDisk();
      return write(b, ctx);
    };
    pipeline.addOutput("test", "out", out, { queue: 2, whenFull: "block" });
    pipeline.start();
    await sleep(30);
    full = true;
    await sleep(150);
    const polledWhileFull = src.polled;
    await sleep(150);
    // The fan-in (2 batches) and the queue (2) fill, then the source waits: it is no longer polled.
    assert.ok(
      src.polled - polledWhileFull <= 2,
      `the source was held back (${polledWhileFull} → ${src.polled})`,
    );
    full = false;
    await sleep(50);
    await pipeline.stop();
    assert.equal(out.values.length, src.polled, "every polled point written once space came back");
    assert.deepEqual(out.values, [...out.values].sort((a, b) => a - b));
    assert.equal(pipeline.stats().outputs.get("output/test/out")!.droppedPoints, 0);
    assert.ok(logs.lines.some((l) => /Paused \(ENOSPC\)/.test(l)), logs.lines.join("\n"));
    assert.ok(logs.lines.some((l) => /Resumed/.test(l)), logs.lines.join("\n"));
  } finally {
    logs.restore();
  }
});

Deno.test("Pipeline: stop with an output still blocked ends after the grace period and counts every point as lost", async () => {
  const logs = captureLogs();
  try {
    const { m, registry } = setup();
    const pipeline = new Pipeline(registry, { selfInterval: 3_600_000, outputBlockedGraceMs: 100 });
    const src = counter(m);
    await pipeline.addManagedSource("test", "in", src, { pollInterval: 2, flushInterval: 2 });
    const good = recorder(m);
    pipeline.addOutput("test", "good", good);
    pipeline.addOutput("test", "full", {
      write() {
        throw blockedByFullDisk();
      },
    }, { queue: 2, whenFull: "block" });
    pipeline.start();
    await sleep(100);
    await withTimeout(pipeline.stop(), 20_000, "stop with a blocked output");
    const stats = pipeline.stats().outputs;
    assert.equal(good.values.length, src.polled, "the other output got every point");
    assert.equal(stats.get("output/test/full")!.droppedPoints, src.polled, "the blocked one lost them all");
  } finally {
    logs.restore();
  }
});

Deno.test("Pipeline: an output whose reader went away (EPIPE) asks for a shutdown", async () => {
  const logs = captureLogs();
  try {
    const { m, registry } = setup();
    let requests = 0;
    const pipeline = new Pipeline(registry, { selfInterval: 3_600_000, onShutdownRequest: () => requests++ });
    await pipeline.addManagedSource("test", "in", counter(m), { pollInterval: 2, flushInterval: 2 });
    pipeline.addOutput("test", "pipe", {
      write() {
        throw new Deno.errors.BrokenPipe("Broken pipe (os error 32)");
      },
    });
    pipeline.start();
    const t0 = performance.now();
    while (requests === 0 && performance.now() - t0 < 20_000) await sleep(5);
    await pipeline.stop();
    assert.equal(requests, 1);
    const pipeStats = pipeline.stats().outputs.get("output/test/pipe")!;
    assert.ok(pipeStats.unreadPoints > 0, "what it could not write is unread");
    assert.equal(pipeStats.droppedPoints, 0, "not lost: no reader wants it");
  } finally {
    logs.restore();
  }
});

Deno.test("A TransformStream that enqueues then throws does not duplicate the batch", async () => {
  const logs = captureLogs();
  try {
    const { m, pipeline } = setup();
    const src = counter(m);
    await pipeline.addManagedSource("test", "in", src, { pollInterval: 2, flushInterval: 2 });
    let n = 0;
    pipeline.addTransform(
      "test",
      "t",
      new TransformStream<Batch, Batch>({
        transform(b, c) {
          c.enqueue(b);
          if (++n === 3) throw new Error("after enqueue");
        },
      }),
    );
    const out = recorder(m);
    pipeline.addOutput("test", "out", out);
    pipeline.start();
    await sleep(50);
    await pipeline.stop();
    assert.deepEqual(out.values, Array.from({ length: src.polled }, (_, i) => i + 1));
  } finally {
    logs.restore();
  }
});

Deno.test("Pipeline rejects a source channel size below 1", () => {
  const registry = new MetricRegistry();
  assert.throws(() => new Pipeline(registry, { sourceChannelSize: 0 }).start(), /must be an integer >= 1/);
});

Deno.test("triggerIntervals: a hot source without a flush interval flushes every 100 ms", () => {
  assert.deepEqual(triggerIntervals({ pollInterval: "1ms" }), { poll: 1, flush: 100 });
  assert.deepEqual(triggerIntervals({ pollInterval: "1ms", flushInterval: "1ms" }), { poll: 1, flush: 1 });
  assert.deepEqual(triggerIntervals({ pollInterval: "1s" }), { poll: 1000, flush: 1000 });
});

Deno.test("A transform's close() may return a last batch: it goes through the transforms after it, then to the outputs", async (t) => {
  for (const withStream of [false, true]) {
    await t.step(
      withStream ? "with a TransformStream in the chain" : "with Transform objects only",
      async () => {
        const { m, pipeline } = setup();
        await pipeline.addManagedSource("test", "in", counter(m), { pollInterval: 2, flushInterval: 2 });
        let held = 0;
        // Holds back every point (as a window still open), gives one point with their count at close().
        pipeline.addTransform("test", "hold", {
          apply(b) {
            held += b.length;
            return new Batch();
          },
          close() {
            const last = new Batch();
            last.push(m, 1000 + held);
            return last;
          },
        });
        if (withStream) pipeline.addTransform("test", "stream", new TransformStream<Batch, Batch>());
        const seen: number[] = [];
        pipeline.addTransform("test", "after", {
          apply(b) {
            for (let i = 0; i < b.length; i++) seen.push(Number(b.valueAt(i)));
          },
        });
        const out = recorder(m);
        pipeline.addOutput("test", "out", out);
        pipeline.start();
        await sleep(30);
        await pipeline.stop();
        assert.ok(held > 0);
        assert.deepEqual(out.values, [1000 + held]);
        assert.deepEqual(seen, [1000 + held], "the transform after it saw the last batch");
        assert.equal(out.closed, 1);
      },
    );
  }
});

Deno.test("A transform disabled by an error is still closed, but the batch its close() returns is dropped", async () => {
  const logs = captureLogs();
  try {
    const { m, pipeline } = setup();
    await pipeline.addManagedSource("test", "in", counter(m), { pollInterval: 2, flushInterval: 2 });
    let closed = 0;
    pipeline.addTransform("test", "broken", {
      apply() {
        throw new Error("inconsistent now");
      },
      close() {
        closed++;
        const last = new Batch();
        last.push(m, 9999);
        return last;
      },
    });
    const out = recorder(m);
    pipeline.addOutput("test", "out", out);
    pipeline.start();
    await sleep(30);
    await pipeline.stop();
    assert.equal(closed, 1);
    assert.ok(out.values.length > 0 && !out.values.includes(9999), `${out.values}`);
    assert.ok(logs.lines.some((l) => l.includes("inconsistent now")));
  } finally {
    logs.restore();
  }
});

import assert from "node:assert/strict";
import { MetricRegistry } from "../model/metrics.ts";
import { unit } from "../model/units.ts";
import { Pipeline } from "./pipeline.ts";
import { samplingRealtime, setSamplingRealtime } from "./sampler.ts";
import { privilegedForRealtime, realtimeGranted } from "./realtime.ts";
import { SCHED_FIFO } from "../ffi/libc.ts";
import { type LogSink, setLogSink } from "../log.ts";

const MODULE = new URL("./testdata/counter_source.ts", import.meta.url);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The scheduling policy of each thread of this process (field 41 of /proc/self/task/<tid>/stat). */
function policies(): number[] {
  const out: number[] = [];
  for (const t of Deno.readDirSync("/proc/self/task")) {
    try {
      const stat = Deno.readTextFileSync(`/proc/self/task/${t.name}/stat`);
      out.push(Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[38]));
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

const granted = realtimeGranted();

/** The warnings logged while `f` runs. */
async function warningsOf<T>(f: () => Promise<T>): Promise<{ result: T; warnings: string[] }> {
  const warnings: string[] = [];
  const previous = setLogSink(
    ((level: string, _scope: string, message: string) => {
      if (level === "warn") warnings.push(message);
    }) as LogSink,
  );
  try {
    return { result: await f(), warnings };
  } finally {
    setLogSink(previous);
  }
}

/**
 * Realtime was asked for a 1 ms source: one SCHED_FIFO thread where the kernel grants it; where it refuses
 * (RT group scheduling), none, and one warning saying why.
 */
async function assertRealtimeAsked(): Promise<void> {
  const { result, warnings } = await warningsOf(() => fifoThreadsWhileSampling("1ms"));
  const refusals = warnings.filter((w) => w.includes("refused SCHED_FIFO"));
  if (granted) {
    assert.equal(result, 1);
    assert.deepEqual(refusals, []);
  } else {
    assert.equal(result, 0);
    assert.equal(refusals.length, 1, warnings.join("\n"));
    // the kernel's errno, and the cause that goes with it: privileges, or (with them) RT group scheduling
    assert.match(refusals[0]!, /\((EPERM|EINVAL|EAGAIN)\)/);
    if (privilegedForRealtime()) assert.match(refusals[0]!, /cgroup/);
  }
}

/**
 * Runs a pipeline with one source at `period` in the sampling Worker and counts this process's threads in
 * SCHED_FIFO while it samples (once the Worker has polled a few times).
 */
async function fifoThreadsWhileSampling(period: string): Promise<number> {
  const registry = new MetricRegistry();
  const m = registry.register("test", { name: "seq", unit: unit("1"), valueType: "u64" });
  const pipeline = new Pipeline(registry, { selfInterval: 3_600_000 });
  pipeline.addOutput("test", "out", { write() {} });
  await pipeline.addManagedSource("test", "hot", { module: MODULE, config: { metric: m } }, {
    pollInterval: period,
    flushInterval: "20ms",
  });
  pipeline.start();
  try {
    // Up to 30 s: a loaded machine gives the Worker little CPU, and how much is no test's matter.
    for (let i = 0; i < 3000 && (pipeline.stats().sources.get("source/test/hot")?.polls ?? 0) < 20; i++) {
      await sleep(10);
    }
    assert.ok(pipeline.stats().sources.get("source/test/hot")!.polls >= 20, "the Worker did not sample");
    return policies().filter((p) => p === SCHED_FIFO).length;
  } finally {
    await pipeline.stop();
  }
}

/** Runs `f` with the environment variables set (undefined: removed), restoring them after. */
async function withEnv<T>(vars: Record<string, string | undefined>, f: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, Deno.env.get(k)]));
  const apply = (v: Record<string, string | undefined>) => {
    for (const [k, x] of Object.entries(v)) x === undefined ? Deno.env.delete(k) : Deno.env.set(k, x);
  };
  apply(vars);
  try {
    return await f();
  } finally {
    apply(saved);
  }
}

const clean = { ALUMET_NO_REALTIME: undefined, ALUMET_REALTIME: undefined };
const root = Deno.uid() === 0;

Deno.test("The sampling Worker runs at normal priority by default, even at 1 ms and as root", async () => {
  await withEnv(clean, async () => {
    setSamplingRealtime(false);
    assert.equal(samplingRealtime(), false);
    assert.equal(policies().filter((p) => p === SCHED_FIFO).length, 0, "a realtime thread before the test");
    assert.equal(await fifoThreadsWhileSampling("1ms"), 0);
  });
});

Deno.test({
  name: "sampling_realtime turns realtime on for a 1 ms source (one SCHED_FIFO thread), not for 5 ms",
  ignore: !root, // SCHED_FIFO needs root or CAP_SYS_NICE
  fn: async () => {
    await withEnv(clean, async () => {
      setSamplingRealtime(true);
      try {
        await assertRealtimeAsked();
        assert.equal(await fifoThreadsWhileSampling("5ms"), 0, "realtime is for periods ≤ 3 ms only");
      } finally {
        setSamplingRealtime(false);
      }
      assert.equal(await fifoThreadsWhileSampling("1ms"), 0, "and off again");
    });
  },
});

Deno.test({
  name: "ALUMET_REALTIME=1 turns realtime on; ALUMET_NO_REALTIME=1 keeps it off even when configured",
  ignore: !root,
  fn: async () => {
    setSamplingRealtime(false);
    await withEnv({ ...clean, ALUMET_REALTIME: "1" }, assertRealtimeAsked);
    setSamplingRealtime(true);
    try {
      await withEnv({ ...clean, ALUMET_NO_REALTIME: "1", ALUMET_REALTIME: "1" }, async () => {
        assert.equal(samplingRealtime(), false);
        assert.equal(await fifoThreadsWhileSampling("1ms"), 0);
      });
    } finally {
      setSamplingRealtime(false);
    }
  },
});

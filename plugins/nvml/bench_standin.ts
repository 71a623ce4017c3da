/**
 * Benchmark of the nvml plugin against the stand-in library (testdata/nvml_standin.c), on a machine without a
 * GPU: it measures the plugin's own cost (FFI calls, struct decoding, points), not a driver's (a real NVML
 * call takes microseconds to milliseconds).
 *
 *     deno run -A plugins/nvml/bench_standin.ts
 *
 * 1. Cost per poll: the H100 source polled in a loop, full and minimal mode.
 * 2. Other sources' lateness: a 1 kHz source (examples/sources/context_switches.ts, in the sampling Worker) and
 *    a 10 ms source on the main thread, each run for 3 s alone and then with the nvml plugin polling the
 *    stand-in's two GPUs at 100 Hz (two blocking Workers): lateness p50/p99 compared.
 */
import { Agent, type Batch, definePlugin, unit } from "../../mod.ts";
import { nvmlPlugin } from "./mod.ts";
import { Batch as B } from "../../src/model/batch.ts";
import { now } from "../../src/model/timestamp.ts";
import { testPlugin } from "../../src/testing/mod.ts";

const dir = await Deno.makeTempDir({ prefix: "nvml-bench-" });
const lib = `${dir}/libnvidia-ml.so.1`;
const src = new URL("./testdata/nvml_standin.c", import.meta.url).pathname;
const cc = await new Deno.Command("gcc", { args: ["-shared", "-fPIC", "-O2", "-o", lib, src] }).output();
if (!cc.success) throw new Error("gcc failed");

// deno-lint-ignore no-console
const say = console.log;

for (const mode of ["full", "minimal"] as const) {
  await using h = await testPlugin(nvmlPlugin, { library_path: lib, mode });
  // the source the Worker creates (createSource), polled here directly
  const s = h.sources.get("device_00000000:17:00.0")!.source;
  const b = new B(256);
  const N = 20_000;
  for (let i = 0; i < 1000; i++) {
    b.clear();
    s.poll(b, now());
  }
  const times: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    for (let i = 0; i < N; i++) {
      const bb = new B(64);
      s.poll(bb, now());
    }
    times.push((performance.now() - t0) * 1000 / N);
  }
  times.sort((a, c) => a - c);
  say(`cost per poll, ${mode} mode (H100 stand-in): median ${times[2]!.toFixed(1)} µs (5 runs of ${N})`);
}

async function lateness(withNvml: boolean): Promise<string> {
  const other = definePlugin({
    name: "other",
    start(ctx) {
      const m = ctx.createMetric({ name: "ctxt", unit: unit("1"), valueType: "u64", kind: "counter" });
      ctx.addSource("fast", {
        module: new URL("../../examples/sources/context_switches.ts", import.meta.url),
        config: { metric: m },
      }, { pollInterval: "1ms", flushInterval: "100ms" });
      const g = ctx.createMetric({ name: "tick", unit: unit("1"), valueType: "u64" });
      ctx.addSource("main", { poll: (b: Batch) => b.push(g, 1) }, { pollInterval: "10ms" });
      ctx.addOutput("null", { write: () => {} });
    },
  });
  const plugins = withNvml
    ? [other, {
      plugin: nvmlPlugin,
      config: { library_path: lib, poll_interval: "10ms", flush_interval: "100ms" },
    }]
    : [other];
  await using agent = new Agent({ plugins });
  await agent.start();
  await new Promise((r) => setTimeout(r, 3000));
  const f = agent.latenessOf("source/other/fast")!;
  const m = agent.latenessOf("source/other/main")!;
  const st = agent.stats()!.sources;
  const nv = st.get("source/nvml/device_00000000:17:00.0");
  return `1 kHz source p50 ${f.percentileUs(50).toFixed(0)} µs p99 ${f.percentileUs(99).toFixed(0)} µs; ` +
    `10 ms main-thread source p50 ${m.percentileUs(50).toFixed(0)} µs p99 ${
      m.percentileUs(99).toFixed(0)
    } µs` +
    (nv ? `; nvml H100 source ${nv.polls} polls in 3 s (missed ${nv.missed})` : "");
}

say(`alone:              ${await lateness(false)}`);
say(`with nvml @ 100 Hz: ${await lateness(true)}`);
say(`alone (again):      ${await lateness(false)}`);
await Deno.remove(dir, { recursive: true });

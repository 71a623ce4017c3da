/**
 * Sampling at 1 kHz off the main thread: a source given as a module URL and a serialisable config runs in the
 * sampling Worker, which sleeps synchronously between ticks and posts one batch per flush.
 *
 *     deno run --allow-read --allow-ffi examples/fast_sampling.ts
 *
 * It needs --allow-ffi: the file is read with libc's pread (Deno's own file API asks for --allow-all to read
 * /proc files), and the Worker sleeps with clock_nanosleep on absolute deadlines. With --allow-env, the agent
 * reads ALUMET_REALTIME=1 (realtime scheduling for the sampling thread: off by default, as it preempts the
 * measured program) and ALUMET_NO_REALTIME=1 (forces it off).
 */
import { Agent, type Batch, definePlugin, unit } from "../mod.ts";

let points = 0;
let first: number | undefined;
let last: number | undefined;

const fast = definePlugin({
  name: "fast",
  start(ctx) {
    const m = ctx.createMetric({
      name: "context_switches",
      unit: unit("1"),
      valueType: "u64",
      kind: "counter",
      description: "Context switches since boot (/proc/stat ctxt)",
    });
    ctx.addSource("ctxt", {
      module: new URL("./sources/context_switches.ts", import.meta.url),
      config: { metric: m },
    }, { pollInterval: "1ms", flushInterval: "100ms" });
    ctx.addOutput("count", {
      write(b: Batch) {
        for (let i = 0; i < b.length; i++) {
          const v = Number(b.valueAt(i));
          if (b.metricAt(i) !== m) continue;
          first ??= v;
          last = v;
          points++;
        }
      },
    });
  },
});

{
  await using agent = new Agent({ plugins: [fast] });
  await agent.start();
  await new Promise((r) => setTimeout(r, 500));
  const info = agent.control.list("source/fast/ctxt")[0]!;
  const stats = agent.stats()!.sources.get("source/fast/ctxt")!;
  const lateness = agent.latenessOf("source/fast/ctxt")!;
  // deno-lint-ignore no-console
  console.log(
    `${info.name}: polled ${stats.polls} times in 0.5 s (late ${stats.late}, missed ${stats.missed}, ` +
      `p99 lateness ${lateness.percentileUs(99).toFixed(0)} µs)`,
  );
}
// deno-lint-ignore no-console
console.log(`${points} points; ${last! - first!} context switches in between`);
if (points < 100) throw new Error(`only ${points} points at 1 kHz in 0.5 s`);

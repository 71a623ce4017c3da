/**
 * Pipeline throughput: a synthetic autonomous source → one transform → an output (null, or csv).
 *
 * Work per run: BATCHES batches of POINTS points; each point has 2 attributes (shared objects, as a real
 * source reuses them), one of 4 resources, one metric (f64). The source builds every batch fresh. The time
 * runs from `agent.start()` to the end of `agent.stop()` (drained: the output has every point).
 */
import { Agent, Batch, definePlugin, Resource, unit } from "../mod.ts";
import csv from "../plugins/csv/mod.ts";

export const POINTS = 1000;
export const BATCHES = 2000;

function syntheticPlugin(batches: number, sink: { points: number }, withNullOutput: boolean) {
  return definePlugin({
    name: "bench",
    start(ctx) {
      const m = ctx.createMetric({ name: "bench_value", unit: unit("W"), valueType: "f64" });
      const resources = [0, 1, 2, 3].map((i) => Resource.cpuCore(i));
      const attrs = [
        { domain: "package", socket: 0 },
        { domain: "dram", socket: 0 },
      ];
      ctx.addAutonomousSource("synthetic", () => {
        let made = 0;
        return new ReadableStream<Batch>({
          pull(c) {
            if (made++ === batches) {
              c.close();
              return;
            }
            const b = new Batch(POINTS);
            b.timestamp = BigInt(made) * 1_000_000n + 1_700_000_000_000_000_000n;
            for (let i = 0; i < POINTS; i++) {
              b.push(m, i * 0.5, { resource: resources[i & 3]!, attributes: attrs[i & 1]! });
            }
            c.enqueue(b);
          },
        }, { highWaterMark: 4 });
      });
      ctx.addTransform("scale", {
        apply(b) {
          // A cheap, realistic transform: look at every value (e.g. a filter or a unit conversion check).
          let s = 0;
          for (let i = 0; i < b.length; i++) s += b.valueAt(i) as number;
          if (s < 0) throw new Error("impossible");
        },
      });
      if (withNullOutput) {
        ctx.addOutput("null", {
          write(b) {
            sink.points += b.length;
          },
        });
      }
    },
  });
}

/** Runs one measurement; returns points per second. */
export async function runThroughput(
  output: "null" | "csv",
  dir: string,
): Promise<{ pps: number; points: number }> {
  const sink = { points: 0 };
  const plugins = [syntheticPlugin(BATCHES, sink, output === "null")];
  const entries = output === "csv"
    ? [...plugins, { plugin: csv, config: { output_path: `${dir}/bench.csv` } }]
    : plugins;
  const agent = new Agent({ plugins: entries, selfInterval: 3_600_000 });
  const t0 = performance.now();
  await agent.start();
  // The source closes its stream after BATCHES batches; wait until everything went through.
  for (;;) {
    const stats = agent.stats();
    const out = [...stats!.outputs.values()][0]!;
    if (out.points >= BATCHES * POINTS) break;
    await new Promise((r) => setTimeout(r, 1));
  }
  await agent.stop();
  const secs = (performance.now() - t0) / 1000;
  await agent[Symbol.asyncDispose]();
  const points = output === "null" ? sink.points : BATCHES * POINTS;
  return { pps: points / secs, points };
}

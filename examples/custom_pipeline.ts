/**
 * A pipeline built in code: a custom source written as a ReadableStream, a managed source polled on a
 * timer, a transform, a custom output written as a WritableStream, and the control handle.
 *
 *     deno run examples/custom_pipeline.ts
 *
 * In your own script, import from the repository's URL instead:
 * `import { Agent, … } from "https://…/mod.ts";` (run it with `--allow-import`).
 */
import { Agent, Batch, Consumer, definePlugin, type MetricId, unit } from "../mod.ts";

let ticks = 0;
const received = { batches: 0, points: 0 };
let lastValue = NaN;

const demo = definePlugin({
  name: "demo",
  start(ctx) {
    // A managed source: the pipeline calls poll() every 20 ms and flushes every 100 ms.
    const tick = ctx.createMetric({ name: "demo_ticks", unit: unit("1"), valueType: "u64", kind: "counter" });
    ctx.addSource("ticker", { poll: (b: Batch) => b.push(tick, ++ticks) }, {
      pollInterval: "20ms",
      flushInterval: "100ms",
    });

    // An autonomous source: our own ReadableStream of batches, closed when the signal aborts.
    const temp = ctx.createMetric({ name: "demo_temperature", unit: unit("Cel"), valueType: "f64" });
    ctx.addAutonomousSource("thermometer", (signal) =>
      new ReadableStream<Batch>({
        async pull(controller) {
          if (signal.aborted) return controller.close();
          await new Promise((r) => setTimeout(r, 50));
          const b = new Batch();
          b.timestamp = BigInt(Date.now()) * 1_000_000n;
          b.push(temp, 20 + Math.random(), { consumer: Consumer.custom("room", "lab") });
          controller.enqueue(b);
        },
      }));

    // A transform: Celsius to Kelvin would change the unit, so here we only clamp outliers in place.
    ctx.addTransform("clamp", {
      apply(b: Batch) {
        b.retain((batch, i) => batch.metricAt(i) !== temp || (batch.valueAt(i) as number) < 100);
      },
    });

    // A custom output: any WritableStream of batches.
    ctx.addOutput(
      "collector",
      new WritableStream<Batch>({
        write(b) {
          received.batches++;
          received.points += b.length;
          for (let i = 0; i < b.length; i++) {
            if (b.metricAt(i) === (temp as MetricId)) lastValue = b.valueAt(i) as number;
          }
        },
      }),
    );
  },
});

{
  await using agent = new Agent({ plugins: [demo] });
  await agent.start();
  // deno-lint-ignore no-console
  console.log("elements:", agent.control.list().map((e) => `${e.name} (${e.state})`).join(", "));
  await new Promise((r) => setTimeout(r, 300));
  agent.control.setPollInterval("source/demo/ticker", "5ms");
  await new Promise((r) => setTimeout(r, 200));
  await agent.control.triggerNow("source/demo/ticker");
} // leaving the block stops the agent: sources flush, outputs drain, plugins stop and are disposed

// deno-lint-ignore no-console
console.log(
  `ticks=${ticks} batches=${received.batches} points=${received.points} last=${lastValue.toFixed(2)}`,
);
if (received.points < ticks) throw new Error("points were lost");

import assert from "node:assert/strict";
import { MetricRegistry } from "../model/metrics.ts";
import { unit } from "../model/units.ts";
import { type LogSink, setLogSink } from "../log.ts";
import { testPlugin } from "../testing/mod.ts";
import { definePlugin } from "../plugin/define.ts";
import { Pipeline } from "./pipeline.ts";

const MODULE = new URL("./testdata/logging_source.ts", import.meta.url);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (
  const [where, period] of [["in the sampling Worker", "1ms"], ["on the main thread", "20ms"]] as const
) {
  Deno.test(`a module source polled ${where} logs through its context, in its own name`, async () => {
    const lines: string[] = [];
    const previous = setLogSink(
      ((level: string, scope: string, message: string) =>
        lines.push(`${level} ${scope}: ${message}`)) as LogSink,
    );
    const registry = new MetricRegistry();
    const m = registry.register("test", { name: "seq", unit: unit("1"), valueType: "u64" });
    const pipeline = new Pipeline(registry, { selfInterval: 3_600_000 });
    try {
      pipeline.addOutput("test", "out", { write() {} });
      await pipeline.addManagedSource("test", "talk", { module: MODULE, config: { metric: m } }, {
        pollInterval: period,
        flushInterval: "20ms",
      });
      pipeline.start();
      for (let i = 0; i < 3000 && !lines.some((l) => l.endsWith("third poll")); i++) await sleep(10);
    } finally {
      await pipeline.stop();
      setLogSink(previous);
    }
    const mine = lines.filter((l) => l.includes("created") || l.includes("third poll"));
    assert.deepEqual(mine, ["warn source/test/talk: created", "warn source/test/talk: third poll"]);
  });
}

Deno.test("testPlugin gives a module source the same context", async () => {
  const lines: string[] = [];
  const previous = setLogSink(
    ((level: string, scope: string, message: string) =>
      lines.push(`${level} ${scope}: ${message}`)) as LogSink,
  );
  try {
    const plugin = definePlugin({
      name: "talker",
      start(ctx) {
        const m = ctx.createMetric({ name: "seq", unit: unit("1"), valueType: "u64" });
        ctx.addSource("talk", { module: MODULE, config: { metric: m } }, { pollInterval: "1s" });
      },
    });
    await using h = await testPlugin(plugin);
    for (let i = 0; i < 3; i++) await h.poll("talk");
  } finally {
    setLogSink(previous);
  }
  assert.deepEqual(lines.filter((l) => l.startsWith("warn")), [
    "warn source/talker/talk: created",
    "warn source/talker/talk: third poll",
  ]);
});

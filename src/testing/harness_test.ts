import assert from "node:assert/strict";
import { Batch } from "../model/batch.ts";
import type { MetricId } from "../model/metrics.ts";
import { unit } from "../model/units.ts";
import { definePlugin } from "../plugin/define.ts";
import { testPlugin } from "./mod.ts";

Deno.test("testPlugin: closeTransform closes a Transform object and gives the last batch it returned", async () => {
  const summing = definePlugin({
    name: "summing",
    start(ctx) {
      const m = ctx.createMetric({ name: "total", unit: unit("1"), valueType: "f64" });
      let total = 0;
      ctx.addTransform("sum", {
        apply(b) {
          for (let i = 0; i < b.length; i++) total += Number(b.valueAt(i));
          return new Batch();
        },
        close() {
          const last = new Batch();
          last.push(m, total);
          return last;
        },
      });
      ctx.addTransform("quiet", { apply() {} });
    },
  });
  await using h = await testPlugin(summing, {});
  const m = h.metrics.byName("total")!.id as MetricId<"f64">;
  const b = new Batch();
  b.push(m, 2);
  b.push(m, 3);
  assert.equal((await h.transform("sum", b)).length, 0, "held back");
  const last = await h.closeTransform("sum");
  assert.equal(last?.length, 1);
  assert.equal(last?.valueAt(0), 5);
  assert.equal(await h.closeTransform("quiet"), undefined, "no close: no last batch");
  await assert.rejects(h.closeTransform("none"), /no transform named "none"/);
});

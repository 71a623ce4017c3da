// The `hot` source of probe.ts, run in the sampling Worker: pushes 1, 2, 3… and writes how many points it
// pushed to `<countDir>/hot.count` after each poll and when it closes; `<countDir>/hot.ready` after 5 polls.
// With `strayAt`, poll number `strayAt` also throws an error in a timer, which nobody catches.
import type { Batch, MetricId, Source } from "../../../mod.ts";

export function createSource(config: { metric: number; countDir: string; strayAt?: number }): Source {
  let n = 0;
  const countFile = `${config.countDir}/hot.count`;
  return {
    poll(b: Batch) {
      n++;
      b.push(config.metric as MetricId<"u64">, n, { attributes: { source: "hot" } });
      Deno.writeTextFileSync(countFile, String(n));
      if (n === 5) Deno.writeTextFileSync(`${config.countDir}/hot.ready`, "");
      if (n === config.strayAt) {
        setTimeout(() => {
          throw new Error(`the probe's stray error after poll ${config.strayAt}`);
        }, 0);
      }
    },
    close() {
      Deno.writeTextFileSync(countFile, String(n));
    },
  };
}

// The `hot` source of probe.ts, run in the sampling Worker: pushes 1, 2, 3… and writes how many points it
// pushed to `<countDir>/hot.count` after each poll and when it closes; `<countDir>/hot.ready` after 5 polls.
import type { Batch, MetricId, Source } from "../../../mod.ts";

export function createSource(config: { metric: number; countDir: string }): Source {
  let n = 0;
  const countFile = `${config.countDir}/hot.count`;
  return {
    poll(b: Batch) {
      n++;
      b.push(config.metric as MetricId<"u64">, n, { attributes: { source: "hot" } });
      Deno.writeTextFileSync(countFile, String(n));
      if (n === 5) Deno.writeTextFileSync(`${config.countDir}/hot.ready`, "");
    },
    close() {
      Deno.writeTextFileSync(countFile, String(n));
    },
  };
}

// The `hot` source of probe.ts, run in the sampling Worker: pushes 1, 2, 3… and writes how many points it
// pushed to `<countDir>/hot.count` after each poll and when it closes; `<countDir>/hot.ready` after 5 polls.
// With `strayAt`, poll number `strayAt` also throws an error in a timer, which nobody catches. With `stuckAt`,
// poll number `stuckAt` pushes nothing and never returns (the Worker is stuck in it); `<countDir>/hot.stuck`
// appears then.
import type { Batch, MetricId, Source } from "../../../mod.ts";

export function createSource(
  config: { metric: number; countDir: string; strayAt?: number; stuckAt?: number },
): Source {
  let n = 0;
  const countFile = `${config.countDir}/hot.count`;
  return {
    poll(b: Batch) {
      if (n + 1 === config.stuckAt) {
        Deno.writeTextFileSync(`${config.countDir}/hot.stuck`, "");
        return new Promise<void>(() => {});
      }
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

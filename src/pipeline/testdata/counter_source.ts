// A source module for the sampling Worker tests: pushes 1, 2, 3… one point per poll; fails at poll
// `failAt` if given.
import type { Batch, MetricId, Source } from "../../../mod.ts";

export function createSource(config: { metric: number; failAt?: number }): Source {
  let n = 0;
  return {
    poll(b: Batch) {
      n++;
      if (n === config.failAt) throw new Error(`failed at poll ${n}`);
      b.push(config.metric as MetricId<"u64">, n);
    },
  };
}

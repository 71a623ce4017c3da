// A source module for the sampling Worker tests (src/pipeline/sampler_test.ts): pushes 1, 2, 3… one point per
// poll; poll `breakAt` replaces the Worker's `performance.now` with one that throws, so that the Worker's own
// loop fails (as a bug in it would) right after that poll.
import type { Batch, MetricId, Source } from "../../../mod.ts";

export function createSource(config: { metric: number; breakAt: number }): Source {
  let n = 0;
  return {
    poll(b: Batch) {
      n++;
      b.push(config.metric as MetricId<"u64">, n);
      if (n === config.breakAt) {
        performance.now = () => {
          throw new Error("the clock is broken");
        };
      }
    },
  };
}

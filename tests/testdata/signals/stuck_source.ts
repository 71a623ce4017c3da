// A source module for the sampling Worker tests (src/pipeline/sampler_test.ts): pushes 1, 2, 3… one point per
// poll; poll `stuckAt` returns a promise that never settles, so the Worker running it never answers again.
// It sets `flag[0]` (a SharedArrayBuffer the test shares) to 1 when it gets stuck.
import type { Batch, MetricId, Source } from "../../../mod.ts";

export function createSource(config: { metric: number; stuckAt: number; flag: SharedArrayBuffer }): Source {
  let n = 0;
  const flag = new Int32Array(config.flag);
  return {
    poll(b: Batch) {
      n++;
      if (n === config.stuckAt) {
        Atomics.store(flag, 0, 1);
        return new Promise<void>(() => {});
      }
      b.push(config.metric as MetricId<"u64">, n);
    },
  };
}

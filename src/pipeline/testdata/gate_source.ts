// A source module for the blocking-source tests: each poll pushes one point; with `gate`, the poll first
// raises `gate[1]` and then blocks until the test sets `gate[0]` (a SharedArrayBuffer the Worker shares).
import type { Batch, MetricId, Source } from "../../../mod.ts";

export function createSource(config: { metric: number; gate?: SharedArrayBuffer }): Source {
  const gate = config.gate === undefined ? undefined : new Int32Array(config.gate);
  return {
    poll(b: Batch) {
      if (gate !== undefined) {
        Atomics.store(gate, 1, 1);
        Atomics.wait(gate, 0, 0, 30_000); // blocks this Worker, as a slow vendor call would
      }
      b.push(config.metric as MetricId<"u64">, 1);
    },
  };
}

// A source module for the sampling Worker tests (src/pipeline/sampler_test.ts): pushes 1, 2, 3… one point
// per poll, and at poll `throwAt` makes an error nobody catches, outside the poll: a throw in a timer
// (`how: "timer"`, the default) or a rejected promise nobody awaits (`how: "rejection"`), as a buggy source
// might. Its polls still succeed.
import type { Batch, MetricId, Source } from "../../../mod.ts";

export function createSource(
  config: { metric: number; throwAt: number; how?: "timer" | "rejection" },
): Source {
  let n = 0;
  return {
    poll(b: Batch) {
      n++;
      b.push(config.metric as MetricId<"u64">, n);
      if (n !== config.throwAt) return;
      const message = `asynchronous failure after poll ${n}`;
      if (config.how === "rejection") {
        void Promise.reject(new Error(message));
      } else {
        setTimeout(() => {
          throw new Error(message);
        }, 0);
      }
    },
  };
}

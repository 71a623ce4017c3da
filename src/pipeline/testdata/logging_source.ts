// A source module that speaks through its SourceContext: one warning when created, one at its third poll.
import type { Batch, MetricId, Source, SourceContext } from "../../../mod.ts";

export function createSource(config: { metric: number }, context: SourceContext): Source {
  context.log.warn("created");
  let n = 0;
  return {
    poll(b: Batch) {
      if (++n === 3) context.log.warn("third poll");
      b.push(config.metric as MetricId<"u64">, n);
    },
  };
}

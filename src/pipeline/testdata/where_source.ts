// A source module that says where it runs: one point per poll, attribute `thread` = the Worker's name, or
// `main` on the main thread.
import type { Batch, MetricId, Source } from "../../../mod.ts";

declare const WorkerGlobalScope: unknown;

export function createSource(config: { metric: number }): Source {
  const thread = typeof WorkerGlobalScope === "undefined"
    ? "main"
    : (self as unknown as { name: string }).name;
  return {
    poll(b: Batch) {
      b.push(config.metric as MetricId<"u64">, 1, { attributes: { thread } });
    },
  };
}

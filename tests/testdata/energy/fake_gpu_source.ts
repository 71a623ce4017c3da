/**
 * The GPU source of `fake_energy.ts`, created in a sampling Worker (it is declared blocking, as an NVML source
 * is): an NVML-like energy counter in mJ at a constant power, read as deltas. See `fake_energy.ts`.
 *
 * @module
 */
import { Resource } from "../../../src/model/resources.ts";
import type { Batch } from "../../../src/model/batch.ts";
import type { MetricId } from "../../../src/model/metrics.ts";
import { now, type Timestamp } from "../../../src/model/timestamp.ts";
import type { Source } from "../../../src/plugin/plugin.ts";
import { fakeCounter } from "./fake_energy.ts";

export function createSource(config: { metric: number; watts: number; busId: string }): Source {
  const metric = config.metric as MetricId<"f64">;
  const read = fakeCounter(config.watts, now());
  const resource = Resource.gpu(config.busId);
  return {
    poll(batch: Batch, ts: Timestamp) {
      batch.push(metric, read(ts) * 1000, { resource }); // mJ
    },
  };
}

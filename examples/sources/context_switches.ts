/**
 * A source module for examples/fast_sampling.ts: the machine's context switches since boot (the `ctxt` line of
 * /proc/stat), read through a file kept open. It is created in the sampling Worker from this module's URL and
 * a serialisable config, so it may only use what it imports here.
 */
import type { Batch, MetricId, Source } from "../../mod.ts";
import { ProcFile } from "../../src/ffi/proc_file.ts";

const CTXT = [99, 116, 120, 116, 32]; // "ctxt "

export function createSource(config: { metric: number }): Source {
  const file = ProcFile.open("/proc/stat", 16384);
  const metric = config.metric as MetricId<"u64">;
  return {
    poll(batch: Batch) {
      const n = file.read();
      const b = file.buffer;
      for (let i = 0; i < n; i++) {
        if (i > 0 && b[i - 1] !== 10) continue; // only at the start of a line
        let j = 0;
        while (j < 5 && b[i + j] === CTXT[j]) j++;
        if (j < 5) continue;
        let v = 0;
        for (let k = i + 5; k < n && b[k]! >= 48 && b[k]! <= 57; k++) v = v * 10 + (b[k]! - 48);
        batch.push(metric, v);
        return;
      }
    },
    close: () => file.close(),
  };
}

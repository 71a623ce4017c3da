/**
 * Benchmark sources for the sampling Worker, created from this module with a serialisable config:
 * `procStat` reads /proc/stat through an open file (pread) and pushes the machine's total CPU ticks;
 * `nothing` polls nothing, to measure the cost of waking up alone.
 */
import type { Batch, MetricId, Source } from "../../mod.ts";
import { ProcFile } from "../../src/ffi/proc_file.ts";

export function procStat(config: { metric: number }): Source {
  const f = ProcFile.open("/proc/stat", 16384);
  const m = config.metric as MetricId<"u64">;
  return {
    poll(b: Batch) {
      const n = f.read();
      const buf = f.buffer;
      // Sum the numbers of the first line ("cpu  user nice system idle …") without making strings.
      let i = 3;
      let total = 0;
      let v = 0;
      for (; i < n; i++) {
        const c = buf[i]!;
        if (c === 10) break;
        if (c >= 48 && c <= 57) v = v * 10 + (c - 48);
        else {
          total += v;
          v = 0;
        }
      }
      b.push(m, total + v);
    },
    close: () => f.close(),
  };
}

export function nothing(): Source {
  return { poll() {} };
}

/**
 * Energy sources' cost per poll, for `deno task bench energy`. These machines have no RAPL, no power PMU and no
 * GPU, so each figure is a code-path cost, labelled as such:
 *
 * - rapl, powercap path: the source polled at 1 kHz on a fixture tree (`plugins/rapl/testdata/intel_desktop_1s`,
 *   4 zones: one `pread` of `energy_uj` each, the parse, the counter, the points); a real `energy_uj` read is a
 *   cross-CPU MSR read on top;
 * - rapl, perf path: one counter opened CPU-wide (`pid = -1`) on the real `msr` PMU (`msr/tsc/`, the same sysfs
 *   and read path as `power/energy-pkg/`), polled at 1 kHz; needs root (skipped otherwise);
 * - nvml: the plugin's GPU source polled in a loop against the stand-in `libnvidia-ml.so.1` built with gcc
 *   (`plugins/nvml/testdata/nvml_standin.c`): FFI calls, struct decoding, points; a real driver call takes
 *   microseconds to milliseconds. `plugins/nvml/bench_standin.ts` also measures the other sources' lateness
 *   with nvml polling at 100 Hz.
 *
 * @module
 */
import { Batch } from "../src/model/batch.ts";
import { MetricRegistry } from "../src/model/metrics.ts";
import { registerMetrics } from "../src/model/metric_set.ts";
import { now } from "../src/model/timestamp.ts";
import { RAPL_METRICS, type RaplChannel, RaplSource, scanPowercap } from "../plugins/rapl/mod.ts";
import { nvmlPlugin } from "../plugins/nvml/mod.ts";
import { testPlugin } from "../src/testing/mod.ts";

/** Polls `poll` at 1 kHz `n` times (paced on a busy wait, as the sampling Worker's spin) and gives the median µs. */
function paced(n: number, poll: () => void): number {
  const costs = new Float64Array(n);
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    while (performance.now() < start + i) { /* 1 kHz pacing */ }
    const t0 = performance.now();
    poll();
    costs[i] = (performance.now() - t0) * 1000;
  }
  costs.sort();
  return costs[Math.floor(n / 2)]!;
}

function raplSource(channels: readonly RaplChannel[]): { poll: () => void; close: () => void } {
  const { energy } = registerMetrics(new MetricRegistry(), "rapl", RAPL_METRICS);
  const source = RaplSource.open({ metric: energy, channels });
  const batch = new Batch();
  return {
    poll: () => {
      batch.clear();
      source.poll(batch);
    },
    close: () => source.close(),
  };
}

/** Median µs per poll of the rapl source on the powercap fixture, at 1 kHz. */
export function raplPowercapCost(n = 2000): number {
  const root = new URL("../plugins/rapl/testdata/intel_desktop_1s/sys", import.meta.url).pathname;
  const s = raplSource(scanPowercap(root).zones);
  try {
    return paced(n, s.poll);
  } finally {
    s.close();
  }
}

/** Median µs per poll of the rapl source's perf path on the real msr PMU, at 1 kHz; undefined without root. */
export function raplPerfCost(n = 2000): number | undefined {
  try {
    Deno.statSync("/sys/bus/event_source/devices/msr/events/tsc");
  } catch {
    return undefined;
  }
  let s;
  try {
    s = raplSource([{
      kind: "perf",
      event: "msr/tsc/",
      pmuRoot: "/sys/bus/event_source/devices",
      cpu: 0,
      package: 0,
      domain: "package",
      scale: 2 ** -32,
    }]);
  } catch {
    return undefined; // not allowed to open a CPU-wide counter here
  }
  try {
    return paced(n, s.poll);
  } finally {
    s.close();
  }
}

/** Median µs per poll of the nvml source (H100 stand-in, full mode); undefined without gcc. */
export async function nvmlCost(n = 20_000): Promise<number | undefined> {
  const dir = await Deno.makeTempDir({ prefix: "alumet-bench-nvml-" });
  try {
    const lib = `${dir}/libnvidia-ml.so.1`;
    const src = new URL("../plugins/nvml/testdata/nvml_standin.c", import.meta.url).pathname;
    let cc;
    try {
      cc = await new Deno.Command("gcc", { args: ["-shared", "-fPIC", "-O2", "-o", lib, src] }).output();
    } catch {
      return undefined;
    }
    if (!cc.success) return undefined;
    await using h = await testPlugin(nvmlPlugin, { library_path: lib, mode: "full" });
    const s = h.sources.get("device_00000000:17:00.0")!.source;
    for (let i = 0; i < 1000; i++) s.poll(new Batch(64), now());
    const t0 = performance.now();
    for (let i = 0; i < n; i++) s.poll(new Batch(64), now());
    return (performance.now() - t0) * 1000 / n;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

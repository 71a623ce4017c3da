/**
 * The whole-machine perf source created in the sampling Worker (periods under 10 ms) from this module's URL
 * and a serialisable config: the events are parsed and the counters opened there.
 *
 * @module
 */
import type { MetricId } from "../../src/model/metrics.ts";
import type { Source } from "../../src/plugin/plugin.ts";
import { parsePerfEvent } from "../../src/ffi/perf_events_parse.ts";
import { type MachineSourceConfig, openMachineSource, SYSFS_ROOT } from "./target.ts";

/** Opens one perf group per CPU for `config.events` (one per package for a package PMU's events). */
export function createSource(config: MachineSourceConfig): Source {
  const sysfsRoot = config.sysfsRoot ?? SYSFS_ROOT;
  const usable = config.events.map((name, i) => ({
    event: parsePerfEvent(name, { sysfsRoot: `${sysfsRoot}/bus/event_source/devices` }),
    metric: config.metrics[i] as MetricId<"u64"> | MetricId<"f64">,
  }));
  return openMachineSource(usable, config.ratio as MetricId<"f64">, config.cpus, {
    scale: config.scale,
    sysfsRoot,
  });
}

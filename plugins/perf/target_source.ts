/**
 * The source of a process or cgroup target created in the sampling Worker (periods under 10 ms) from this
 * module's URL and a serialisable config: the events are parsed, the target's groups planned and opened there,
 * and read at each tick with the Worker's other hot sources, never by a timer on the main thread.
 *
 * A process the agent holds stopped (`exec`) is opened with `enable_on_exec` as on the main thread: the
 * Worker acknowledges the source only once its counters are open, and the program is let go only then.
 *
 * @module
 */
import type { MetricId } from "../../src/model/metrics.ts";
import { Consumer } from "../../src/model/resources.ts";
import type { Source } from "../../src/plugin/plugin.ts";
import { cString, libc, O_RDONLY_CLOEXEC, unwrap } from "../../src/ffi/libc.ts";
import { parsePerfEvent } from "../../src/ffi/perf_events_parse.ts";
import { openPlan, planTarget, SYSFS_ROOT, TargetSource, type Usable } from "./target.ts";

const O_DIRECTORY = 0o200000;

/** The serialisable config of a target's source, for the sampling Worker. */
export interface TargetSourceConfig {
  /** The events to count (their names as parsed on the main thread), and their metrics. */
  readonly events: readonly string[];
  readonly metrics: readonly number[];
  /** The `perf_running_ratio` metric. */
  readonly ratio: number;
  /** The online CPUs (a cgroup's groups are per CPU). */
  readonly cpus: readonly number[];
  /** Scale multiplexed counts (Alumet's `multiplexing_auto_scale`). */
  readonly scale: boolean;
  /** The sysfs root the events were parsed under. Default `/sys`. */
  readonly sysfsRoot?: string;
  /** A process (held stopped by `exec`: `enableOnExec`), or a cgroup by its directory. */
  readonly target:
    | { readonly kind: "process"; readonly pid: number; readonly enableOnExec: boolean }
    | { readonly kind: "cgroup"; readonly path: string; readonly dir: string };
}

/** Opens the target's groups (one for a process, one per CPU for a cgroup) and returns its source. */
export function createSource(config: TargetSourceConfig): Source {
  const sysfsRoot = config.sysfsRoot ?? SYSFS_ROOT;
  const usable: Usable[] = config.events.map((name, i) => ({
    event: parsePerfEvent(name, { sysfsRoot: `${sysfsRoot}/bus/event_source/devices` }),
    metric: config.metrics[i] as MetricId<"u64"> | MetricId<"f64">,
  }));
  const t = config.target;
  const options = { cpus: config.cpus, sysfsRoot };
  const ratio = config.ratio as MetricId<"f64">;
  if (t.kind === "process") {
    const plan = planTarget(usable, { kind: "process", pid: t.pid, enableOnExec: t.enableOnExec }, options);
    return new TargetSource(openPlan(plan), Consumer.process(t.pid), usable, ratio, { scale: config.scale });
  }
  const fd = unwrap(libc().open(cString(t.dir), O_RDONLY_CLOEXEC | O_DIRECTORY, 0), `open(${t.dir})`);
  try {
    const plan = planTarget(usable, { kind: "cgroup", fd }, options);
    return new TargetSource(openPlan(plan), Consumer.cgroup(t.path), usable, ratio, { scale: config.scale });
  } finally {
    libc().close(fd); // the counters keep their own reference to the cgroup
  }
}

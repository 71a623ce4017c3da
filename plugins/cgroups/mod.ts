/**
 * The `cgroups` plugin: CPU time, CPU share, memory and pressure of Linux control groups (v2, v1, or the
 * hybrid layout), for the cgroups whose paths match the configured patterns; new and removed cgroups are
 * found by a periodic rescan and announced on the event bus, so that other plugins (perf) measure them too.
 *
 * ```ts
 * import { testPlugin } from "../../src/testing/mod.ts";
 * import cgroups from "./mod.ts";
 * import assert from "node:assert/strict";
 * await using h = await testPlugin(cgroups, { paths: ["/"] });
 * assert.ok(h.sources.has("probes"));
 * assert.ok(h.tasks.has("discovery"));
 * ```
 *
 * @module
 */
import type { Diagnosis, Plugin, StartContext, TaskHandle } from "../../src/plugin/plugin.ts";
import { definePlugin } from "../../src/plugin/define.ts";
import type { Logger } from "../../src/log.ts";
import { messageOf } from "../../src/errors.ts";
import { DirWatcher } from "../../src/ffi/inotify.ts";
import { auxvInfo, countCpus } from "../../src/sys/system.ts";
import { type CgroupsConfig, cgroupsConfigSchema } from "./config.ts";
import { type CgroupLayout, detectLayout, measuredHierarchies } from "./hierarchy.ts";
import { CGROUP_METRICS, type CgroupMetrics } from "./metrics.ts";
import { type Baseline, CgroupProbe } from "./probe.ts";
import { CgroupSource } from "./source.ts";
import { CgroupDiscovery } from "./discovery.ts";

export { type CgroupsConfig, cgroupsConfigSchema } from "./config.ts";
export * from "./metrics.ts";
export * from "./hierarchy.ts";
export { childPath, PathPattern, PatternError, splitPath, subdirectories, walkMatching } from "./pattern.ts";
export { type Baseline, CgroupProbe, type ProbeOptions } from "./probe.ts";
export { CgroupSource, type CgroupSourceOptions } from "./source.ts";
export {
  CgroupDiscovery,
  type CgroupDiscoveryOptions,
  type DiscoveryChanges,
  scanCgroups,
} from "./discovery.ts";

/** Options of a {@linkcode CgroupsPlugin} that are not configuration (tests point them at fixtures). */
export interface CgroupsPluginOptions {
  /** The mount table the hierarchies are found in. Default `/proc/mounts`. */
  readonly mounts?: string;
  /** The layout, instead of reading `mounts`. */
  readonly layout?: CgroupLayout;
  /** Online CPUs, the divisor of `cpu_percent`. Default: the `cpuN` lines of `/proc/stat`. */
  readonly nCpus?: number;
  /** USER_HZ of v1 `cpuacct.stat`. Default: this process's `AT_CLKTCK` (100 on Linux). */
  readonly userHz?: number;
}

/** How many failures to open a cgroup's files are logged one by one before they are only counted. */
const LOGGED_OPEN_FAILURES = 5;

/**
 * The plugin instance. In `start`: the hierarchies are found, the cgroups that match the patterns are
 * found and opened, and the source `probes` is added (every followed cgroup, each `poll_interval`; not added
 * with `disable_sources`), with the task `discovery` (the rescan, which announces the cgroups on the event
 * bus; its first run is when the pipeline starts, after every plugin's `preStart`).
 */
export class CgroupsPlugin implements Plugin {
  readonly #config: CgroupsConfig;
  readonly #options: CgroupsPluginOptions;
  #source: CgroupSource | undefined;
  #discovery: CgroupDiscovery | undefined;
  #watcher: DirWatcher | undefined;
  #task: TaskHandle | undefined;
  /** What `#measure` needs, set in `start` (undefined with `disable_sources`). */
  #measuring:
    | {
      source: CgroupSource;
      layout: CgroupLayout;
      metrics: CgroupMetrics;
      options: { nCpus: number; userHz: number };
      log: Logger;
    }
    | undefined;
  #openFailures = 0;

  constructor(config: CgroupsConfig, options: CgroupsPluginOptions = {}) {
    this.#config = config;
    this.#options = options;
  }

  /** The measurement source (undefined before `start`, or with `disable_sources`). */
  get source(): CgroupSource | undefined {
    return this.#source;
  }

  /** The discovery the `discovery` task runs (undefined before `start`). */
  get discovery(): CgroupDiscovery | undefined {
    return this.#discovery;
  }

  start(ctx: StartContext): void {
    const c = this.#config;
    const o = this.#options;
    const log = ctx.log;
    const layout = o.layout ?? detectLayout(o.mounts ?? "/proc/mounts");
    const hierarchies = measuredHierarchies(layout);
    if (hierarchies.length === 0) {
      log.warn(
        `No cgroup hierarchy with cpuacct or memory, and no cgroup v2, in ${o.mounts ?? "/proc/mounts"}: ` +
          "no cgroup will be measured",
      );
    }
    if (c.paths.length === 0) log.warn("paths is empty: no cgroup will be followed");
    this.#openFailures = 0;
    let source: CgroupSource | undefined;
    if (!c.disable_sources) {
      const metrics = ctx.createMetrics(CGROUP_METRICS);
      source = new CgroupSource({ log, onGone: (path) => this.#discovery?.markGone(path) });
      const options = { nCpus: o.nCpus ?? countCpus(), userHz: o.userHz ?? auxvInfo().userHz };
      this.#measuring = { source, layout, metrics, options, log };
    } else this.#measuring = undefined;
    // inotify tells at once when a watched directory gains or loses a cgroup; the rescan stays as a safety net.
    let watcher: DirWatcher | undefined;
    try {
      watcher = DirWatcher.open();
    } catch (e) {
      log.debug(
        `No inotify (${messageOf(e)}): new cgroups are found by the rescan every ${c.refresh_interval} ms`,
      );
    }
    this.#watcher = watcher;
    const discovery = new CgroupDiscovery({
      layout,
      patterns: c.paths,
      ...(watcher !== undefined ? { watcher, fullRescanMs: c.refresh_interval } : {}),
      events: ctx.events,
      onAdded: (path, baseline) => this.#measure(path, baseline),
      onRemoved: (path) => void source?.remove(path),
      beforeRescan: () => source?.settle(layout),
    });
    this.#source = source;
    this.#discovery = discovery;
    const found = discovery.initialScan();
    log.debug(
      `Hierarchies: ${hierarchies.map((h) => `${h.mountPoint} (v${h.version})`).join(", ") || "none"}; ` +
        `following ${found.length} cgroups`,
    );
    // With inotify, a look every 100 ms is one non-blocking read; the walk only runs when something changed.
    const look = watcher !== undefined ? Math.min(c.refresh_interval, 100) : c.refresh_interval;
    this.#task = ctx.addTask("discovery", (signal) => discovery.run(signal), { interval: look });
    if (source !== undefined) ctx.addSource("probes", source, { pollInterval: c.poll_interval });
  }

  /** Opens the files of a new cgroup and adds it to the probes source (nothing with `disable_sources`). */
  #measure(path: string, baseline: Baseline): void {
    const m = this.#measuring;
    if (m === undefined) return;
    try {
      m.source.add(new CgroupProbe(m.layout, path, m.metrics, { ...m.options, baseline }));
    } catch (e) {
      const n = ++this.#openFailures;
      if (n <= LOGGED_OPEN_FAILURES) {
        m.log.warn(
          `Cannot measure cgroup ${path}: ${messageOf(e)}` +
            (n === LOGGED_OPEN_FAILURES ? " (further failures are only counted in debug logs)" : ""),
        );
      } else m.log.debug(`Cannot measure cgroup ${path} (${n} failures so far): ${messageOf(e)}`);
    }
  }

  async stop(): Promise<void> {
    await this.#task?.stop(); // already stopped by the agent, before the pipeline drained; idempotent
    this.#task = undefined;
    this.#watcher?.close();
    this.#watcher = undefined;
    this.#source?.close(); // already closed by the pipeline when it ran; idempotent
    this.#measuring = undefined;
    this.#source = undefined;
    this.#discovery = undefined;
  }
}

/** `alumet doctor`: the hierarchies found in `/proc/mounts`, and whether memory can be measured. */
function diagnoseCgroups(): Diagnosis[] {
  let layout: CgroupLayout;
  try {
    layout = detectLayout();
  } catch (e) {
    return [{
      check: "hierarchies",
      ok: false,
      detail: `cannot read /proc/mounts: ${messageOf(e)}`,
      fix: "run with --allow-ffi or --allow-all on Linux",
    }];
  }
  const v2 = layout.v2;
  const v1 = [...new Set(layout.v1.keys())];
  const found = v2 !== undefined || v1.length > 0;
  const memory = v2?.controllers.includes("memory") || layout.v1.has("memory");
  const parts = [
    v2 ? `v2 at ${v2.mountPoint} (controllers: ${v2.controllers.join(", ") || "none"})` : "",
    v1.length ? `v1 controllers: ${v1.join(", ")}` : "",
  ].filter((x) => x);
  return [
    {
      check: "hierarchies",
      ok: found,
      detail: found ? parts.join("; ") : "no cgroup hierarchy in /proc/mounts",
      ...(found ? {} : { fix: "mount cgroup2 on /sys/fs/cgroup (or run on a systemd host)" }),
    },
    {
      check: "memory controller",
      ok: memory,
      detail: memory
        ? "memory is measured"
        : "no memory controller in v2 nor v1: only CPU and pressure are measured",
      ...(memory
        ? {}
        : { fix: "enable it: echo +memory > <v2 root>/cgroup.subtree_control, or mount v1 memory" }),
    },
  ];
}

/** The cgroups plugin's metadata: `[plugins.cgroups]`. */
export const cgroupsPlugin = definePlugin({
  name: "cgroups",
  version: "0.1.0",
  description: "Measures the CPU time, memory and pressure of control groups (v1, v2 or hybrid)",
  config: cgroupsConfigSchema,
  init: (config) => new CgroupsPlugin(config),
  diagnose: diagnoseCgroups,
});

export default cgroupsPlugin;

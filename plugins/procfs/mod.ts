/**
 * The `procfs` plugin: Alumet's default source. It reads the Linux `/proc` filesystem:
 * - `kernel` (`/proc/stat`): CPU time per state and per CPU, context switches, forks, runnable and blocked
 *   processes;
 * - `memory` (`/proc/meminfo`): chosen entries, in bytes;
 * - `network` (`/proc/net/dev`): bytes, packets, drops and errors per interface and direction;
 * - processes (`/proc/<pid>/stat`, `statm`): CPU time, CPU share and memory of the processes matched by the
 *   groups (Alumet's default group: every process, every 2 s), and of the program `exec` or `watch` measures
 *   (its process tree, as one consumer, on the "start consumer measurement" event; for those two commands
 *   {@linkcode followProgramOnly} drops the default group unless the user wrote groups).
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { testPlugin } from "../../src/testing/mod.ts";
 * import procfs from "./mod.ts";
 * await using h = await testPlugin(procfs, { network: { enabled: false } });
 * assert.ok(h.sources.has("kernel") && h.sources.has("memory") && !h.sources.has("network"));
 * ```
 *
 * @module
 */
import { projectModule } from "../../src/plugin/module_url.ts";
import type {
  Diagnosis,
  PhaseContext,
  Plugin,
  PreStartContext,
  SourceHandle,
  StartContext,
  Trigger,
} from "../../src/plugin/plugin.ts";
import { type DefinedPlugin, definePlugin } from "../../src/plugin/define.ts";
import type { ProcessExit } from "../../src/plugin/events.ts";
import { Batch } from "../../src/model/batch.ts";
import type { Consumer } from "../../src/model/resources.ts";
import type { Logger } from "../../src/log.ts";
import { messageOf } from "../../src/errors.ts";
import { ProcFile } from "../../src/ffi/proc_file.ts";
import { HOT_PERIOD_MS } from "../../src/pipeline/sampler.ts";
import { isAlumetDefaultGroups, type ProcfsConfig, procfsConfigSchema } from "./config.ts";
import {
  KERNEL_METRICS,
  meminfoMetric,
  NETWORK_METRICS,
  PROCESS_METRICS,
  type ProcessMetrics,
} from "./metrics.ts";
import { ProcessGroupSource } from "./group.ts";
import { KernelSource } from "./kernel.ts";
import { MemorySource } from "./memory.ts";
import { NetworkSource } from "./network.ts";
import { type Baseline, type MemoryMode, ProcessSource } from "./process.ts";
import { type SystemInfo, systemInfo, uptimeTicks } from "../../src/sys/system.ts";
import { type ProcessInfo, ProcessWatcher, readProcessInfo, type WatchGroup } from "./watcher.ts";
import { ProcessTreeSource } from "./tree.ts";

export {
  ALUMET_DEFAULT_GROUP,
  followProgramOnly,
  isAlumetDefaultGroups,
  type ProcessGroupConfig,
  type ProcfsConfig,
  procfsConfigSchema,
  type SectionLike,
} from "./config.ts";
export * from "./metrics.ts";
export { CPU_STATES, KernelSource, type KernelSourceOptions } from "./kernel.ts";
export { type MeminfoEntry, MemorySource, type MemorySourceOptions } from "./memory.ts";
export { NetworkSource, type NetworkSourceOptions } from "./network.ts";
export {
  type Baseline,
  type FinalCpuTime,
  type MemoryMode,
  ProcessSource,
  type ProcessSourceOptions,
} from "./process.ts";
export { ProcessTreeSource, type ProcessTreeSourceOptions } from "./tree.ts";
export { ProcessGroupSource } from "./group.ts";
export {
  type OnMatch,
  type ProcessInfo,
  ProcessWatcher,
  type ProcessWatcherOptions,
  readProcessInfo,
  type WatchGroup,
} from "./watcher.ts";
export { auxvInfo, countCpus, type SystemInfo, systemInfo, uptimeTicks } from "../../src/sys/system.ts";

/** Options of a {@linkcode ProcfsPlugin} that are not configuration. */
export interface ProcfsPluginOptions {
  /** The procfs root every source reads. Default `/proc`; tests point it at a fixture tree. */
  readonly root?: string;
  /** USER_HZ, page size and CPU count. Default: {@linkcode systemInfo} of `root`. */
  readonly system?: SystemInfo;
}

/** A process the plugin follows, and its source. */
interface Followed {
  /** A group's process (one process), or the exec/watch program (its whole tree). */
  readonly source: ProcessSource | ProcessTreeSource;
  /** The name of its own source (`pid-<pid>`), `""` for a process of a watch group. */
  readonly name: string;
  /** The handle of its own source, to stop it. */
  readonly handle?: SourceHandle;
  /** For a process of a watch group: the group source that polls it. */
  readonly group?: ProcessGroupSource;
}

/**
 * The plugin instance. In `start`: the sources `kernel`, `memory` and `network`, and, when the strategy is
 * `watcher` and groups are configured, one source `group-<i>` per group and the task `process-watcher` that
 * fills them. In `preStart`: the events are subscribed to, and the per-process sources (`pid-<pid>`) are
 * added from their listeners with that phase's context, scoped to the plugin; each is stopped through its
 * handle.
 */
export class ProcfsPlugin implements Plugin {
  readonly #config: ProcfsConfig;
  readonly #root: string;
  readonly #systemOption: SystemInfo | undefined;
  #system: SystemInfo | undefined;
  #processMetrics: ProcessMetrics | undefined;
  /** Clock ticks since boot when the plugin started: processes started later are measured from zero. */
  #startTicks: number | undefined;
  /** The `preStart` context: adds sources to the running pipeline from the event listeners. */
  #ctx: PreStartContext | undefined;
  #log: Logger | undefined;
  readonly #followed = new Map<number, Followed>();
  readonly #groups = new Map<WatchGroup, ProcessGroupSource>();
  /** The exec/watch programs' tree sources: their members are not followed by the groups. */
  readonly #trees = new Set<ProcessTreeSource>();
  /** The causes already warned about by the watcher (see #onWatched). */
  readonly #warned = new Set<string>();
  #unsubscribe: (() => void)[] = [];

  constructor(config: ProcfsConfig, options: ProcfsPluginOptions = {}) {
    this.#config = config;
    this.#root = options.root ?? "/proc";
    this.#systemOption = options.system;
  }

  /** The processes followed now, by pid, with the name of their source. */
  get followed(): ReadonlyMap<number, Readonly<Followed>> {
    return this.#followed;
  }

  start(ctx: StartContext): void {
    const c = this.#config;
    const root = this.#root;
    this.#log = ctx.log;
    this.#followed.clear();
    this.#groups.clear();
    this.#trees.clear();
    if (c.kernel.enabled) {
      const metrics = ctx.createMetrics(KERNEL_METRICS);
      const options = { root, userHz: this.#sys().userHz };
      ctx.addSource(
        "kernel",
        hot(c.kernel.poll_interval)
          ? { module: MODULES.kernel, export: "createKernelSource", config: { metrics, options } }
          : new KernelSource(metrics, options),
        { pollInterval: c.kernel.poll_interval },
      );
    }
    if (c.memory.enabled) {
      const entries = [...new Set(c.memory.metrics)].map((key) => ({
        key,
        metric: ctx.createMetric(meminfoMetric(key)),
      }));
      const source = new MemorySource(entries, { root });
      source.poll(new Batch()); // once, to name the keys this kernel does not have
      const missing = source.missingKeys();
      if (missing.length > 0) {
        ctx.log.warn(`${source.path} has no ${missing.map((k) => `"${k}"`).join(", ")}: not measured`);
      }
      ctx.addSource(
        "memory",
        hot(c.memory.poll_interval)
          ? { module: MODULES.memory, export: "createMemorySource", config: { entries, options: { root } } }
          : source,
        { pollInterval: c.memory.poll_interval },
      );
      if (hot(c.memory.poll_interval)) source.close(); // the Worker opens its own
    }
    if (c.network.enabled) {
      const metrics = ctx.createMetrics(NETWORK_METRICS);
      ctx.addSource(
        "network",
        hot(c.network.poll_interval)
          ? { module: MODULES.network, export: "createNetworkSource", config: { metrics, options: { root } } }
          : new NetworkSource(metrics, { root }),
        { pollInterval: c.network.poll_interval },
      );
    }
    if (c.processes.enabled) {
      this.#processMetrics = ctx.createMetrics(PROCESS_METRICS);
      this.#startTicks = uptimeTicks(root, this.#sys().userHz);
      this.#watchGroups(ctx);
    }
  }

  /**
   * With the `watcher` strategy: one source `group-<i>` per group (polling all its processes in one tick, see
   * group.ts), and the task `process-watcher` that scans `/proc` every `refresh_interval` and adds the
   * processes it matches to their group. Its first scan runs as soon as the pipeline does.
   */
  #watchGroups(ctx: StartContext): void {
    const p = this.#config.processes;
    if (p.strategy === "event" && p.groups.length > 0 && !isAlumetDefaultGroups(p.groups)) {
      ctx.log.warn('processes.groups is not used with processes.strategy = "event"');
    }
    if (p.strategy !== "watcher" || p.groups.length === 0) return;
    const groups: WatchGroup[] = p.groups.map((g) => ({
      ...(g.pid !== undefined ? { pid: g.pid } : {}),
      ...(g.ppid !== undefined ? { ppid: g.ppid } : {}),
      ...(g.exe_regex !== undefined ? { exeRegex: g.exe_regex } : {}),
      pollInterval: g.poll_interval,
      flushInterval: g.flush_interval,
      memoryMode: g.memory_mode,
    }));
    for (const [i, g] of groups.entries()) {
      const source = new ProcessGroupSource(ctx.log);
      this.#groups.set(g, source);
      ctx.addSource(`group-${i}`, source, { pollInterval: g.pollInterval, flushInterval: g.flushInterval });
    }
    const watcher = new ProcessWatcher({
      root: this.#root,
      groups,
      onMatch: (info, group) => this.#onWatched(info, group),
    });
    ctx.addTask("process-watcher", (signal) => watcher.scan(signal), { interval: p.refresh_interval });
  }

  preStart(ctx: PreStartContext): void {
    if (!this.#config.processes.enabled) return;
    this.#ctx = ctx;
    this.#log = ctx.log;
    this.#unsubscribe = [
      ctx.events.on("startConsumerMeasurement", (cs) => this.#onStart(cs)),
      ctx.events.on("processExit", (exit) => this.#onExit(exit)),
      ctx.events.on("endConsumerMeasurement", (cs) => this.#onEnd(cs)),
    ];
  }

  stop(): void {
    for (const off of this.#unsubscribe) off();
    this.#unsubscribe = [];
    this.#followed.clear();
    this.#groups.clear();
    this.#trees.clear();
    this.#ctx = undefined;
  }

  #sys(): SystemInfo {
    return this.#system ??= this.#systemOption ?? systemInfo(this.#root);
  }

  /** `zero` for a process that started after the plugin, `current` for one that was running before. */
  #baselineOf(startTicks: number | undefined, unknown: Baseline): Baseline {
    if (startTicks === undefined || this.#startTicks === undefined) return unknown;
    // Both clocks tick at USER_HZ since boot; a margin of one tick absorbs their truncations.
    return startTicks + 1 >= this.#startTicks ? "zero" : "current";
  }

  async #onStart(consumers: readonly Consumer[]): Promise<void> {
    const ev = this.#config.processes.events;
    for (const c of consumers) {
      if (c.kind !== "process") continue;
      const pid = Number(c.id);
      if (!Number.isInteger(pid) || pid <= 0) continue;
      const known = this.#followed.get(pid);
      if (known?.source instanceof ProcessTreeSource) {
        known.source.expectExit();
        continue;
      }
      if (known?.group !== undefined) {
        // A group follows it as one process: from now on its tree is followed instead (one series only).
        this.#followed.delete(pid);
        known.group.remove(pid);
      }
      const info = readProcessInfo(this.#root, pid);
      await this.#follow(
        pid,
        {
          baseline: this.#baselineOf(info?.startTicks, "zero"),
          memoryMode: ev.memory_mode,
          awaitExit: true,
        },
        { pollInterval: ev.poll_interval, flushInterval: ev.flush_interval },
        info,
      );
    }
  }

  #onExit(exit: ProcessExit): void {
    this.#followed.get(exit.pid)?.source.exited(exit);
  }

  async #onEnd(consumers: readonly Consumer[]): Promise<void> {
    for (const c of consumers) {
      if (c.kind !== "process") continue;
      const f = this.#followed.get(Number(c.id));
      if (f === undefined) continue;
      this.#followed.delete(Number(c.id));
      if (f.group !== undefined) f.group.remove(Number(c.id));
      else await f.handle?.stop();
    }
  }

  #onWatched(info: ProcessInfo, group: WatchGroup): boolean {
    const pid = info.pid;
    if (this.#followed.has(pid)) return true;
    // A process of a followed program's tree is counted in the program's consumer: not in a group too.
    if (this.#inTree(info)) return true;
    const members = this.#groups.get(group);
    if (members === undefined) return false;
    let source: ProcessSource;
    try {
      source = new ProcessSource(pid, this.#processMetrics!, {
        root: this.#root,
        system: this.#sys(),
        baseline: this.#baselineOf(info.startTicks, "current"),
        memoryMode: group.memoryMode,
        awaitExit: false,
        onClose: () => {
          if (this.#followed.get(pid)?.source === source) this.#followed.delete(pid);
        },
      });
    } catch (e) {
      // Many processes fail the same way (a file limit, a /proc hidden from this user): one warning per cause,
      // the others at debug level. The process is tried again at the next scan.
      const message = messageOf(e);
      const cause = message.replace(/\d+/g, "N");
      if (this.#warned.has(cause)) {
        this.#log?.debug(`Cannot measure process ${pid}: ${message}`);
      } else {
        this.#warned.add(cause);
        const hint = /EMFILE|ENFILE/.test(message)
          ? "; each followed process keeps 2 files open: raise the limit (ulimit -n) or narrow processes.groups"
          : "";
        this.#log?.warn(
          `Cannot measure process ${pid}: ${message}${hint} (other processes failing so are logged at debug level)`,
        );
      }
      return false;
    }
    this.#followed.set(pid, { source, name: "", group: members });
    members.add(pid, source);
    return true;
  }

  /** Whether the process descends from a program followed as a tree (its ancestors read up to one). */
  #inTree(info: ProcessInfo): boolean {
    if (this.#trees.size === 0) return false;
    const inAny = (p: number) => {
      for (const t of this.#trees) if (t.has(p)) return true;
      return false;
    };
    if (inAny(info.pid)) return true;
    let ppid = info.ppid;
    for (let depth = 0; depth < 64 && ppid > 1; depth++) {
      if (inAny(ppid)) return true;
      const up = readProcessInfo(this.#root, ppid);
      if (up === undefined) return false;
      ppid = up.ppid;
    }
    return false;
  }

  /** A process that joined a program's tree leaves its group (the program's consumer counts it). */
  #leaveGroup(pid: number): void {
    const f = this.#followed.get(pid);
    if (f?.group === undefined) return;
    this.#followed.delete(pid);
    f.group.remove(pid);
  }

  /** Adds the source `pid-<pid>` (or `pid-<pid>-<start>` when a previous process had the name). */
  async #follow(
    pid: number,
    options: { baseline: Baseline; memoryMode: MemoryMode; awaitExit: boolean },
    trigger: Trigger,
    info: ProcessInfo | undefined,
  ): Promise<boolean> {
    const ctx: PhaseContext | undefined = this.#ctx;
    const log = this.#log;
    if (ctx === undefined) {
      log?.warn(`Cannot follow process ${pid}: the plugin is not started`);
      return false;
    }
    let source: ProcessTreeSource;
    try {
      source = new ProcessTreeSource(pid, this.#processMetrics!, {
        root: this.#root,
        system: this.#sys(),
        ...options,
        onClose: () => {
          this.#trees.delete(source);
          if (this.#followed.get(pid)?.source === source) this.#followed.delete(pid);
        },
        onJoin: (child) => this.#leaveGroup(child),
      });
      this.#trees.add(source);
    } catch (e) {
      log?.warn(`Cannot measure process ${pid}: ${messageOf(e)}`);
      return false;
    }
    const names = [`pid-${pid}`, `pid-${pid}-${info?.startTicks ?? Date.now()}`];
    for (const name of names) {
      const handle = ctx.addSource(name, source, trigger);
      // Registered first, so that a processExit published while the source is added still finds it.
      this.#followed.set(pid, { source, name, handle });
      try {
        await handle.ready;
        // A first poll now, not one period later: a program shorter than the period would otherwise have no
        // live reading at all (no memory_usage, no cpu_percent), depending on how the two raced.
        await handle.trigger();
        log?.debug(`Following process ${pid} (source ${name})`);
        return true;
      } catch (e) {
        if (this.#followed.get(pid)?.source === source) this.#followed.delete(pid);
        // A RangeError is a name already taken (by an earlier process with this pid): try the other name.
        if (name === names[names.length - 1] || !(e instanceof RangeError)) {
          log?.warn(`Cannot add a source for process ${pid}: ${messageOf(e)}`);
          break;
        }
      }
    }
    source.close();
    return false;
  }
}

/** The modules the sampling Worker creates the machine sources from, when polled faster than every 10 ms. */
const MODULES = {
  kernel: projectModule("plugins/procfs/kernel.ts"),
  memory: projectModule("plugins/procfs/memory.ts"),
  network: projectModule("plugins/procfs/network.ts"),
} as const;

/** Periods under this run in the sampling Worker (see src/pipeline/sampler.ts). */
const hot = (ms: number) => ms < HOT_PERIOD_MS;

/** The procfs plugin's metadata: `[plugins.procfs]`, its defaults derived from {@linkcode procfsConfigSchema}. */
export const procfsPlugin: DefinedPlugin<ProcfsConfig> & {
  readonly configSchema: typeof procfsConfigSchema;
} = definePlugin({
  name: "procfs",
  version: "0.1.0",
  description: "Measures the kernel, memory, network and processes through /proc (Alumet's default source)",
  config: procfsConfigSchema,
  init: (config) => new ProcfsPlugin(config),
  diagnose: (config) => diagnoseProcfs(config),
});

/** `alumet doctor`: the files each enabled probe reads, and whether other users' processes are visible. */
export function diagnoseProcfs(config: ProcfsConfig, root = "/proc"): Diagnosis[] {
  const out: Diagnosis[] = [];
  const probe = (check: string, path: string) => {
    try {
      const f = ProcFile.open(path, 4096);
      const n = f.read();
      f.close();
      out.push({ check, ok: n > 0, detail: n > 0 ? `${path} reads` : `${path} is empty` });
    } catch (e) {
      out.push({
        check,
        ok: false,
        detail: `${path}: ${messageOf(e)}`,
        fix: "run with --allow-ffi (the alumet task does) on Linux with /proc mounted",
      });
    }
  };
  if (config.kernel.enabled) probe("kernel", `${root}/stat`);
  if (config.memory.enabled) probe("memory", `${root}/meminfo`);
  if (config.network.enabled) probe("network", `${root}/net/dev`);
  if (config.processes.enabled) {
    probe("processes", `${root}/self/stat`);
    if (config.processes.groups.length > 0) {
      let visible = true;
      try {
        const f = ProcFile.open(`${root}/1/stat`, 1024);
        visible = f.read() > 0;
        f.close();
      } catch {
        visible = false;
      }
      out.push({
        check: "other users' processes",
        ok: visible,
        detail: visible ? "visible" : `${root}/1/stat is not readable (hidepid?)`,
        ...(visible ? {} : { fix: "run as root, or remount /proc with hidepid=0" }),
      });
    }
  }
  return out;
}

export default procfsPlugin;

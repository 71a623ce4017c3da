/**
 * Discovery of the cgroups to follow: the plugin's `discovery` task (`ctx.addTask`), control work off the data
 * path that pushes no point. Each run rescans the hierarchies when something may have changed (walking only
 * the directories the patterns can match), and announces the cgroups that appeared ("start consumer
 * measurement") and those removed ("end consumer measurement") on the agent's event bus, so that other
 * plugins (perf) can measure them too.
 *
 * With inotify, a run walks only when a watched directory changed; a full rescan every `refresh_interval`
 * stays as a safety net (see the README).
 *
 * @module
 */
import type { DirWatcher } from "../../src/ffi/inotify.ts";
import { Consumer } from "../../src/model/resources.ts";
import type { EventBus } from "../../src/plugin/events.ts";
import { type CgroupLayout, measuredHierarchies } from "./hierarchy.ts";
import { type PathPattern, subdirectories, walkMatching } from "./pattern.ts";
import type { Baseline } from "./probe.ts";

/**
 * The cgroups that match `patterns` in any hierarchy that holds measurements (v2, v1 `cpuacct`, v1 `memory`),
 * as paths relative to the hierarchy roots. In a hybrid layout a cgroup is the union of its directories in
 * each hierarchy.
 *
 * @example
 * ```ts
 * import { scanCgroups } from "./discovery.ts";
 * import { PathPattern } from "./pattern.ts";
 * import assert from "node:assert/strict";
 * const layout = { v2: { version: 2 as const, mountPoint: "/cg", controllers: [] }, v1: new Map() };
 * const tree: Record<string, string[]> = { "/cg": ["system.slice"], "/cg/system.slice": ["a.service"] };
 * const found = scanCgroups(layout, [new PathPattern("system.slice/*")], (d) => tree[d] ?? []);
 * assert.deepEqual([...found], ["/system.slice/a.service"]);
 * ```
 */
export function scanCgroups(
  layout: CgroupLayout,
  patterns: readonly PathPattern[],
  readDir: (dir: string) => string[] = subdirectories,
): Set<string> {
  const found = new Set<string>();
  for (const h of measuredHierarchies(layout)) {
    for (const path of walkMatching(h.mountPoint, patterns, readDir)) found.add(path);
  }
  return found;
}

/** Options of a {@linkcode CgroupDiscovery}. */
export interface CgroupDiscoveryOptions {
  readonly layout: CgroupLayout;
  readonly patterns: readonly PathPattern[];
  /** Where the cgroups are announced; none: no announcement. */
  readonly events?: EventBus;
  /**
   * Called for each cgroup found: `current` for those of the initial scan (they existed before), `zero` for
   * those that appeared later (everything they counted happened while measured).
   */
  readonly onAdded?: (path: string, baseline: Baseline) => void;
  /** Called for each cgroup that disappeared. */
  readonly onRemoved?: (path: string) => void;
  /** Called at the start of each rescan (the measurement source completes its young probes). */
  readonly beforeRescan?: () => void;
  /** Lists the subdirectories of a directory. Default: `Deno.readDirSync`, directories only. */
  readonly readDir?: (dir: string) => string[];
  /**
   * Watches the directories it walks with inotify and rescans only when one of them changed (or every
   * `fullRescanMs`); without it, every run rescans. Default: none (the plugin passes one when inotify works).
   */
  readonly watcher?: DirWatcher;
  /** With a watcher: the longest time between two full rescans, ms. Default 5000. */
  readonly fullRescanMs?: number;
}

/** What one rescan changed. */
export interface DiscoveryChanges {
  /** Cgroups announced with "start consumer measurement" by this rescan. */
  readonly started: readonly string[];
  /** Cgroups announced with "end consumer measurement" by this rescan. */
  readonly ended: readonly string[];
}

/**
 * Follows the cgroups that match the patterns. {@linkcode CgroupDiscovery.initialScan} (in the plugin's
 * `start`) finds those that exist already, so that they are measured from the first poll; every run of the
 * task ({@linkcode CgroupDiscovery.run}) then rescans, and announces what changed since the previous
 * announcement: "end" for the cgroups removed, then "start" for the new ones. The first run announces those of
 * the initial scan: a task first runs when the pipeline starts, after every plugin's `preStart`, so every
 * plugin has subscribed by then. A cgroup that a measurement poll found gone, and that exists again at the
 * rescan, was re-created: it is ended and started again, and measured from zero.
 */
export class CgroupDiscovery {
  readonly #layout: CgroupLayout;
  readonly #patterns: readonly PathPattern[];
  readonly #events: EventBus | undefined;
  readonly #onAdded: ((path: string, baseline: Baseline) => void) | undefined;
  readonly #onRemoved: ((path: string) => void) | undefined;
  readonly #beforeRescan: (() => void) | undefined;
  readonly #readDir: (dir: string) => string[];
  /** Cgroups found by the last scan. */
  #known = new Set<string>();
  /** Cgroups announced with "start" and not yet with "end". */
  readonly #announced = new Set<string>();
  /** Cgroups a measurement poll found gone since the last rescan. */
  readonly #gone = new Set<string>();
  #scanned = false;
  readonly #watcher: DirWatcher | undefined;
  readonly #fullRescanMs: number;
  #lastRescan = -Infinity;

  constructor(options: CgroupDiscoveryOptions) {
    this.#watcher = options.watcher;
    this.#fullRescanMs = options.fullRescanMs ?? 5000;
    this.#layout = options.layout;
    this.#patterns = options.patterns;
    this.#events = options.events;
    this.#onAdded = options.onAdded;
    this.#onRemoved = options.onRemoved;
    this.#beforeRescan = options.beforeRescan;
    this.#readDir = options.readDir ?? subdirectories;
  }

  /** The cgroups followed now (found by the last scan). */
  get known(): ReadonlySet<string> {
    return this.#known;
  }

  /** Finds the cgroups that exist now; they are added with a `current` baseline, and announced at the first run. */
  initialScan(): string[] {
    const found = scanCgroups(this.#layout, this.#patterns, this.#list);
    for (const path of found) if (!this.#known.has(path)) this.#onAdded?.(path, "current");
    this.#known = found;
    this.#scanned = true;
    return [...found];
  }

  /** A measurement poll found `path` gone: the next rescan tells a removal from a re-creation. */
  markGone(path: string): void {
    if (this.#known.has(path)) this.#gone.add(path);
  }

  /**
   * One run of the discovery task: rescans, updates the followed set and publishes what changed. With a
   * watcher, only when a watched directory changed, a probe found its cgroup gone, or the last full rescan is
   * `fullRescanMs` old (the first run always rescans).
   *
   * @param signal aborts when the task stops: a run that has not started rescanning does nothing
   */
  async run(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return;
    const w = this.#watcher;
    if (
      w !== undefined && this.#scanned && this.#gone.size === 0 && !w.changed() &&
      performance.now() - this.#lastRescan < this.#fullRescanMs
    ) return;
    await this.rescan();
  }

  /** Lists a directory, and watches it when there is a watcher (the walk lists exactly what patterns reach). */
  #list = (dir: string): string[] => {
    const names = this.#readDir(dir);
    this.#watcher?.watch(dir);
    return names;
  };

  /** Rescans now, whatever the watcher says, and returns what it announced. */
  async rescan(): Promise<DiscoveryChanges> {
    if (!this.#scanned) this.initialScan();
    this.#beforeRescan?.();
    this.#watcher?.changed(); // what happens from now on is seen by the next run
    this.#lastRescan = performance.now();
    const found = scanCgroups(this.#layout, this.#patterns, this.#list);
    const ended: string[] = [];
    const started: string[] = [];
    for (const path of this.#known) {
      const recreated = this.#gone.has(path) && found.has(path);
      if (found.has(path) && !recreated) continue;
      this.#onRemoved?.(path);
      if (this.#announced.delete(path)) ended.push(path);
      if (recreated) this.#known.delete(path); // added again below
    }
    this.#gone.clear();
    for (const path of found) if (!this.#known.has(path)) this.#onAdded?.(path, "zero");
    this.#known = found;
    for (const path of found) {
      if (this.#announced.has(path)) continue;
      this.#announced.add(path);
      started.push(path);
    }
    const events = this.#events;
    if (events !== undefined) {
      if (ended.length > 0) {
        await events.publish(
          "endConsumerMeasurement",
          ended.map((p) => Consumer.cgroup(p)),
        );
      }
      if (started.length > 0) {
        await events.publish("startConsumerMeasurement", started.map((p) => Consumer.cgroup(p)));
      }
    }
    return { started, ended };
  }
}

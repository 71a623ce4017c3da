/**
 * The measurement source: every followed cgroup polled in one tick, into one batch.
 *
 * Alumet adds one source per cgroup. With hundreds of cgroups (a Kubernetes node) that is hundreds of timers,
 * streams and batches on the agent's main thread; one source costs one of each, whatever the number of
 * cgroups, as the procfs plugin's group sources do for processes.
 *
 * @module
 */
import type { Batch } from "../../src/model/batch.ts";
import type { Timestamp } from "../../src/model/timestamp.ts";
import { messageOf } from "../../src/errors.ts";
import type { Logger } from "../../src/log.ts";
import type { Source } from "../../src/plugin/plugin.ts";
import type { CgroupLayout } from "./hierarchy.ts";
import type { CgroupProbe } from "./probe.ts";

/** Options of a {@linkcode CgroupSource}. */
export interface CgroupSourceOptions {
  /** Where problems are logged. */
  readonly log?: Logger;
  /** Called when a cgroup is found gone by a poll (before the next rescan notices). */
  readonly onGone?: (path: string) => void;
}

/**
 * Polls a set of {@linkcode CgroupProbe}s. A cgroup removed between two polls ends quietly: its probe reads
 * it as gone, is closed and dropped, and `onGone` is told. A probe that fails otherwise (an unexpected read
 * error) is dropped with a warning; the other cgroups go on.
 *
 * @example
 * ```ts
 * import { CgroupSource } from "./source.ts";
 * import { Batch } from "../../src/model/batch.ts";
 * import assert from "node:assert/strict";
 * const source = new CgroupSource();
 * source.poll(new Batch(), 1n); // no cgroup yet: nothing to do
 * assert.deepEqual(source.paths, []);
 * ```
 */
export class CgroupSource implements Source {
  readonly #probes = new Map<string, CgroupProbe>();
  /** Probes added since the last {@linkcode CgroupSource.settle}. */
  readonly #young = new Set<string>();
  readonly #log: Logger | undefined;
  readonly #onGone: ((path: string) => void) | undefined;

  constructor(options: CgroupSourceOptions = {}) {
    this.#log = options.log;
    this.#onGone = options.onGone;
  }

  /** The paths of the cgroups measured now. */
  get paths(): string[] {
    return [...this.#probes.keys()];
  }

  /** The probe of `path`, if it is measured. */
  probe(path: string): CgroupProbe | undefined {
    return this.#probes.get(path);
  }

  /** Adds (or replaces) the probe of a cgroup. */
  add(probe: CgroupProbe): void {
    this.#probes.get(probe.path)?.close();
    this.#probes.set(probe.path, probe);
    this.#young.add(probe.path);
  }

  /** Stops measuring `path` and closes its files; false when it was not measured. */
  remove(path: string): boolean {
    const p = this.#probes.get(path);
    if (p === undefined) return false;
    this.#probes.delete(path);
    this.#young.delete(path);
    p.close();
    return true;
  }

  /**
   * Opens, for the cgroups added since the previous call, the files that were missing when they were added
   * (a hybrid layout creates a cgroup in one hierarchy a moment before another). Called at each rescan.
   */
  settle(layout: CgroupLayout): void {
    for (const path of this.#young) {
      try {
        this.#probes.get(path)?.completeFiles(layout);
      } catch (e) {
        this.#log?.warn(`Cannot open more files of cgroup ${path}: ${messageOf(e)}`);
      }
    }
    this.#young.clear();
  }

  poll(batch: Batch, timestamp: Timestamp): void {
    for (const [path, probe] of this.#probes) {
      let alive: boolean;
      try {
        alive = probe.poll(batch, timestamp);
      } catch (e) {
        this.#log?.warn(`Cgroup ${path} is no longer measured: ${messageOf(e)}`);
        this.remove(path);
        continue;
      }
      if (!alive) {
        this.#log?.debug(`Cgroup ${path} is gone`);
        this.remove(path);
        this.#onGone?.(path);
      }
    }
  }

  /** After a pause, every cgroup starts from a new baseline. */
  reset(): void {
    for (const p of this.#probes.values()) p.reset();
  }

  /** Closes every probe. Idempotent. */
  close(): void {
    for (const path of [...this.#probes.keys()]) this.remove(path);
  }
}

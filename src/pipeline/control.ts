/**
 * The control handle: what a plugin (after start) or a script can do to a running pipeline.
 *
 * Elements are named `kind/plugin/name` and selected with {@linkcode ElementPattern}s (`source/procfs/*`,
 * `out/*`, `*`). Every method returns how many elements it acted on, so a pattern that matches nothing is
 * visible to the caller.
 *
 * @module
 */
import type { Source, SourceModule, Trigger } from "../plugin/plugin.ts";
import type { ElementKind } from "./names.ts";
import type { ElementState } from "./source.ts";

/** What `list` tells about an element. */
export interface ElementInfo {
  /** `kind/plugin/name`. */
  readonly name: string;
  readonly kind: ElementKind;
  readonly plugin: string;
  readonly element: string;
  readonly state: ElementState;
  /** Managed sources: the poll period, ms. */
  readonly pollInterval?: number;
  /** Outputs: batches waiting in the queue. */
  readonly queued?: number;
}

/** Options of a source added at run time. */
export interface AddSourceOptions {
  /** The plugin the source belongs to (default `"script"` for scripts, the caller's name for plugins). */
  readonly plugin?: string;
  /** Start paused. Default false. */
  readonly paused?: boolean;
}

/** Controls a running pipeline. */
export interface ControlHandle {
  /** The elements matching `pattern` (default `*`, all). */
  list(pattern?: string): ElementInfo[];
  /** Pauses sources (they flush, then reset), transforms (batches flow past them) and outputs (they queue). */
  pause(pattern: string): Promise<number>;
  /** Resumes paused elements. */
  resume(pattern: string): Promise<number>;
  /** Stops sources (after a last flush) and outputs (after writing their queue). */
  stop(pattern: string): Promise<number>;
  /** Changes the poll period of managed sources (`"10ms"`, or ms as a number). */
  setPollInterval(pattern: string, interval: number | string): number;
  /** Polls managed sources now and waits for the polls (default pattern `source/*`). */
  triggerNow(pattern?: string): Promise<number>;
  /** Flushes managed sources now (default pattern `source/*`). */
  flushNow(pattern?: string): Promise<number>;
  /** Adds a managed source to the running pipeline. */
  addSource(
    name: string,
    source: Source | SourceModule,
    trigger: Trigger,
    options?: AddSourceOptions,
  ): Promise<void>;
  /** Asks the agent to shut down (drain, then stop the plugins). Returns at once. */
  shutdown(): void;
}

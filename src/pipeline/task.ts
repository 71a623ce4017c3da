/**
 * Plugin tasks: control work off the data path (finding new processes or cgroups, refreshing a device list).
 * A task is not a source: it pushes no points, so it has no batch, no flush and no place in the fan-in. It
 * runs on the main thread, first when started, then `interval` after the end of each run; runs never overlap,
 * and a failing run is logged (once per distinct message in a row) without stopping the task.
 *
 * @module
 */
import { messageOf } from "../errors.ts";
import type { Logger } from "../log.ts";
import { parseDuration } from "../model/duration.ts";
import type { TaskFn, TaskHandle } from "../plugin/plugin.ts";
import { after } from "./timer.ts";

/** How long `stop` waits for a run in progress, ms. */
export const STOP_GRACE_MS = 5000;

/** One task. */
export class Task implements TaskHandle {
  readonly name: string;
  readonly #fn: TaskFn;
  readonly #intervalMs: number;
  readonly #log: Logger;
  readonly #abort = new AbortController();
  /** Cancels the timer of the next run. */
  #timer: (() => void) | undefined;
  #running: Promise<void> | undefined;
  #started = false;
  #stopped = false;
  #lastError: string | undefined;
  readonly #onStop: (() => void) | undefined;
  readonly #graceMs: number;
  /** Completed runs. */
  runs = 0;
  /** Failed runs. */
  failures = 0;

  /**
   * @param name the task's name (for messages)
   * @param fn the work of one run
   * @param interval time between the end of a run and the start of the next (ms, or a humantime string)
   * @param log where failures go
   * @param onStop called once when the task stops
   * @param graceMs how long `stop` waits for a run in progress (default {@linkcode STOP_GRACE_MS})
   */
  constructor(
    name: string,
    fn: TaskFn,
    interval: number | string,
    log: Logger,
    onStop?: () => void,
    graceMs: number = STOP_GRACE_MS,
  ) {
    const ms = typeof interval === "number" ? interval : parseDuration(interval);
    if (ms === undefined || !(ms > 0) || !Number.isFinite(ms)) {
      throw new RangeError(
        `Task "${name}": invalid interval ${JSON.stringify(interval)}, expected e.g. "1s"`,
      );
    }
    this.name = name;
    this.#fn = fn;
    this.#intervalMs = Math.min(ms, 2 ** 31 - 1);
    this.#log = log;
    this.#onStop = onStop;
    this.#graceMs = graceMs;
  }

  /** Whether the task has been stopped. */
  get stopped(): boolean {
    return this.#stopped;
  }

  /**
   * Runs it a first time (its function is called before this returns), then on its interval. Idempotent.
   *
   * @returns the first run (a failure is logged, never thrown)
   */
  start(): Promise<void> {
    if (this.#started || this.#stopped) return this.#running ?? Promise.resolve();
    this.#started = true;
    // After a run asked for earlier (runNow before start), never beside it; else at once.
    const first = this.#running === undefined ? this.#runOnce() : this.#running.then(() => this.#runOnce());
    this.#running = first;
    return first;
  }

  runNow(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    const previous = this.#running ?? Promise.resolve();
    const run = previous.then(() => this.#runOnce());
    this.#running = run;
    return run;
  }

  async #runOnce(): Promise<void> {
    if (this.#stopped) return;
    this.#cancelTimer();
    try {
      await this.#fn(this.#abort.signal);
      this.runs++;
      this.#lastError = undefined;
    } catch (e) {
      this.failures++;
      const msg = messageOf(e);
      if (msg !== this.#lastError && !this.#stopped) this.#log.warn(`Task ${this.name} failed: ${msg}`);
      this.#lastError = msg;
    }
    if (!this.#stopped && this.#started) {
      this.#cancelTimer();
      this.#timer = after(this.#intervalMs, () => void this.runNow());
    }
  }

  #cancelTimer(): void {
    this.#timer?.();
    this.#timer = undefined;
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#cancelTimer();
    this.#abort.abort(new Error("task stopped"));
    this.#onStop?.();
    // A run that ignores its signal must not hold the agent's stop forever.
    let cancel: (() => void) | undefined;
    const late = new Promise<"late">((resolve) => (cancel = after(this.#graceMs, () => resolve("late"))));
    const outcome = await Promise.race([this.#running?.catch(() => {}), late]);
    cancel?.();
    if (outcome === "late") {
      this.#log.warn(`Task ${this.name} did not end within ${this.#graceMs} ms of its stop: left behind`);
    }
  }
}

/**
 * Managed sources: a source polled on a trigger, its points accumulated in a batch and flushed into a
 * ReadableStream every `flushInterval`.
 *
 * Timing: ticks have absolute deadlines (`start + k × period`). A tick polled more than one period after its
 * deadline counts as late; ticks that could not be polled at all (the loop was busy or blocked) are counted
 * as missed and skipped, never made up in a burst: lateness is measured, not hidden by catching up.
 *
 * @module
 */
import { Batch } from "../model/batch.ts";
import { now } from "../model/timestamp.ts";
import { messageOf, NormalStop, RetryableError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Source } from "../plugin/plugin.ts";
import { Channel, type ChannelController } from "./channel.ts";
import { type ElementName, formatName } from "./names.ts";
import { LatenessHistogram } from "./lateness.ts";
import { STOP_GRACE_MS } from "./task.ts";
import { after } from "./timer.ts";

/** Counters of one source, for status lines and self-monitoring. */
export interface SourceStats {
  /** Polls done (scheduled and triggered by hand). */
  polls: number;
  /** Scheduled ticks polled more than one period after their deadline. */
  late: number;
  /** Scheduled ticks skipped because the previous one ran past them. */
  missed: number;
  /** Points flushed into the pipeline. */
  points: number;
  /** Polls that failed with a retryable error. */
  errors: number;
  /**
   * Points the source polled that never reached the pipeline: its sampling Worker failed or was terminated
   * (stuck) before sending them. Absent while none were lost.
   */
  lostPoints?: number;
  /**
   * The source was cut off in the middle of a poll (one that never returned, given up at the stop, or a
   * Worker terminated while polling): what that poll measured is unknown, so `lostPoints` is a lower bound.
   */
  lossUnknown?: boolean;
}

/** The state of a source or an output. */
export type ElementState = "running" | "paused" | "stopped";

/** What the pipeline drives of a managed source, whether it runs on the main thread or in a sampling Worker. */
export interface SourceTask {
  readonly name: ElementName;
  /** Its flushed batches, for the fan-in. */
  readonly readable: Channel<Batch>;
  readonly stats: SourceStats;
  /** Lateness of the scheduled ticks. */
  readonly lateness: LatenessHistogram;
  readonly state: ElementState;
  readonly pollInterval: number;
  /** Where it is polled: `"main"` thread or the sampling `"worker"`. */
  readonly thread: "main" | "worker";
  start(): void;
  triggerNow(): Promise<void>;
  flushNow(): Promise<void>;
  setPollInterval(ms: number): void;
  pause(): Promise<void>;
  resume(): void;
  stop(): Promise<void>;
}

/** Options of a managed source. */
export interface ManagedSourceOptions {
  /** Poll period, ms. */
  readonly pollInterval: number;
  /** Flush period, ms; rounded to a whole number of polls (at least one). */
  readonly flushInterval: number;
  /** Batches the stream buffers before the source waits (backpressure). Default 2. */
  readonly highWaterMark?: number;
  /** Start paused. Default false. */
  readonly paused?: boolean;
  readonly log: Logger;
}

/**
 * Runs one {@linkcode Source} on a timer (`after`, ./timer.ts, with absolute deadlines, for periods of about 10 ms
 * and more) and exposes its flushed batches as `readable`.
 */
export class ManagedSource implements SourceTask {
  readonly name: ElementName;
  readonly readable: Channel<Batch>;
  readonly stats: SourceStats = { polls: 0, late: 0, missed: 0, points: 0, errors: 0 };
  readonly lateness: LatenessHistogram = new LatenessHistogram();
  readonly thread = "main" as const;
  #state: ElementState;
  #source: Source;
  #period: number;
  #flushInterval: number;
  #flushRounds: number;
  #rounds = 0;
  #batch = new Batch(64);
  #controller!: ChannelController<Batch>;
  #lock: Promise<unknown> = Promise.resolve();
  #wake: (() => void) | undefined;
  #pulled: (() => void) | undefined;
  #loop: Promise<void> | undefined;
  #closed = false;
  #log: Logger;
  #retryLogged = 0;
  /** A poll is under way. */
  #polling = false;

  constructor(name: ElementName, source: Source, options: ManagedSourceOptions) {
    this.name = name;
    this.#source = source;
    this.#log = options.log;
    this.#period = options.pollInterval;
    this.#flushInterval = options.flushInterval;
    this.#flushRounds = roundsFor(options.flushInterval, options.pollInterval);
    this.#state = options.paused ? "paused" : "running";
    this.readable = new Channel<Batch>({
      start: (c) => {
        this.#controller = c;
      },
      pull: () => {
        this.#pulled?.();
        this.#pulled = undefined;
      },
      cancel: () => {
        this.#closed = true;
        this.#state = "stopped";
        this.#wake?.();
        this.#pulled?.();
      },
    }, options.highWaterMark ?? 2);
  }

  /** `running`, `paused` or `stopped`. */
  get state(): ElementState {
    return this.#state;
  }

  /** The poll period, ms. */
  get pollInterval(): number {
    return this.#period;
  }

  /** Starts the polling loop. */
  start(): void {
    this.#loop ??= this.#run();
  }

  /** Polls now, outside the schedule, and waits for the poll to finish. No-op once stopped. */
  triggerNow(): Promise<void> {
    return this.#locked(() => this.#state === "stopped" ? undefined : this.#poll());
  }

  /** Flushes the points polled so far into the pipeline now. */
  flushNow(): Promise<void> {
    return this.#locked(() => this.#flush());
  }

  /** Changes the poll period (ms); the flush period stays the same in time. Applies from now. */
  setPollInterval(ms: number): void {
    if (!(ms > 0)) throw new RangeError(`Poll interval must be positive, got ${ms} ms`);
    this.#period = ms;
    this.#flushRounds = roundsFor(this.#flushInterval, ms);
    this.#wake?.();
  }

  /** Pauses polling: flushes what was polled and resets the source's state. */
  async pause(): Promise<void> {
    if (this.#state !== "running") return;
    this.#state = "paused";
    await this.#locked(async () => {
      await this.#flush();
      this.#source.reset?.();
    });
  }

  /** Resumes polling on a fresh schedule. */
  resume(): void {
    if (this.#state !== "paused") return;
    this.#state = "running";
    this.#wake?.();
  }

  /**
   * Stops the source: the current poll finishes, the points not yet flushed are flushed, the stream closes and
   * the source's `close` runs. Resolves when all that is done, or after {@linkcode STOP_GRACE_MS} (or two poll
   * intervals, when longer): a poll that has not returned by then is given up, with one error line, and the
   * stream closes with the points polled so far, so that stopping never hangs.
   */
  async stop(): Promise<void> {
    if (this.#state !== "stopped") this.#state = "stopped";
    this.#wake?.();
    this.#pulled?.();
    this.start();
    const grace = Math.max(STOP_GRACE_MS, 2 * this.#period);
    let cancel: (() => void) | undefined;
    const late = new Promise<"late">((resolve) => (cancel = after(grace, () => resolve("late"))));
    try {
      if (await Promise.race([this.#loop, late]) !== "late") return;
    } finally {
      cancel?.();
    }
    if (this.#closed) {
      // The poll returned and every point was sent; only the source's close() is slow: leave it running.
      this.#log.warn(
        `close() did not return within ${
          grace / 1000
        } s; stopping goes on without it (every point it polled was sent)`,
      );
      return;
    }
    this.#log.error(
      `Did not stop within ${grace / 1000} s (a poll that never returns?): given up, with the points polled ${
        this.#polling ? "before that poll; what that poll measured is lost" : "so far"
      }`,
    );
    if (this.#polling) this.stats.lossUnknown = true;
    this.#closed = true;
    if (this.#batch.length > 0) {
      this.stats.points += this.#batch.length;
      this.#controller.enqueue(this.#batch);
      this.#batch = new Batch(64);
    }
    this.#controller.close();
  }

  #locked<T>(fn: () => T | Promise<T>): Promise<T> {
    const p = this.#lock.then(fn);
    this.#lock = p.catch(() => {});
    return p;
  }

  async #run(): Promise<void> {
    let next = performance.now() + this.#period;
    let period = this.#period;
    try {
      while (this.#state !== "stopped") {
        if (this.#state === "paused") {
          await this.#sleep(Infinity);
          next = performance.now() + this.#period;
          continue;
        }
        if (period !== this.#period) {
          period = this.#period;
          next = performance.now() + period;
        }
        const wait = next - performance.now();
        if (wait > 0) {
          await this.#sleep(wait);
          if (this.#state !== "running" || period !== this.#period) continue;
          if (performance.now() < next - 0.5) continue; // woken early (trigger or spurious)
        }
        const lateness = performance.now() - next;
        this.lateness.record(lateness);
        if (lateness > period) this.stats.late++;
        await this.#locked(async () => {
          if (this.#state !== "running") return;
          await this.#poll();
          if (++this.#rounds >= this.#flushRounds) await this.#flush();
        });
        next += period;
        const behind = performance.now() - next;
        if (behind > 0) {
          const skipped = Math.ceil(behind / period);
          this.stats.missed += skipped;
          next += skipped * period;
        }
      }
    } finally {
      await this.#locked(() => this.#finish());
    }
  }

  async #poll(): Promise<void> {
    const ts = now();
    this.#batch.timestamp = ts;
    this.stats.polls++;
    this.#polling = true;
    try {
      await this.#source.poll(this.#batch, ts);
    } catch (e) {
      if (e instanceof RetryableError) {
        this.stats.errors++;
        // Log the first few, then one in a hundred, so a flapping source cannot flood the log.
        if (this.#retryLogged++ < 5 || this.stats.errors % 100 === 0) {
          this.#log.warn(`Poll failed (${this.stats.errors} so far), retrying next tick: ${e.message}`);
        }
      } else if (e instanceof NormalStop) {
        this.#log.debug(`Stopped: ${e.message}`);
        this.#state = "stopped";
      } else {
        this.#log.error(`Stopped after an error; the rest of the pipeline goes on: ${messageOf(e)}`);
        this.#log.debug(e instanceof Error && e.stack ? e.stack : String(e));
        this.#state = "stopped";
      }
    } finally {
      this.#polling = false;
    }
  }

  async #flush(): Promise<void> {
    this.#rounds = 0;
    const b = this.#batch;
    if (b.length === 0 || this.#closed) return;
    // Backpressure: wait until the pipeline wants more, unless we are stopping (the last batch always goes).
    while (this.#state !== "stopped" && !this.#closed && (this.#controller.desiredSize ?? 1) <= 0) {
      await new Promise<void>((resolve) => (this.#pulled = resolve));
    }
    if (this.#closed) return;
    this.#batch = new Batch(b.length);
    this.stats.points += b.length;
    this.#controller.enqueue(b);
  }

  async #finish(): Promise<void> {
    await this.#flush();
    if (!this.#closed) {
      this.#closed = true;
      this.#controller.close();
    }
    try {
      await this.#source.close?.();
    } catch (e) {
      this.#log.error(`Closing ${formatName(this.name)} failed: ${messageOf(e)}`);
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      // A timer takes at most 2^31-1 ms (after() caps it); the loop sleeps again when woken early.
      const cancel = Number.isFinite(ms) ? after(ms, done) : undefined;
      this.#wake = done;
      function done(): void {
        cancel?.();
        resolve();
      }
    }).finally(() => (this.#wake = undefined));
  }
}

function roundsFor(flush: number, poll: number): number {
  return Math.max(1, Math.round(flush / poll));
}

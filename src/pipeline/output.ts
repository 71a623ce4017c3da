/**
 * Fan-out: every batch goes to every live output through that output's own bounded queue, with a policy
 * for a full queue: `block` (the pipeline, and so the sources, wait) or `drop-oldest` (the oldest batch is
 * dropped and the loss counted).
 *
 * An output whose write throws an {@linkcode OutputBlockedError} (a full disk: it undid what it wrote of the
 * batch, or kept the rest for the retry) is paused, not failed: it holds the batch, retries it with a back-off,
 * and resumes once the write succeeds; meanwhile its queue fills and its full-queue policy applies. At stop it
 * keeps retrying for a grace period, then counts what it still holds as lost. A write that fails with a bare
 * ENOSPC, EDQUOT or EAGAIN (an output that promised nothing) pauses the output too, but its batch is not retried,
 * since part of it may be written already and a retry would write those points twice: it is counted as lost, and
 * the next batches are tried after a back-off until one goes out. An output whose reader went away (EPIPE) stops
 * and asks the agent to shut down.
 *
 * @module
 */
import type { Batch } from "../model/batch.ts";
import { messageOf, RetryableError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { ElementContext, FullPolicy, Output } from "../plugin/plugin.ts";
import { type ElementName, formatName } from "./names.ts";
import type { ElementState } from "./source.ts";
import type { BatchSink } from "./transform.ts";

/** Counters of one output. */
export interface OutputStats {
  /** Batches written. */
  batches: number;
  /** Points written. */
  points: number;
  /** Batches dropped (queue full with drop-oldest, retries exhausted, output failed). */
  droppedBatches: number;
  /** Points in the dropped batches. */
  droppedPoints: number;
  /** Writes that failed with a retryable error. */
  retries: number;
  /**
   * Points not written because the output's reader went away (EPIPE, as when `| head` exits). Not a loss: no
   * one reads them any more (they are not in `droppedPoints`, and do not make `run` exit non-zero).
   */
  unreadPoints: number;
}

/** Retry delays for a write that failed with a RetryableError, ms. */
const RETRY_DELAYS = [100, 400, 1600] as const;

/** First and longest delay between two tries of a blocked output, ms (doubling in between). */
export const BLOCKED_BACKOFF_MS: readonly [number, number] = [100, 2000];

/** How long a blocked output keeps trying once the pipeline stops, ms, before counting what it holds as lost. */
export const BLOCKED_GRACE_MS = 5000;

/** Error codes (`Error.code`, as Deno sets it) of a write that can succeed later, once there is room. */
const BLOCKING_CODES: ReadonlySet<string> = new Set(["ENOSPC", "EDQUOT", "EAGAIN", "EWOULDBLOCK"]);

/**
 * Thrown by an output's `write` (or `close`) when it could not write for now but will be able to later (a full
 * disk, a quota, a backend asking to slow down), after undoing any part of the batch it wrote, or while keeping
 * track of it so that the retry writes only the rest: the output is paused and the same batch is retried,
 * without limit while the agent runs and for a grace period at stop. Retrying must duplicate nothing.
 * A bare error whose `code` is ENOSPC, EDQUOT or EAGAIN makes no such promise: its batch is counted as lost,
 * not retried (see {@linkcode blockedCode} to recognise one before wrapping it).
 *
 * @example
 * ```ts
 * import { OutputBlockedError } from "./output.ts";
 * import assert from "node:assert/strict";
 * const cause = Object.assign(new Error("No space left on device (os error 28)"), { code: "ENOSPC" });
 * const e = new OutputBlockedError("Cannot write out.csv", { cause });
 * assert.equal(e.code, "ENOSPC");
 * ```
 */
export class OutputBlockedError extends RetryableError {
  override name = "OutputBlockedError";
  /** The system error code (`ENOSPC`…), from the options or the cause; `"blocked"` when none is known. */
  readonly code: string;
  /**
   * Points that are lost if this failure is never retried: for a failing `close`, what it could not flush; for
   * a `write`, the points of the batch not (wholly) written yet, 0 meaning all of them.
   */
  readonly unwrittenPoints: number;
  constructor(message: string, options: ErrorOptions & { code?: string; unwrittenPoints?: number } = {}) {
    super(message, options);
    this.code = options.code ?? errorCode(options.cause) ?? "blocked";
    this.unwrittenPoints = options.unwrittenPoints ?? 0;
  }
}

/** The first string `code` along an error's `cause` chain (Deno sets `code` on system errors). */
function errorCode(e: unknown, test: (code: string) => boolean = () => true): string | undefined {
  for (let depth = 0; depth < 8 && e !== null && typeof e === "object"; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && test(code)) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * The code (`ENOSPC`, `EDQUOT`, `EAGAIN`, `EWOULDBLOCK`, or an {@linkcode OutputBlockedError}'s) that makes `e`
 * a "no room for now" failure, or undefined. An output uses it to turn such an error into an
 * {@linkcode OutputBlockedError} once it undid (or kept track of) what it wrote.
 */
export function blockedCode(e: unknown): string | undefined {
  if (e instanceof OutputBlockedError) return e.code;
  return errorCode(e, (c) => BLOCKING_CODES.has(c));
}

/** True when `e` (or its cause) says the reader of a pipe or socket went away (EPIPE). */
export function isBrokenPipe(e: unknown): boolean {
  for (let depth = 0; depth < 8 && e !== null && typeof e === "object"; depth++) {
    if (e instanceof Deno.errors.BrokenPipe || (e as { code?: unknown }).code === "EPIPE") return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/** Adapts a WritableStream to the {@linkcode Output} interface. */
export function outputFromWritable(stream: WritableStream<Batch>): Output {
  const writer = stream.getWriter();
  return {
    write: (batch) => writer.write(batch),
    close: () => writer.close(),
  };
}

/** One output with its queue and its writing loop. */
export class OutputTask {
  readonly name: ElementName;
  readonly policy: FullPolicy;
  readonly capacity: number;
  readonly stats: OutputStats = {
    batches: 0,
    points: 0,
    droppedBatches: 0,
    droppedPoints: 0,
    retries: 0,
    unreadPoints: 0,
  };
  #output: Output;
  #ctx: ElementContext;
  #queue: Batch[] = [];
  #head = 0;
  #state: ElementState = "running";
  #inputClosed = false;
  #itemWaiter: (() => void) | undefined;
  #spaceWaiters: (() => void)[] = [];
  #log: Logger;
  #lastDropLog = -Infinity;
  #failed = false;
  /** The reader went away (EPIPE): what is not written is unread, not lost. */
  #readerGone = false;
  /** The error code while a write is blocked (the output reads as paused); undefined otherwise. */
  #blocked: string | undefined;
  #blockedSince = 0;
  /** `performance.now()` after which a blocked output gives up; set once the stop begins. */
  #deadline: number | undefined;
  readonly #graceMs: number;
  readonly #backoff: readonly [number, number];
  readonly #onReaderGone: (() => void) | undefined;
  /** Wakes a blocked output's back-off sleep early (at stop). */
  #wake: (() => void) | undefined;
  /** The batch being written (held while blocked). */
  #holding: Batch | undefined;
  /** The stop's grace ended while blocked: what is still counted as lost is counted silently. */
  #gaveUp = false;
  /** Wait before the next batch after a bare ENOSPC (an output that made no promise), ms. */
  #bareDelay: number;
  readonly done: Promise<void>;
  /** Attributes of this output's `alumet_dropped_points` series. */
  readonly dropAttributes: Readonly<{ output: string }>;

  constructor(
    name: ElementName,
    output: Output,
    options: {
      capacity: number;
      policy: FullPolicy;
      ctx: ElementContext;
      log: Logger;
      /** Called once when the output's reader went away (EPIPE): the pipeline asks the agent to shut down. */
      onReaderGone?: (() => void) | undefined;
      /** How long a blocked output keeps trying after the stop begins, ms. Default {@linkcode BLOCKED_GRACE_MS}. */
      blockedGraceMs?: number | undefined;
      /** First and longest delay between tries of a blocked write, ms. Default {@linkcode BLOCKED_BACKOFF_MS}. */
      backoffMs?: readonly [number, number] | undefined;
    },
  ) {
    this.name = name;
    this.#graceMs = options.blockedGraceMs ?? BLOCKED_GRACE_MS;
    this.#backoff = options.backoffMs ?? BLOCKED_BACKOFF_MS;
    this.#bareDelay = this.#backoff[0];
    this.#onReaderGone = options.onReaderGone;
    this.#output = output;
    this.capacity = Math.max(1, options.capacity);
    this.policy = options.policy;
    this.#ctx = options.ctx;
    this.#log = options.log;
    this.dropAttributes = Object.freeze({ output: formatName(name) });
    this.done = this.#run();
  }

  /** What `Output.lostPoints` reported at the last {@linkcode syncLosses}. */
  #outputLost = 0;

  /**
   * Adds to `droppedPoints` what the output says it lost on its own since the last call (`Output.lostPoints`:
   * a full journal, a rejected batch). The pipeline calls it before it reads the statistics.
   */
  syncLosses(): void {
    let lost: number;
    try {
      lost = this.#output.lostPoints?.() ?? 0;
    } catch {
      return;
    }
    if (lost > this.#outputLost) {
      this.stats.droppedPoints += lost - this.#outputLost;
      this.#outputLost = lost;
    }
  }

  /** `running`, `paused` or `stopped`; `paused` too while a write is blocked (a full disk). */
  get state(): ElementState {
    return this.#blocked !== undefined && this.#state === "running" ? "paused" : this.#state;
  }

  /** The error code (`ENOSPC`…) while a write is blocked and retried, else undefined. */
  get blocked(): string | undefined {
    return this.#blocked;
  }

  /** Batches waiting in the queue. */
  get queued(): number {
    return this.#queue.length - this.#head;
  }

  /** True while the output takes batches. */
  get accepting(): boolean {
    return this.#state !== "stopped" && !this.#inputClosed;
  }

  /** True when the output stopped after an error. */
  get failed(): boolean {
    return this.#failed;
  }

  /**
   * Queues a batch. With `block`, returns a promise when the queue is full that resolves once there is room;
   * with `drop-oldest`, drops the oldest queued batch and returns nothing.
   */
  offer(batch: Batch): Promise<void> | undefined {
    if (!this.accepting) {
      // A failed output still counts what it misses, so that alumet_dropped_points tells the whole loss.
      if (this.#failed && batch.length > 0) this.#countDrop(batch, "it failed");
      return undefined;
    }
    if (this.queued >= this.capacity) {
      if (this.policy === "drop-oldest") {
        const old = this.#queue[this.#head]!;
        this.#queue[this.#head++] = undefined as unknown as Batch;
        this.#compact();
        this.#countDrop(old, "its queue is full");
      } else {
        return new Promise<void>((resolve) => this.#spaceWaiters.push(resolve)).then(() => this.offer(batch));
      }
    }
    this.#queue.push(batch);
    this.#itemWaiter?.();
    return undefined;
  }

  /** No more batches will come: write what is queued, then close the output. */
  closeInput(): Promise<void> {
    this.#inputClosed = true;
    this.beginStop();
    this.#itemWaiter?.();
    return this.done;
  }

  /**
   * The stop has begun: from now on a blocked output keeps trying for its grace period only, then counts what
   * it holds as lost and releases the producers waiting for room. Idempotent.
   */
  beginStop(): void {
    if (this.#deadline !== undefined) return;
    this.#deadline = performance.now() + this.#graceMs;
    if (this.#blocked !== undefined) this.#logStopWait();
    this.#wake?.(); // retry now rather than at the end of a long back-off
  }

  /** Says that the stop waits for this blocked output (else the grace period is silent). */
  #logStopWait(): void {
    const grace = this.#graceMs >= 1000 ? `${this.#graceMs / 1000} s` : `${this.#graceMs} ms`;
    const held = (this.#holding?.length ?? 0) + this.#queuedPoints();
    this.#log.warn(
      `Stopping: waiting up to ${grace} for ${formatName(this.name)} (${this.#blocked}) to write what it ` +
        `holds (${held} point${held === 1 ? "" : "s"})`,
    );
  }

  /** Pauses writing; batches keep queueing and the full-queue policy applies. */
  pause(): void {
    if (this.#state === "running") this.#state = "paused";
  }

  /** Resumes writing. */
  resume(): void {
    if (this.#state !== "paused") return;
    this.#state = "running";
    this.#itemWaiter?.();
  }

  /** Stops taking batches; what is queued is still written, then the output closes. */
  stop(): Promise<void> {
    return this.closeInput();
  }

  async #run(): Promise<void> {
    try {
      while (this.#state !== "stopped") {
        if (this.queued === 0 || this.#state === "paused") {
          if (this.#inputClosed && (this.queued === 0 || this.#state === "paused")) {
            if (this.queued === 0) break;
            this.#state = "running"; // drain what a paused output holds when the pipeline ends
            continue;
          }
          await new Promise<void>((resolve) => (this.#itemWaiter = resolve));
          this.#itemWaiter = undefined;
          continue;
        }
        const batch = this.#queue[this.#head]!;
        this.#queue[this.#head++] = undefined as unknown as Batch;
        this.#compact();
        this.#releaseSpace();
        await this.#write(batch);
      }
    } finally {
      this.#state = "stopped";
      this.#inputClosed = true;
      for (let i = this.#head; i < this.#queue.length; i++) this.#countDrop(this.#queue[i]!, "it stopped");
      this.#queue = [];
      this.#head = 0;
      this.#releaseSpace(true);
      await this.#closeOutput();
    }
  }

  /** Closes the output; a close blocked for lack of room is retried like a write, within the grace period. */
  async #closeOutput(): Promise<void> {
    this.beginStop();
    let delay = this.#backoff[0];
    for (;;) {
      try {
        await this.#output.close?.();
        if (this.#blocked !== undefined) this.#unblock();
        return;
      } catch (e) {
        // Only an output that promised a retry duplicates nothing (OutputBlockedError) gets one.
        const code = e instanceof OutputBlockedError ? e.code : undefined;
        if (code !== undefined && performance.now() < this.#deadline!) {
          if (this.#blocked === undefined) this.#block(code, e, true);
          this.stats.retries++;
          await this.#sleep(delay);
          delay = Math.min(delay * 2, this.#backoff[1]);
          continue;
        }
        const lost = e instanceof OutputBlockedError ? e.unwrittenPoints : 0;
        if (lost > 0) {
          this.stats.droppedPoints += lost;
          this.#log.error(
            `Closing ${formatName(this.name)} failed${
              code ? ` (still ${code} ${this.#graceMs} ms after the stop)` : ""
            }: ` +
              `${messageOf(e)}; ${lost} points not written`,
          );
        } else this.#log.error(`Closing ${formatName(this.name)} failed: ${messageOf(e)}`);
        return;
      }
    }
  }

  async #write(batch: Batch): Promise<void> {
    this.#holding = batch;
    try {
      await this.#tryWrite(batch);
    } finally {
      this.#holding = undefined;
    }
  }

  async #tryWrite(batch: Batch): Promise<void> {
    let delay = this.#backoff[0];
    for (let attempt = 0;; attempt++) {
      try {
        await this.#output.write(batch, this.#ctx);
        this.stats.batches++;
        this.stats.points += batch.length;
        this.#bareDelay = this.#backoff[0];
        if (this.#blocked !== undefined) this.#unblock();
        return;
      } catch (e) {
        if (e instanceof OutputBlockedError) {
          // Paused, not failed: hold the batch and try it again until it goes out (or the stop's grace ends).
          // The output undid what it wrote of the batch, or kept the rest: the retry duplicates nothing.
          if (this.#blocked === undefined) this.#block(e.code, e, true);
          this.stats.retries++;
          if (this.#deadline !== undefined && performance.now() >= this.#deadline) {
            this.#giveUp(batch, e.code, e.unwrittenPoints);
            return;
          }
          await this.#sleep(delay);
          delay = Math.min(delay * 2, this.#backoff[1]);
          attempt = -1;
          continue;
        }
        const code = blockedCode(e);
        if (code !== undefined) {
          // No room, from an output that made no promise: part of the batch may be out already, and retrying
          // it could write those points twice, which nothing would count. A loss is counted and reported: the
          // batch is counted as lost, and the output stays paused a back-off before it tries the next one.
          if (this.#blocked === undefined) this.#block(code, e, false);
          this.#countDrop(batch, `its write failed (${code})`);
          const wait = this.#bareDelay;
          this.#bareDelay = Math.min(wait * 2, this.#backoff[1]);
          await this.#sleep(wait);
          return;
        }
        if (isBrokenPipe(e)) {
          this.#log.warn(
            `Stopped: its reader went away (EPIPE: ${
              messageOf(e)
            }), as when \`| head\` exits; stopping the agent`,
          );
          this.#readerGone = true;
          this.#countDrop(batch, "its reader went away");
          this.#failed = true;
          this.#state = "stopped";
          this.#blocked = undefined;
          this.#onReaderGone?.();
          return;
        }
        if (e instanceof RetryableError && attempt < RETRY_DELAYS.length) {
          this.stats.retries++;
          this.#log.warn(`Write failed, retrying in ${RETRY_DELAYS[attempt]} ms: ${e.message}`);
          await new Promise((r) => setTimeout(r, RETRY_DELAYS[attempt]));
          continue;
        }
        if (e instanceof RetryableError) {
          this.#countDrop(batch, `the write still failed after ${attempt + 1} attempts (${e.message})`);
          return;
        }
        this.#log.error(`Stopped after an error; the other outputs go on: ${messageOf(e)}`);
        this.#log.debug(e instanceof Error && e.stack ? e.stack : String(e));
        this.#countDrop(batch, "it failed");
        this.#failed = true;
        this.#state = "stopped";
        return;
      }
    }
  }

  /** Pauses a blocked output; `retried`: the output promised that retrying its batch duplicates nothing. */
  #block(code: string, e: unknown, retried: boolean): void {
    this.#blocked = code;
    this.#blockedSince = performance.now();
    const held = this.queued + 1;
    const full = this.policy === "block"
      ? "when its queue is full the sources wait"
      : "when its queue is full the oldest batches are dropped";
    this.#log.warn(
      retried
        ? `Paused (${code}): ${messageOf(e)}; holding ${held} batch${
          held === 1 ? "" : "es"
        } and retrying the ` +
          `same batch until it can write (${full})`
        : `Paused (${code}): ${
          messageOf(e)
        }; the output threw no OutputBlockedError, so part of the batch may ` +
          `be written: it is counted as lost, not retried (a retry could write points twice), and the next ` +
          `batches are tried after a back-off until one goes out (${full})`,
    );
    if (this.#deadline !== undefined) this.#logStopWait();
  }

  #unblock(): void {
    const secs = ((performance.now() - this.#blockedSince) / 1000).toFixed(1);
    this.#log.info(`Resumed after ${secs} s paused (${this.#blocked}): writing again`);
    this.#blocked = undefined;
  }

  /**
   * The stop's grace period ended while a write was still blocked: everything held is lost (of the batch being
   * written, the `unwritten` points the output said it did not write, all of them when 0). The Gave-up line
   * tells the loss: it is counted silently, and so is what still arrives (the agent's loss report sums it).
   */
  #giveUp(batch: Batch, code: string, unwritten: number): void {
    const lostNow = unwritten > 0 && unwritten < batch.length ? unwritten : batch.length;
    const held = lostNow + this.#queuedPoints();
    this.#log.error(
      `Gave up: still ${code} ${this.#graceMs} ms after the stop began; ${held} points not written`,
    );
    this.#gaveUp = true;
    this.stats.droppedBatches++;
    this.stats.droppedPoints += lostNow;
    for (let i = this.#head; i < this.#queue.length; i++) this.#countDrop(this.#queue[i]!, "");
    this.#queue = [];
    this.#head = 0;
    this.#failed = true;
    this.#state = "stopped";
    this.#blocked = undefined;
  }

  #queuedPoints(): number {
    let n = 0;
    for (let i = this.#head; i < this.#queue.length; i++) n += this.#queue[i]!.length;
    return n;
  }

  /** Waits `ms`, or less when the stop begins meanwhile or its deadline comes first. */
  async #sleep(ms: number): Promise<void> {
    if (this.#deadline !== undefined) ms = Math.max(0, Math.min(ms, this.#deadline - performance.now()));
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      this.#wake = resolve;
      timer = setTimeout(resolve, ms);
    });
    clearTimeout(timer);
    this.#wake = undefined;
  }

  /** Drops the consumed head of the queue array once it is most of it. */
  #compact(): void {
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }

  #countDrop(batch: Batch, why: string): void {
    if (this.#readerGone) {
      this.stats.unreadPoints += batch.length;
      return;
    }
    this.stats.droppedBatches++;
    this.stats.droppedPoints += batch.length;
    if (this.#gaveUp) return; // the Gave-up line told the loss; the agent's report gives the total
    const t = performance.now();
    if (t - this.#lastDropLog > 10_000) {
      this.#lastDropLog = t;
      this.#log.warn(
        `Dropped a batch of ${batch.length} points because ${why}; ${this.stats.droppedPoints} points ` +
          `lost so far (metric alumet_dropped_points)`,
      );
    }
  }

  #releaseSpace(all = false): void {
    while (this.#spaceWaiters.length > 0 && (all || this.queued < this.capacity)) {
      this.#spaceWaiters.shift()!();
      if (!all) break;
    }
  }
}

/**
 * The fan-out at the end of the transforms: hands each batch to every output task that accepts it, and waits
 * only for those whose policy is `block` (runFlow, ./transform.ts, calls it, or writes to it as a stream).
 */
export function batchSink(outputs: () => Iterable<OutputTask>): BatchSink {
  return {
    write(batch: Batch) {
      let waits: Promise<void>[] | undefined;
      for (const o of outputs()) {
        const w = o.offer(batch);
        if (w !== undefined) (waits ??= []).push(w);
      }
      if (waits !== undefined) return Promise.all(waits).then(() => {});
    },
    async close() {
      await Promise.all([...outputs()].map((o) => o.closeInput()));
    },
    async abort() {
      await Promise.all([...outputs()].map((o) => o.closeInput()));
    },
  };
}

/**
 * Fan-out: every batch goes to every live output through that output's own bounded queue, with a policy
 * for a full queue: `block` (the pipeline, and so the sources, wait) or `drop-oldest` (the oldest batch is
 * dropped and the loss counted).
 *
 * @module
 */
import type { Batch } from "../model/batch.ts";
import { messageOf, RetryableError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { ElementContext, FullPolicy, Output } from "../plugin/plugin.ts";
import { type ElementName, formatName } from "./names.ts";
import type { ElementState } from "./source.ts";

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
}

/** Retry delays for a write that failed with a RetryableError, ms. */
const RETRY_DELAYS = [100, 400, 1600] as const;

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
  readonly stats: OutputStats = { batches: 0, points: 0, droppedBatches: 0, droppedPoints: 0, retries: 0 };
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
  readonly done: Promise<void>;
  /** Attributes of this output's `alumet_dropped_points` series. */
  readonly dropAttributes: Readonly<{ output: string }>;

  constructor(
    name: ElementName,
    output: Output,
    options: { capacity: number; policy: FullPolicy; ctx: ElementContext; log: Logger },
  ) {
    this.name = name;
    this.#output = output;
    this.capacity = Math.max(1, options.capacity);
    this.policy = options.policy;
    this.#ctx = options.ctx;
    this.#log = options.log;
    this.dropAttributes = Object.freeze({ output: formatName(name) });
    this.done = this.#run();
  }

  /** `running`, `paused` or `stopped`. */
  get state(): ElementState {
    return this.#state;
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
    this.#itemWaiter?.();
    return this.done;
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
      try {
        await this.#output.close?.();
      } catch (e) {
        this.#log.error(`Closing ${formatName(this.name)} failed: ${messageOf(e)}`);
      }
    }
  }

  async #write(batch: Batch): Promise<void> {
    for (let attempt = 0;; attempt++) {
      try {
        await this.#output.write(batch, this.#ctx);
        this.stats.batches++;
        this.stats.points += batch.length;
        return;
      } catch (e) {
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

  /** Drops the consumed head of the queue array once it is most of it. */
  #compact(): void {
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }

  #countDrop(batch: Batch, why: string): void {
    this.stats.droppedBatches++;
    this.stats.droppedPoints += batch.length;
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
 * The sink at the end of the transforms: hands each batch to every output task that accepts it, and waits
 * only for those whose policy is `block`.
 */
export function fanOut(outputs: () => Iterable<OutputTask>): WritableStream<Batch> {
  return new WritableStream<Batch>({
    write(batch) {
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
  });
}

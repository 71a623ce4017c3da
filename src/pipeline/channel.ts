/**
 * The pipeline's own channel between its stages: the part of a `ReadableStream` that the stages use (one
 * reader, a count high-water mark, `pull` when there is room, `cancel`), in plain code.
 *
 * Why not a `ReadableStream`: Deno loads its streams code on the first one a process creates (some 5 ms), and
 * every chunk goes through several promises per hop. A pipeline whose elements are all plain objects (managed
 * sources, `Transform` and `Output` objects: every built-in plugin) then runs without any Web Stream, and
 * `alumet exec -- true` does not pay for them. Streams that plugins hand over (autonomous sources,
 * `TransformStream` transforms, `WritableStream` outputs) are read and written as streams, as before.
 *
 * @module
 */

/** The result of a read once the channel has ended. */
const DONE: ReadableStreamReadDoneResult<never> = Object.freeze({ done: true });

/** What the pipeline's stages read: a `ReadableStream` or a {@linkcode Channel}. */
export interface ReadableLike<T> {
  getReader(): ReaderLike<T>;
}

/** The reader of a {@linkcode ReadableLike}: the methods of `ReadableStreamDefaultReader` the stages use. */
export interface ReaderLike<T> {
  read(): Promise<ReadableStreamReadResult<T>>;
  cancel(reason?: unknown): Promise<void>;
  releaseLock(): void;
}

/** The writer's side of a {@linkcode Channel}, as a `ReadableStreamDefaultController`. */
export interface ChannelController<T> {
  /** Queues `value`, or hands it to a waiting read. Throws a `TypeError` once closed or cancelled. */
  enqueue(value: T): void;
  /** No more values: reads end once the queue is empty. */
  close(): void;
  /** Fails the channel: pending and later reads reject with `reason`. */
  error(reason: unknown): void;
  /** The high-water mark minus the queued values (≤ 0: full); 0 once ended, null once errored. */
  readonly desiredSize: number | null;
}

/** The callbacks of a {@linkcode Channel}, as a `ReadableStream`'s underlying source. */
export interface ChannelSource<T> {
  /** Called once, from the constructor. */
  start?(controller: ChannelController<T>): void;
  /**
   * Called when there is room or a read waits (after the start, after each read that leaves room, when a read
   * finds the queue empty), synchronously. One that throws errors the channel.
   */
  pull?(controller: ChannelController<T>): void;
  /** Called once when the reader cancels: the queue is dropped and the channel is closed. */
  cancel?(reason: unknown): void | Promise<void>;
}

/**
 * A single-reader queue with a `ReadableStream`'s semantics where the pipeline relies on them: reads wait for a
 * value, `desiredSize` counts against the high-water mark (backpressure), `pull` is called while there is
 * room or a read waits, a close ends the reads once the queue is drained, a cancel drops the queue, releasing
 * the reader rejects its pending reads. Unlike a stream, `pull` is called synchronously (the pipeline's
 * callbacks only wake a waiting writer) and may be called again before it has produced anything.
 *
 * @example
 * ```ts
 * import { Channel } from "./channel.ts";
 * import assert from "node:assert/strict";
 * const ch = new Channel<number>({ start(c) { c.enqueue(1); c.enqueue(2); c.close(); } }, 4);
 * assert.deepEqual(await Array.fromAsync(ch), [1, 2]);
 * ```
 */
export class Channel<T> implements ReadableLike<T>, AsyncIterable<T> {
  readonly #source: ChannelSource<T>;
  readonly #highWaterMark: number;
  readonly #queue: T[] = [];
  /** Reads waiting for a value (the queue is then empty). */
  #reads: PromiseWithResolvers<ReadableStreamReadResult<T>>[] = [];
  #state: "open" | "closing" | "closed" | "errored" = "open";
  #error: unknown;
  #locked = false;
  readonly #controller: ChannelController<T>;

  constructor(source: ChannelSource<T>, highWaterMark = 1) {
    if (!(highWaterMark >= 0)) throw new RangeError(`highWaterMark must be >= 0, got ${highWaterMark}`);
    this.#source = source;
    this.#highWaterMark = highWaterMark;
    const desiredSize = () => this.#desiredSize();
    this.#controller = {
      enqueue: (value) => this.#enqueue(value),
      close: () => this.#close(),
      error: (reason) => this.#fail(reason),
      get desiredSize() {
        return desiredSize();
      },
    };
    source.start?.(this.#controller);
    this.#pullIfRoom();
  }

  /** True while a reader holds the channel. */
  get locked(): boolean {
    return this.#locked;
  }

  /** The one reader. Throws a `TypeError` while another holds it. */
  getReader(): ReaderLike<T> {
    if (this.#locked) throw new TypeError("The channel is locked to a reader");
    this.#locked = true;
    let released = false;
    const gone = () => Promise.reject(new TypeError("The reader was released"));
    return {
      read: () => released ? gone() : this.#read(),
      cancel: (reason?: unknown) => released ? gone() : this.#cancel(reason),
      releaseLock: () => {
        if (released) return;
        released = true;
        this.#locked = false;
        // As a stream's reader: its reads still pending fail (they must not take the next reader's values).
        const reads = this.#reads;
        this.#reads = [];
        for (const r of reads) r.reject(new TypeError("The reader was released"));
      },
    };
  }

  /** Reads every value until the channel closes; leaving the loop early cancels it. */
  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    const reader = this.getReader();
    let finished = false;
    try {
      for (;;) {
        const r = await reader.read();
        if (r.done) {
          finished = true;
          return;
        }
        yield r.value;
      }
    } finally {
      if (!finished) await reader.cancel();
      reader.releaseLock();
    }
  }

  #desiredSize(): number | null {
    if (this.#state === "errored") return null;
    if (this.#state === "closed") return 0;
    return this.#highWaterMark - this.#queue.length; // also while closing, as a stream
  }

  #pullIfRoom(): void {
    if (this.#state !== "open" || this.#source.pull === undefined) return;
    if (this.#desiredSize()! <= 0 && this.#reads.length === 0) return;
    try {
      this.#source.pull(this.#controller);
    } catch (e) {
      this.#fail(e);
    }
  }

  #enqueue(value: T): void {
    if (this.#state !== "open") throw new TypeError(`Cannot enqueue: the channel is ${this.#state}`);
    const waiting = this.#reads.shift();
    if (waiting !== undefined) waiting.resolve({ done: false, value });
    else this.#queue.push(value);
  }

  #close(): void {
    if (this.#state !== "open") throw new TypeError(`Cannot close: the channel is ${this.#state}`);
    this.#state = this.#queue.length > 0 ? "closing" : "closed";
    if (this.#state === "closed") this.#endReads();
  }

  #fail(reason: unknown): void {
    if (this.#state === "closed" || this.#state === "errored") return;
    this.#state = "errored";
    this.#error = reason;
    this.#queue.length = 0;
    const reads = this.#reads;
    this.#reads = [];
    for (const r of reads) r.reject(reason);
  }

  #read(): Promise<ReadableStreamReadResult<T>> {
    if (this.#state === "errored") return Promise.reject(this.#error);
    if (this.#queue.length > 0) {
      const value = this.#queue.shift()!;
      if (this.#state === "closing" && this.#queue.length === 0) this.#state = "closed";
      else this.#pullIfRoom();
      return Promise.resolve({ done: false, value });
    }
    if (this.#state === "closed" || this.#state === "closing") {
      return Promise.resolve(DONE);
    }
    const read = Promise.withResolvers<ReadableStreamReadResult<T>>();
    this.#reads.push(read);
    this.#pullIfRoom();
    return read.promise;
  }

  async #cancel(reason: unknown): Promise<void> {
    if (this.#state === "errored") throw this.#error;
    if (this.#state === "closed") return;
    this.#state = "closed";
    this.#queue.length = 0;
    this.#endReads();
    await this.#source.cancel?.(reason);
  }

  #endReads(): void {
    const reads = this.#reads;
    this.#reads = [];
    for (const r of reads) r.resolve(DONE);
  }
}

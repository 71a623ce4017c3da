/**
 * Fan-in: many source streams merged into one, pulled only as fast as the pipeline consumes.
 *
 * @module
 */
import { messageOf } from "../errors.ts";
import type { Logger } from "../log.ts";
import { Channel, type ChannelController, type ReadableLike, type ReaderLike } from "./channel.ts";

interface Input<T> {
  readonly name: string;
  readonly reader: ReaderLike<T>;
}

/**
 * Merges readable streams (or the pipeline's channels) into {@linkcode FanIn.readable}, a
 * {@linkcode Channel}. Each input is read only when the merged stream has
 * room (`desiredSize > 0`), so a slow consumer holds every source back instead of letting a queue grow; at most
 * one chunk per input is in flight beyond the high-water mark. Inputs can be added while it runs. It closes
 * once {@linkcode FanIn.seal} was called and every input has ended. Cancelling it cancels every input. An input
 * that errors is logged and dropped; the others go on.
 *
 * @example
 * ```ts
 * import { FanIn } from "./fan_in.ts";
 * import { Logger } from "../log.ts";
 * import assert from "node:assert/strict";
 * const f = new FanIn<number>(new Logger("doc"));
 * f.add("a", ReadableStream.from([1, 2]));
 * f.add("b", ReadableStream.from([3]));
 * f.seal();
 * const got = await Array.fromAsync(f.readable);
 * assert.deepEqual(got.sort(), [1, 2, 3]);
 * ```
 */
export class FanIn<T> {
  readonly readable: Channel<T>;
  #controller!: ChannelController<T>;
  #inputs = new Set<Input<T>>();
  #waiting: (() => void)[] = [];
  #sealed = false;
  #done = false;
  #log: Logger;

  constructor(log: Logger, highWaterMark = 16) {
    if (!Number.isInteger(highWaterMark) || highWaterMark < 1) {
      throw new RangeError(`The source channel size must be an integer >= 1, got ${highWaterMark}`);
    }
    this.#log = log;
    this.readable = new Channel<T>({
      start: (c) => {
        this.#controller = c;
      },
      pull: () => this.#release(),
      cancel: async (reason) => {
        this.#done = true;
        this.#release();
        await Promise.allSettled([...this.#inputs].map((i) => i.reader.cancel(reason)));
      },
    }, highWaterMark);
  }

  /** Adds an input stream. Throws once sealed. */
  add(name: string, stream: ReadableLike<T>): void {
    if (this.#sealed) throw new Error(`Cannot add input "${name}": the pipeline is shutting down`);
    const input: Input<T> = { name, reader: stream.getReader() };
    this.#inputs.add(input);
    this.#pump(input);
  }

  /** Cancels one input (a source that does not end by itself); the others go on. */
  async cancelInput(name: string, reason?: unknown): Promise<void> {
    for (const i of this.#inputs) if (i.name === name) await i.reader.cancel(reason).catch(() => {});
  }

  /** No more inputs will come: close once the current ones end. */
  seal(): void {
    this.#sealed = true;
    this.#maybeClose();
  }

  /** Number of inputs still open. */
  get size(): number {
    return this.#inputs.size;
  }

  async #pump(input: Input<T>): Promise<void> {
    try {
      while (!this.#done) {
        if ((this.#controller.desiredSize ?? 0) <= 0) {
          await new Promise<void>((resolve) => this.#waiting.push(resolve));
          continue;
        }
        const { value, done } = await input.reader.read();
        if (done || this.#done) break;
        this.#controller.enqueue(value);
      }
    } catch (e) {
      if (!this.#done) {
        this.#log.error(`Source stream "${input.name}" failed and is dropped: ${messageOf(e)}`);
      }
    } finally {
      input.reader.releaseLock();
      this.#inputs.delete(input);
      this.#maybeClose();
    }
  }

  #release(): void {
    const w = this.#waiting;
    this.#waiting = [];
    for (const resolve of w) resolve();
  }

  #maybeClose(): void {
    if (this.#sealed && this.#inputs.size === 0 && !this.#done) {
      this.#done = true;
      this.#controller.close();
    }
  }
}

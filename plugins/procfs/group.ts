/**
 * One managed source per watch group: it polls every process of the group in one tick, into one batch.
 *
 * Alumet adds one source per followed process. With hundreds of processes that is hundreds of timers, streams
 * and batches on the agent's main thread; a group source costs one of each, whatever its size (the benchmark
 * follows 1 000 processes). The `exec`/`watch` program still gets its own `pid-<pid>` source.
 *
 * @module
 */
import type { Batch } from "../../src/model/batch.ts";
import type { Timestamp } from "../../src/model/timestamp.ts";
import { messageOf, NormalStop, RetryableError } from "../../src/errors.ts";
import type { Logger } from "../../src/log.ts";
import type { Source } from "../../src/plugin/plugin.ts";
import type { ProcessSource } from "./process.ts";

/** The processes of one watch group, polled together. */
export class ProcessGroupSource implements Source {
  readonly #members = new Map<number, ProcessSource>();
  readonly #log: Logger | undefined;

  constructor(log?: Logger) {
    this.#log = log;
  }

  /** Adds a process to the group. */
  add(pid: number, source: ProcessSource): void {
    this.#members.get(pid)?.close();
    this.#members.set(pid, source);
  }

  /** Removes (and closes) a process. */
  remove(pid: number): void {
    const s = this.#members.get(pid);
    if (s === undefined) return;
    this.#members.delete(pid);
    s.close();
  }

  /** The pids in the group. */
  get pids(): number[] {
    return [...this.#members.keys()];
  }

  poll(batch: Batch, timestamp: Timestamp): void {
    for (const [pid, s] of this.#members) {
      try {
        s.poll(batch, timestamp);
      } catch (e) {
        if (e instanceof RetryableError) continue;
        if (!(e instanceof NormalStop)) {
          this.#log?.warn(`Process ${pid} is no longer measured: ${messageOf(e)}`);
        }
        this.remove(pid);
      }
    }
  }

  reset(): void {
    for (const s of this.#members.values()) s.reset();
  }

  close(): void {
    for (const pid of [...this.#members.keys()]) this.remove(pid);
  }
}

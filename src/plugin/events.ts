/**
 * The event bus: "start consumer measurement" and "end consumer measurement", published by `exec`, `watch`
 * and plugins (a cgroup watcher), subscribed to by plugins that measure per consumer (perf, procfs).
 *
 * @module
 */
import type { Consumer } from "../model/resources.ts";
import { messageOf } from "../errors.ts";
import { Logger } from "../log.ts";

/**
 * What the kernel accounted for a process that has exited and been reaped (from `getrusage(RUSAGE_CHILDREN)`
 * around the wait): its own CPU time plus that of the descendants it waited for, as `/usr/bin/time` reports
 * it. Its `/proc/<pid>` is already gone, so this is the only record of its last moments.
 */
export interface ProcessExit {
  readonly pid: number;
  /** User CPU time over the whole life of the process, ns. */
  readonly userNs: number;
  /** System CPU time over the whole life of the process, ns. */
  readonly systemNs: number;
  /** Peak resident set size, bytes (the largest among the process and its waited-for descendants). */
  readonly maxRssBytes: number;
  /** Exit code, or 128+N when signal N killed it. */
  readonly exitCode: number;
  /** Wall-clock time at the exit, ns since the epoch. */
  readonly timestamp: bigint;
}

/** The events of the bus and their payloads. */
export interface Events {
  /** Start measuring these consumers (a process started by `exec`, a new cgroup). */
  startConsumerMeasurement: readonly Consumer[];
  /** A measured process has exited: its final CPU accounting, published before `endConsumerMeasurement`. */
  processExit: ProcessExit;
  /** Stop measuring these consumers (the process ended, the cgroup was removed). */
  endConsumerMeasurement: readonly Consumer[];
}

/** An event name. */
export type EventName = keyof Events;

/** A listener; errors it throws are logged and do not reach the publisher. */
export type Listener<E extends EventName> = (payload: Events[E]) => void | Promise<void>;

/**
 * A typed publish/subscribe bus, one per agent.
 *
 * @example
 * ```ts
 * import { EventBus } from "./events.ts";
 * import { Consumer } from "../model/resources.ts";
 * import assert from "node:assert/strict";
 * const bus = new EventBus();
 * const seen: string[] = [];
 * bus.on("startConsumerMeasurement", (cs) => { for (const c of cs) seen.push(c.id); });
 * await bus.publish("startConsumerMeasurement", [Consumer.process(42)]);
 * assert.deepEqual(seen, ["42"]);
 * ```
 */
export class EventBus {
  readonly #listeners: { [E in EventName]: Set<Listener<E>> } = {
    startConsumerMeasurement: new Set(),
    processExit: new Set(),
    endConsumerMeasurement: new Set(),
  };
  readonly #log = new Logger("events");

  /** Subscribes; returns the function that unsubscribes. */
  on<E extends EventName>(event: E, listener: Listener<E>): () => void {
    const set = this.#listeners[event] as Set<Listener<E>>;
    set.add(listener);
    return () => set.delete(listener);
  }

  /** True when someone listens to `event` (to skip building a payload nobody reads). */
  hasListeners(event: EventName): boolean {
    return this.#listeners[event].size > 0;
  }

  /** Calls every listener in subscription order and waits for them; a failing listener is logged. */
  async publish<E extends EventName>(event: E, payload: Events[E]): Promise<void> {
    for (const l of [...this.#listeners[event]] as Listener<E>[]) {
      try {
        await l(payload);
      } catch (e) {
        this.#log.error(`A listener of ${event} failed: ${messageOf(e)}`);
      }
    }
  }

  /** Removes every listener (between two runs of an agent). */
  clear(): void {
    for (const set of Object.values(this.#listeners)) set.clear();
  }
}

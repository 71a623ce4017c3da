/**
 * The event bus: "start consumer measurement" and "end consumer measurement", published by `exec`, `watch`
 * and plugins (a cgroup watcher), subscribed to by plugins that measure per consumer (perf, procfs).
 *
 * The set of events is open: a plugin declares its own with {@linkcode defineEvent} (no change to the core),
 * and other plugins subscribe to the same declaration by importing it.
 *
 * @example
 * ```ts
 * import { defineEvent, EventBus } from "./events.ts";
 * import assert from "node:assert/strict";
 * const gpuAdded = defineEvent<{ index: number }>("nvml/gpuAdded");
 * const bus = new EventBus();
 * const seen: number[] = [];
 * bus.on(gpuAdded, (g) => void seen.push(g.index));
 * await bus.publish(gpuAdded, { index: 2 });
 * assert.deepEqual(seen, [2]);
 * ```
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
  /**
   * Stop measuring these consumers (the process ended, the cgroup was removed). Published after the end poll:
   * the program's last points are already measured. At the end of `exec` the agent's stop may begin while
   * listeners still run, so a listener should release what it holds (close a source) rather than push points.
   */
  endConsumerMeasurement: readonly Consumer[];
}

/** A built-in event's name. */
export type EventName = keyof Events;

/** An event declared by a plugin with {@linkcode defineEvent}: a name and, for the type checker, a payload. */
export interface EventType<T> {
  readonly name: string;
  /** Type-level only. */
  readonly "~payload"?: T;
}

/**
 * Declares an event. Two declarations with the same name are the same event on the bus; name it
 * `<plugin>/<event>` so that plugins do not collide.
 *
 * @param name the event's name
 * @returns the event, to publish and subscribe with
 */
export function defineEvent<T>(name: string): EventType<T> {
  if (name === "" || Object.hasOwn(BUILTIN, name)) {
    throw new RangeError(`Event name "${name}" is empty or built in: name it "<plugin>/<event>"`);
  }
  return Object.freeze({ name });
}

const BUILTIN: Record<EventName, true> = {
  startConsumerMeasurement: true,
  processExit: true,
  endConsumerMeasurement: true,
};

/** A built-in event's name, or a declared event. */
export type AnyEvent = EventName | EventType<unknown>;

/** The payload of an event. */
export type PayloadOf<E> = E extends EventName ? Events[E] : E extends EventType<infer T> ? T : never;

/** A listener of event `E`. */
export type Listener<E extends AnyEvent> = (payload: PayloadOf<E>) => void | Promise<void>;

/** Publish/subscribe between the agent and the plugins. Listeners are called in subscription order. */
export class EventBus {
  readonly #listeners = new Map<string, Set<(payload: unknown) => void | Promise<void>>>();
  readonly #log = new Logger("events");

  /** Subscribes; returns the function that unsubscribes. */
  on<E extends AnyEvent>(event: E, listener: Listener<E>): () => void {
    const key = keyOf(event);
    let set = this.#listeners.get(key);
    if (set === undefined) this.#listeners.set(key, set = new Set());
    const l = listener as (payload: unknown) => void | Promise<void>;
    set.add(l);
    return () => void set.delete(l);
  }

  /** True when someone listens to `event` (to skip building a payload nobody reads). */
  hasListeners(event: AnyEvent): boolean {
    return (this.#listeners.get(keyOf(event))?.size ?? 0) > 0;
  }

  /** Calls every listener in subscription order and waits for them; a failing listener is logged. */
  async publish<E extends AnyEvent>(event: E, payload: PayloadOf<E>): Promise<void> {
    const key = keyOf(event);
    const set = this.#listeners.get(key);
    if (set === undefined) return;
    for (const l of [...set]) {
      try {
        await l(payload);
      } catch (e) {
        this.#log.error(`A listener of ${key} failed: ${messageOf(e)}`);
      }
    }
  }

  /** Removes every listener (between two runs of an agent). */
  clear(): void {
    this.#listeners.clear();
  }
}

function keyOf(event: AnyEvent): string {
  return typeof event === "string" ? event : event.name;
}

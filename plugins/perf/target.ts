/**
 * A perf target's source: its perf groups (one, or one per CPU), read with one `read` each per poll.
 * Shared by the main thread and the sampling Worker (`machine_source.ts`).
 *
 * @module
 */
import type { Batch } from "../../src/model/batch.ts";
import type { MetricId } from "../../src/model/metrics.ts";
import {
  type Consumer,
  Consumer as Consumers,
  type Resource,
  Resource as Resources,
} from "../../src/model/resources.ts";
import { NormalStop } from "../../src/errors.ts";
import type { Source } from "../../src/plugin/plugin.ts";
import { PerfGroup } from "../../src/ffi/perf_event.ts";
import type { ParsedPerfEvent } from "../../src/ffi/perf_events_parse.ts";

/** An event that opens here, with its metric. */
export interface Usable {
  readonly event: ParsedPerfEvent;
  readonly metric: MetricId<"u64">;
}

/** The serialisable config of the whole-machine source, for the sampling Worker. */
export interface MachineSourceConfig {
  readonly events: readonly string[];
  readonly metrics: readonly number[];
  readonly ratio: number;
  readonly cpus: readonly number[];
  /** Scale multiplexed counts (Alumet's `multiplexing_auto_scale`). */
  readonly scale: boolean;
}

/** Options of a target's source. */
export interface TargetOptions {
  /**
   * Scale the counts of a multiplexed group by time_enabled / time_running, as perf does (Alumet's
   * `multiplexing_auto_scale`); false reports the raw counts. Default true.
   */
  readonly scale?: boolean;
}

/** One target: perf groups (one, or one per CPU) and who they describe. */
export class TargetSource implements Source {
  readonly #groups: { group: PerfGroup; resource: Resource }[];
  readonly #consumer: Consumer;
  readonly #events: readonly Usable[];
  readonly #ratio: MetricId<"f64">;
  readonly #ratioAttrs: Readonly<{ events: string }>;
  readonly #contexts: {
    point: { resource: Resource; consumer: Consumer };
    ratio: { resource: Resource; consumer: Consumer; attributes: Readonly<{ events: string }> };
  }[];
  readonly #scale: boolean;
  #closed = false;

  constructor(
    groups: { group: PerfGroup; resource: Resource }[],
    consumer: Consumer,
    events: readonly Usable[],
    ratio: MetricId<"f64">,
    options: TargetOptions = {},
  ) {
    this.#groups = groups;
    this.#scale = options.scale ?? true;
    this.#consumer = consumer;
    this.#events = events;
    this.#ratio = ratio;
    this.#ratioAttrs = Object.freeze({ events: events.map((e) => e.event.name).join(",") });
    // Created once: a poll allocates no context object.
    this.#contexts = groups.map(({ resource }) => ({
      point: { resource, consumer },
      ratio: { resource, consumer, attributes: this.#ratioAttrs },
    }));
  }

  poll(batch: Batch): void {
    if (this.#closed) throw new NormalStop("closed");
    const events = this.#events;
    const contexts = this.#contexts;
    for (let g = 0; g < this.#groups.length; g++) {
      const r = this.#groups[g]!.group.read();
      const ctx = contexts[g]!;
      const exact = !this.#scale || r.timeRunning === r.timeEnabled;
      for (let i = 0; i < events.length; i++) {
        // Unscaled when the counters ran all the time (exact, even beyond 2^53) or scaling is off; scaled
        // otherwise.
        batch.push(events[i]!.metric, exact ? r.counts[i]! : BigInt(Math.round(r.scaled(i) ?? 0)), ctx.point);
      }
      const ratio = r.runningRatio();
      if (ratio !== undefined) batch.push(this.#ratio, ratio, ctx.ratio);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const { group } of this.#groups) group.close();
  }
}

/** The whole machine: one group per CPU (pid -1), points per `cpu_core`. */
export function openMachineSource(
  usable: readonly Usable[],
  ratio: MetricId<"f64">,
  cpus: readonly number[],
  options: TargetOptions = {},
): TargetSource {
  const groups = cpus.map((cpu) => ({
    group: PerfGroup.open(usable.map((u) => u.event), { pid: -1, cpu }),
    resource: Resources.cpuCore(cpu),
  }));
  return new TargetSource(groups, Consumers.localMachine(), usable, ratio, options);
}

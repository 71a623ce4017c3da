/**
 * The default mode of `energy-attribution`: each interval of each energy series is shared among the consumers
 * (processes, cgroups) in proportion to the CPU time they used in that interval, out of the CPU time the
 * machine had (number of CPUs × the interval); GPU energy in proportion to each process's SM utilisation. What
 * is left (idle time, consumers nobody follows, data that never came) goes to the consumer
 * `custom:unattributed`, so that for every interval the points add up to the energy measured.
 *
 * Alignment: a consumer's CPU time is kept as a cumulative function of time, known at its points' timestamps
 * and linear in between; it is read at the energy interval's two ends. An interval is computed once every
 * consumer's data covers its end (or the consumer is known to have ended), or once a bounded wait has passed.
 *
 * @module
 */
import type { Attributes, AttributeValue, Batch } from "../../src/model/batch.ts";
import type { Metric, MetricId } from "../../src/model/metrics.ts";
import { Consumer, type Resource } from "../../src/model/resources.ts";
import type { Timestamp } from "../../src/model/timestamp.ts";
import { PREFIXES } from "../../src/model/units.ts";
import type { ElementContext } from "../../src/plugin/plugin.ts";

/** What is done with the idle share of an interval. */
export type IdlePolicy = "unattributed" | "spread";

/** A consumer view: processes and cgroups are attributed separately (never sum the two). */
export type View = "process" | "cgroup";

/** The consumer that receives what is not attributed. */
export const UNATTRIBUTED: Consumer = Consumer.custom("unattributed", "");

/** Something that logs (the plugin's logger). */
export interface AttributionLog {
  warn(message: string): void;
  debug(message: string): void;
}

/** Options of an {@linkcode EnergyAttributor}. */
export interface AttributorOptions {
  /** The metric the attributed energy is written to (`attributed_energy`, f64 J, delta). */
  readonly output: MetricId<"f64">;
  /** Metrics never read as input (the plugin's own outputs). Default none. */
  readonly ignore?: readonly MetricId[];
  /** Default `"unattributed"`. */
  readonly idle?: IdlePolicy;
  /** Default both. */
  readonly views?: readonly View[];
  /**
   * Number of CPUs; 0 or absent: the number of `cpu_core` resources of the latest `kernel_cpu_time` points,
   * or {@linkcode AttributorOptions.systemCpus} when there are none.
   */
  readonly nCpus?: number;
  /** The system's CPU count, when no `kernel_cpu_time` is seen (a function: read on first need). Default 1. */
  readonly systemCpus?: number | (() => number);
  /** How long an interval waits for late consumer data, ms; absent: automatic (see the README). */
  readonly maxWaitMs?: number;
  /** How far back consumer data is kept, ms. Default 60 000. */
  readonly retentionMs?: number;
  /** Only these energy metrics (names); empty or absent: every energy delta metric. */
  readonly energyMetrics?: readonly string[];
  /** Log a broken conservation invariant once per this many breaks. Default 100. */
  readonly invariantLogEvery?: number;
  /** Wall clock in ms (tests give their own). Default `Date.now`. */
  readonly clock?: () => number;
  readonly log?: AttributionLog;
}

/** What the attributor counted since it started. */
export interface AttributionStats {
  /** Energy intervals attributed. */
  intervals: number;
  /** Intervals computed before every consumer's data had come (the unknown part went to `unattributed`). */
  incompleteIntervals: number;
  /** Consumer points that came after the intervals they belong to were computed. */
  latePoints: number;
  /** Energy points that came out of order (after a later point of their series): all `unattributed`. */
  outOfOrderEnergy: number;
  /** `<domain>_total` points not attributed because the per-socket series are attributed. */
  skippedTotals: number;
  /** Intervals where Σ attributed + unattributed differed from the measured energy by more than 1 %. */
  invariantBreaks: number;
  /** Largest relative conservation error seen. */
  maxConservationError: number;
}

/** Which role a metric plays. */
type Role =
  | { kind: "ignore" }
  | { kind: "energy"; toJoules: number; name: string }
  | { kind: "cpu" } // cpu_time_delta, ns
  | { kind: "memory" } // memory_usage: a tick of its consumer's source
  | { kind: "kernel_cpu" } // kernel_cpu_time, ms
  | { kind: "kernel_tick" } // other kernel gauges: a tick of the kernel source
  | { kind: "sm" }; // nvml_sm_utilization, %

/** One consumer's usage of one domain (the CPUs, or one GPU), cumulative, in seconds of resource time. */
interface Series {
  readonly consumer: Consumer;
  readonly view: View | "machine";
  /** Point timestamps (s, relative to the attributor's origin), increasing. */
  ts: number[];
  /** Cumulative usage at each timestamp. */
  cum: number[];
  /** Last spacing between two points, s (0 when unknown). */
  spacing: number;
  /**
   * Largest lag seen between a point's timestamp and the data clock when it was read, s: how late this
   * series' points come (about its source's flush interval when the source flushes less often than it polls).
   */
  lag: number;
  /** How many reads (ingest calls) brought its points, and the latest: one read tells nothing of its lag. */
  reads: number;
  lastRead: number;
}

/** The consumers of one domain in one view, and the ticks (timestamps) their sources produced. */
interface Group {
  readonly series: Map<string, Series>;
  /** Distinct timestamps seen, increasing, with the series present at each (and the read that brought it). */
  ticks: number[];
  members: Map<number, Map<Series, number>>;
  /** Largest spacing seen between two ticks, s. */
  spacing: number;
}

/** One energy series (metric, resource, attributes). */
interface EnergySeries {
  readonly metric: MetricId;
  readonly name: string;
  readonly resource: Resource;
  readonly attributes: Attributes;
  readonly gpu: boolean;
  lastT: number;
  spacing: number;
  /** Output attributes per view. */
  readonly out: Map<string, Attributes>;
}

/** An energy interval waiting to be attributed. */
interface Pending {
  readonly series: EnergySeries;
  /** Start, s; NaN when unknown (the series' first point). */
  readonly e0: number;
  readonly e1: number;
  readonly ts: Timestamp;
  readonly joules: number;
  readonly arrived: number;
  /** Out of order: attributed entirely to `unattributed`. */
  readonly outOfOrder: boolean;
}

/** The shortest automatic max_wait, ms: Alumet's sources flush every 4 s at most by default, plus a margin. */
export const MIN_WAIT_MS = 6000;

const BUSY_STATES = new Set(["user", "nice", "system", "irq", "softirq"]);

/** The factor from an energy unit to joules, or undefined when the unit is not an energy. */
export function joulesPerUnit(metric: Metric): number | undefined {
  const u = metric.unit;
  if (u.custom) return undefined;
  const scale = 10 ** PREFIXES[u.prefix].exponent;
  if (u.base === "J") return scale;
  if (u.base === "W.h") return 3600 * scale;
  return undefined;
}

/**
 * Shares energy among consumers, interval by interval. {@linkcode EnergyAttributor.ingest} reads a batch;
 * {@linkcode EnergyAttributor.emit} appends the points of the intervals that are ready.
 *
 * @example
 * ```ts
 * import { EnergyAttributor } from "./attribution.ts";
 * import { Batch } from "../../src/model/batch.ts";
 * import { MetricRegistry } from "../../src/model/metrics.ts";
 * import { Consumer } from "../../src/model/resources.ts";
 * import { unit } from "../../src/model/units.ts";
 * import assert from "node:assert/strict";
 * const r = new MetricRegistry();
 * const energy = r.register("t", { name: "e", unit: unit("J"), valueType: "f64", kind: "delta" });
 * const cpu = r.register("t", { name: "cpu_time_delta", unit: unit("s", "nano"), valueType: "u64", kind: "delta" });
 * const out = r.register("t", { name: "attributed_energy", unit: unit("J"), valueType: "f64", kind: "delta" });
 * const a = new EnergyAttributor({ output: out, nCpus: 1, maxWaitMs: 1e9 });
 * const b = new Batch();
 * const p = { consumer: Consumer.process(7), attributes: { kind: "user" } };
 * b.push(cpu, 0, { ...p, timestamp: 0n });
 * b.push(cpu, 250_000_000, { ...p, timestamp: 1_000_000_000n });
 * b.push(energy, 10, { timestamp: 0n });
 * b.push(energy, 10, { timestamp: 1_000_000_000n });
 * a.ingest(b, { metric: (id) => r.get(id) });
 * const got = new Batch();
 * a.emit(got, true);
 * const shares = [...got].filter((x) => x.timestamp === 1_000_000_000n).map((x) => [x.consumer.id || x.consumer.kind, x.value]);
 * assert.deepEqual(shares, [["7", 2.5], ["unattributed", 7.5]]);
 * ```
 */
export class EnergyAttributor {
  readonly #o: Required<Omit<AttributorOptions, "maxWaitMs" | "log">> & { maxWaitMs: number | undefined };
  #systemCpus: number | undefined;
  readonly #log: AttributionLog | undefined;
  readonly #roles = new Map<number, Role>();
  readonly #groups = new Map<string, Group>();
  readonly #energy = new Map<string, EnergySeries>();
  /** Per metric id, the domains of per-socket series seen (to skip `<domain>_total`). */
  readonly #socketDomains = new Map<number, Set<string>>();
  #pending: Pending[] = [];
  #origin: bigint | undefined;
  /** Latest data timestamp seen, s. */
  #dataClock = -Infinity;
  /** Per group key, the end of the latest interval computed, s. */
  readonly #done = new Map<string, number>();
  #kernelCores = new Set<string>();
  #kernelT = -Infinity;
  #maxSpacing = 0;
  #maxLagMs = 0;
  /** Largest {@linkcode Series.lag} seen, s. */
  #maxSeriesLag = 0;
  /** Number of the current {@linkcode EnergyAttributor.ingest} call. */
  #read = 0;
  #breaksSinceLog = 0;
  /**
   * Consumers announced ("start consumer measurement": the exec/watch program) whose data has not come yet, by
   * view and consumer: intervals wait for them (up to max_wait), as for a series that has not ended.
   */
  readonly #expected = new Map<string, Consumer>();
  readonly #attrKeys = new WeakMap<Attributes, string>();
  readonly stats: AttributionStats = {
    intervals: 0,
    incompleteIntervals: 0,
    latePoints: 0,
    outOfOrderEnergy: 0,
    skippedTotals: 0,
    invariantBreaks: 0,
    maxConservationError: 0,
  };

  constructor(options: AttributorOptions) {
    this.#o = {
      output: options.output,
      ignore: options.ignore ?? [],
      idle: options.idle ?? "unattributed",
      views: options.views ?? ["process", "cgroup"],
      nCpus: options.nCpus ?? 0,
      systemCpus: options.systemCpus ?? 1,
      maxWaitMs: options.maxWaitMs,
      retentionMs: options.retentionMs ?? 60_000,
      energyMetrics: options.energyMetrics ?? [],
      invariantLogEvery: options.invariantLogEvery ?? 100,
      clock: options.clock ?? Date.now,
    };
    this.#log = options.log;
  }

  /** The number of CPUs the CPU-time shares are computed against. */
  get nCpus(): number {
    if (this.#o.nCpus > 0) return this.#o.nCpus;
    if (this.#kernelCores.size > 0) return this.#kernelCores.size;
    const sys = this.#o.systemCpus;
    return this.#systemCpus ??= typeof sys === "function" ? sys() : sys;
  }

  /** Where the CPU count comes from: `config`, `kernel_cpu_time` or `system`. */
  get nCpusSource(): "config" | "kernel_cpu_time" | "system" {
    return this.#o.nCpus > 0 ? "config" : this.#kernelCores.size > 0 ? "kernel_cpu_time" : "system";
  }

  /** The bounded wait in use, ms. */
  get maxWaitMs(): number {
    if (this.#o.maxWaitMs !== undefined) return this.#o.maxWaitMs;
    // Long enough for the slowest source's next flush: its lag plus two of the longest poll periods, and at
    // least Alumet's longest default flush interval (4 s) with a margin, for sources not seen flushing yet.
    return Math.max(
      MIN_WAIT_MS,
      2 * this.#maxSpacing * 1000,
      2 * this.#maxLagMs,
      (this.#maxSeriesLag + 2 * this.#maxSpacing) * 1000,
    );
  }

  /**
   * Announces consumers whose data is coming (the program `exec` or `watch` measures): until a first point of
   * theirs is read, CPU energy intervals wait for them (up to max_wait) rather than being shared without them.
   */
  expect(consumers: readonly Consumer[]): void {
    for (const c of consumers) {
      const view = c.kind === "process" ? "process" : c.kind === "cgroup" ? "cgroup" : undefined;
      if (view === undefined || !this.#o.views.includes(view)) continue;
      const key = `${view}|cpu\u0000${c.kind}\u0000${c.id}`;
      if (!this.#groups.get(`${view}|cpu`)?.series.has(`${c.kind}\u0000${c.id}`)) this.#expected.set(key, c);
    }
  }

  /** Energy intervals waiting for consumer data. */
  get pending(): number {
    return this.#pending.length;
  }

  #role(id: MetricId, ctx: ElementContext): Role {
    let r = this.#roles.get(id);
    if (r !== undefined) return r;
    r = { kind: "ignore" };
    if (id !== this.#o.output && !this.#o.ignore.includes(id)) {
      const m = ctx.metric(id);
      const toJ = joulesPerUnit(m);
      if (m.kind === "delta" && toJ !== undefined) {
        const wanted = this.#o.energyMetrics;
        if (wanted.length === 0 || wanted.includes(m.name)) {
          r = { kind: "energy", toJoules: toJ, name: m.name };
        }
      } else if (m.name === "cpu_time_delta") r = { kind: "cpu" };
      else if (m.name === "memory_usage") r = { kind: "memory" };
      else if (m.name === "kernel_cpu_time") r = { kind: "kernel_cpu" };
      else if (m.name === "kernel_n_procs_running" || m.name === "kernel_context_switches") {
        r = { kind: "kernel_tick" };
      } else if (m.name === "nvml_sm_utilization") r = { kind: "sm" };
    }
    this.#roles.set(id, r);
    return r;
  }

  #time(ts: Timestamp): number {
    this.#origin ??= ts;
    return Number(ts - this.#origin) / 1e9;
  }

  #attrKey(a: Attributes): string {
    let k = this.#attrKeys.get(a);
    if (k === undefined) {
      k = JSON.stringify(Object.keys(a).sort().map((x) => [x, String(a[x])]));
      this.#attrKeys.set(a, k);
    }
    return k;
  }

  #group(key: string): Group {
    let g = this.#groups.get(key);
    if (g === undefined) {
      g = { series: new Map(), ticks: [], members: new Map(), spacing: 0 };
      this.#groups.set(key, g);
    }
    return g;
  }

  /** Records a tick of a group (a timestamp its source produced), with the series present at it. */
  #tick(g: Group, t: number, s: Series | undefined): void {
    const ticks = g.ticks;
    const last = ticks.length > 0 ? ticks[ticks.length - 1]! : undefined;
    if (last === undefined || t > last) {
      if (last !== undefined) g.spacing = Math.max(g.spacing, t - last);
      ticks.push(t);
      g.members.set(t, new Map());
    } else if (t !== last && !g.members.has(t)) {
      const i = upperBound(ticks, t);
      ticks.splice(i, 0, t);
      g.members.set(t, new Map());
    }
    if (s !== undefined) g.members.get(t)!.set(s, this.#read);
  }

  /** The latest tick of the group strictly before `t`, or undefined. */
  #tickBefore(g: Group, t: number): number | undefined {
    const i = lowerBound(g.ticks, t) - 1;
    return i >= 0 ? g.ticks[i] : undefined;
  }

  #series(g: Group, view: View | "machine", consumer: Consumer): Series {
    const key = `${consumer.kind}\u0000${consumer.id}`;
    let s = g.series.get(key);
    if (s === undefined) {
      s = { consumer, view, ts: [], cum: [], spacing: 0, lag: 0, reads: 0, lastRead: -1 };
      g.series.set(key, s);
      if (this.#expected.size > 0) this.#expected.delete(`${view}|cpu\u0000${key}`);
    }
    return s;
  }

  /**
   * Adds usage to a series: `amount` (s of resource time) spent over (start, t]. A first point starts at the
   * group's previous tick (its source's previous poll) when known, else it is a baseline.
   */
  #add(g: Group, groupKey: string, s: Series, t: number, amount: number, gauge?: number): void {
    let n = s.ts.length;
    if (n === 1 && t === s.ts[0] && s.cum[0] === 0 && (amount > 0 || gauge !== undefined)) {
      // Only a tick so far (memory_usage of the same poll): this is its first usage, which may start earlier.
      s.ts.pop();
      s.cum.pop();
      n = 0;
    }
    if (n === 0) {
      const start = this.#tickBefore(g, t);
      if (gauge !== undefined) amount = start === undefined ? 0 : gauge * (t - start);
      if (start !== undefined && amount > 0) {
        s.ts.push(start);
        s.cum.push(0);
      }
      s.ts.push(t);
      s.cum.push(amount);
    } else {
      const last = s.ts[n - 1]!;
      if (gauge !== undefined) amount = t > last ? gauge * (t - last) : 0;
      if (t === last) s.cum[n - 1]! += amount;
      else if (t > last) {
        s.spacing = t - last;
        if (s.spacing > this.#maxSpacing) this.#maxSpacing = s.spacing;
        s.ts.push(t);
        s.cum.push(s.cum[n - 1]! + amount);
      } else {
        // Out of order: insert, and shift what follows.
        const i = lowerBound(s.ts, t);
        if (s.ts[i] === t) s.cum[i]! += amount;
        else {
          s.ts.splice(i, 0, t);
          s.cum.splice(i, 0, (i > 0 ? s.cum[i - 1]! : 0) + amount);
        }
        for (let j = i + 1; j < s.ts.length; j++) s.cum[j]! += amount;
      }
    }
    if (amount > 0 && t <= (this.#done.get(groupKey) ?? -Infinity)) this.stats.latePoints++;
    // The data clock already holds this read's latest timestamp (see ingest): how far behind this point came.
    const lag = this.#dataClock - t;
    if (s.lastRead !== this.#read) {
      s.lastRead = this.#read;
      s.reads++;
    }
    if (lag > s.lag) {
      s.lag = lag;
      if (lag > this.#maxSeriesLag) this.#maxSeriesLag = lag;
    }
    this.#tick(g, t, s);
  }

  /** Reads a batch: energy points become pending intervals, consumer points extend the usage series. */
  ingest(batch: Batch, ctx: ElementContext): void {
    const n = batch.length;
    if (n === 0) return;
    const views = this.#o.views;
    this.#read++;
    // First the data clock (the latest timestamp read so far, this batch included), so that each consumer
    // point's lag behind it is known: a source that flushes every 4 polls brings points up to ~4 s old.
    let minTs: Timestamp | undefined;
    for (let i = 0; i < n; i++) {
      if (this.#role(batch.metricAt(i), ctx).kind === "ignore") continue;
      const ts = batch.timestampAt(i);
      if (minTs === undefined || ts < minTs) minTs = ts;
      const t = this.#time(ts);
      if (t > this.#dataClock) this.#dataClock = t;
    }
    if (minTs === undefined) return;
    const energyRows: number[] = [];
    for (let i = 0; i < n; i++) {
      const role = this.#role(batch.metricAt(i), ctx);
      if (role.kind === "ignore") continue;
      const t = this.#time(batch.timestampAt(i));
      switch (role.kind) {
        case "energy": {
          energyRows.push(i);
          const r = batch.resourceAt(i);
          const d = batch.attributesAt(i)["domain"];
          if (typeof d === "string" && r.kind !== "local_machine") {
            let set = this.#socketDomains.get(batch.metricAt(i));
            if (set === undefined) this.#socketDomains.set(batch.metricAt(i), set = new Set());
            set.add(d);
          }
          break;
        }
        case "cpu": {
          const c = batch.consumerAt(i);
          const view = c.kind === "process" ? "process" : c.kind === "cgroup" ? "cgroup" : undefined;
          if (view === undefined || !views.includes(view)) break;
          const kind = batch.attributesAt(i)["kind"];
          // Processes: user + system (guest time is already in user); cgroups: total.
          if (view === "process" ? kind !== "user" && kind !== "system" : kind !== "total") break;
          const key = `${view}|cpu`;
          const g = this.#group(key);
          this.#add(g, key, this.#series(g, view, c), t, Number(batch.valueAt(i)) / 1e9);
          break;
        }
        case "memory": {
          const c = batch.consumerAt(i);
          const view = c.kind === "process" ? "process" : c.kind === "cgroup" ? "cgroup" : undefined;
          if (view === undefined || !views.includes(view)) break;
          const key = `${view}|cpu`;
          const g = this.#group(key);
          this.#add(g, key, this.#series(g, view, c), t, 0);
          break;
        }
        case "kernel_cpu": {
          const r = batch.resourceAt(i);
          if (r.kind === "cpu_core") {
            if (t > this.#kernelT) {
              this.#kernelT = t;
              this.#kernelCores = new Set();
            }
            if (t === this.#kernelT) this.#kernelCores.add(r.id);
          } else if (r.kind === "local_machine") {
            const state = batch.attributesAt(i)["cpu_state"];
            const g = this.#group("machine|cpu");
            const s = this.#series(g, "machine", batch.consumerAt(i));
            const busy = typeof state === "string" && BUSY_STATES.has(state);
            this.#add(g, "machine|cpu", s, t, busy ? Number(batch.valueAt(i)) / 1e3 : 0);
          }
          break;
        }
        case "kernel_tick": {
          const g = this.#group("machine|cpu");
          this.#add(g, "machine|cpu", this.#series(g, "machine", Consumer.localMachine()), t, 0);
          break;
        }
        case "sm": {
          const c = batch.consumerAt(i);
          if (c.kind !== "process" || !views.includes("process")) break;
          const key = `process|gpu:${batch.resourceAt(i).id}`;
          const g = this.#group(key);
          this.#add(g, key, this.#series(g, "process", c), t, 0, Number(batch.valueAt(i)) / 100);
          break;
        }
      }
    }
    for (const i of energyRows) this.#ingestEnergy(batch, i);
    // The oldest point's lag behind the wall clock (timestamps are wall-clock ns): at least its source's flush.
    const lag = this.#o.clock() - Number(minTs / 1_000_000n);
    if (lag > this.#maxLagMs && lag < 600_000) this.#maxLagMs = lag;
  }

  #ingestEnergy(batch: Batch, i: number): void {
    const metric = batch.metricAt(i);
    const role = this.#roles.get(metric) as Extract<Role, { kind: "energy" }>;
    const resource = batch.resourceAt(i);
    const attributes = batch.attributesAt(i);
    const domain = attributes["domain"];
    if (resource.kind === "local_machine" && typeof domain === "string" && domain.endsWith("_total")) {
      if (this.#socketDomains.get(metric)?.has(domain.slice(0, -"_total".length))) {
        this.stats.skippedTotals++;
        return;
      }
    }
    const key = `${metric}|${resource.kind}|${resource.id}|${this.#attrKey(attributes)}`;
    let s = this.#energy.get(key);
    if (s === undefined) {
      s = {
        metric,
        name: role.name,
        resource,
        attributes,
        gpu: resource.kind === "gpu",
        lastT: NaN,
        spacing: 0,
        out: new Map(),
      };
      this.#energy.set(key, s);
    }
    const ts = batch.timestampAt(i);
    const t = this.#time(ts);
    const joules = Number(batch.valueAt(i)) * role.toJoules;
    const arrived = this.#o.clock();
    if (s.gpu) {
      const gk = `process|gpu:${resource.id}`;
      this.#tick(this.#group(gk), t, undefined);
    }
    if (!Number.isNaN(s.lastT) && t <= s.lastT) {
      this.stats.outOfOrderEnergy++;
      this.#pending.push({ series: s, e0: t, e1: t, ts, joules, arrived, outOfOrder: true });
      return;
    }
    const e0 = s.lastT;
    if (!Number.isNaN(e0)) {
      s.spacing = t - e0;
      if (s.spacing > this.#maxSpacing) this.#maxSpacing = s.spacing;
    }
    s.lastT = t;
    this.#pending.push({ series: s, e0, e1: t, ts, joules, arrived, outOfOrder: false });
  }

  /** The groups (view, domain) an interval of this series is shared in. */
  #groupsFor(s: EnergySeries): [View, string][] {
    if (s.gpu) return [["process", `process|gpu:${s.resource.id}`]];
    const out: [View, string][] = [];
    for (const v of this.#o.views) if (this.#groups.has(`${v}|cpu`)) out.push([v, `${v}|cpu`]);
    if (out.length === 0) out.push([this.#o.views[0] ?? "process", `${this.#o.views[0] ?? "process"}|cpu`]);
    return out;
  }

  /**
   * True when the series is known to have no usage after its last point before `t`, judged by its own
   * source's cadence: other sources of the group (polling or flushing at other rates) moving on say nothing
   * about it.
   */
  #ended(g: Group, s: Series, t: number, gpu: boolean): boolean {
    const last = s.ts[s.ts.length - 1]!;
    if (last >= t) return false;
    const frontier = g.ticks[g.ticks.length - 1] ?? -Infinity;
    if (frontier <= last) return false;
    // GPU: the source pushes a process's utilisation only when it had samples, at every energy tick.
    if (gpu) return true;
    // A peer of the same poll (same timestamp, same read: the same source) was seen again later: their source
    // polled again, and this one was absent.
    const peers = g.members.get(last);
    const read = peers?.get(s);
    if (peers !== undefined && read !== undefined) {
      for (const [p, r] of peers) if (p !== s && r === read && p.ts[p.ts.length - 1]! > last) return true;
    }
    // Otherwise: its next point, one period (1.5 for jitter) later, would have come by now, points of its
    // source coming as late as they have been seen to come. Until two reads have brought its points, how late
    // they come is not known (a source's first poll is often flushed at once, the next ones 4 at a time): it
    // is waited for, up to max_wait.
    if (s.reads < 2) return false;
    const spacing = s.spacing > 0 ? s.spacing : Math.max(g.spacing, this.#maxSpacing);
    return spacing > 0 && this.#dataClock >= last + 1.5 * spacing + s.lag;
  }

  /**
   * `ready` when every consumer's usage is known at the interval's end; `waiting` when some is not yet;
   * `nodata` when no consumer data of its domain has been seen at all (yet).
   */
  #ready(p: Pending): "ready" | "waiting" | "nodata" {
    if (p.outOfOrder) return "ready";
    let any = false;
    for (const [, key] of this.#groupsFor(p.series)) {
      if (!p.series.gpu && this.#expected.size > 0) {
        // An announced consumer (the program) has no data yet: its source has not flushed.
        for (const k of this.#expected.keys()) {
          if (k.startsWith(`${key}\u0000`)) return this.#groups.has(key) ? "waiting" : "nodata";
        }
      }
      const g = this.#groups.get(key);
      if (g === undefined) continue;
      any = true;
      const frontier = g.ticks[g.ticks.length - 1] ?? -Infinity;
      if (frontier < p.e1) return "waiting";
      for (const s of g.series.values()) {
        if (s.ts[s.ts.length - 1]! < p.e1 && !this.#ended(g, s, p.e1, p.series.gpu)) return "waiting";
      }
    }
    if (this.#o.idle === "spread" && !p.series.gpu) {
      const m = this.#groups.get("machine|cpu");
      if (m !== undefined && (m.ticks[m.ticks.length - 1] ?? -Infinity) < p.e1) return "waiting";
    }
    return any ? "ready" : "nodata";
  }

  /**
   * Computes the intervals that are ready (every consumer known at their end, or waited for long enough; all
   * of them when `force`) and appends their points to `out`.
   *
   * @param out the batch that receives `attributed_energy` points
   * @param force compute every pending interval now (at shutdown)
   * @returns the number of intervals computed
   */
  emit(out: Batch, force = false): number {
    if (this.#pending.length === 0) return 0;
    const now = this.#o.clock();
    const wait = this.maxWaitMs;
    const keep: Pending[] = [];
    let done = 0;
    // Oldest first, so that a group's "done" mark only moves forward.
    this.#pending.sort((a, b) => a.e1 - b.e1);
    for (const p of this.#pending) {
      const state = this.#ready(p);
      if (state !== "ready" && !force && now - p.arrived < wait) {
        keep.push(p);
        continue;
      }
      // No consumer data at all (no procfs, cgroups or nvml process source): nothing was late.
      if (state === "waiting") this.stats.incompleteIntervals++;
      this.#compute(p, out);
      done++;
    }
    this.#pending = keep;
    this.#prune();
    return done;
  }

  #compute(p: Pending, out: Batch): void {
    const s = p.series;
    this.stats.intervals++;
    let e0 = p.e0;
    if (Number.isNaN(e0)) {
      // The series' first point: its start was the source's previous poll, never seen. Assume one period.
      const spacing = s.spacing > 0 ? s.spacing : this.#maxSpacing;
      e0 = spacing > 0 ? p.e1 - spacing : p.e1;
    }
    const dt = p.e1 - e0;
    for (const [view, key] of this.#groupsFor(s)) {
      const attrs = this.#outAttrs(s, view);
      const g = this.#groups.get(key);
      const usage: [Consumer, number][] = [];
      let sum = 0;
      if (!p.outOfOrder && dt > 0 && g !== undefined) {
        if (view === "cgroup") {
          for (const [c, u] of exclusiveCgroups(g, e0, p.e1)) {
            usage.push([c, u]);
            sum += u;
          }
        } else {
          for (const se of g.series.values()) {
            const u = Math.max(0, valueAt(se, p.e1) - valueAt(se, e0));
            if (u > 0) {
              usage.push([se.consumer, u]);
              sum += u;
            }
          }
        }
        const prev = this.#done.get(key) ?? -Infinity;
        if (p.e1 > prev) this.#done.set(key, p.e1);
      }
      const available = (s.gpu ? 1 : this.nCpus) * dt;
      let denominator = Math.max(available, sum);
      const estimated = !s.gpu && s.attributes["estimated"] === true;
      if (estimated) {
        // An estimate (energy-estimation-tdp: CPU time × watts per CPU) has no idle power: the estimate of an
        // idle state is nobody's use (all unattributed), and that of the busy states is shared by busy time, so
        // that a consumer gets its own CPU time × watts per CPU whatever the rest of the machine does.
        const state = s.attributes["cpu_state"];
        if (typeof state === "string" && !BUSY_STATES.has(state)) {
          usage.length = 0;
          sum = 0;
        } else {
          const busy = this.#machineBusy(e0, p.e1);
          if (busy !== undefined) denominator = Math.max(sum, busy);
        }
      } else if (this.#o.idle === "spread" && sum > 0) {
        // The idle share (available − busy) goes to the consumers, in proportion to their usage; busy time of
        // consumers nobody follows (known from kernel_cpu_time) stays unattributed. Each consumer gets
        // E × (u/available) × (1 + idle/Σu) = E × u / (available × Σu / (Σu + idle)).
        const busy = Math.max(sum, (s.gpu ? undefined : this.#machineBusy(e0, p.e1)) ?? sum);
        const idle = Math.max(0, available - busy);
        denominator = Math.max(sum, available * sum / (sum + idle));
      }
      let attributed = 0;
      if (denominator > 0 && p.joules !== 0) {
        for (const [consumer, u] of usage) {
          const j = p.joules * u / denominator;
          attributed += j;
          out.push(this.#o.output, j, { timestamp: p.ts, resource: s.resource, consumer, attributes: attrs });
        }
      }
      let rest = p.joules - attributed;
      // The shares add up to at most the measured energy, up to floating-point rounding (-3.55e-15 J was seen):
      // such a remainder is 0, never a negative energy.
      if (rest < 0 && p.joules >= 0 && -rest <= 1e-9 * p.joules) rest = 0;
      out.push(this.#o.output, rest, {
        timestamp: p.ts,
        resource: s.resource,
        consumer: UNATTRIBUTED,
        attributes: attrs,
      });
      this.#check(p, view, attributed, rest);
    }
  }

  /**
   * The machine's busy CPU time over [t0, t1] (from `kernel_cpu_time`), s; undefined when not known. A series
   * that starts within [t0, t1] gives the busy time from its start (an energy series' first interval is a
   * guess: one poll period before its first point).
   */
  #machineBusy(t0: number, t1: number): number | undefined {
    const m = this.#groups.get("machine|cpu")?.series.get(`local_machine\u0000`);
    if (m === undefined || m.ts.length === 0 || m.ts[0]! >= t1) return undefined;
    return Math.max(0, valueAt(m, t1) - valueAt(m, t0));
  }

  /** The conservation invariant: Σ attributed + unattributed = measured (1 %), nothing negative. */
  #check(p: Pending, view: View, attributed: number, rest: number): void {
    const measured = p.joules;
    const scale = Math.max(Math.abs(measured), 1e-12);
    const error = Math.max(
      Math.abs(attributed + rest - measured) / scale,
      measured >= 0 ? Math.max(0, -rest) / scale : 0,
    );
    if (!(error <= 0.01)) {
      this.stats.invariantBreaks++;
      if (error > this.stats.maxConservationError || Number.isNaN(error)) {
        this.stats.maxConservationError = Number.isNaN(error) ? Infinity : error;
      }
      if (this.#breaksSinceLog++ % this.#o.invariantLogEvery === 0) {
        this.#log?.warn(
          `Conservation broken for ${p.series.name} on ${p.series.resource.kind}/${p.series.resource.id} ` +
            `(${view} view): measured ${measured} J, attributed ${attributed} J + unattributed ${rest} J ` +
            `(error ${
              (error * 100).toFixed(3)
            } %); ${this.stats.invariantBreaks} breaks so far (logged once ` +
            `per ${this.#o.invariantLogEvery})`,
        );
      }
    } else if (error > this.stats.maxConservationError) this.stats.maxConservationError = error;
  }

  #outAttrs(s: EnergySeries, view: View): Attributes {
    let a = s.out.get(view);
    if (a === undefined) {
      const out: Record<string, AttributeValue> = { ...s.attributes };
      out["source_metric"] = s.name;
      out["method"] = s.gpu ? "gpu_sm_share" : "cpu_time_share";
      out["view"] = view;
      if (s.attributes["estimated"] === true) out["estimated"] = true;
      a = Object.freeze(out);
      s.out.set(view, a);
    }
    return a;
  }

  /** Drops consumer data older than the retention (keeping one point before it) and series long gone. */
  #prune(): void {
    let horizon = this.#dataClock - this.#o.retentionMs / 1000;
    for (const p of this.#pending) if (!Number.isNaN(p.e0) && p.e0 < horizon) horizon = p.e0;
    if (!Number.isFinite(horizon)) return;
    for (const g of this.#groups.values()) {
      for (const [key, s] of g.series) {
        const n = s.ts.length;
        if (s.ts[n - 1]! < horizon) {
          g.series.delete(key);
          continue;
        }
        const i = lowerBound(s.ts, horizon) - 1; // the last point before the horizon stays
        if (i > 0) {
          s.ts.splice(0, i);
          s.cum.splice(0, i);
        }
      }
      const j = lowerBound(g.ticks, horizon) - 1;
      if (j > 0) {
        for (const t of g.ticks.slice(0, j)) g.members.delete(t);
        g.ticks.splice(0, j);
      }
    }
  }
}

/** The cumulative usage of a series at `t` (linear between points, flat outside them). */
function valueAt(s: Series, t: number): number {
  const ts = s.ts;
  const n = ts.length;
  if (n === 0 || t <= ts[0]!) return n === 0 ? 0 : s.cum[0]!;
  if (t >= ts[n - 1]!) return s.cum[n - 1]!;
  const i = upperBound(ts, t); // ts[i-1] <= t < ts[i]
  const t0 = ts[i - 1]!, t1 = ts[i]!;
  const c0 = s.cum[i - 1]!, c1 = s.cum[i]!;
  return c0 + (c1 - c0) * (t - t0) / (t1 - t0);
}

/**
 * Cgroups nest, and a parent's CPU time includes its children's: each cgroup gets its own time minus that of
 * its measured descendants (its nearest ones), so that the points never count a second twice.
 */
function exclusiveCgroups(g: Group, e0: number, e1: number): [Consumer, number][] {
  const usage = new Map<string, { c: Consumer; u: number }>();
  for (const s of g.series.values()) {
    const u = Math.max(0, valueAt(s, e1) - valueAt(s, e0));
    usage.set(s.consumer.id, { c: s.consumer, u });
  }
  const own = new Map<string, number>();
  for (const [path, x] of usage) own.set(path, x.u);
  for (const [path, x] of usage) {
    const parent = nearestAncestor(path, usage);
    if (parent !== undefined) own.set(parent, own.get(parent)! - x.u);
  }
  const out: [Consumer, number][] = [];
  for (const [path, x] of usage) {
    const u = Math.max(0, own.get(path)!);
    if (u > 0) out.push([x.c, u]);
  }
  return out;
}

function nearestAncestor(path: string, known: Map<string, unknown>): string | undefined {
  let p = path;
  while (p.length > 1) {
    const cut = p.lastIndexOf("/");
    p = cut <= 0 ? "/" : p.slice(0, cut);
    if (known.has(p)) return p;
  }
  return undefined;
}

/** First index with a[i] >= x. */
function lowerBound(a: readonly number[], x: number): number {
  let lo = 0, hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** First index with a[i] > x. */
function upperBound(a: readonly number[], x: number): number {
  let lo = 0, hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

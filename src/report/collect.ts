/**
 * {@linkcode Collector}: what the report keeps of a run while the file streams by — one entry per series
 * (metric, resource, consumer, attributes) with its count, sum, time span and a downsampled copy for the charts
 * — and the malformed rows. Readers (`csv.ts`, `sqlite.ts`) look a series up by a key of their own, describe it
 * once when first seen, then add its points.
 *
 * @module
 */
import { Sampler } from "./sampler.ts";
import type { MetricInfo } from "./units.ts";

/** What identifies a series, as the file has it. */
export interface SeriesDesc {
  readonly metric: MetricInfo;
  readonly resourceKind: string;
  readonly resourceId: string;
  readonly consumerKind: string;
  readonly consumerId: string;
  /** Every attribute, as text. */
  readonly attributes: Readonly<Record<string, string>>;
}

/** A series and what was gathered of it. */
export interface Series extends SeriesDesc {
  /** Points read (finite or not). */
  count: number;
  /** Sum of the finite values, converted (`metric.factor`): joules for energy. */
  sum: number;
  /** The first point's converted value (energy before the first interval), NaN before any. */
  first: number;
  /** First and last timestamps, seconds since 1970. */
  t0: number;
  t1: number;
  /** The previous timestamp drawn (power = energy ÷ interval since it). */
  prevT: number;
  /** An energy series' joules at its latest timestamp, not drawn yet (points of merged states add up). */
  pendT: number;
  pendV: number;
  /**
   * The busy CPU states (`user`, `system`…) of an energy series split by `cpu_state` that this series merges
   * (its attribute `cpu_state` is then `busy`); undefined for the others.
   */
  readonly states: string[] | undefined;
  /**
   * True for an energy or attributed_energy series of an idle CPU state (`idle`, `iowait`, `steal`, `guest`…):
   * counted in the points per metric, left out of the energy (an estimate for idle time is not the machine's
   * use).
   */
  readonly idle: boolean;
  /** The downsampled chart line (power in W for energy, %, bytes…); undefined for a series not charted. */
  sampler: Sampler | undefined;
  /**
   * Every point, kept for the conservation check of attributions: the energy series' (time, joules) and the
   * `unattributed` consumer's times (one point per attributed interval); undefined for the other series.
   */
  log: PointLog | undefined;
}

/** The points of a series, kept whole: times (seconds since 1970) and converted values, 16 bytes a point. */
export class PointLog {
  t = new Float64Array(16);
  v = new Float64Array(16);
  n = 0;

  push(t: number, v: number): void {
    if (this.n === this.t.length) {
      const t2 = new Float64Array(this.n * 2), v2 = new Float64Array(this.n * 2);
      t2.set(this.t);
      v2.set(this.v);
      this.t = t2;
      this.v = v2;
    }
    this.t[this.n] = t;
    this.v[this.n++] = v;
  }
}

/** A row that was skipped, for the page. */
export interface Malformed {
  /** 1-based line number (csv) or row number (sqlite). */
  readonly line: number;
  readonly reason: string;
  /** The row's start, at most 160 characters. */
  readonly text: string;
}

/**
 * The CPU states whose time is the machine's busy time (`/proc/stat`), as exec's summary
 * (`BUSY_CPU_STATES` of src/agent/summary.ts) and energy-estimation-tdp (`ACTIVE_CPU_STATES`) count them:
 * `idle` and `iowait` are idle, `steal` is other machines' time, `guest` and `guest_nice` are already in
 * `user` and `nice`.
 */
export const BUSY_CPU_STATES: ReadonlySet<string> = new Set(["user", "nice", "system", "irq", "softirq"]);

/** How many malformed rows are shown as examples. */
const EXAMPLES = 5;

/** Gathers the series of a run (see the module doc). */
export class Collector {
  readonly series: Series[] = [];
  readonly #byKey = new Map<string, Series | null>();
  /** The merged busy-state series, by their description without `cpu_state`. */
  readonly #busy = new Map<string, Series>();
  readonly #buckets: number;
  /** Rows read, malformed ones included. */
  rows = 0;
  malformedCount = 0;
  readonly malformedExamples: Malformed[] = [];
  t0 = Infinity;
  t1 = -Infinity;

  /** @param buckets downsampling buckets per series (see {@linkcode Sampler}) */
  constructor(buckets?: number) {
    this.#buckets = buckets ?? 1024;
  }

  /** The series of `key`: undefined if unseen, null if its description was malformed. */
  lookup(key: string): Series | null | undefined {
    return this.#byKey.get(key);
  }

  /** Records a new series under `key` (or, with `null`, that rows with this key are malformed). */
  define(key: string, desc: SeriesDesc | null): Series | null {
    if (desc === null) {
      this.#byKey.set(key, null);
      return null;
    }
    const role = desc.metric.role;
    const state = desc.attributes.cpu_state;
    let idle = false;
    if ((role === "energy" || role === "attributed") && state !== undefined) {
      if (!BUSY_CPU_STATES.has(state)) idle = true;
      else {
        // One series for the busy states (as exec's summary): their points at a timestamp add up.
        const { cpu_state: _, ...rest } = desc.attributes;
        const busyKey = JSON.stringify([
          desc.metric.name,
          desc.metric.unit,
          desc.resourceKind,
          desc.resourceId,
          desc.consumerKind,
          desc.consumerId,
          Object.entries(rest).sort(),
        ]);
        const merged = this.#busy.get(busyKey);
        if (merged !== undefined) {
          if (!merged.states!.includes(state)) merged.states!.push(state);
          this.#byKey.set(key, merged);
          return merged;
        }
        const s = this.#create({ ...desc, attributes: { ...rest, cpu_state: "busy" } }, false, [state]);
        this.#busy.set(busyKey, s);
        this.#byKey.set(key, s);
        this.series.push(s);
        return s;
      }
    }
    const s = this.#create(desc, idle, undefined);
    this.#byKey.set(key, s);
    this.series.push(s);
    return s;
  }

  #create(desc: SeriesDesc, idle: boolean, states: string[] | undefined): Series {
    const role = desc.metric.role;
    const charted = role !== "other" && role !== "attributed" && !idle;
    return {
      ...desc,
      count: 0,
      sum: 0,
      first: NaN,
      t0: Infinity,
      t1: -Infinity,
      prevT: NaN,
      pendT: NaN,
      pendV: 0,
      states,
      idle,
      sampler: charted ? new Sampler(this.#buckets) : undefined,
      log: !idle && (role === "energy" || (role === "attributed" && desc.consumerKind === "unattributed"))
        ? new PointLog()
        : undefined,
    };
  }

  /** Adds a point (`t` in seconds since 1970, `value` as the file has it). */
  add(s: Series, t: number, value: number): void {
    this.rows++;
    s.count++;
    if (t < this.t0) this.t0 = t;
    if (t > this.t1) this.t1 = t;
    if (t < s.t0) s.t0 = t;
    if (t > s.t1) s.t1 = t;
    const v = value * s.metric.factor;
    const finite = Number.isFinite(v);
    if (finite) {
      s.sum += v;
      if (s.first !== s.first) s.first = v;
      else if (t === s.t0 && s.states !== undefined) s.first += v; // another busy state's first point
      s.log?.push(t, v);
    }
    const sampler = s.sampler;
    if (sampler !== undefined && finite) {
      if (s.metric.role === "energy") {
        // Power = the joules of a timestamp ÷ the time since the previous one: the points of one timestamp
        // (the busy states of a merged series) add up first.
        if (t === s.pendT) s.pendV += v;
        else {
          this.#flush(s);
          s.pendT = t;
          s.pendV = v;
        }
      } else sampler.add(t, v);
    }
  }

  /** Draws an energy series' pending point. */
  #flush(s: Series): void {
    const t = s.pendT;
    if (t !== t) return;
    const dt = t - s.prevT;
    if (dt > 0) s.sampler!.add(t, s.pendV / dt);
    if (!(t <= s.prevT)) s.prevT = t;
    s.pendT = NaN;
    s.pendV = 0;
  }

  /** Draws what is pending: call once every point was added, before reading the samplers. */
  finish(): void {
    for (const s of this.series) if (s.sampler !== undefined) this.#flush(s);
  }

  /** Counts a skipped row, keeping the first few as examples. */
  malformed(line: number, reason: string, text: string): void {
    this.rows++;
    this.malformedCount++;
    if (this.malformedExamples.length < EXAMPLES) {
      this.malformedExamples.push({
        line,
        reason,
        text: text.length > 160 ? text.slice(0, 160) + "…" : text,
      });
    }
  }
}

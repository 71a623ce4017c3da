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
  /** The previous point's timestamp (power = energy ÷ interval since it). */
  prevT: number;
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

/** How many malformed rows are shown as examples. */
const EXAMPLES = 5;

/** Gathers the series of a run (see the module doc). */
export class Collector {
  readonly series: Series[] = [];
  readonly #byKey = new Map<string, Series | null>();
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
    const charted = desc.metric.role !== "other" && desc.metric.role !== "attributed";
    const s: Series = {
      ...desc,
      count: 0,
      sum: 0,
      first: NaN,
      t0: Infinity,
      t1: -Infinity,
      prevT: NaN,
      sampler: charted ? new Sampler(this.#buckets) : undefined,
      log: desc.metric.role === "energy" ||
          (desc.metric.role === "attributed" && desc.consumerKind === "unattributed")
        ? new PointLog()
        : undefined,
    };
    this.#byKey.set(key, s);
    this.series.push(s);
    return s;
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
      if (s.count === 1) s.first = v;
      s.log?.push(t, v);
    }
    const sampler = s.sampler;
    if (sampler !== undefined && finite) {
      if (s.metric.role === "energy") {
        const dt = t - s.prevT;
        if (dt > 0) sampler.add(t, v / dt);
      } else sampler.add(t, v);
    }
    if (!(t <= s.prevT)) s.prevT = t;
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

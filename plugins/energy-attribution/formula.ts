/**
 * Alumet's formula mode of `energy-attribution`: `[plugins.energy-attribution.formulas.<name>]` with `expr`,
 * `ref`, `per_resource.<var>` and `per_consumer.<var>`. For each point of the reference series (a per-resource
 * series) and each consumer seen on the same resource, every other series is linearly interpolated at the
 * reference's timestamp and the expression is evaluated; the result is emitted as metric `<name>` (f64 J) for
 * that (resource, consumer), with the reference point's attributes. As in Alumet
 * (`plugins/energy-attribution/src/formula/transform.rs`), per-consumer series are grouped by the resource of
 * their points: a `cpu_percent` of procfs (on `local_machine`) pairs with a reference on `local_machine`.
 *
 * @module
 */
import type { Attributes, AttributeValue, Batch } from "../../src/model/batch.ts";
import type { MetricId } from "../../src/model/metrics.ts";
import type { Consumer, Resource } from "../../src/model/resources.ts";
import type { Timestamp } from "../../src/model/timestamp.ts";
import type { ElementContext } from "../../src/plugin/plugin.ts";
import type { CompiledExpr } from "./expr.ts";

/** Which points make up a series: the metric, and optional equalities on the resource, consumer and attributes. */
export interface SeriesFilter {
  readonly metric: string;
  readonly resource_kind?: string;
  readonly resource_id?: string;
  readonly consumer_kind?: string;
  readonly consumer_id?: string;
  /** Attribute equalities (`domain = "package_total"`, `kind = "total"`). */
  readonly attributes: Readonly<Record<string, string | number | boolean>>;
}

/** A validated formula. */
export interface Formula {
  /** The formula's name: the metric it creates. */
  readonly name: string;
  readonly expr: CompiledExpr;
  /** The reference series (a `per_resource` variable). */
  readonly ref: string;
  /** How long points are kept waiting for the data to interpolate them, ms. */
  readonly retentionMs: number;
  readonly perResource: Readonly<Record<string, SeriesFilter>>;
  readonly perConsumer: Readonly<Record<string, SeriesFilter>>;
}

interface Pt {
  readonly t: number;
  readonly ts: Timestamp;
  readonly v: number;
  readonly attrs: Attributes;
  readonly consumer: Consumer;
}

interface ConsumerData {
  readonly consumer: Consumer;
  readonly vars: Map<string, Pt[]>;
  /** Timestamp (s) of the last reference point computed for it. */
  lastDone: number;
}

interface ResourceData {
  readonly resource: Resource;
  readonly general: Map<string, Pt[]>;
  readonly consumers: Map<string, ConsumerData>;
}

/** What a formula transform counted. */
export interface FormulaStats {
  /** Points of `<name>` emitted. */
  emitted: number;
  /** Evaluations that gave NaN or an infinite value (not emitted). */
  notFinite: number;
  /** Reference points dropped after `retention_time` without the data to interpolate them, per consumer. */
  expired: number;
}

function matches(f: SeriesFilter, batch: Batch, i: number): boolean {
  const r = batch.resourceAt(i);
  if (f.resource_kind !== undefined && r.kind !== f.resource_kind) return false;
  if (f.resource_id !== undefined && r.id !== f.resource_id) return false;
  const c = batch.consumerAt(i);
  if (f.consumer_kind !== undefined && c.kind !== f.consumer_kind) return false;
  if (f.consumer_id !== undefined && c.id !== f.consumer_id) return false;
  const a = batch.attributesAt(i);
  for (const [k, want] of Object.entries(f.attributes)) {
    const got: AttributeValue | undefined = a[k];
    if (got === undefined) return false;
    if (typeof want === "number" ? Number(got) !== want : got !== want) return false;
  }
  return true;
}

/** Linear interpolation of a sorted series at `t` (which lies within it). */
function interpolate(pts: readonly Pt[], t: number): number {
  let lo = 0, hi = pts.length - 1;
  if (t <= pts[0]!.t) return pts[0]!.v;
  if (t >= pts[hi]!.t) return pts[hi]!.v;
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if (pts[mid]!.t <= t) lo = mid;
    else hi = mid;
  }
  const a = pts[lo]!, b = pts[hi]!;
  return a.v + (b.v - a.v) * (t - a.t) / (b.t - a.t);
}

function insert(list: Pt[], p: Pt): void {
  if (list.length === 0 || list[list.length - 1]!.t <= p.t) list.push(p);
  else {
    let i = list.length;
    while (i > 0 && list[i - 1]!.t > p.t) i--;
    list.splice(i, 0, p);
  }
}

/**
 * One formula's transform state.
 *
 * @example
 * ```ts
 * import { FormulaAttributor } from "./formula.ts";
 * import { compileExpr } from "./expr.ts";
 * import { Batch } from "../../src/model/batch.ts";
 * import { MetricRegistry } from "../../src/model/metrics.ts";
 * import { Consumer } from "../../src/model/resources.ts";
 * import { unit } from "../../src/model/units.ts";
 * import assert from "node:assert/strict";
 * const r = new MetricRegistry();
 * const e = r.register("t", { name: "rapl_consumed_energy", unit: unit("J"), valueType: "f64", kind: "delta" });
 * const u = r.register("t", { name: "cpu_percent", unit: unit("%"), valueType: "f64" });
 * const out = r.register("t", { name: "attributed", unit: unit("J"), valueType: "f64", kind: "delta" });
 * const f = new FormulaAttributor({
 *   name: "attributed", expr: compileExpr("e * u / 100.0"), ref: "e", retentionMs: 30_000,
 *   perResource: { e: { metric: "rapl_consumed_energy", attributes: {} } },
 *   perConsumer: { u: { metric: "cpu_percent", attributes: {} } },
 * }, out);
 * const b = new Batch();
 * const pid = Consumer.process(1);
 * b.push(u, 10, { consumer: pid, timestamp: 0n });
 * b.push(u, 30, { consumer: pid, timestamp: 2_000_000_000n });
 * b.push(e, 40, { timestamp: 1_000_000_000n });
 * f.apply(b, { metric: (id) => r.get(id) });
 * assert.equal(b.valueAt(b.length - 1), 8); // 40 J × 20 % (cpu_percent interpolated at 1 s)
 * ```
 */
export class FormulaAttributor {
  readonly #f: Formula;
  readonly #output: MetricId<"f64">;
  /** Per metric id: the variables it may feed (undefined: none; computed once per id). */
  readonly #vars = new Map<number, { name: string; filter: SeriesFilter; perConsumer: boolean }[]>();
  readonly #resources = new Map<string, ResourceData>();
  #origin: bigint | undefined;
  #clock = -Infinity;
  readonly #values: Record<string, number> = Object.create(null);
  readonly stats: FormulaStats = { emitted: 0, notFinite: 0, expired: 0 };

  constructor(formula: Formula, output: MetricId<"f64">) {
    this.#f = formula;
    this.#output = output;
  }

  #varsOf(id: MetricId, ctx: ElementContext): { name: string; filter: SeriesFilter; perConsumer: boolean }[] {
    let v = this.#vars.get(id);
    if (v === undefined) {
      v = [];
      if (id !== this.#output) {
        const name = ctx.metric(id).name;
        for (const [k, f] of Object.entries(this.#f.perResource)) {
          if (f.metric === name) v.push({ name: k, filter: f, perConsumer: false });
        }
        for (const [k, f] of Object.entries(this.#f.perConsumer)) {
          if (f.metric === name) v.push({ name: k, filter: f, perConsumer: true });
        }
      }
      this.#vars.set(id, v);
    }
    return v;
  }

  /** Reads the batch and appends the formula's results that can now be computed. */
  apply(batch: Batch, ctx: ElementContext): void {
    const n = batch.length;
    for (let i = 0; i < n; i++) {
      const vars = this.#varsOf(batch.metricAt(i), ctx);
      if (vars.length === 0) continue;
      for (const v of vars) {
        if (!matches(v.filter, batch, i)) continue;
        const ts = batch.timestampAt(i);
        this.#origin ??= ts;
        const t = Number(ts - this.#origin) / 1e9;
        if (t > this.#clock) this.#clock = t;
        const resource = batch.resourceAt(i);
        const rk = `${resource.kind}\u0000${resource.id}`;
        let rd = this.#resources.get(rk);
        if (rd === undefined) {
          rd = { resource, general: new Map(), consumers: new Map() };
          this.#resources.set(rk, rd);
        }
        const consumer = batch.consumerAt(i);
        const p: Pt = { t, ts, v: Number(batch.valueAt(i)), attrs: batch.attributesAt(i), consumer };
        let target: Map<string, Pt[]>;
        if (v.perConsumer) {
          const ck = `${consumer.kind}\u0000${consumer.id}`;
          let cd = rd.consumers.get(ck);
          if (cd === undefined) {
            cd = { consumer, vars: new Map(), lastDone: -Infinity };
            rd.consumers.set(ck, cd);
          }
          target = cd.vars;
        } else target = rd.general;
        let list = target.get(v.name);
        if (list === undefined) target.set(v.name, list = []);
        insert(list, p);
      }
    }
    this.#compute(batch);
  }

  #compute(out: Batch): void {
    const f = this.#f;
    const consumerVars = Object.keys(f.perConsumer);
    const otherGeneral = Object.keys(f.perResource).filter((k) => k !== f.ref);
    const horizon = this.#clock - f.retentionMs / 1000;
    for (const rd of this.#resources.values()) {
      const refs = rd.general.get(f.ref);
      if (refs === undefined || refs.length === 0) continue;
      // Without per-consumer series, the formula is computed once per reference point, for its consumer.
      const targets: ConsumerData[] = consumerVars.length > 0 ? [...rd.consumers.values()] : [this.#self(rd)];
      for (const cd of targets) {
        // The interval where every series is known: from the latest first point to the earliest last point.
        let lo = -Infinity, hi = Infinity, complete = true;
        const lists: [string, Pt[]][] = [];
        for (const k of otherGeneral) {
          const l = rd.general.get(k);
          if (l === undefined || l.length === 0) complete = false;
          else lists.push([k, l]);
        }
        for (const k of consumerVars) {
          const l = cd.vars.get(k);
          if (l === undefined || l.length === 0) complete = false;
          else lists.push([k, l]);
        }
        if (complete) {
          for (const [, l] of lists) {
            lo = Math.max(lo, l[0]!.t);
            hi = Math.min(hi, l[l.length - 1]!.t);
          }
          for (const r of refs) {
            if (r.t <= cd.lastDone || r.t < lo) continue;
            if (r.t > hi) break;
            const values = this.#values;
            for (const k in values) delete values[k];
            values[f.ref] = r.v;
            for (const [k, l] of lists) values[k] = interpolate(l, r.t);
            const result = f.expr.evaluate(values);
            cd.lastDone = r.t;
            if (!Number.isFinite(result)) {
              this.stats.notFinite++;
              continue;
            }
            out.push(this.#output, result, {
              timestamp: r.ts,
              resource: rd.resource,
              consumer: consumerVars.length > 0 ? cd.consumer : r.consumer,
              attributes: r.attrs,
            });
            this.stats.emitted++;
          }
        }
        // Reference points this consumer will never get (older than the retention): given up.
        for (const r of refs) {
          if (r.t >= horizon) break;
          if (r.t > cd.lastDone) {
            this.stats.expired++;
            cd.lastDone = r.t;
          }
        }
      }
      this.#prune(rd, horizon);
    }
  }

  #self(rd: ResourceData): ConsumerData {
    let cd = rd.consumers.get("");
    if (cd === undefined) {
      cd = { consumer: rd.general.get(this.#f.ref)![0]!.consumer, vars: new Map(), lastDone: -Infinity };
      rd.consumers.set("", cd);
    }
    return cd;
  }

  /** Drops what no future computation needs: points before the horizon (keeping one for interpolation). */
  #prune(rd: ResourceData, horizon: number): void {
    let oldestDone = Infinity;
    for (const cd of rd.consumers.values()) oldestDone = Math.min(oldestDone, cd.lastDone);
    if (rd.consumers.size === 0) oldestDone = -Infinity; // consumers may still come: keep the references
    const refs = rd.general.get(this.#f.ref);
    if (refs !== undefined) {
      let k = 0;
      while (k < refs.length && (refs[k]!.t <= oldestDone || refs[k]!.t < horizon)) k++;
      if (k > 0) refs.splice(0, k);
    }
    const trim = (l: Pt[], before: number) => {
      let k = 0;
      while (k + 1 < l.length && l[k + 1]!.t <= before) k++;
      if (k > 0) l.splice(0, k);
    };
    for (const [name, l] of rd.general) if (name !== this.#f.ref) trim(l, Math.max(oldestDone, horizon));
    for (const [key, cd] of rd.consumers) {
      let last = -Infinity;
      for (const l of cd.vars.values()) {
        trim(l, Math.max(cd.lastDone, horizon));
        last = Math.max(last, l[l.length - 1]?.t ?? -Infinity);
      }
      if (key !== "" && last < horizon) rd.consumers.delete(key);
    }
  }
}

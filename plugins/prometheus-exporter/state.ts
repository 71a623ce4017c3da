/**
 * The exporter's in-memory state: one series per metric, resource, consumer and (optionally) attribute set,
 * holding a gauge's last value or a counter's total, and rendered in the Prometheus text format 0.0.4 or in
 * OpenMetrics 1.0.0 on each scrape.
 *
 * @module
 */
import type { Attributes, Batch } from "../../src/model/batch.ts";
import type { Metric, MetricKind } from "../../src/model/metrics.ts";
import type { Consumer, Resource } from "../../src/model/resources.ts";
import type { ElementContext } from "../../src/plugin/plugin.ts";
import type { Logger } from "../../src/log.ts";
import {
  escapeHelp,
  escapeLabelValue,
  exportedName,
  type FamilyName,
  formatValue,
  labelName,
  type PromUnit,
  promUnit,
} from "./naming.ts";

/** The content type of the Prometheus text format 0.0.4. */
export const TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
/** The content type of OpenMetrics 1.0.0. */
export const OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/** How the state names and keeps series. */
export interface StateOptions {
  /** Put before every metric name. Default `""`. */
  readonly prefix?: string;
  /** Put after every metric name, before the unit. Default `"_alumet"`, as Alumet. */
  readonly suffix?: string;
  /** Attributes become labels. Default `true`. */
  readonly addAttributesToLabels?: boolean;
  /**
   * How long, in ms, the series of a consumer stay after it ended (`endConsumerMeasurement`), and how long the
   * series of a consumer other than the local machine stay without a new point. Default 5 minutes.
   */
  readonly seriesTtlMs?: number;
  /** The clock, in ms (monotonic). Default `performance.now`. */
  readonly now?: () => number;
  /** Where warnings go (a metric whose exported name is taken). */
  readonly log?: Logger;
}

interface Family {
  readonly metric: Metric;
  readonly name: FamilyName;
  readonly unit: PromUnit;
  readonly kind: MetricKind;
  readonly help: string;
  readonly series: Map<string, Series>;
}

interface Series {
  /** `{…}` with the labels, escaped. */
  readonly labels: string;
  readonly consumer: string;
  readonly local: boolean;
  value: number;
  /** Timestamp of the last point (a gauge or a counter keeps the latest one). */
  ts: bigint;
  /** When it last got a point, by the state's clock. */
  updated: number;
}

const consumerKey = (c: Consumer) => `${c.kind}\u0000${c.id}`;

/**
 * The series the exporter serves. `write` folds a batch in: a `gauge` keeps its latest value, a `counter` its
 * latest total, and a `delta` metric becomes a counter that adds every delta (so a missed or late scrape
 * loses nothing: the next one has the total). Values are converted to the Prometheus base unit.
 *
 * @example
 * ```ts
 * import { PrometheusState } from "./state.ts";
 * import { Batch } from "../../src/model/batch.ts";
 * import { MetricRegistry } from "../../src/model/metrics.ts";
 * import { unit } from "../../src/model/units.ts";
 * import assert from "node:assert/strict";
 * const registry = new MetricRegistry();
 * const energy = registry.register("t", { name: "energy", unit: unit("J", "milli"), valueType: "f64", kind: "delta" });
 * const state = new PrometheusState({ suffix: "" });
 * for (const v of [1500, 500]) {
 *   const b = new Batch();
 *   b.push(energy, v);
 *   state.write(b, { metric: (id) => registry.get(id) });
 * }
 * assert.match(state.render(false), /^energy_joules_total\{.*\} 2$/m);
 * ```
 */
export class PrometheusState {
  readonly #prefix: string;
  readonly #suffix: string;
  readonly #attributes: boolean;
  readonly #ttl: number;
  readonly #now: () => number;
  readonly #log: Logger | undefined;
  /** Family by metric id; null for a metric that is not exported (its name was taken). */
  readonly #byMetric: (Family | null | undefined)[] = [];
  /** Family by sample name. */
  readonly #families = new Map<string, Family>();
  readonly #resourceLabels = new WeakMap<object, string>();
  readonly #consumerLabels = new WeakMap<object, string>();
  readonly #attributeLabels = new WeakMap<Attributes, string>();
  /** When each ended consumer ended. */
  readonly #ended = new Map<string, number>();
  #lastPrune = -Infinity;

  constructor(options: StateOptions = {}) {
    this.#prefix = options.prefix ?? "";
    this.#suffix = options.suffix ?? "_alumet";
    this.#attributes = options.addAttributesToLabels ?? true;
    this.#ttl = options.seriesTtlMs ?? 300_000;
    this.#now = options.now ?? (() => performance.now());
    this.#log = options.log;
  }

  /** The number of series held. */
  get seriesCount(): number {
    let n = 0;
    for (const f of this.#families.values()) n += f.series.size;
    return n;
  }

  /** Folds the points of `batch` into the series. */
  write(batch: Batch, ctx: ElementContext): void {
    const now = this.#now();
    const n = batch.length;
    for (let i = 0; i < n; i++) {
      const id = batch.metricAt(i);
      let family = this.#byMetric[id];
      if (family === undefined) family = this.#byMetric[id] = this.#family(ctx.metric(id));
      if (family === null) continue;
      const resource = batch.resourceAt(i);
      const consumer = batch.consumerAt(i);
      const rLabels = this.#labelsOf(resource, "resource_kind", "resource_id");
      const cLabels = this.#labelsOf(consumer, "resource_consumer_kind", "resource_consumer_id");
      const aLabels = this.#attributes ? this.#attributeLabelsOf(batch.attributesAt(i)) : "";
      const key = rLabels + "," + cLabels + aLabels;
      let s = family.series.get(key);
      const raw = Number(batch.valueAt(i));
      const ts = batch.timestampAt(i);
      if (s === undefined) {
        s = {
          labels: "{" + key + "}",
          consumer: consumerKey(consumer),
          local: consumer.kind === "local_machine",
          value: 0,
          ts: -(2n ** 63n),
          updated: now,
        };
        family.series.set(key, s);
      }
      s.updated = now;
      if (family.kind === "delta") {
        const v = raw * family.unit.scale;
        if (Number.isFinite(v)) s.value += v; // a NaN would poison the total forever
        if (ts > s.ts) s.ts = ts;
      } else if (ts >= s.ts) {
        s.ts = ts;
        s.value = raw * family.unit.scale + (family.kind === "gauge" ? family.unit.offset : 0);
      }
    }
    this.prune(now);
  }

  /** The consumers ended: their series are removed once the series' time to live has passed. */
  endConsumers(consumers: readonly Consumer[]): void {
    const now = this.#now();
    for (const c of consumers) this.#ended.set(consumerKey(c), now);
  }

  /** The consumers (re)started: a new process with a reused pid keeps its series. */
  startConsumers(consumers: readonly Consumer[]): void {
    for (const c of consumers) this.#ended.delete(consumerKey(c));
  }

  /**
   * Removes the series of consumers that ended a time to live ago, and those of a consumer other than the local
   * machine that got no point for that long. Runs at most once a second unless `force`.
   */
  prune(now: number = this.#now(), force = false): void {
    if (!force && now - this.#lastPrune < 1000) return;
    this.#lastPrune = now;
    const ttl = this.#ttl;
    for (const f of this.#families.values()) {
      for (const [key, s] of f.series) {
        const ended = this.#ended.get(s.consumer);
        if ((ended !== undefined && now - ended >= ttl) || (!s.local && now - s.updated >= ttl)) {
          f.series.delete(key);
        }
      }
    }
    for (const [c, at] of this.#ended) if (now - at >= ttl) this.#ended.delete(c);
  }

  /**
   * The exposition: OpenMetrics 1.0.0 (ending with `# EOF`) when `openMetrics`, else the text format 0.0.4.
   * Families are sorted by name; a family without series is left out.
   */
  render(openMetrics: boolean): string {
    this.prune();
    const out: string[] = [];
    const names = [...this.#families.keys()].sort();
    for (const sample of names) {
      const f = this.#families.get(sample)!;
      if (f.series.size === 0) continue;
      if (openMetrics) {
        const fam = f.name.family;
        out.push(`# TYPE ${fam} ${f.name.type}\n`);
        if (f.unit.name !== "") out.push(`# UNIT ${fam} ${f.unit.name}\n`);
        out.push(`# HELP ${fam} ${escapeHelp(f.help, true)}\n`);
      } else {
        out.push(`# HELP ${sample} ${escapeHelp(f.help, false)}\n# TYPE ${sample} ${f.name.type}\n`);
      }
      for (const s of f.series.values()) out.push(`${sample}${s.labels} ${formatValue(s.value)}\n`);
    }
    if (openMetrics) out.push("# EOF\n");
    return out.join("");
  }

  #family(metric: Metric): Family | null {
    const unit = promUnit(metric.unit);
    const name = exportedName(metric.name, unit.name, metric.kind, this.#prefix, this.#suffix);
    const taken = this.#families.get(name.sample) ??
      [...this.#families.values()].find((f) => f.name.family === name.family);
    if (taken !== undefined) {
      this.#log?.warn(
        `Metric "${metric.name}" (plugin ${metric.plugin}) is not exported: its Prometheus name ` +
          `"${name.sample}" is taken by metric "${taken.metric.name}" (plugin ${taken.metric.plugin}); set ` +
          `a prefix or suffix, or rename one of them`,
      );
      return null;
    }
    const unitText = metric.unit.code === "1" ? "" : ` (${metric.unit.code})`;
    let help = metric.description !== "" ? metric.description : `${metric.name}${unitText}`;
    if (metric.kind === "delta") help += "; the sum of its deltas since the exporter started";
    const family: Family = { metric, name, unit, kind: metric.kind, help, series: new Map() };
    this.#families.set(name.sample, family);
    return family;
  }

  #labelsOf(target: Resource | Consumer, kindLabel: string, idLabel: string): string {
    // A resource and a consumer may be the same object (the local machine), with other labels: one map each.
    const cache = kindLabel === "resource_kind" ? this.#resourceLabels : this.#consumerLabels;
    let s = cache.get(target);
    if (s === undefined) {
      s = `${kindLabel}="${escapeLabelValue(target.kind)}",${idLabel}="${escapeLabelValue(target.id)}"`;
      cache.set(target, s);
    }
    return s;
  }

  #attributeLabelsOf(a: Attributes): string {
    let s = this.#attributeLabels.get(a);
    if (s === undefined) {
      const seen = new Set<string>();
      const pairs: [string, string][] = [];
      for (const key of Object.keys(a).sort()) {
        const name = labelName(key);
        if (seen.has(name)) continue;
        seen.add(name);
        pairs.push([name, String(a[key])]);
      }
      s = pairs.map(([k, v]) => `,${k}="${escapeLabelValue(v)}"`).join("");
      this.#attributeLabels.set(a, s);
    }
    return s;
  }
}

/**
 * Whether a scraper asked for OpenMetrics: the best `q` of `application/openmetrics-text` in its `Accept`
 * header is above 0 and not below that of the text format (`text/plain`, `*\/*`).
 *
 * @example
 * ```ts
 * import { wantsOpenMetrics } from "./state.ts";
 * import assert from "node:assert/strict";
 * // What Prometheus 2.42 sends:
 * assert.equal(wantsOpenMetrics("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*\/*;q=0.1"), true);
 * assert.equal(wantsOpenMetrics("text/plain"), false);
 * assert.equal(wantsOpenMetrics(null), false);
 * ```
 */
export function wantsOpenMetrics(accept: string | null): boolean {
  if (accept === null) return false;
  let om = 0;
  let text = 0;
  for (const part of accept.split(",")) {
    const [type = "", ...params] = part.split(";").map((p) => p.trim().toLowerCase());
    let q = 1;
    for (const p of params) {
      if (p.startsWith("q=")) q = Number(p.slice(2)) || 0;
    }
    if (type === "application/openmetrics-text") om = Math.max(om, q);
    else if (type === "text/plain" || type === "text/*" || type === "*/*") text = Math.max(text, q);
  }
  return om > 0 && om >= text;
}

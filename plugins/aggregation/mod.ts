/**
 * The `aggregation` plugin: Alumet's transform that replaces the points of chosen metrics by their sum or mean
 * over fixed windows (`<metric>_sum`, `<metric>_mean`), one point per series and window.
 *
 * @module
 */
import { duration, z } from "../../src/plugin/schema.ts";
import { definePlugin } from "../../src/plugin/define.ts";
import { type Attributes, Batch } from "../../src/model/batch.ts";
import type { MetricId, MetricRegistry } from "../../src/model/metrics.ts";
import type { Consumer, Resource } from "../../src/model/resources.ts";
import type { Timestamp } from "../../src/model/timestamp.ts";
import { AlumetError } from "../../src/errors.ts";
import type { Logger } from "../../src/log.ts";

/** The aggregation functions, as the metric names write them. */
export type AggregationFunction = "sum" | "mean";

/** The schema of `[plugins.aggregation]`, with Alumet's keys (`function` accepts `"Sum"` and `"sum"`). */
export const aggregationConfigSchema = z.strictObject({
  interval: duration().prefault("60s"),
  function: z.enum(["Sum", "Mean", "sum", "mean"]).prefault("Sum")
    .transform((f) => f.toLowerCase() as AggregationFunction),
  metrics: z.array(z.string().min(1, { error: "a metric name" })).default([]),
  // Alumet drops the points it aggregates; true keeps them next to the aggregates.
  keep_original: z.boolean().default(false),
});

/** The validated `[plugins.aggregation]` table. */
export type AggregationConfig = z.infer<typeof aggregationConfigSchema>;

/** One series being aggregated: its window and running total. */
interface Series {
  readonly out: MetricId;
  readonly u64: boolean;
  readonly resource: Resource;
  readonly consumer: Consumer;
  readonly attributes: Attributes;
  /** Start of the open window, ns. */
  start: bigint;
  sum: number;
  big: bigint;
  count: number;
}

/** What an {@linkcode Aggregator} needs. */
export interface AggregatorOptions {
  /** Window length, ms. */
  readonly intervalMs: number;
  readonly function: AggregationFunction;
  /** Input metric id → aggregated metric id, and whether the values are u64. */
  readonly metrics: ReadonlyMap<MetricId, { readonly out: MetricId; readonly u64: boolean }>;
  /** Keep the input points (default false: replaced, as in Alumet). */
  readonly keepOriginal?: boolean;
  /** Told once about points that arrive after their window was emitted. */
  readonly log?: Logger;
}

/** A stable text for an attribute set. */
function attributesKey(a: Attributes): string {
  let s = "";
  for (const k of Object.keys(a).sort()) s += `${k}\u0000${typeof a[k]}\u0000${String(a[k])}\u0001`;
  return s;
}

/**
 * The aggregation itself, independent of the stream around it. Windows are aligned on multiples of the interval
 * since the Unix epoch (a 60 s window runs from a whole minute to the next); a series' window is emitted, at the
 * window's start time, when a point of that series shows it closed (a point of a later window), and the windows
 * still open are emitted by {@linkcode Aggregator.drain} (at shutdown: partial windows).
 */
export class Aggregator {
  readonly #o: AggregatorOptions;
  readonly #interval: bigint;
  readonly #series = new Map<string, Series>();
  readonly #attrKeys = new WeakMap<Attributes, string>();
  #late = 0;

  constructor(options: AggregatorOptions) {
    this.#o = options;
    this.#interval = BigInt(Math.round(options.intervalMs * 1e6));
    if (this.#interval <= 0n) throw new RangeError(`The aggregation interval must be positive`);
  }

  /** Points that arrived after their window had been emitted (dropped, and logged once). */
  get latePoints(): number {
    return this.#late;
  }

  /** Takes the points of the aggregated metrics out of `batch` (unless kept) and adds the closed windows. */
  apply(batch: Batch): void {
    const metrics = this.#o.metrics;
    const n = batch.length;
    const emitted: { s: Series; start: bigint; value: number | bigint }[] = [];
    let any = false;
    for (let i = 0; i < n; i++) {
      const m = metrics.get(batch.metricAt(i));
      if (m === undefined) continue;
      any = true;
      const ts = batch.timestampAt(i);
      const start = ts - ((ts % this.#interval) + this.#interval) % this.#interval;
      const resource = batch.resourceAt(i);
      const consumer = batch.consumerAt(i);
      const attributes = batch.attributesAt(i);
      let ak = this.#attrKeys.get(attributes);
      if (ak === undefined) this.#attrKeys.set(attributes, ak = attributesKey(attributes));
      const key =
        `${m.out}\u0002${resource.kind}\u0000${resource.id}\u0002${consumer.kind}\u0000${consumer.id}\u0002${ak}`;
      let s = this.#series.get(key);
      if (s === undefined) {
        s = { out: m.out, u64: m.u64, resource, consumer, attributes, start, sum: 0, big: 0n, count: 0 };
        this.#series.set(key, s);
      } else if (start > s.start) {
        if (s.count > 0) emitted.push({ s, start: s.start, value: this.#value(s) });
        s.start = start;
        s.sum = 0;
        s.big = 0n;
        s.count = 0;
      } else if (start < s.start) {
        if (this.#late++ === 0) {
          this.#o.log?.warn(
            `A point of ${start}ns came after its ${this.#o.intervalMs} ms window had been emitted: dropped ` +
              `(and the next ones, counted without a message)`,
          );
        }
        continue;
      }
      const v = batch.valueAt(i);
      if (s.u64) s.big += typeof v === "bigint" ? v : BigInt(v);
      else s.sum += Number(v);
      s.count++;
    }
    if (any && !this.#o.keepOriginal) batch.retain((b, i) => !metrics.has(b.metricAt(i)));
    for (const e of emitted) this.#push(batch, e.s, e.start, e.value);
  }

  /** The windows still open (partial ones), as a batch; the aggregator is then empty. */
  drain(): Batch {
    const b = new Batch();
    for (const s of this.#series.values()) if (s.count > 0) this.#push(b, s, s.start, this.#value(s));
    this.#series.clear();
    return b;
  }

  #value(s: Series): number | bigint {
    if (s.u64) {
      // Alumet's u64 mean is an integer division (rounded down).
      const v = this.#o.function === "sum" ? s.big : s.big / BigInt(s.count);
      return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
    }
    return this.#o.function === "sum" ? s.sum : s.sum / s.count;
  }

  #push(batch: Batch, s: Series, start: bigint, value: number | bigint): void {
    batch.push(s.out, value as number, {
      timestamp: start as Timestamp,
      resource: s.resource,
      consumer: s.consumer,
      attributes: s.attributes,
    });
  }
}

/**
 * Registers `<metric>_<function>` for each configured metric (same unit, value type and kind, as Alumet) and
 * returns the map the {@linkcode Aggregator} needs; throws an {@linkcode AlumetError} for a metric that does not
 * exist.
 */
export function registerAggregates(
  registry: MetricRegistry,
  plugin: string,
  config: Pick<AggregationConfig, "metrics" | "function">,
): Map<MetricId, { out: MetricId; u64: boolean }> {
  const map = new Map<MetricId, { out: MetricId; u64: boolean }>();
  for (const name of config.metrics) {
    const m = registry.byName(name);
    if (m === undefined) {
      throw new AlumetError(
        `[plugins.aggregation] metrics names "${name}", which no enabled plugin creates: check its spelling, or ` +
          `enable the plugin that measures it`,
      );
    }
    const out = registry.register(plugin, {
      name: `${name}_${config.function}`,
      unit: m.unit,
      valueType: m.valueType,
      kind: m.kind,
      description: `${config.function === "sum" ? "Sum" : "Mean"} over each window of: ${
        m.description || name
      }`,
    });
    map.set(m.id, { out, u64: m.valueType === "u64" });
  }
  return map;
}

/** The `aggregation` plugin (Alumet's name and keys). */
export const aggregationPlugin = definePlugin({
  name: "aggregation",
  version: "0.1.0",
  description:
    "Replaces chosen metrics by their sum or mean over fixed windows (<metric>_sum, <metric>_mean)",
  config: aggregationConfigSchema,
  init(config) {
    let aggregator: Aggregator | undefined;
    return {
      start(ctx) {
        aggregator = undefined;
        if (config.metrics.length === 0) {
          ctx.log.warn("metrics = [] (the default): nothing to aggregate. List the metrics to aggregate");
          return;
        }
        // The windows still open at shutdown are emitted after the last batch, by close().
        ctx.addTransform("transform", {
          apply(batch) {
            aggregator?.apply(batch);
          },
          close: () => aggregator?.drain(),
        });
      },
      preStart(ctx) {
        if (config.metrics.length === 0) return;
        aggregator = new Aggregator({
          intervalMs: config.interval,
          function: config.function,
          metrics: registerAggregates(ctx.metrics, "aggregation", config),
          keepOriginal: config.keep_original,
          log: ctx.log,
        });
      },
    };
  },
});

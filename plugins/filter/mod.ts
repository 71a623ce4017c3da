/**
 * The `filter` plugin: a transform that keeps or drops points by metric name (Alumet's `include` / `exclude`),
 * by consumer, and keeps only the N heaviest processes of each measurement instant (`top`), summing the others
 * into one `other` consumer, so that an agent that follows every process does not flood a time-series database.
 *
 * @module
 */
import { z } from "../../src/plugin/schema.ts";
import { definePlugin } from "../../src/plugin/define.ts";
import type { ElementContext, Transform } from "../../src/plugin/plugin.ts";
import type { Attributes, Batch } from "../../src/model/batch.ts";
import type { MetricId } from "../../src/model/metrics.ts";
import { Consumer, type Resource } from "../../src/model/resources.ts";
import type { Timestamp } from "../../src/model/timestamp.ts";

/** A compiled name pattern: an exact name, a glob (`*`, `?`), or a `/regular expression/`. */
export interface Pattern {
  /** As written in the config. */
  readonly text: string;
  /** True when `name` matches. */
  test(name: string): boolean;
}

/**
 * Compiles a pattern: `/…/` (optionally `/…/i`) is a regular expression searched in the name (anchor it with `^…$`
 * to match the whole name); a text with `*` (any characters, `/` included) or `?` (one character) is a glob
 * matched against the whole name; anything else is an exact name.
 *
 * @throws {SyntaxError} for an invalid regular expression
 *
 * @example
 * ```ts
 * import { compilePattern } from "./mod.ts";
 * import assert from "node:assert/strict";
 * assert.equal(compilePattern("kernel_*").test("kernel_cpu_time"), true);
 * assert.equal(compilePattern("kernel_*").test("mem_kernel_x"), false);
 * assert.equal(compilePattern("/^rapl_|_energy$/").test("hwmon_energy"), true);
 * assert.equal(compilePattern("process:?").test("process:7"), true);
 * assert.equal(compilePattern("cpu_percent").test("cpu_percent_x"), false);
 * ```
 */
export function compilePattern(text: string): Pattern {
  const re = /^\/(.*)\/([a-z]*)$/s.exec(text);
  if (re !== null) {
    const compiled = new RegExp(re[1]!, re[2]!.replace("g", ""));
    return { text, test: (s) => compiled.test(s) };
  }
  if (text.includes("*") || text.includes("?")) {
    const source = text.replace(/[.+^${}()|[\]\\]/g, "\\$&").replaceAll("*", ".*").replaceAll("?", ".");
    const compiled = new RegExp(`^${source}$`, "s");
    return { text, test: (s) => compiled.test(s) };
  }
  return { text, test: (s) => s === text };
}

function patterns(what: string) {
  return z.array(
    z.string({ error: `a ${what} pattern (a name, a glob such as "kernel_*", or "/regex/")` }).transform(
      (text, ctx) => {
        try {
          return compilePattern(text);
        } catch (e) {
          ctx.issues.push({
            code: "custom",
            input: text,
            message: `a valid regular expression, not ${JSON.stringify(text)} (${(e as Error).message})`,
          });
          return z.NEVER;
        }
      },
    ),
  ).refine((list) => list.length > 0, {
    error:
      `at least one ${what} pattern (an empty list would match nothing); remove the key to filter nothing`,
  });
}

/** The schema of `[plugins.filter]`: Alumet's `include` / `exclude`, and this project's consumers and `top`. */
export const filterConfigSchema = z.strictObject({
  include: patterns("metric").optional(),
  exclude: patterns("metric").optional(),
  include_consumers: patterns("consumer").optional(),
  exclude_consumers: patterns("consumer").optional(),
  top: z.strictObject({
    n: z.int({ error: "a positive number of processes" }).positive({
      error: "a positive number of processes",
    }),
    by: z.string().min(1, { error: "a metric name" }).default("cpu_time_delta"),
  }).optional(),
})
  .refine((c) => c.include === undefined || c.exclude === undefined, {
    path: ["exclude"],
    error: "either include or exclude, not both (as in Alumet): keep one of the two lists",
  })
  .refine((c) => c.include_consumers === undefined || c.exclude_consumers === undefined, {
    path: ["exclude_consumers"],
    error: "either include_consumers or exclude_consumers, not both: keep one of the two lists",
  });

/** The validated `[plugins.filter]` table. */
export type FilterConfig = z.infer<typeof filterConfigSchema>;

/** The consumer that receives the sum of the processes `top` leaves out. */
export const OTHER_CONSUMER: Consumer = Consumer.custom("other", "");

/** `kind:id`, as consumer patterns see a consumer (`process:42`, `cgroup:/system.slice/a.service`). */
export function consumerText(c: { kind: string; id: string }): string {
  return `${c.kind}:${c.id}`;
}

/** A stable text for an attribute set, so that equal sets from different objects are one key. */
function attributesKey(a: Attributes): string {
  const keys = Object.keys(a).sort();
  let s = "";
  for (const k of keys) {
    const v = a[k]!;
    s += `${k}\u0000${typeof v}\u0000${String(v)}\u0001`;
  }
  return s;
}

interface OtherSum {
  readonly metric: MetricId;
  readonly timestamp: Timestamp;
  readonly resource: Resource;
  readonly attributes: Attributes;
  sum: number;
  big: bigint;
  u64: boolean;
}

/**
 * Applies, in this order: `top` (per timestamp, the N processes with the largest sum of the `by` metric keep
 * their points; the points of the other processes are replaced by their sum, per metric, resource and attribute
 * set, under the consumer {@linkcode OTHER_CONSUMER}), then the metric filter (`include` or `exclude`), then the
 * consumer filter (`include_consumers` or `exclude_consumers`). Decisions are cached per metric and consumer.
 */
export class FilterTransform implements Transform {
  readonly #config: FilterConfig;
  /** Per metric id: 1 keep, 2 drop. */
  readonly #metricDecision: number[] = [];
  readonly #consumerDecision = new Map<string, boolean>();
  /** Per metric id: 1 is the `top.by` metric, 2 is not. */
  readonly #isBy: number[] = [];
  readonly #attrKeys = new WeakMap<Attributes, string>();

  constructor(config: FilterConfig) {
    this.#config = config;
  }

  apply(batch: Batch, ctx: ElementContext): void {
    const others = this.#config.top === undefined ? undefined : this.#top(batch, ctx);
    const dropped = others?.dropped;
    const metricFilter = this.#config.include !== undefined || this.#config.exclude !== undefined;
    const consumerFilter = this.#config.include_consumers !== undefined ||
      this.#config.exclude_consumers !== undefined;
    if (dropped !== undefined || metricFilter || consumerFilter) {
      batch.retain((b, i) =>
        (dropped === undefined || dropped[i] === 0) &&
        (!metricFilter || this.#keepMetric(b.metricAt(i), ctx)) &&
        (!consumerFilter || this.#keepConsumer(b.consumerAt(i)))
      );
    }
    if (others === undefined) return;
    for (const o of others.sums) {
      if (metricFilter && !this.#keepMetric(o.metric, ctx)) continue;
      if (consumerFilter && !this.#keepConsumer(OTHER_CONSUMER)) continue;
      batch.push(
        o.metric,
        o.u64 ? (o.big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(o.big) : o.big) : o.sum,
        {
          timestamp: o.timestamp,
          resource: o.resource,
          consumer: OTHER_CONSUMER,
          attributes: o.attributes,
        },
      );
    }
  }

  #keepMetric(id: MetricId, ctx: ElementContext): boolean {
    let d = this.#metricDecision[id];
    if (d === undefined) {
      const name = ctx.metric(id).name;
      const { include, exclude } = this.#config;
      const keep = include !== undefined
        ? include.some((p) => p.test(name))
        : exclude === undefined || !exclude.some((p) => p.test(name));
      d = this.#metricDecision[id] = keep ? 1 : 2;
    }
    return d === 1;
  }

  #keepConsumer(c: Consumer): boolean {
    const text = consumerText(c);
    let keep = this.#consumerDecision.get(text);
    if (keep === undefined) {
      const { include_consumers: include, exclude_consumers: exclude } = this.#config;
      keep = include !== undefined
        ? include.some((p) => p.test(text))
        : exclude === undefined || !exclude.some((p) => p.test(text));
      // Bounded: processes come and go.
      if (this.#consumerDecision.size >= 65_536) this.#consumerDecision.clear();
      this.#consumerDecision.set(text, keep);
    }
    return keep;
  }

  /** The rows `top` removes (1) and the sums that replace them. */
  #top(batch: Batch, ctx: ElementContext): { dropped: Uint8Array; sums: OtherSum[] } | undefined {
    const { n, by } = this.#config.top!;
    // Weight of each process at each timestamp; the set of processes seen at each timestamp.
    const weights = new Map<Timestamp, Map<string, number>>();
    const len = batch.length;
    for (let i = 0; i < len; i++) {
      const c = batch.consumerAt(i);
      if (c.kind !== "process") continue;
      const ts = batch.timestampAt(i);
      let w = weights.get(ts);
      if (w === undefined) weights.set(ts, w = new Map());
      const id = batch.metricAt(i);
      let isBy = this.#isBy[id];
      if (isBy === undefined) isBy = this.#isBy[id] = ctx.metric(id).name === by ? 1 : 2;
      const add = isBy === 1 ? Number(batch.valueAt(i)) : 0;
      w.set(c.id, (w.get(c.id) ?? 0) + add);
    }
    let kept: Map<Timestamp, Set<string>> | undefined;
    for (const [ts, w] of weights) {
      if (w.size <= n) continue;
      const ranked = [...w].sort((a, b) => b[1] - a[1] || compareIds(a[0], b[0]));
      (kept ??= new Map()).set(ts, new Set(ranked.slice(0, n).map(([id]) => id)));
    }
    if (kept === undefined) return undefined;
    const dropped = new Uint8Array(len);
    const sums = new Map<string, OtherSum>();
    for (let i = 0; i < len; i++) {
      const c = batch.consumerAt(i);
      if (c.kind !== "process") continue;
      const ts = batch.timestampAt(i);
      const keep = kept.get(ts);
      if (keep === undefined || keep.has(c.id)) continue;
      dropped[i] = 1;
      const metric = batch.metricAt(i);
      const resource = batch.resourceAt(i);
      const attributes = batch.attributesAt(i);
      let ak = this.#attrKeys.get(attributes);
      if (ak === undefined) this.#attrKeys.set(attributes, ak = attributesKey(attributes));
      const key = `${ts}\u0002${metric}\u0002${resource.kind}\u0000${resource.id}\u0002${ak}`;
      let s = sums.get(key);
      if (s === undefined) {
        const u64 = ctx.metric(metric).valueType === "u64";
        sums.set(key, s = { metric, timestamp: ts, resource, attributes, sum: 0, big: 0n, u64 });
      }
      const v = batch.valueAt(i);
      if (s.u64) s.big += typeof v === "bigint" ? v : BigInt(v);
      else s.sum += Number(v);
    }
    return { dropped, sums: [...sums.values()] };
  }
}

/** Orders process ids numerically (pids), then as text. */
function compareIds(a: string, b: string): number {
  const na = Number(a), nb = Number(b);
  if (Number.isFinite(na) && Number.isFinite(nb) && na !== nb) return na - nb;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The `filter` plugin (Alumet's name and keys, plus consumer patterns and `top`). */
export const filterPlugin = definePlugin({
  name: "filter",
  version: "0.1.0",
  description: "Keeps or drops points by metric and consumer pattern; keeps the N heaviest processes (top)",
  config: filterConfigSchema,
  init(config) {
    const active = config.include !== undefined || config.exclude !== undefined ||
      config.include_consumers !== undefined || config.exclude_consumers !== undefined ||
      config.top !== undefined;
    return {
      start(ctx) {
        if (!active) {
          ctx.log.warn(
            "Neither include, exclude, include_consumers, exclude_consumers nor top is set: the filter does " +
              "nothing. Set one of them, or remove [plugins.filter]",
          );
          return;
        }
        ctx.addTransform("transform", new FilterTransform(config));
      },
      preStart(ctx) {
        const names = ctx.metrics.all.map((m) => m.name);
        for (const p of [...config.include ?? [], ...config.exclude ?? []]) {
          if (!names.some((n) => p.test(n))) {
            ctx.log.warn(
              `The metric pattern "${p.text}" matches no metric of the enabled plugins (yet): check its spelling`,
            );
          }
        }
        if (config.top !== undefined && ctx.metrics.byName(config.top.by) === undefined) {
          ctx.log.warn(
            `top.by = "${config.top.by}" is no metric of the enabled plugins: every process weighs 0, and the ` +
              `${config.top.n} kept are the lowest pids. Enable the procfs plugin's processes, or pick another metric`,
          );
        }
      },
    };
  },
});

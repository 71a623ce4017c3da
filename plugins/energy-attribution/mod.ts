/**
 * The `energy-attribution` plugin: a transform that shares the energy measured per resource (RAPL package and
 * DRAM, GPU, hwmon sensors, estimates) among consumers (processes, cgroups), interval by interval, so that the
 * attributed energies plus an explicit `unattributed` consumer add up to what was measured.
 *
 * - Default mode (no formulas): `attributed_energy` (f64 J, delta) per (resource, consumer), by share of CPU
 *   time (GPU: share of SM utilisation); see {@linkcode EnergyAttributor}.
 * - Alumet's formula mode: `[plugins.energy-attribution.formulas.<name>]`; see {@linkcode FormulaAttributor}.
 *
 * ```ts
 * import { testPlugin } from "../../src/testing/mod.ts";
 * import energyAttribution from "./mod.ts";
 * import assert from "node:assert/strict";
 * await using h = await testPlugin(energyAttribution, {});
 * assert.equal(h.metrics.byName("attributed_energy")?.unit.code, "J");
 * assert.deepEqual([...h.transforms.keys()], ["attribution"]);
 * ```
 *
 * @module
 */
import { Batch } from "../../src/model/batch.ts";
import type { Logger } from "../../src/log.ts";
import { defineMetrics } from "../../src/model/metric_set.ts";
import type { MetricId, MetricRegistry } from "../../src/model/metrics.ts";
import { unit } from "../../src/model/units.ts";
import { definePlugin } from "../../src/plugin/define.ts";
import type {
  ElementContext,
  Plugin,
  PreStartContext,
  StartContext,
  Transform,
} from "../../src/plugin/plugin.ts";
import { duration, type TransformContext, z } from "../../src/plugin/schema.ts";
import { countCpus } from "../../src/sys/system.ts";
import { EnergyAttributor, joulesPerUnit } from "./attribution.ts";
import { compileExpr, ExprError } from "./expr.ts";
import { type Formula, FormulaAttributor, type SeriesFilter } from "./formula.ts";

export * from "./attribution.ts";
export * from "./expr.ts";
export * from "./formula.ts";

/** The metric of the default mode. */
export const ATTRIBUTION_METRICS = defineMetrics({
  attributed: {
    name: "attributed_energy",
    unit: unit("J"),
    valueType: "f64",
    kind: "delta",
    description: "Energy of a resource attributed to a consumer (or unattributed) over the interval",
  },
});

const NAME_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const FILTER_KEYS = ["resource_kind", "resource_id", "consumer_kind", "consumer_id"] as const;

/** `per_resource.<var>` / `per_consumer.<var>`: `{ metric = "…", resource_kind = "…", <attribute> = … }`. */
const seriesSchema = z.record(z.string(), z.unknown(), {
  error: 'a table such as { metric = "rapl_consumed_energy", domain = "package_total" }',
}).transform((table, ctx): SeriesFilter => {
  const metric = table["metric"];
  if (typeof metric !== "string" || metric === "") {
    ctx.issues.push({ code: "custom", path: ["metric"], message: 'a metric name such as "cpu_percent"' });
    return z.NEVER;
  }
  const out: Record<string, string> = {};
  const attributes: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(table)) {
    if (k === "metric") continue;
    if ((FILTER_KEYS as readonly string[]).includes(k)) {
      if (typeof v !== "string") {
        ctx.issues.push({ code: "custom", path: [k], message: "a string" });
        return z.NEVER;
      }
      out[k] = v;
    } else if (typeof v === "string" || typeof v === "number" || typeof v === "boolean") {
      attributes[k] = v;
    } else {
      ctx.issues.push({
        code: "custom",
        path: [k],
        message: "an attribute value to match (a string, a number or a boolean)",
      });
      return z.NEVER;
    }
  }
  return { metric, ...out, attributes };
});

/** `[plugins.energy-attribution.formulas.<name>]`, as Alumet writes it. */
const formulaSchema = z.strictObject({
  /** The expression; its result is in joules. */
  expr: z.string({ error: 'an expression such as "cpu_energy * cpu_usage / 100.0"' }),
  /** The reference series: one of the `per_resource` variables. */
  ref: z.string({ error: "the name of a per_resource variable" }),
  /** How long points wait for the data to interpolate them. Default `"30s"`. */
  retention_time: duration().optional(),
  per_resource: z.record(z.string(), seriesSchema),
  per_consumer: z.record(z.string(), seriesSchema).optional(),
});

type FormulaInput = z.infer<typeof formulaSchema>;

/** Checks one formula (expression, variables, reference) into a {@linkcode Formula}, or reports why not. */
function checkFormula(name: string, f: FormulaInput, ctx: TransformContext): Formula | undefined {
  const issue = (path: (string | number)[], message: string) =>
    void ctx.issues.push({ code: "custom", path: [name, ...path], message });
  if (!NAME_RE.test(name)) {
    issue([], `a formula name that can be a metric name (letters, digits and "_"), not "${name}"`);
    return undefined;
  }
  const perConsumer = f.per_consumer ?? {};
  const known = [...Object.keys(f.per_resource), ...Object.keys(perConsumer)];
  for (const k of Object.keys(perConsumer)) {
    if (Object.hasOwn(f.per_resource, k)) {
      issue(["per_consumer", k], `a variable name not already in per_resource ("${k}" is in both)`);
      return undefined;
    }
  }
  let expr;
  try {
    expr = compileExpr(f.expr);
  } catch (e) {
    if (!(e instanceof ExprError)) throw e;
    issue(["expr"], `an expression that parses: ${e.message} of "${f.expr}"`);
    return undefined;
  }
  const unknown = expr.variables.filter((v) => !known.includes(v));
  if (unknown.length > 0) {
    issue(
      ["expr"],
      `only declared variables in "${f.expr}": ${unknown.map((v) => `"${v}"`).join(", ")} ` +
        `${unknown.length > 1 ? "are" : "is"} not declared under per_resource or per_consumer ` +
        `(declared: ${known.join(", ") || "none"})`,
    );
    return undefined;
  }
  if (!Object.hasOwn(f.per_resource, f.ref)) {
    issue(
      ["ref"],
      `the name of a per_resource variable (the reference series), not "${f.ref}" ` +
        `(per_resource declares: ${Object.keys(f.per_resource).join(", ") || "none"})`,
    );
    return undefined;
  }
  return {
    name,
    expr,
    ref: f.ref,
    retentionMs: f.retention_time ?? 30_000,
    perResource: f.per_resource,
    perConsumer,
  };
}

/**
 * `[plugins.energy-attribution]`: the default mode's options, and Alumet's `formulas`.
 *
 * @example
 * ```ts
 * import { energyAttributionConfigSchema } from "./mod.ts";
 * import assert from "node:assert/strict";
 * const c = energyAttributionConfigSchema.parse({});
 * assert.equal(c.idle, "unattributed");
 * assert.equal(c.formulas, undefined);
 * ```
 */
export const energyAttributionConfigSchema = z.strictObject({
  /** `"unattributed"`: the idle share goes to `unattributed`; `"spread"`: to the active consumers. */
  idle: z.enum(["unattributed", "spread"]).prefault("unattributed"),
  /** The consumer views, each attributed on its own. Default both. */
  views: z.array(z.enum(["process", "cgroup"])).refine(
    (v) => v.length > 0,
    { error: 'at least one view ("process", "cgroup"); to attribute nothing, disable the plugin' },
  ).prefault(["process", "cgroup"]),
  /** Number of CPUs; 0: from `kernel_cpu_time` (its `cpu_core` resources), else the system's. */
  n_cpus: z.int().min(0).prefault(0),
  /** Longest wait for late consumer data; absent: 2 × the largest poll interval or lag seen (at least 1 s). */
  max_wait: duration().optional(),
  /** How long consumer data is kept for energy that arrives late. Default `"60s"`. */
  retention_time: duration().prefault("60s"),
  /** Energy metrics to attribute; empty: every energy delta metric. */
  energy_metrics: z.array(z.string()).prefault([]),
  /** A broken conservation invariant is logged once per this many. Default 100. */
  invariant_log_every: z.int().positive().prefault(100),
  /** Alumet's formula mode; when present, the default mode is off. */
  formulas: z.record(z.string(), formulaSchema).transform((table, ctx) => {
    const out: Formula[] = [];
    for (const [name, f] of Object.entries(table)) {
      const checked = checkFormula(name, f, ctx);
      if (checked === undefined) return z.NEVER;
      out.push(checked);
    }
    return out;
  }).optional(),
});

/** The validated `[plugins.energy-attribution]` table. */
export type EnergyAttributionConfig = z.infer<typeof energyAttributionConfigSchema>;

/** Runs an {@linkcode EnergyAttributor} as a transform: points pass through, attributions are appended. */
function defaultTransform(attributor: EnergyAttributor, ctx: () => ElementContext): Transform {
  return {
    apply(batch) {
      attributor.ingest(batch, ctx());
      attributor.emit(batch);
    },
    close() {
      // At shutdown every pending interval is computed (what is still unknown goes to `unattributed`).
      const last = new Batch();
      attributor.emit(last, true);
      return last;
    },
  };
}

/** The plugin instance. */
export class EnergyAttributionPlugin implements Plugin {
  readonly #config: EnergyAttributionConfig;
  #registry: MetricRegistry | undefined;
  #log: Logger | undefined;
  #unsubscribe: (() => void)[] = [];
  /** The default-mode attributor of the last `start` (undefined in formula mode). */
  attributor: EnergyAttributor | undefined;
  /** The formula attributors of the last `start`, by formula name. */
  readonly formulas = new Map<string, FormulaAttributor>();

  constructor(config: EnergyAttributionConfig) {
    this.#config = config;
  }

  start(ctx: StartContext): void {
    const c = this.#config;
    this.#log = ctx.log;
    this.formulas.clear();
    this.attributor = undefined;
    if (c.formulas !== undefined && c.formulas.length > 0) {
      for (const f of c.formulas) {
        const id: MetricId<"f64"> = ctx.createMetric({
          name: f.name,
          unit: unit("J"),
          valueType: "f64",
          kind: "delta",
          description: `Energy attributed by the formula "${f.expr.text}" per resource and consumer`,
        });
        const fa = new FormulaAttributor(f, id);
        this.formulas.set(f.name, fa);
        ctx.addTransform(`formula_${f.name}`, { apply: (batch, ectx) => fa.apply(batch, ectx) });
      }
      ctx.log.info(`Formula mode: ${c.formulas.map((f) => `${f.name} = ${f.expr.text}`).join("; ")}`);
      return;
    }
    const { attributed } = ctx.createMetrics(ATTRIBUTION_METRICS);
    const a = new EnergyAttributor({
      output: attributed,
      idle: c.idle,
      views: c.views,
      nCpus: c.n_cpus,
      systemCpus: countCpus, // read only if no kernel_cpu_time point ever gives the count
      retentionMs: c.retention_time,
      energyMetrics: c.energy_metrics,
      invariantLogEvery: c.invariant_log_every,
      log: ctx.log,
      ...(c.max_wait !== undefined ? { maxWaitMs: c.max_wait } : {}),
    });
    this.attributor = a;
    // The registry comes from preStart, before any batch.
    const context: ElementContext = {
      metric: (id) => {
        if (this.#registry === undefined) {
          throw new Error("energy-attribution: the metric registry is not known yet");
        }
        return this.#registry.get(id);
      },
    };
    ctx.addTransform("attribution", defaultTransform(a, () => context));
  }

  preStart(ctx: PreStartContext): void {
    this.#registry = ctx.metrics;
    this.#checkMetrics(ctx.metrics, ctx.log);
    const a = this.attributor;
    if (a === undefined) return;
    // The program exec/watch measures: its source flushes later than the others (processes.events), so the
    // intervals wait for its first points instead of being shared without it. Not forgotten at "end consumer
    // measurement": the source's last points are still to come then.
    this.#unsubscribe = [ctx.events.on("startConsumerMeasurement", (cs) => a.expect(cs))];
  }

  /** Every plugin has created its metrics: a configured metric that none created is a mistake, said once. */
  #checkMetrics(registry: MetricRegistry, log: Logger): void {
    const c = this.#config;
    if (c.formulas !== undefined && c.formulas.length > 0) {
      for (const f of c.formulas) {
        for (
          const [kind, vars] of [["per_resource", f.perResource], ["per_consumer", f.perConsumer]] as const
        ) {
          for (const [v, filter] of Object.entries(vars)) {
            if (registry.byName(filter.metric) !== undefined) continue;
            log.warn(
              `Formula "${f.name}": ${kind}.${v} reads metric "${filter.metric}", which no enabled plugin ` +
                "creates: the formula will give nothing (enable the plugin that measures it, or fix the name)",
            );
          }
        }
      }
      return;
    }
    for (const name of c.energy_metrics) {
      const m = registry.byName(name);
      if (m === undefined) {
        log.warn(
          `energy_metrics: "${name}" is created by no enabled plugin: nothing is attributed for it (enable ` +
            "the plugin that measures it, or fix the name)",
        );
      } else if (m.kind !== "delta" || joulesPerUnit(m) === undefined) {
        log.warn(
          `energy_metrics: "${name}" is not an energy (kind delta, unit J or Wh; it is ${m.kind} in ` +
            `${m.unit.code}): it is not attributed`,
        );
      }
    }
  }

  stop(): void {
    for (const off of this.#unsubscribe) off();
    this.#unsubscribe = [];
    const a = this.attributor;
    if (a === undefined) return;
    const s = a.stats;
    const said = `${s.intervals} energy intervals attributed (CPU count ${a.nCpus}, from ${a.nCpusSource})`;
    if (s.incompleteIntervals > 0 || s.latePoints > 0 || s.outOfOrderEnergy > 0) {
      this.#log?.warn(
        `${said}; ${s.incompleteIntervals} computed before all consumer data came, ${s.latePoints} consumer ` +
          `points came after their interval was computed, ${s.outOfOrderEnergy} energy points out of order: ` +
          "their share is in unattributed (raise max_wait if sources flush less often than they poll)",
      );
    } else this.#log?.debug(said);
    if (s.invariantBreaks > 0) {
      this.#log?.warn(
        `Conservation broken in ${s.invariantBreaks} intervals (largest error ` +
          `${(s.maxConservationError * 100).toFixed(3)} %)`,
      );
    }
  }
}

/** The energy-attribution plugin's metadata: `[plugins.energy-attribution]`. */
export const energyAttributionPlugin = definePlugin({
  name: "energy-attribution",
  version: "0.1.0",
  description:
    "Shares measured energy among processes and cgroups by CPU time (GPU: SM utilisation), or by " +
    "Alumet formulas",
  config: energyAttributionConfigSchema,
  init: (config) => new EnergyAttributionPlugin(config),
});

export default energyAttributionPlugin;

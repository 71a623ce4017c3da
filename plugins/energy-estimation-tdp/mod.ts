/**
 * The `energy-estimation-tdp` plugin: where no energy is measured (virtual machines, machines without RAPL), a
 * transform estimates the CPU's energy from its CPU time and its TDP, as Alumet's plugin of that name does, and
 * marks every point it emits `estimated = true`.
 *
 * @module
 */
import { countCpus } from "../../src/sys/system.ts";
import { duration, z } from "../../src/plugin/schema.ts";
import { definePlugin } from "../../src/plugin/define.ts";
import type { Transform } from "../../src/plugin/plugin.ts";
import type { Attributes, Batch } from "../../src/model/batch.ts";
import { defineMetrics } from "../../src/model/metric_set.ts";
import type { Metric, MetricId } from "../../src/model/metrics.ts";
import { PREFIXES, unit } from "../../src/model/units.ts";
import { AlumetError } from "../../src/errors.ts";

/** The metric this plugin creates (issue 11's contract: f64 J delta, attributes `cpu_state` and `estimated`). */
export const TDP_METRICS = defineMetrics({
  estimated: {
    name: "estimated_consumed_energy",
    unit: unit("J"),
    valueType: "f64",
    kind: "delta",
    description: "CPU energy estimated from CPU time and TDP since the previous measurement (an estimate)",
  },
});

/**
 * The `cpu_state` values whose sum is the machine's busy CPU time: `idle` is idle; `steal` is time the
 * hypervisor gave to other machines; `guest` and `guest_nice` are already counted in `user` and `nice` by the
 * kernel. Add up `estimated_consumed_energy` over these states for the machine's estimate.
 */
export const ACTIVE_CPU_STATES: readonly string[] = Object.freeze([
  "user",
  "nice",
  "system",
  "irq",
  "softirq",
]);

/** The schema of `[plugins.energy-estimation-tdp]`, with Alumet's keys. */
export const tdpConfigSchema = z.strictObject({
  // Alumet divides by it; here the interval cancels out (see the README): accepted, not needed.
  poll_interval: duration().prefault("5s"),
  tdp: z.number().positive({ error: "the CPU's TDP in watts, a positive number" }).default(100),
  nb_vcpu: z.number().positive({ error: "a positive number of virtual CPUs" }).default(1),
  // Alumet's default is 1; here the logical CPUs of this machine, which is what a bare-metal machine needs.
  nb_cpu: z.number().positive({ error: "a positive number of logical CPUs" }).optional(),
  cpu_usage: z.string().min(1, { error: "a metric name" }).default("kernel_cpu_time"),
  // Alumet: the factor that turns cpu_usage into µs. Here derived from the metric's unit unless given.
  cpu_time_conversion_factor: z.number().positive({ error: "a positive factor to µs" }).optional(),
});

/** The validated `[plugins.energy-estimation-tdp]` table. */
export type TdpConfig = z.infer<typeof tdpConfigSchema>;

/** What the estimate needs, resolved once. */
export interface TdpEstimateOptions {
  /** The CPU time metric (`kernel_cpu_time`). */
  readonly cpuTime: MetricId;
  /** Units of the CPU time metric per second (`ms`: 1000). */
  readonly unitsPerSecond: number;
  /** Watts (TDP). */
  readonly tdp: number;
  readonly nbVcpu: number;
  readonly nbCpu: number;
}

/**
 * Units of a time metric per second, from its unit (`ns`: 1e9, `us`: 1e6, `ms`: 1000, `s`: 1); throws an
 * {@linkcode AlumetError} for a metric that is not a time.
 */
export function unitsPerSecond(m: Metric): number {
  if (m.unit.custom || m.unit.base !== "s") {
    throw new AlumetError(
      `The cpu_usage metric "${m.name}" is in "${m.unit.code}", not a time: set ` +
        `[plugins.energy-estimation-tdp] cpu_usage to a CPU time metric such as "kernel_cpu_time"`,
    );
  }
  const e = PREFIXES[m.unit.prefix].exponent;
  return e < 0 ? 10 ** -e : 1 / 10 ** e;
}

/**
 * For each point of the CPU time metric at the local machine (the `cpu` line of `/proc/stat`, one per
 * `cpu_state`; the per-core points would count the machine twice and are skipped), adds an
 * `estimated_consumed_energy` point with the same timestamp, consumer and attributes plus `estimated = true`:
 *
 * `E (J) = Δcpu (s) × TDP (W) × nb_vcpu / nb_cpu`
 *
 * which is Alumet's formula `Δcpu(µs) · nb_vcpu · TDP / (10^6 · poll_interval · nb_cpu)` (a mean power, in W,
 * over the interval) times the interval the CPU time was measured over, so that the result is the energy of
 * that interval, in joules, whatever the interval.
 */
export class TdpEstimateTransform implements Transform {
  readonly #options: TdpEstimateOptions;
  /** W per busy CPU: TDP × nb_vcpu / nb_cpu. */
  readonly #watts: number;
  readonly #estimated: MetricId<"f64">;
  readonly #attributes = new WeakMap<Attributes, Attributes>();

  constructor(estimated: MetricId<"f64">, options: TdpEstimateOptions) {
    this.#estimated = estimated;
    this.#options = options;
    this.#watts = options.tdp * options.nbVcpu / options.nbCpu;
  }

  apply(batch: Batch): void {
    const n = batch.length;
    const cpu = this.#options.cpuTime;
    for (let i = 0; i < n; i++) {
      if (batch.metricAt(i) !== cpu) continue;
      const resource = batch.resourceAt(i);
      if (resource.kind !== "local_machine") continue;
      const attrs = batch.attributesAt(i);
      let out = this.#attributes.get(attrs);
      if (out === undefined) this.#attributes.set(attrs, out = Object.freeze({ ...attrs, estimated: true }));
      const seconds = Number(batch.valueAt(i)) / this.#options.unitsPerSecond;
      batch.push(this.#estimated, seconds * this.#watts, {
        timestamp: batch.timestampAt(i),
        resource,
        consumer: batch.consumerAt(i),
        attributes: out,
      });
    }
  }
}

/**
 * The logical CPUs of this machine (the `nb_cpu` default), from `/proc/stat` (`node:os` would cost ~8 ms of
 * start-up to every `exec`).
 */
export function logicalCpus(): number {
  return countCpus();
}

/** The `energy-estimation-tdp` plugin (Alumet's name and keys). */
export const energyEstimationTdpPlugin = definePlugin({
  name: "energy-estimation-tdp",
  version: "0.1.0",
  description: "Estimates the CPU's energy from kernel_cpu_time and the TDP (estimated_consumed_energy)",
  config: tdpConfigSchema,
  init(config) {
    let estimated: MetricId<"f64"> | undefined;
    // Transforms are added in start, but the CPU time metric is known for sure only in preStart (its plugin may
    // come after this one): the transform added in start applies the estimate once preStart has built it.
    let inner: TdpEstimateTransform | undefined;
    return {
      start(ctx) {
        ({ estimated } = ctx.createMetrics(TDP_METRICS));
        inner = undefined;
        ctx.addTransform("transform", { apply: (batch: Batch) => inner?.apply(batch) });
      },
      preStart(ctx) {
        const m = ctx.metrics.byName(config.cpu_usage);
        if (m === undefined) {
          ctx.log.warn(
            `No metric "${config.cpu_usage}": nothing to estimate from. Enable the procfs plugin's kernel ` +
              `source ([plugins.procfs.kernel] enabled = true), or set cpu_usage to a CPU time metric`,
          );
          return;
        }
        const nbCpu = config.nb_cpu ?? logicalCpus();
        let perSecond = unitsPerSecond(m);
        const factor = config.cpu_time_conversion_factor;
        if (factor !== undefined) {
          if (Math.abs(1e6 / factor - perSecond) > 1e-9 * perSecond) {
            ctx.log.warn(
              `cpu_time_conversion_factor = ${factor} does not turn "${m.name}" (in ${m.unit.code}) into µs ` +
                `(that would be ${1e6 / perSecond}); using ${factor} as configured`,
            );
          }
          perSecond = 1e6 / factor;
        }
        ctx.log.info(
          `Estimating CPU energy from ${m.name}: TDP ${config.tdp} W × nb_vcpu ${config.nb_vcpu} / nb_cpu ` +
            `${nbCpu}${config.nb_cpu === undefined ? " (this machine's logical CPUs)" : ""}`,
        );
        inner = new TdpEstimateTransform(estimated!, {
          cpuTime: m.id,
          unitsPerSecond: perSecond,
          tdp: config.tdp,
          nbVcpu: config.nb_vcpu,
          nbCpu,
        });
      },
    };
  },
});

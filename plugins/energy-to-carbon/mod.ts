/**
 * The `energy-to-carbon` plugin: a transform that adds, for every point of an energy series, the grams of
 * CO₂-equivalent it stands for, `carbon_emission` = energy in J / 3.6e6 × intensity in gCO₂e/kWh, with the
 * intensity of Alumet's three modes: the world average (475), a country's yearly average from the table shipped
 * with the plugin, or a configured value.
 *
 * @module
 */
import { duration, z } from "../../src/plugin/schema.ts";
import { definePlugin } from "../../src/plugin/define.ts";
import type { ElementContext, Transform } from "../../src/plugin/plugin.ts";
import type { Attributes, Batch } from "../../src/model/batch.ts";
import { defineMetrics } from "../../src/model/metric_set.ts";
import type { Metric, MetricId } from "../../src/model/metrics.ts";
import { customUnit, PREFIXES, type Unit } from "../../src/model/units.ts";
import table from "./energy_mix_per_country.json" with { type: "json" };

/** Alumet's world average intensity, gCO₂e/kWh (its `world_avg` mode). */
export const WORLD_AVERAGE_INTENSITY = 475;

/** Joules in a kilowatt-hour. */
const J_PER_KWH = 3.6e6;

/** One row of the country table: intensity (gCO₂e/kWh), the year of the figure, the country's name. */
export interface CountryIntensity {
  readonly code: string;
  readonly intensity: number;
  readonly year: number;
  readonly name: string;
}

const COUNTRIES: ReadonlyMap<string, CountryIntensity> = new Map(
  Object.entries(table.countries as unknown as Record<string, [number, number, string]>).map((
    [code, [i, y, n]],
  ) => [
    code,
    Object.freeze({ code, intensity: i, year: y, name: n }),
  ]),
);

/** Where the country table comes from (also written in the table itself and the README). */
export const COUNTRY_TABLE_SOURCE: string = table._source;

/**
 * The yearly average intensity of a country, by ISO 3166-1 alpha-3 code (`"FRA"`), from the table shipped with
 * the plugin; `undefined` for a code the table does not have.
 *
 * @example
 * ```ts
 * import { countryIntensity } from "./mod.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(countryIntensity("FRA"), { code: "FRA", intensity: 56.039, year: 2023, name: "France" });
 * assert.equal(countryIntensity("XYZ"), undefined);
 * ```
 */
export function countryIntensity(code: string): CountryIntensity | undefined {
  return COUNTRIES.get(code);
}

/** The codes the country table knows, sorted. */
export function countryCodes(): string[] {
  return [...COUNTRIES.keys()].sort();
}

/**
 * How many joules one unit of `unit` is, for an energy unit (J or Wh, with any SI prefix); `undefined` for
 * anything else. This is what makes a metric an energy metric here.
 *
 * @example
 * ```ts
 * import { joulesPerUnit } from "./mod.ts";
 * import { unit } from "../../src/model/units.ts";
 * import assert from "node:assert/strict";
 * assert.equal(joulesPerUnit(unit("J", "milli")), 1e-3);
 * assert.equal(joulesPerUnit(unit("W.h", "kilo")), 3.6e6);
 * assert.equal(joulesPerUnit(unit("W")), undefined);
 * ```
 */
export function joulesPerUnit(u: Unit): number | undefined {
  if (u.custom) return undefined;
  const scale = 10 ** PREFIXES[u.prefix].exponent;
  if (u.base === "J") return scale;
  if (u.base === "W.h") return scale * 3600;
  return undefined;
}

/** True for an energy series as issue 11's contract defines it: kind `delta` and an energy unit. */
export function isEnergySeries(m: Metric): boolean {
  return m.kind === "delta" && joulesPerUnit(m.unit) !== undefined;
}

/** Alumet's custom unit for grams of CO₂(-equivalent). */
export const G_CO2 = customUnit("g_CO2");

/** The metric this plugin creates. */
export const CARBON_METRICS = defineMetrics({
  carbon: {
    name: "carbon_emission",
    unit: G_CO2,
    valueType: "f64",
    kind: "delta",
    description: "CO2-equivalent emitted to produce the energy of the interval (energy x carbon intensity)",
  },
});

const MODES = ["world_avg", "country", "intensity_override"] as const;

/** The schema of `[plugins.energy-to-carbon]`, with Alumet's keys. */
export const energyToCarbonConfigSchema = z.strictObject({
  mode: z.enum(MODES).default("world_avg"),
  country: z.strictObject({
    code: z.string({ error: 'an ISO 3166-1 alpha-3 country code such as "FRA"' }).transform((text, ctx) => {
      const code = text.trim().toUpperCase();
      if (COUNTRIES.has(code)) return code;
      ctx.issues.push({
        code: "custom",
        input: text,
        message:
          `an ISO 3166-1 alpha-3 code that the plugin's country table has (such as FRA, DEU, USA, CHN; ` +
          `the list is in plugins/energy-to-carbon/README.md), not "${text}"; or use ` +
          `mode = "intensity_override" with your own figure`,
      });
      return z.NEVER;
    }),
  }).optional(),
  intensity_override: z.strictObject({
    intensity: z.number().min(0, { error: "an intensity in gCO2e/kWh, 0 or more" }),
  }).optional(),
  // Alumet's key; nothing to poll here: each energy point is converted as it passes.
  poll_interval: duration().optional(),
})
  .refine((c) => c.mode !== "country" || c.country !== undefined, {
    path: ["country", "code"],
    error: 'a country code, e.g. [plugins.energy-to-carbon.country] code = "FRA", since mode = "country"',
  })
  .refine((c) => c.mode !== "intensity_override" || c.intensity_override !== undefined, {
    path: ["intensity_override", "intensity"],
    error:
      'an intensity in gCO2e/kWh, e.g. [plugins.energy-to-carbon.intensity_override] intensity = 100, since mode = "intensity_override"',
  });

/** The validated `[plugins.energy-to-carbon]` table. */
export type EnergyToCarbonConfig = z.infer<typeof energyToCarbonConfigSchema>;

/** The intensity, gCO₂e/kWh, that a validated config selects. */
export function intensityOf(config: EnergyToCarbonConfig): number {
  switch (config.mode) {
    case "world_avg":
      return WORLD_AVERAGE_INTENSITY;
    case "country":
      return COUNTRIES.get(config.country!.code)!.intensity;
    case "intensity_override":
      return config.intensity_override!.intensity;
  }
}

/**
 * Adds one `carbon_emission` point after the batch for each point of an energy series (every metric of kind
 * `delta` in J or Wh, whatever its prefix), with the same timestamp, resource, consumer and attributes plus
 * `energy_metric` (the energy metric's name). The energy points stay.
 */
export class EnergyToCarbonTransform implements Transform {
  readonly #carbon: MetricId<"f64">;
  /** gCO₂e per kWh. */
  readonly #intensity: number;
  /**
   * Per metric id: the power of ten that turns its unit into J (`mJ`: -3), plus 3600's for Wh in `#wh`;
   * `null`: not an energy series.
   */
  readonly #exponent: (number | null)[] = [];
  readonly #wh: boolean[] = [];
  readonly #attributes = new Map<MetricId, WeakMap<Attributes, Attributes>>();

  /**
   * @param carbon the `carbon_emission` metric
   * @param intensity gCO₂e/kWh
   */
  constructor(carbon: MetricId<"f64">, intensity: number) {
    this.#carbon = carbon;
    this.#intensity = intensity;
  }

  apply(batch: Batch, ctx: ElementContext): void {
    const n = batch.length;
    for (let i = 0; i < n; i++) {
      const id = batch.metricAt(i);
      let e = this.#exponent[id];
      if (e === undefined) {
        const m = ctx.metric(id);
        e = this.#exponent[id] = isEnergySeries(m) ? PREFIXES[m.unit.prefix].exponent : null;
        this.#wh[id] = m.unit.base === "W.h";
      }
      if (e === null) continue;
      // Divided or multiplied by an exact power of ten, so that round figures stay round (1 kWh → 475 g).
      const v = Number(batch.valueAt(i)) * (this.#wh[id] ? 3600 : 1);
      const joules = e < 0 ? v / 10 ** -e : v * 10 ** e;
      batch.push(this.#carbon, joules * this.#intensity / J_PER_KWH, {
        timestamp: batch.timestampAt(i),
        resource: batch.resourceAt(i),
        consumer: batch.consumerAt(i),
        attributes: this.#attributesFor(id, batch.attributesAt(i), ctx),
      });
    }
  }

  /** The source's attributes plus `energy_metric`, created once per (metric, attribute set). */
  #attributesFor(id: MetricId, attrs: Attributes, ctx: ElementContext): Attributes {
    let byAttrs = this.#attributes.get(id);
    if (byAttrs === undefined) this.#attributes.set(id, byAttrs = new WeakMap());
    let out = byAttrs.get(attrs);
    if (out === undefined) {
      out = Object.freeze({ ...attrs, energy_metric: ctx.metric(id).name });
      byAttrs.set(attrs, out);
    }
    return out;
  }
}

/** The `energy-to-carbon` plugin (Alumet's name and keys). */
export const energyToCarbonPlugin = definePlugin({
  name: "energy-to-carbon",
  version: "0.1.0",
  description: "Converts every energy series to grams of CO2-equivalent (carbon_emission)",
  config: energyToCarbonConfigSchema,
  init(config) {
    const intensity = intensityOf(config);
    return {
      start(ctx) {
        const { carbon } = ctx.createMetrics(CARBON_METRICS);
        const where = config.mode === "country"
          ? `${config.country!.code} (${COUNTRIES.get(config.country!.code)!.name}, ` +
            `${COUNTRIES.get(config.country!.code)!.year})`
          : config.mode === "world_avg"
          ? "world average"
          : "configured";
        ctx.log.info(`Carbon intensity ${intensity} gCO2e/kWh (${where})`);
        ctx.addTransform("transform", new EnergyToCarbonTransform(carbon, intensity));
      },
    };
  },
});

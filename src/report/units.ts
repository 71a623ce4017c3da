/**
 * What a metric of a run is, from what a file says of it: the csv output writes `<name>_<unit>` (display or
 * unique unit name) or the bare name, and no kind; the sqlite output writes the name, the UCUM code and the
 * kind. {@linkcode classifyCsvMetric} and {@linkcode classifySqliteMetric} return the metric's base name, unit
 * and what the report does with it.
 *
 * @module
 */
import { BASE_UNITS, type BaseUnit, type Prefix, PREFIXES } from "../model/units.ts";

/** What the report does with a metric's series. */
export type Role =
  /** energy since the previous point (kind delta, an energy unit): summed, and ÷ interval = power */
  | "energy"
  /** `attributed_energy`: energy per consumer */
  | "attributed"
  /** a power reading (W) */
  | "power"
  /** `cpu_percent` of a process or cgroup */
  | "cpu"
  /** `memory_usage` of a process or cgroup */
  | "memory"
  /** counted only */
  | "other";

/** A metric as the report understands it. */
export interface MetricInfo {
  /** The name without the unit suffix. */
  readonly name: string;
  /** The unit as the file wrote it (display form or UCUM code), empty when unknown. */
  readonly unit: string;
  readonly role: Role;
  /** Multiplies a value into joules (energy, attributed), watts (power), bytes (memory), % (cpu); else 1. */
  readonly factor: number;
}

/** Units of the metrics of this project's plugins, for a csv written without unit suffixes. */
const KNOWN: Readonly<Record<string, string>> = {
  rapl_consumed_energy: "J",
  nvml_energy_consumption: "mJ",
  hwmon_energy: "J",
  grace_energy_consumption: "mJ",
  estimated_consumed_energy: "J",
  attributed_energy: "J",
  nvml_instant_power: "mW",
  hwmon_power: "W",
  grace_instant_power: "uW",
  input_power: "mW",
  cpu_percent: "%",
  memory_usage: "By",
};

interface UnitParse {
  base: BaseUnit;
  factor: number;
}

/** Every way the csv output writes a unit (display name and unique name), to its base and power of ten. */
const SUFFIXES = new Map<string, UnitParse>();
for (const base of Object.keys(BASE_UNITS) as BaseUnit[]) {
  for (const prefix of Object.keys(PREFIXES) as Prefix[]) {
    if (base === "1" && prefix !== "plain") continue;
    const p = PREFIXES[prefix];
    const parse = { base, factor: 10 ** p.exponent };
    const display = p.display + BASE_UNITS[base].display;
    const unique = (prefix === "plain" ? "" : prefix) + base;
    const code = p.code + base;
    for (const text of [code, unique, display]) {
      if (text !== "" && !SUFFIXES.has(text)) SUFFIXES.set(text, parse);
    }
    if (prefix === "micro") SUFFIXES.set("µ" + BASE_UNITS[base].display, parse); // the micro sign U+00B5
  }
}

/**
 * The base unit and power of ten of a unit written as a UCUM code, a unique name or a display name
 * (`mJ`, `milliJ`, `kWh`, `kiloW.h`, `μW`); undefined for a unit this module does not know.
 */
export function parseUnitText(text: string): UnitParse | undefined {
  return SUFFIXES.get(text);
}

function roleOf(name: string, unit: UnitParse | undefined, kind: string | undefined): Role {
  if (name === "attributed_energy") return "attributed";
  if (name === "cpu_percent") return "cpu";
  if (name === "memory_usage") return "memory";
  if (unit === undefined) return "other";
  if ((unit.base === "J" || unit.base === "W.h") && (kind === undefined || kind === "delta")) return "energy";
  if (unit.base === "W" && (kind === undefined || kind === "gauge")) return "power";
  return "other";
}

function info(name: string, unitText: string, kind: string | undefined): MetricInfo {
  const unit = parseUnitText(unitText);
  const role = roleOf(name, unit, kind);
  let factor = unit?.factor ?? 1;
  if (unit?.base === "W.h") factor *= 3600;
  return { name, unit: unitText, role, factor };
}

/**
 * A metric from its csv `metric` cell: `<name>_<unit>` when the suffix is a unit (`rapl_consumed_energy_J`,
 * `nvml_instant_power_milliW`), else a metric of this project's plugins written without suffix, else a metric
 * with no known unit (counted only). A csv has no kind: an energy unit is taken as a delta (Alumet's energy
 * metrics are), a power unit as a gauge.
 *
 * @example
 * ```ts
 * import { classifyCsvMetric } from "./units.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(classifyCsvMetric("nvml_energy_consumption_mJ"),
 *   { name: "nvml_energy_consumption", unit: "mJ", role: "energy", factor: 0.001 });
 * assert.equal(classifyCsvMetric("rapl_consumed_energy").role, "energy");
 * assert.equal(classifyCsvMetric("kernel_cpu_time_millis").role, "other");
 * assert.equal(classifyCsvMetric("memory_usage_kiloBy").factor, 1000);
 * ```
 */
export function classifyCsvMetric(cell: string): MetricInfo {
  const known = KNOWN[cell];
  if (known !== undefined) return info(cell, known, undefined);
  // The unit is what follows the last "_" (units have no "_"); W.h's display form is "Wh".
  const cut = cell.lastIndexOf("_");
  if (cut > 0) {
    const suffix = cell.slice(cut + 1);
    if (parseUnitText(suffix) !== undefined) return info(cell.slice(0, cut), suffix, undefined);
  }
  return { name: cell, unit: "", role: cell === "cpu_percent" ? "cpu" : "other", factor: 1 };
}

/**
 * A metric from the sqlite output's `metrics` row: its name, UCUM code and kind.
 *
 * @example
 * ```ts
 * import { classifySqliteMetric } from "./units.ts";
 * import assert from "node:assert/strict";
 * assert.equal(classifySqliteMetric("rapl_consumed_energy", "J", "delta").role, "energy");
 * assert.equal(classifySqliteMetric("energy_counter", "J", "counter").role, "other");
 * ```
 */
export function classifySqliteMetric(name: string, unit: string, kind: string): MetricInfo {
  return info(name, unit, kind);
}

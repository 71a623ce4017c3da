/**
 * Prometheus names and text escaping: metric and label names sanitised to what Prometheus accepts, units
 * converted to the base units of Prometheus's naming conventions (`joules`, `seconds`, `bytes`, `ratio`…), and
 * the escaping of label values and help text in the text formats.
 *
 * @module
 */
import type { MetricKind } from "../../src/model/metrics.ts";
import { PREFIXES, type Unit } from "../../src/model/units.ts";

/**
 * Makes a valid Prometheus metric or label name (`[a-zA-Z_][a-zA-Z0-9_]*`): each run of other characters
 * becomes one `_`, and those at the very end are dropped (`active(anon)` → `active_anon`), and a name that starts
 * with a digit gets a leading `_`. Colons, valid in metric names but reserved for recording rules, are
 * replaced too. An empty name stays empty.
 *
 * @example
 * ```ts
 * import { sanitizeName } from "./naming.ts";
 * import assert from "node:assert/strict";
 * assert.equal(sanitizeName("active(anon)"), "active_anon");
 * assert.equal(sanitizeName("cpu_percent_%"), "cpu_percent");
 * assert.equal(sanitizeName("2xx"), "_2xx");
 * assert.equal(sanitizeName("a.b-c:d"), "a_b_c_d");
 * ```
 */
export function sanitizeName(name: string): string {
  let s = name.replace(/[^a-zA-Z0-9_]+/g, "_");
  if (/[^a-zA-Z0-9_]$/.test(name)) s = s.replace(/_+$/, "") || "_";
  if (/^[0-9]/.test(s)) s = "_" + s;
  return s;
}

/**
 * A label name from an attribute key: sanitised like a metric name, and never one that Prometheus reserves
 * (`__…`) nor one of the exporter's own labels, which get `attr_` in front.
 *
 * @example
 * ```ts
 * import { labelName } from "./naming.ts";
 * import assert from "node:assert/strict";
 * assert.equal(labelName("domain"), "domain");
 * assert.equal(labelName("__name__"), "attr___name__");
 * assert.equal(labelName("resource_kind"), "attr_resource_kind");
 * assert.equal(labelName("cpu-state"), "cpu_state");
 * ```
 */
export function labelName(key: string): string {
  const s = sanitizeName(key);
  if (s === "") return "attr_";
  if (s.startsWith("__") || FIXED_LABELS.includes(s)) return "attr_" + s;
  return s;
}

/** The labels every series has, as Alumet's exporter names them. */
export const FIXED_LABELS: readonly string[] = [
  "resource_kind",
  "resource_id",
  "resource_consumer_kind",
  "resource_consumer_id",
];

/** How a unit is exported: the base unit's name (the name's suffix) and how to convert a value to it. */
export interface PromUnit {
  /** The unit suffix without `_` (`joules`, `seconds`), or `""` for none (the dimensionless unit `1`). */
  readonly name: string;
  /** Multiply a value by this to get it in the base unit. */
  readonly scale: number;
  /** Add this after scaling, for a level (a gauge) only: the offset of °F to °C. */
  readonly offset: number;
}

const BASE_NAMES: Record<string, readonly [string, number, number?]> = {
  "1": ["", 1],
  s: ["seconds", 1],
  W: ["watts", 1],
  J: ["joules", 1],
  V: ["volts", 1],
  A: ["amperes", 1],
  Hz: ["hertz", 1],
  Cel: ["celsius", 1],
  "[degF]": ["celsius", 5 / 9, -32 * 5 / 9],
  "W.h": ["joules", 3600],
  By: ["bytes", 1],
  "%": ["ratio", 0.01],
};

/**
 * The Prometheus base unit of a unit, with the factor to convert to it: `mJ` → joules × 0.001, `kWh` → joules
 * × 3.6e6, `%` → ratio × 0.01, `°F` → celsius. A custom unit keeps its sanitised unique name, unscaled.
 *
 * @example
 * ```ts
 * import { promUnit } from "./naming.ts";
 * import { unit } from "../../src/model/units.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(promUnit(unit("J", "milli")), { name: "joules", scale: 0.001, offset: 0 });
 * assert.deepEqual(promUnit(unit("W.h", "kilo")), { name: "joules", scale: 3_600_000, offset: 0 });
 * assert.equal(promUnit(unit("1")).name, "");
 * ```
 */
export function promUnit(u: Unit): PromUnit {
  if (u.custom) return { name: sanitizeName(u.code).toLowerCase(), scale: 1, offset: 0 };
  const base = BASE_NAMES[u.base];
  if (base === undefined) return { name: sanitizeName(u.code).toLowerCase(), scale: 1, offset: 0 };
  const exponent = PREFIXES[u.prefix].exponent;
  const prefixScale = exponent === 0 ? 1 : exponent > 0 ? 10 ** exponent : 1 / 10 ** -exponent;
  return { name: base[0], scale: base[1] * prefixScale, offset: base[2] ?? 0 };
}

/** A metric as exported: the family name and its type. */
export interface FamilyName {
  /**
   * The family name, with the unit suffix and without `_total`: what `# TYPE` and `# UNIT` name in
   * OpenMetrics.
   */
  readonly family: string;
  /** The name of the samples: the family name, then `_total` for a counter. */
  readonly sample: string;
  /** `counter` for `delta` and `counter` metrics, else `gauge`. */
  readonly type: "counter" | "gauge";
}

/**
 * The exported name of a metric: `<prefix><name><suffix>`, sanitised (the name alone first, so that
 * `active(anon)` gives `active_anon_alumet`), then `_<unit>` (unless the name already
 * ends with it), then `_total` for a counter (a `delta` metric is exported as the counter of its sum).
 *
 * @example
 * ```ts
 * import { exportedName } from "./naming.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(exportedName("rapl_consumed_energy", "joules", "delta", "", "_alumet"), {
 *   family: "rapl_consumed_energy_alumet_joules",
 *   sample: "rapl_consumed_energy_alumet_joules_total",
 *   type: "counter",
 * });
 * assert.equal(exportedName("active(anon)", "bytes", "gauge", "", "").sample, "active_anon_bytes");
 * assert.equal(exportedName("kernel_context_switches", "", "counter", "", "").sample, "kernel_context_switches_total");
 * ```
 */
export function exportedName(
  name: string,
  unitName: string,
  kind: MetricKind,
  prefix: string,
  suffix: string,
): FamilyName {
  const type = kind === "gauge" ? "gauge" : "counter";
  let family = sanitizeName(prefix + sanitizeName(name) + suffix);
  if (type === "counter" && family.endsWith("_total")) family = family.slice(0, -"_total".length);
  if (unitName !== "" && !family.endsWith("_" + unitName)) family += "_" + unitName;
  return { family, sample: type === "counter" ? family + "_total" : family, type };
}

/**
 * Escapes a label value for both text formats: backslash, double quote and line feed.
 *
 * @example
 * ```ts
 * import { escapeLabelValue } from "./naming.ts";
 * import assert from "node:assert/strict";
 * assert.equal(escapeLabelValue('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
 * ```
 */
export function escapeLabelValue(v: string): string {
  return /["\\\n]/.test(v) ? v.replace(/["\\\n]/g, (c) => (c === "\n" ? "\\n" : "\\" + c)) : v;
}

/**
 * Escapes help text: backslash and line feed (text format 0.0.4), and the double quote too in OpenMetrics.
 */
export function escapeHelp(text: string, openMetrics: boolean): string {
  const re = openMetrics ? /["\\\n]/g : /[\\\n]/g;
  return text.replace(re, (c) => (c === "\n" ? "\\n" : "\\" + c));
}

/**
 * A sample value as both text formats read it: `+Inf`, `-Inf`, `NaN`, else the shortest round-trip digits.
 *
 * @example
 * ```ts
 * import { formatValue } from "./naming.ts";
 * import assert from "node:assert/strict";
 * assert.equal(formatValue(1.5), "1.5");
 * assert.equal(formatValue(-Infinity), "-Inf");
 * ```
 */
export function formatValue(v: number): string {
  if (Number.isFinite(v)) return String(v);
  if (v !== v) return "NaN";
  return v > 0 ? "+Inf" : "-Inf";
}

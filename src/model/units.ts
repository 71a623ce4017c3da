/**
 * Units of measurement: UCUM base codes, SI prefixes, and custom units.
 *
 * A unit is a plain frozen value: `{ base, prefix, code, display }`. `code` is the UCUM code
 * (`mJ`, `us`, `By`), `display` the human form (`mJ`, `µs`, `B`). Custom units carry their own
 * code and display name.
 *
 * @module
 */

/** The base units Alumet knows, by UCUM code. */
export const BASE_UNITS = {
  "1": { display: "" },
  s: { display: "s" },
  W: { display: "W" },
  J: { display: "J" },
  V: { display: "V" },
  A: { display: "A" },
  Hz: { display: "Hz" },
  Cel: { display: "°C" },
  "[degF]": { display: "°F" },
  "W.h": { display: "Wh" },
  By: { display: "B" },
  "%": { display: "%" },
} as const;

/** UCUM code of a base unit. */
export type BaseUnit = keyof typeof BASE_UNITS;

/** SI prefixes with their UCUM code, display form and power of ten. */
export const PREFIXES = {
  nano: { code: "n", display: "n", exponent: -9 },
  micro: { code: "u", display: "μ", exponent: -6 }, // Greek mu (U+03BC), as Alumet writes it
  milli: { code: "m", display: "m", exponent: -3 },
  plain: { code: "", display: "", exponent: 0 },
  kilo: { code: "k", display: "k", exponent: 3 },
  mega: { code: "M", display: "M", exponent: 6 },
  giga: { code: "G", display: "G", exponent: 9 },
} as const;

/** Name of an SI prefix. */
export type Prefix = keyof typeof PREFIXES;

/** A unit: a base (UCUM, or custom) with an SI prefix. */
export interface Unit {
  /** UCUM code of the base unit, or the unique name of a custom unit. */
  readonly base: string;
  /** SI prefix, `"plain"` when none. */
  readonly prefix: Prefix;
  /** Full UCUM code, e.g. `mJ`, `us`, `By`; a custom unit's unique name. */
  readonly code: string;
  /** Human-readable form, e.g. `mJ`, `µs`, `B`. Empty for the dimensionless unit `1`. */
  readonly display: string;
  /** True for a unit that is not one of {@linkcode BASE_UNITS}. */
  readonly custom: boolean;
}

const cache = new Map<string, Unit>();

/**
 * Returns the (shared, frozen) unit for a base and a prefix.
 *
 * @example
 * ```ts
 * import { unit } from "./units.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(unit("J", "milli").code, "mJ");
 * assert.deepEqual(unit("s", "micro").display, "μs");
 * ```
 */
export function unit(base: BaseUnit, prefix: Prefix = "plain"): Unit {
  const key = `${prefix}:${base}`;
  let u = cache.get(key);
  if (u === undefined) {
    if (base === "1" && prefix !== "plain") {
      throw new RangeError(`The unit "1" takes no prefix (got ${prefix})`);
    }
    const p = PREFIXES[prefix];
    const code = p.code + base;
    const display = p.display + BASE_UNITS[base].display;
    u = Object.freeze({ base, prefix, code, display, custom: false });
    cache.set(key, u);
  }
  return u;
}

/**
 * A custom unit, for quantities UCUM does not name (e.g. `"packets"`).
 *
 * @param uniqueName stable identifier, used in exports
 * @param displayName human form; defaults to `uniqueName`
 */
export function customUnit(uniqueName: string, displayName: string = uniqueName): Unit {
  if (uniqueName === "") throw new RangeError("A custom unit needs a non-empty unique name");
  return Object.freeze({
    base: uniqueName,
    prefix: "plain",
    code: uniqueName,
    display: displayName,
    custom: true,
  });
}

/** True when two units are the same (same base, same prefix). */
export function sameUnit(a: Unit, b: Unit): boolean {
  return a.base === b.base && a.prefix === b.prefix && a.custom === b.custom;
}

const BY_TEXT = new Map<string, Unit>();
for (const base of Object.keys(BASE_UNITS) as BaseUnit[]) {
  for (const prefix of Object.keys(PREFIXES) as Prefix[]) {
    if (base === "1" && prefix !== "plain") continue;
    const u = unit(base, prefix);
    BY_TEXT.set(u.code, u);
    if (u.display !== "" && !BY_TEXT.has(u.display)) BY_TEXT.set(u.display, u);
  }
}
// Common spellings users write.
BY_TEXT.set("µs", unit("s", "micro")); // the micro sign (U+00B5), next to the Greek mu Alumet displays
BY_TEXT.set("B", unit("By"));
BY_TEXT.set("Wh", unit("W.h"));
BY_TEXT.set("°C", unit("Cel"));

/**
 * Parses a unit written as a UCUM code or its display form: `"J"`, `"mJ"`, `"kW"`, `"us"`, `"µs"`, `"By"`,
 * `"B"`, `"%"`, `"1"`. Anything else becomes a custom unit with that name.
 *
 * @example
 * ```ts
 * import { parseUnit } from "./units.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseUnit("kW").prefix, "kilo");
 * assert.deepEqual(parseUnit("packets").custom, true);
 * ```
 */
export function parseUnit(text: string): Unit {
  return BY_TEXT.get(text) ?? customUnit(text);
}

/**
 * Durations written the humantime way (`100us`, `250µs`, `2ms`, `1s`, `1min`, `1h`, `5m 30s`), as Alumet's
 * configuration writes them. A duration is a number of milliseconds (fractional below 1 ms).
 *
 * @module
 */

const UNITS: Record<string, number> = {
  ns: 1e-6,
  nsec: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  "μs": 1e-3,
  usec: 1e-3,
  ms: 1,
  msec: 1,
  s: 1000,
  sec: 1000,
  secs: 1000,
  second: 1000,
  seconds: 1000,
  m: 60_000,
  min: 60_000,
  mins: 60_000,
  minute: 60_000,
  minutes: 60_000,
  h: 3_600_000,
  hr: 3_600_000,
  hour: 3_600_000,
  hours: 3_600_000,
  d: 86_400_000,
  day: 86_400_000,
  days: 86_400_000,
};

/** The duration units accepted, for messages. */
export const DURATION_UNITS = "ns, us (µs), ms, s, m (min), h, d";

const PART = /(\d+(?:\.\d+)?)\s*([a-zA-Zµμ]+)/y;

/**
 * Parses a humantime duration into milliseconds; `undefined` when the text is not one.
 *
 * @example
 * ```ts
 * import { parseDuration } from "./duration.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseDuration("250µs"), 0.25);
 * assert.deepEqual(parseDuration("5m 30s"), 330_000);
 * assert.deepEqual(parseDuration("1 fortnight"), undefined);
 * ```
 */
export function parseDuration(text: string): number | undefined {
  const s = text.trim();
  if (s === "") return undefined;
  let total = 0;
  let pos = 0;
  while (pos < s.length) {
    while (s[pos] === " ") pos++;
    if (pos >= s.length) break;
    PART.lastIndex = pos;
    const m = PART.exec(s);
    if (m === null) return undefined;
    const factor = UNITS[m[2]!];
    if (factor === undefined) return undefined;
    total += Number(m[1]) * factor;
    pos = PART.lastIndex;
  }
  return total;
}

/**
 * Formats milliseconds the humantime way, the inverse of {@linkcode parseDuration} for whole units.
 *
 * @example
 * ```ts
 * import { formatDuration } from "./duration.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(formatDuration(1000), "1s");
 * assert.deepEqual(formatDuration(0.1), "100us");
 * assert.deepEqual(formatDuration(330_000), "5m 30s");
 * ```
 */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  let ns = Math.round(ms * 1e6);
  const parts: string[] = [];
  for (
    const [name, size] of [["h", 3.6e12], ["m", 6e10], ["s", 1e9], ["ms", 1e6], ["us", 1e3], [
      "ns",
      1,
    ]] as const
  ) {
    if (ns >= size) {
      const n = Math.floor(ns / size);
      parts.push(`${n}${name}`);
      ns -= n * size;
    }
  }
  return parts.join(" ");
}

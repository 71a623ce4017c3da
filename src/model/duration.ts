/**
 * Durations written the humantime way (`100us`, `250µs`, `2ms`, `1s`, `1min`, `1h`, `5m 30s`), as Alumet's
 * configuration writes them. A duration is a number of milliseconds (fractional below 1 ms).
 *
 * @module
 */

/** Nanoseconds per unit (integers, so that `10ns` or `250us` convert without rounding noise). */
const UNITS: Record<string, number> = {
  ns: 1,
  nsec: 1,
  us: 1e3,
  "µs": 1e3,
  "μs": 1e3,
  usec: 1e3,
  ms: 1e6,
  msec: 1e6,
  s: 1e9,
  sec: 1e9,
  secs: 1e9,
  second: 1e9,
  seconds: 1e9,
  m: 6e10,
  min: 6e10,
  mins: 6e10,
  minute: 6e10,
  minutes: 6e10,
  h: 3.6e12,
  hr: 3.6e12,
  hour: 3.6e12,
  hours: 3.6e12,
  d: 8.64e13,
  day: 8.64e13,
  days: 8.64e13,
};

/** The duration units accepted, for messages. */
export const DURATION_UNITS = "ns, us (µs), ms, s, m (min), h, d";

/**
 * The shortest interval a config may give, in ms: 100 µs. The sampling Worker serves 100 µs periods on time
 * (99.7 % of ticks in `deno task bench`, spinning to each deadline); below that one poll of a kernel file (6–9
 * µs through FFI) and the hand-over of the point take a large share of the period, and a JS timer cannot wake
 * more often. Alumet itself accepts any duration.
 */
export const MIN_INTERVAL_MS = 0.1;
/**
 * The longest interval a config may give, in ms: 24 days. A JS timer waits at most 2^31-1 ms (24.8 days); a
 * longer delay fires at once.
 */
export const MAX_INTERVAL_MS = 24 * 86_400_000;

/**
 * Why `ms` cannot be an interval, or undefined when it can: it must lie in
 * [{@linkcode MIN_INTERVAL_MS}, {@linkcode MAX_INTERVAL_MS}].
 *
 * @example
 * ```ts
 * import { intervalProblem } from "./duration.ts";
 * import assert from "node:assert/strict";
 * assert.equal(intervalProblem(1), undefined);
 * assert.match(intervalProblem(1e-6)!, /from 100us to 24d/);
 * ```
 */
export function intervalProblem(ms: number): string | undefined {
  if (ms >= MIN_INTERVAL_MS && ms <= MAX_INTERVAL_MS) return undefined;
  const range = `from 100us to 24d`;
  return ms < MIN_INTERVAL_MS
    ? `a duration ${range}: a shorter period is more than the sampler can serve here`
    : `a duration ${range}: a timer cannot wait longer`;
}

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
    while (s[pos] === " " || s[pos] === "\t") pos++;
    if (pos >= s.length) break;
    PART.lastIndex = pos;
    const m = PART.exec(s);
    if (m === null) return undefined;
    const factor = UNITS[m[2]!];
    if (factor === undefined) return undefined;
    total += Number(m[1]) * factor;
    pos = PART.lastIndex;
  }
  return total / 1e6;
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

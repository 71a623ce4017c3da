/**
 * Number formatting for what the CLI prints. Not `toLocaleString`: its first call loads ICU data, about 25 ms of
 * an `exec`'s start-up here.
 *
 * @module
 */

/**
 * A number with thousands separators and at most 3 decimals.
 *
 * @example
 * ```ts
 * import { formatCount } from "./format.ts";
 * import assert from "node:assert/strict";
 * assert.equal(formatCount(1234567), "1,234,567");
 * assert.equal(formatCount(-1234.5678), "-1,234.568");
 * assert.equal(formatCount(0.25), "0.25");
 * ```
 */
export function formatCount(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const neg = x < 0;
  const [int, frac] = Math.abs(x).toFixed(Number.isInteger(x) ? 0 : 3).split(".");
  const grouped = int!.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const decimals = frac === undefined ? "" : frac.replace(/0+$/, "");
  return (neg ? "-" : "") + grouped + (decimals ? `.${decimals}` : "");
}

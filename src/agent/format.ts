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

/**
 * A command line as a POSIX shell would take it back: each argument as is when it holds only safe characters,
 * else in single quotes (a `'` inside written `'\''`), so that argument boundaries survive.
 *
 * @example
 * ```ts
 * import { shellQuote } from "./format.ts";
 * import assert from "node:assert/strict";
 * assert.equal(shellQuote(["sh", "-c", "i=0; echo $i"]), "sh -c 'i=0; echo $i'");
 * assert.equal(shellQuote(["printf", "it's", ""]), "printf 'it'\\''s' ''");
 * assert.equal(shellQuote(["make", "-j2", "CC=gcc", "./a/b.c"]), "make -j2 CC=gcc ./a/b.c");
 * ```
 */
export function shellQuote(args: readonly string[]): string {
  return args.map((a) => /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`).join(" ");
}

const BINARY_UNITS = ["KiB", "MiB", "GiB", "TiB"] as const;

/**
 * A size in bytes in the largest binary unit (KiB, MiB, GiB, TiB) that keeps it at 1 or more, one decimal;
 * bytes under 1 KiB as `B`.
 *
 * @returns `[value, unit]`, e.g. `["39.3", "MiB"]`
 *
 * @example
 * ```ts
 * import { humanBytes } from "./format.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(humanBytes(1_613_824), ["1.5", "MiB"]);
 * assert.deepEqual(humanBytes(512_000), ["500.0", "KiB"]);
 * assert.deepEqual(humanBytes(100), ["100", "B"]);
 * ```
 */
export function humanBytes(bytes: number): [string, string] {
  if (!(Math.abs(bytes) >= 1024)) return [String(bytes), "B"];
  let v = bytes / 1024;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < BINARY_UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return [v.toFixed(1), BINARY_UNITS[i]!];
}

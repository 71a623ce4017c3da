/**
 * Wall-clock timestamps in nanoseconds since the Unix epoch, as `bigint`.
 *
 * @module
 */

/** Nanoseconds since 1970-01-01T00:00:00Z. */
export type Timestamp = bigint;

let originNs = BigInt(Math.round(performance.timeOrigin * 1e6));
let lastCheck = 0;

const TWO_32 = 0x1_0000_0000;
/** The origin as two u32 halves, so that a tick adds numbers and builds only the bigint it returns. */
let originHi = 0;
let originLo = 0;
/** The returned bigint is read from these 8 bytes, written as two u32 halves (little-endian, as V8's hosts). */
const out64 = new BigInt64Array(1);
const out32 = new Uint32Array(out64.buffer);

function splitOrigin(): void {
  originHi = Number(originNs >> 32n);
  originLo = Number(originNs & 0xffff_ffffn);
}
splitOrigin();

/**
 * The current wall-clock time with the resolution of `performance.now()` (microseconds or better).
 * It follows the monotonic clock, and realigns on the wall clock when the two drift apart by more than 2 ms
 * (NTP steps, suspend), checked at most once a second. One bigint is allocated per call (the one returned;
 * the sampling Worker calls this at every tick).
 */
export function now(): Timestamp {
  const p = performance.now();
  if (p - lastCheck > 1000) {
    lastCheck = p;
    // Compare with the origin in use (not timeOrigin), so that a step back undoes a step forward.
    const drift = Date.now() - (Number(originNs) / 1e6 + p);
    if (Math.abs(drift) > 2) {
      originNs += BigInt(Math.round(drift * 1e6));
      splitOrigin();
    }
  }
  // ns since the origin: below 2^53 for 104 days of uptime; beyond, the bigint path (exact either way).
  const add = Math.round(p * 1e6);
  if (add > Number.MAX_SAFE_INTEGER) return originNs + BigInt(add);
  const addHi = Math.floor(add / TWO_32);
  let lo = originLo + (add - addHi * TWO_32);
  let hi = originHi + addHi;
  if (lo >= TWO_32) {
    lo -= TWO_32;
    hi++;
  }
  out32[0] = lo;
  out32[1] = hi;
  return out64[0]!;
}

/** A timestamp from milliseconds since the epoch (a `Date`'s time). */
export function fromMillis(ms: number): Timestamp {
  return BigInt(Math.round(ms * 1e6));
}

/**
 * RFC 3339 in UTC with all nine fractional digits (the csv output trims trailing zeros, as Alumet does).
 *
 * @example
 * ```ts
 * import { toRfc3339 } from "./timestamp.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(toRfc3339(1_700_000_000_123_456_789n), "2023-11-14T22:13:20.123456789Z");
 * ```
 */
export function toRfc3339(ts: Timestamp): string {
  const secs = ts / 1_000_000_000n;
  let nanos = ts % 1_000_000_000n;
  let s = secs;
  if (nanos < 0n) {
    nanos += 1_000_000_000n;
    s -= 1n;
  }
  const iso = new Date(Number(s) * 1000).toISOString(); // 2023-11-14T22:13:20.000Z
  return `${iso.slice(0, 19)}.${nanos.toString().padStart(9, "0")}Z`;
}

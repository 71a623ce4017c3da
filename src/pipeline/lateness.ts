/**
 * A fixed-size histogram of tick lateness, cheap enough to record at 10 kHz: 4 buckets per power of two of
 * microseconds, so a percentile is exact to within 19%.
 *
 * @module
 */

const BUCKETS = 96; // up to 2^24 µs ≈ 16.8 s

/**
 * Records lateness values (ms) and answers percentiles (µs).
 *
 * @example
 * ```ts
 * import { LatenessHistogram } from "./lateness.ts";
 * import assert from "node:assert/strict";
 * const h = new LatenessHistogram();
 * for (let i = 0; i < 99; i++) h.record(0.1);
 * h.record(5);
 * assert.ok(Math.abs(h.percentileUs(50) - 100) < 20);
 * assert.ok(h.percentileUs(100) >= 5000 * 0.8);
 * ```
 */
export class LatenessHistogram {
  readonly counts = new Uint32Array(BUCKETS);
  count = 0;

  /** Records one lateness, in ms (negative counts as 0). */
  record(ms: number): void {
    const us = ms * 1000;
    const i = us < 1 ? 0 : Math.min(BUCKETS - 1, 1 + Math.floor(Math.log2(us) * 4));
    this.counts[i]!++;
    this.count++;
  }

  /** The p-th percentile (0–100), in µs: the upper edge of the bucket that holds it; 0 when empty. */
  percentileUs(p: number): number {
    if (this.count === 0) return 0;
    const rank = Math.ceil((p / 100) * this.count);
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return i === 0 ? 1 : 2 ** (i / 4);
    }
    return 2 ** (BUCKETS / 4);
  }

  /** Adds the counts of another histogram (e.g. sent by a sampling Worker). */
  merge(counts: ArrayLike<number>): void {
    for (let i = 0; i < BUCKETS && i < counts.length; i++) {
      this.counts[i]! += counts[i]!;
      this.count += counts[i]!;
    }
  }

  /** Forgets everything. */
  clear(): void {
    this.counts.fill(0);
    this.count = 0;
  }
}

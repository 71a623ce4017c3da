/**
 * {@linkcode Sampler}: downsamples a series as it streams by, in bounded memory, keeping each bucket's
 * lowest and highest point (min/max decimation: a peak or a dip one bucket wide still shows on the chart).
 *
 * @module
 */

/** Buckets kept at most per series: between half and all of them are in use, 2 points each. */
export const DEFAULT_BUCKETS = 1024;

/**
 * Min/max downsampling over time buckets whose width adapts: the first point fixes the origin, buckets start
 * 1 ms wide, and when a point falls beyond the last bucket, neighbouring buckets are merged in pairs (the width
 * doubles) until it fits. So a series of any length ends with at most `buckets` buckets, and at most
 * `2 × buckets` points come out, in time order; a series with fewer points than buckets comes out whole.
 * A point earlier than the first one goes into the first bucket.
 *
 * @example
 * ```ts
 * import { Sampler } from "./sampler.ts";
 * import assert from "node:assert/strict";
 * const s = new Sampler(16);
 * for (let i = 0; i < 1000; i++) s.add(i, i % 100 === 50 ? 99 : 1);
 * const { t, v } = s.points();
 * assert.ok(t.length <= 32);
 * assert.ok(v.includes(99)); // the spikes survive
 * ```
 */
export class Sampler {
  readonly #cap: number;
  #t0 = NaN;
  #width = 1e-3;
  #used = 0;
  #tMin = new Float64Array(16);
  #vMin = new Float64Array(16);
  #tMax = new Float64Array(16);
  #vMax = new Float64Array(16);
  #count = new Uint32Array(16);

  /** @param buckets how many buckets at most (even, ≥ 2); default {@linkcode DEFAULT_BUCKETS} */
  constructor(buckets: number = DEFAULT_BUCKETS) {
    if (!(Number.isInteger(buckets) && buckets >= 2 && buckets % 2 === 0)) {
      throw new RangeError(`Sampler buckets must be an even integer ≥ 2, not ${buckets}`);
    }
    this.#cap = buckets;
  }

  /** Adds the point (`t` in seconds, `v`); a value that is not finite is ignored. */
  add(t: number, v: number): void {
    if (!Number.isFinite(v) || !Number.isFinite(t)) return;
    if (this.#t0 !== this.#t0) this.#t0 = t;
    let i = Math.floor((t - this.#t0) / this.#width);
    if (i < 0) i = 0;
    while (i >= this.#cap) {
      this.#merge();
      i = Math.floor((t - this.#t0) / this.#width);
    }
    if (i >= this.#count.length) this.#grow(i + 1);
    const n = this.#count[i]!;
    if (n === 0) {
      this.#tMin[i] = this.#tMax[i] = t;
      this.#vMin[i] = this.#vMax[i] = v;
    } else {
      if (v < this.#vMin[i]!) {
        this.#vMin[i] = v;
        this.#tMin[i] = t;
      }
      if (v > this.#vMax[i]!) {
        this.#vMax[i] = v;
        this.#tMax[i] = t;
      }
    }
    this.#count[i] = n + 1;
    if (i >= this.#used) this.#used = i + 1;
  }

  #grow(need: number): void {
    let size = this.#count.length;
    while (size < need) size *= 2;
    size = Math.min(size, this.#cap);
    const grow = <T extends Float64Array | Uint32Array>(a: T, make: (n: number) => T): T => {
      const b = make(size);
      b.set(a);
      return b;
    };
    this.#tMin = grow(this.#tMin, (n) => new Float64Array(n));
    this.#vMin = grow(this.#vMin, (n) => new Float64Array(n));
    this.#tMax = grow(this.#tMax, (n) => new Float64Array(n));
    this.#vMax = grow(this.#vMax, (n) => new Float64Array(n));
    this.#count = grow(this.#count, (n) => new Uint32Array(n));
  }

  /** Merges buckets 2k and 2k+1 into k; the width doubles. */
  #merge(): void {
    const half = Math.ceil(this.#used / 2);
    for (let k = 0; k < half; k++) {
      const a = 2 * k, b = 2 * k + 1;
      const na = this.#count[a] ?? 0, nb = b < this.#used ? this.#count[b]! : 0;
      let tMin = this.#tMin[a]!, vMin = this.#vMin[a]!, tMax = this.#tMax[a]!, vMax = this.#vMax[a]!;
      if (na === 0 && nb > 0) {
        tMin = this.#tMin[b]!, vMin = this.#vMin[b]!, tMax = this.#tMax[b]!, vMax = this.#vMax[b]!;
      } else if (nb > 0) {
        if (this.#vMin[b]! < vMin) (vMin = this.#vMin[b]!), (tMin = this.#tMin[b]!);
        if (this.#vMax[b]! > vMax) (vMax = this.#vMax[b]!), (tMax = this.#tMax[b]!);
      }
      this.#tMin[k] = tMin;
      this.#vMin[k] = vMin;
      this.#tMax[k] = tMax;
      this.#vMax[k] = vMax;
      this.#count[k] = na + nb;
    }
    this.#count.fill(0, half);
    this.#used = half;
    this.#width *= 2;
  }

  /** The kept points, in time order: each bucket's lowest and highest (one point when they are the same). */
  points(): { t: number[]; v: number[] } {
    const t: number[] = [], v: number[] = [];
    for (let i = 0; i < this.#used; i++) {
      if (this.#count[i] === 0) continue;
      const t1 = this.#tMin[i]!, t2 = this.#tMax[i]!;
      if (t1 === t2) {
        t.push(t1);
        v.push(this.#vMin[i]!);
      } else if (t1 < t2) {
        t.push(t1, t2);
        v.push(this.#vMin[i]!, this.#vMax[i]!);
      } else {
        t.push(t2, t1);
        v.push(this.#vMax[i]!, this.#vMin[i]!);
      }
    }
    return { t, v };
  }
}

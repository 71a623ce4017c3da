/**
 * Cumulative readings → deltas, with an explicit policy for what a decrease means. Every source that reads a
 * counter (CPU ticks in `/proc/stat`, interface bytes in `/proc/net/dev`, a cgroup's `usage_usec`, RAPL's
 * `energy_uj`, NVML's total energy) goes through one of these, so the rules are written once:
 *
 * - the first reading (and the first after {@linkcode Counter.reset}) only sets the baseline: no delta;
 * - `"monotonic"`: the counter never decreases; a lower reading is a glitch (the kernel's iowait, a counter
 *   read on another CPU), so the delta is 0 and the lower value becomes the baseline;
 * - `"resets"`: the counter restarts from zero (an interface deleted and created again, a restarted daemon),
 *   so after a decrease the new reading itself is the delta;
 * - `{ wrapsAt: m }`: a modular counter whose readings are in `[0, m)` (RAPL's `max_energy_range_uj`, a
 *   32-bit register: `2 ** 32`), so after a decrease the delta is `value - previous + m`.
 *
 * Readings beyond 2^53 (u64 counters after years of uptime) stay exact with {@linkcode Counter.updateSplit}:
 * the value is given as `hi * 1e9 + lo`, and the delta is computed part by part.
 *
 * @example
 * ```ts
 * import { Counter, NO_DELTA } from "./counter.ts";
 * import assert from "node:assert/strict";
 * const energy = new Counter({ wrapsAt: 262143328850 }); // RAPL package, max_energy_range_uj
 * assert.equal(energy.update(262143000000), NO_DELTA);   // baseline
 * assert.equal(energy.update(1000), 328850 + 1000);      // wrapped
 * const bytes = new Counter("resets");
 * bytes.update(5000);
 * assert.equal(bytes.update(120), 120);                  // the interface came back, counted from zero
 * const ticks = new Counter("monotonic");
 * ticks.update(100);
 * assert.equal(ticks.update(99), 0);                     // a glitch, not a wrap
 * assert.equal(ticks.update(101), 2);
 * ```
 *
 * @module
 */

/** What a decrease of the reading means; see the module documentation. */
export type CounterPolicy = "monotonic" | "resets" | { readonly wrapsAt: number };

/** What {@linkcode Counter.update} returns when there is no delta yet (the reading was a baseline). */
export const NO_DELTA = -1;

/** How a counter with no reading yet starts: from the next reading, or from zero (a process born after us). */
export type Baseline = "next" | "zero";

/** The delta between two readings under a policy (the readings split as `hi * 1e9 + lo`). */
function deltaOf(policy: CounterPolicy, pHi: number, pLo: number, hi: number, lo: number): number {
  const d = (hi - pHi) * 1e9 + (lo - pLo);
  if (d >= 0) return d;
  if (policy === "monotonic") return 0;
  if (policy === "resets") return hi * 1e9 + lo;
  return d + policy.wrapsAt;
}

/** Checks a policy once, at construction. */
function checkPolicy(policy: CounterPolicy): void {
  if (typeof policy === "object" && !(policy.wrapsAt > 0 && Number.isFinite(policy.wrapsAt))) {
    throw new RangeError(`A wrapping counter needs a positive finite wrapsAt, not ${policy.wrapsAt}`);
  }
}

/** One cumulative counter. */
export class Counter {
  readonly policy: CounterPolicy;
  #hi = 0;
  #lo = 0;
  #valid: boolean;

  /**
   * @param policy what a decrease means
   * @param baseline `next` (default): the first reading is the baseline; `zero`: the counter counted from zero,
   *   so the first reading is itself a delta
   */
  constructor(policy: CounterPolicy, baseline: Baseline = "next") {
    checkPolicy(policy);
    this.policy = policy;
    this.#valid = baseline === "zero";
  }

  /** Whether a previous reading is known (the next update gives a delta). */
  get valid(): boolean {
    return this.#valid;
  }

  /**
   * Takes a reading.
   *
   * @param value the cumulative reading (up to 2^53; beyond, use {@linkcode Counter.updateSplit})
   * @returns the increase since the previous reading under the policy, or {@linkcode NO_DELTA}
   */
  update(value: number): number {
    const lo = value % 1e9;
    return this.updateSplit((value - lo) / 1e9, lo);
  }

  /**
   * Takes a reading given as `hi * 1e9 + lo` (exact beyond 2^53, as the byte scanners split u64 values).
   *
   * @returns the increase since the previous reading under the policy, or {@linkcode NO_DELTA}
   */
  updateSplit(hi: number, lo: number): number {
    const had = this.#valid;
    const d = had ? deltaOf(this.policy, this.#hi, this.#lo, hi, lo) : NO_DELTA;
    this.#hi = hi;
    this.#lo = lo;
    this.#valid = true;
    return d;
  }

  /** Forgets the previous reading; `zero`: the next reading is a delta from zero (default `next`). */
  reset(baseline: Baseline = "next"): void {
    this.#hi = 0;
    this.#lo = 0;
    this.#valid = baseline === "zero";
  }
}

/**
 * A fixed number of counters under one policy, in typed arrays: for hot paths (every CPU's columns of
 * `/proc/stat` at 1 kHz) where an object per counter would cost allocations and pointer chasing.
 */
export class CounterArray {
  readonly policy: CounterPolicy;
  readonly #value: Float64Array;
  readonly #valid: Uint8Array;

  /**
   * @param length how many counters
   * @param policy what a decrease means, for all of them
   */
  constructor(length: number, policy: CounterPolicy) {
    checkPolicy(policy);
    this.policy = policy;
    this.#value = new Float64Array(length);
    this.#valid = new Uint8Array(length);
  }

  get length(): number {
    return this.#value.length;
  }

  /** Whether counter `i` has a previous reading. */
  valid(i: number): boolean {
    return this.#valid[i] === 1;
  }

  /**
   * Takes a reading of counter `i` (up to 2^53).
   *
   * @returns the increase since its previous reading under the policy, or {@linkcode NO_DELTA}
   */
  update(i: number, value: number): number {
    const had = this.#valid[i] === 1;
    const prev = this.#value[i]!;
    this.#value[i] = value;
    this.#valid[i] = 1;
    if (!had) return NO_DELTA;
    const d = value - prev;
    if (d >= 0) return d;
    const p = this.policy;
    return p === "monotonic" ? 0 : p === "resets" ? value : d + p.wrapsAt;
  }

  /** Forgets the previous readings (all, or counter `i`). */
  reset(i?: number): void {
    if (i === undefined) this.#valid.fill(0);
    else this.#valid[i] = 0;
  }
}

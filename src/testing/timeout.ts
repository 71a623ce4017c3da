/**
 * A bound on how long a test waits: a regression that leaves a promise pending fails the test with a message
 * instead of hanging the suite.
 *
 * @module
 */

/**
 * `promise`, or a rejection naming `what` when it has not settled within `ms` milliseconds. The timer is
 * cleared either way, so the test's sanitizers see no leaked timer.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { withTimeout } from "./timeout.ts";
 * assert.equal(await withTimeout(Promise.resolve(5), 1000, "five"), 5);
 * await assert.rejects(withTimeout(new Promise(() => {}), 10, "never"), /never did not settle within 10 ms/);
 * ```
 */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A one-shot timer that does not load Deno's Node timers. In Deno 2.9 the first use of the global `setTimeout`
 * loads its Node-compatible implementation (`node:timers` and what it imports): 6–10 ms of every start-up
 * that sets a timer. `AbortSignal.timeout` runs on Deno's core timers and costs about 0.5 ms the first time,
 * so the agent's own timers (source periods, stop graces, tasks) use it: `alumet exec -- true` sets no Node
 * timer at all.
 *
 * An `AbortSignal.timeout` cannot be cleared: a cancelled timer only loses its listener and fires later into
 * nothing. It does not keep a finished test or process alive.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { after } from "./timer.ts";
 * let fired = 0;
 * const cancel = after(1, () => fired++);
 * cancel();
 * await new Promise<void>((resolve) => after(5, resolve));
 * assert.equal(fired, 0);
 * ```
 *
 * @module
 */

/** The longest delay a timer takes (2^31-1 ms; longer would fire at once). */
const MAX_DELAY_MS = 2 ** 31 - 1;

/** Calls `fn` once after `ms` milliseconds; the function returned cancels it (a no-op once fired). */
export function after(ms: number, fn: () => void): () => void {
  const signal = AbortSignal.timeout(Math.max(0, Math.min(ms, MAX_DELAY_MS)));
  signal.addEventListener("abort", fn, { once: true });
  return () => signal.removeEventListener("abort", fn);
}

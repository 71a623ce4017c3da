/**
 * Helpers for plugin config schemas (zod), so that every plugin validates durations, units and paths the
 * same way and the agent can turn a failure into one {@linkcode ConfigError} naming the key.
 *
 * @module
 */
import { z } from "../deps.ts";
import { DURATION_UNITS, parseDuration } from "../model/duration.ts";

export { z };

/**
 * A humantime duration (`"100us"`, `"1s"`, `"5m 30s"`) parsed into milliseconds. A bare number is rejected:
 * it has no unit, and guessing one is how a 1 s period silently becomes 1 ms.
 *
 * @example
 * ```ts
 * import { duration } from "./schema.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(duration().parse("250ms"), 250);
 * assert.deepEqual(duration().safeParse("soon").success, false);
 * ```
 */
export function duration(): z.ZodType<number, string> {
  return z.string({ error: `a duration such as "1s" or "250ms" (units: ${DURATION_UNITS})` }).transform(
    (text, ctx) => {
      const ms = parseDuration(text);
      if (ms === undefined || ms <= 0) {
        ctx.issues.push({
          code: "custom",
          input: text,
          message: `a positive duration such as "1s" or "250ms" (units: ${DURATION_UNITS}), not "${text}"`,
        });
        return z.NEVER;
      }
      return ms;
    },
  );
}

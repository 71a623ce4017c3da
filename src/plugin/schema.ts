/**
 * Plugin config schemas: `z`, a small validation library with the part of zod's API that plugins use
 * (`z.strictObject`, `z.string`, `z.number`, `z.int`, `z.boolean`, `z.enum`, `z.array`, `z.record`,
 * `z.unknown`; `.optional()`, `.prefault(v)`, `.refine`, `.transform`, `.parse`, `.safeParse`;
 * `z.infer<typeof schema>`), and {@linkcode duration}, so that every plugin validates durations the same way
 * and the agent can turn a failure into one {@linkcode ConfigError} naming the key.
 *
 * Issues have zod's shapes (`code`, `path`, `message`, and `expected`, `keys`, `minimum`… by code), so a
 * schema written for zod 4 with these functions works unchanged.
 *
 * @example
 * ```ts
 * import { duration, z } from "./schema.ts";
 * import assert from "node:assert/strict";
 * const schema = z.strictObject({
 *   poll_interval: duration().prefault("1s"),
 *   mode: z.enum(["quick", "slow"]).prefault("quick"),
 *   pids: z.array(z.int().positive()).optional(),
 * });
 * const config: z.infer<typeof schema> = schema.parse({ pids: [1, 2] });
 * assert.deepEqual(config, { poll_interval: 1000, mode: "quick", pids: [1, 2] });
 * assert.deepEqual(schema.safeParse({ pids: [0] }).error?.issues[0]?.path, ["pids", 0]);
 * ```
 *
 * @module
 */
import { DURATION_UNITS, intervalProblem, parseDuration } from "../model/duration.ts";
import * as z from "./_schema.ts";

export { z };
export type {
  CustomIssue,
  ErrorParams,
  InvalidFormatIssue,
  InvalidTypeIssue,
  InvalidValueIssue,
  Issue,
  IssuePath,
  SafeParseResult,
  Schema,
  TooBigIssue,
  TooSmallIssue,
  TransformContext,
  UnrecognizedKeysIssue,
} from "./_schema.ts";
export { SchemaError } from "./_schema.ts";

/**
 * A humantime duration (`"100us"`, `"1s"`, `"5m 30s"`) parsed into milliseconds. A bare number is rejected:
 * it has no unit, and guessing one is how a 1 s period silently becomes 1 ms. The duration must lie between
 * 100 µs (what the sampler can serve) and 24 days (what a timer can wait): `"1ns"` is an error naming the range.
 *
 * @returns the schema: a string in, a positive number of milliseconds out
 *
 * @example
 * ```ts
 * import { duration } from "./schema.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(duration().parse("250ms"), 250);
 * assert.deepEqual(duration().safeParse("soon").success, false);
 * ```
 */
export function duration(): z.Schema<number, string> {
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
      const problem = intervalProblem(ms);
      if (problem !== undefined) {
        ctx.issues.push({ code: "custom", input: text, message: `${problem}, not "${text}"` });
        return z.NEVER;
      }
      return ms;
    },
  );
}

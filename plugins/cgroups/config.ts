/**
 * The configuration of `[plugins.cgroups]`: Alumet's keys (`poll_interval`, `disable_sources`), plus the
 * path patterns that choose the cgroups to follow and the interval between two rescans of the hierarchies.
 *
 * @module
 */
import { duration, z } from "../../src/plugin/schema.ts";
import { PathPattern, PatternError } from "./pattern.ts";

/** A cgroup path pattern, compiled once at validation. */
function pathPattern() {
  return z.string({ error: 'a cgroup path pattern such as "/system.slice/*"' }).transform((text, ctx) => {
    try {
      return new PathPattern(text);
    } catch (e) {
      if (!(e instanceof PatternError)) throw e;
      ctx.issues.push({ code: "custom", input: text, message: e.message });
      return z.NEVER;
    }
  });
}

/**
 * The schema of `[plugins.cgroups]` (unknown keys are errors), and its defaults: what `config regen` writes.
 *
 * @example
 * ```ts
 * import { cgroupsConfigSchema } from "./config.ts";
 * import assert from "node:assert/strict";
 * const c = cgroupsConfigSchema.parse({ paths: ["system.slice/*"] });
 * assert.equal(c.poll_interval, 5000);
 * assert.deepEqual(c.paths.map((p) => p.source), ["system.slice/*"]);
 * ```
 */
export const cgroupsConfigSchema = z.strictObject({
  poll_interval: duration().prefault("5s"),
  refresh_interval: duration().prefault("5s"),
  paths: z.array(pathPattern()).prefault(["/*"]),
  disable_sources: z.boolean().prefault(false),
});

/** The validated `[plugins.cgroups]` table (durations in ms, patterns compiled). */
export type CgroupsConfig = z.infer<typeof cgroupsConfigSchema>;

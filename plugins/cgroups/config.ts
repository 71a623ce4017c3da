/**
 * The configuration of `[plugins.cgroups]`: Alumet's keys (`poll_interval`, `disable_sources`), plus the
 * path patterns that choose the cgroups to follow and the interval between two rescans of the hierarchies.
 *
 * @module
 */
import { duration, z } from "../../src/plugin/schema.ts";
import { PathPattern, PatternError } from "./pattern.ts";

/** The default `[plugins.cgroups]` table, as `config regen` writes it. */
export function defaultCgroupsConfig(): {
  poll_interval: string;
  refresh_interval: string;
  paths: string[];
  disable_sources: boolean;
} {
  return {
    poll_interval: "5s",
    refresh_interval: "5s",
    paths: ["/*"],
    disable_sources: false,
  };
}

const D = defaultCgroupsConfig();

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

/** The schema of `[plugins.cgroups]` (unknown keys are errors). */
export const cgroupsConfigSchema = z.strictObject({
  poll_interval: duration().prefault(D.poll_interval),
  refresh_interval: duration().prefault(D.refresh_interval),
  paths: z.array(pathPattern()).prefault(D.paths),
  disable_sources: z.boolean().prefault(D.disable_sources),
});

/** The validated `[plugins.cgroups]` table (durations in ms, patterns compiled). */
export type CgroupsConfig = z.infer<typeof cgroupsConfigSchema>;

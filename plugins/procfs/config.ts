/**
 * The configuration of `[plugins.procfs]`: Alumet's sections and keys, with Alumet's defaults except that no
 * process group is watched by default. Each default is written once, here, in the TOML form (`.prefault`):
 * `config regen` writes what the schema declares.
 *
 * @module
 */
import { duration, z } from "../../src/plugin/schema.ts";

/** `quick` (`/proc/<pid>/statm`) or `slow_but_accurate` (`/proc/<pid>/smaps_rollup`). */
const memoryMode = z.enum(["quick", "slow_but_accurate"], {
  error: 'one of "quick" (statm) or "slow_but_accurate" (smaps_rollup)',
});

/** A regular expression, compiled once at validation. */
function regex() {
  return z.string().transform((text, ctx) => {
    try {
      return new RegExp(text);
    } catch (e) {
      ctx.issues.push({
        code: "custom",
        input: text,
        message: `a valid regular expression (${(e as Error).message})`,
      });
      return z.NEVER;
    }
  });
}

const pid = () => z.number().int().positive({ error: "a process id (a positive integer)" });

/** One `[[plugins.procfs.processes.groups]]` entry. The filters given must all match; none matches all. */
export const processGroupSchema = z.strictObject({
  pid: pid().optional(),
  ppid: pid().optional(),
  exe_regex: regex().optional(),
  poll_interval: duration().prefault("2s"),
  flush_interval: duration().prefault("4s"),
  memory_mode: memoryMode.prefault("quick"),
});

/** The schema of `[plugins.procfs]` (unknown keys are errors, as Alumet's `deny_unknown_fields`). */
export const procfsConfigSchema = z.strictObject({
  kernel: z.strictObject({
    enabled: z.boolean().prefault(true),
    poll_interval: duration().prefault("5s"),
  }).prefault({}),
  memory: z.strictObject({
    enabled: z.boolean().prefault(true),
    poll_interval: duration().prefault("5s"),
    metrics: z.array(
      z.string().regex(/^[A-Za-z][A-Za-z0-9_()]*$/, {
        error: 'a /proc/meminfo key such as "MemTotal" or "Active(anon)"',
      }),
    ).prefault([
      "MemTotal",
      "MemFree",
      "MemAvailable",
      "Cached",
      "SwapCached",
      "Active",
      "Inactive",
      "Mapped",
    ]),
  }).prefault({}),
  network: z.strictObject({
    enabled: z.boolean().prefault(true),
    poll_interval: duration().prefault("5s"),
  }).prefault({}),
  processes: z.strictObject({
    enabled: z.boolean().prefault(true),
    refresh_interval: duration().prefault("2s"),
    strategy: z.enum(["watcher", "event"], {
      error:
        '"watcher" (scan /proc for the groups, and follow the exec/watch program) or "event" (only the ' +
        "exec/watch program)",
    }).prefault("watcher"),
    groups: z.array(processGroupSchema).prefault([]),
    events: z.strictObject({
      poll_interval: duration().prefault("1s"),
      flush_interval: duration().prefault("4s"),
      memory_mode: memoryMode.prefault("quick"),
    }).prefault({}),
  }).prefault({}),
});

/** The validated `[plugins.procfs]` table (durations in ms, regular expressions compiled). */
export type ProcfsConfig = z.infer<typeof procfsConfigSchema>;

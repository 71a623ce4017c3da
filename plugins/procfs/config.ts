/**
 * The configuration of `[plugins.procfs]`: Alumet's sections, keys and defaults (its `Config::default()`, 0.9.5
 * and main), including its default process group, which follows every process. Each default is written once,
 * here, in the TOML form (`.prefault`): `config regen` writes what the schema declares.
 *
 * `exec` and `watch` follow their program (its process tree) on "start consumer measurement": for them
 * {@linkcode followProgramOnly} drops the default group, unless the user wrote `processes.groups`.
 *
 * @module
 */
import { duration, z } from "../../src/plugin/schema.ts";
import { isTable, setOwn } from "../../src/plugin/config.ts";

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

/**
 * Alumet's default process group (`ProcessMonitoring::default()`): no filter, so every process, polled every
 * 2 s, flushed every 4 s, memory read from `statm`. In the TOML form.
 */
export const ALUMET_DEFAULT_GROUP: Readonly<{
  poll_interval: string;
  flush_interval: string;
  memory_mode: "quick";
}> = Object.freeze({ poll_interval: "2s", flush_interval: "4s", memory_mode: "quick" });

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
    groups: z.array(processGroupSchema).prefault([{ ...ALUMET_DEFAULT_GROUP }]),
    events: z.strictObject({
      poll_interval: duration().prefault("1s"),
      flush_interval: duration().prefault("4s"),
      memory_mode: memoryMode.prefault("quick"),
    }).prefault({}),
  }).prefault({}),
});

/** The validated `[plugins.procfs]` table (durations in ms, regular expressions compiled). */
export type ProcfsConfig = z.infer<typeof procfsConfigSchema>;

/** A validated group. */
export type ProcessGroupConfig = ProcfsConfig["processes"]["groups"][number];

/**
 * Whether `groups` is Alumet's default (one group, no filter, 2 s, 4 s, quick): what the config gives when it
 * does not write `processes.groups`, or writes that same group (as `config regen` does).
 *
 * @example
 * ```ts
 * import { isAlumetDefaultGroups, procfsConfigSchema } from "./config.ts";
 * import assert from "node:assert/strict";
 * assert.ok(isAlumetDefaultGroups(procfsConfigSchema.parse({}).processes.groups));
 * assert.ok(!isAlumetDefaultGroups(procfsConfigSchema.parse({ processes: { groups: [] } }).processes.groups));
 * ```
 */
export function isAlumetDefaultGroups(groups: readonly ProcessGroupConfig[]): boolean {
  const g = groups[0];
  return groups.length === 1 && g !== undefined && g.pid === undefined && g.ppid === undefined &&
    g.exe_regex === undefined && g.poll_interval === 2000 && g.flush_interval === 4000 &&
    g.memory_mode === "quick";
}

/** A config section as the agent selects it (`PluginSection`): its table as the user wrote it. */
export interface SectionLike {
  readonly name: string;
  /** Set for a plugin given by module: not this one. */
  readonly module?: string | undefined;
  readonly table: Record<string, unknown>;
}

/**
 * For `alumet exec` and `alumet watch`, before the agent validates the config: unless the built-in procfs
 * section, as the user wrote it (file and `--config-override`), gives groups of its own, sets
 * `processes.groups` to `[]`, so that only the program is followed (its process tree, on "start consumer
 * measurement"), not every process as Alumet's default group would. A `groups` that is Alumet's default group
 * as `config regen` writes it (no filter, 2 s, 4 s, quick) counts as the default: a regenerated file behaves as
 * no file. Any other groups (a filter, even `exe_regex = ""` as Alumet's packaged config writes it, or other
 * intervals) run beside the program. `run` and `config regen` keep Alumet's default.
 *
 * @param sections the enabled sections (the table of the `procfs` one is changed in place)
 * @returns whether the default group was dropped
 *
 * @example
 * ```ts
 * import { followProgramOnly } from "./config.ts";
 * import assert from "node:assert/strict";
 * const unset = { name: "procfs", table: { kernel: { poll_interval: "1s" } } };
 * assert.ok(followProgramOnly([unset]));
 * assert.deepEqual(unset.table, { kernel: { poll_interval: "1s" }, processes: { groups: [] } });
 * const regen = { name: "procfs", table: { processes: { groups: [{ poll_interval: "2s", flush_interval: "4s" }] } } };
 * assert.ok(followProgramOnly([regen]));
 * const written = { name: "procfs", table: { processes: { groups: [{ exe_regex: "python" }] } } };
 * assert.ok(!followProgramOnly([written]));
 * assert.deepEqual(written.table.processes.groups, [{ exe_regex: "python" }]);
 * ```
 */
export function followProgramOnly(sections: readonly SectionLike[]): boolean {
  let dropped = false;
  for (const s of sections) {
    if (s.name !== "procfs" || s.module !== undefined) continue;
    const processes = Object.hasOwn(s.table, "processes") ? s.table.processes : undefined;
    if (processes === undefined) {
      setOwn(s.table, "processes", { groups: [] });
    } else if (
      isTable(processes) && (!Object.hasOwn(processes, "groups") || writesDefault(processes.groups))
    ) {
      setOwn(processes, "groups", []);
    } else {
      continue; // groups written, or a processes value that validation will name
    }
    dropped = true;
  }
  return dropped;
}

/** Whether a `groups` value as written is Alumet's default group (an invalid one is left to validation). */
function writesDefault(groups: unknown): boolean {
  const parsed = z.array(processGroupSchema).safeParse(groups);
  return parsed.success && isAlumetDefaultGroups(parsed.data!);
}

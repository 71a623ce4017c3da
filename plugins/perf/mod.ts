/**
 * The `perf` plugin: hardware and software counters through `perf_event_open`, configured in perf's own event
 * syntax (`[plugins.perf] events = ["task-clock", "cycles:u", "msr/tsc/"]`).
 *
 * Targets, each counted as one perf group read in one `read`:
 * - the `exec`/`watch` program and any process announced by "start consumer measurement" (with its
 *   children: `inherit`); a program `exec` started stopped is armed with `enable_on_exec`, so the counters
 *   start at its first instruction and nothing of the agent's start-up is counted;
 * - cgroups announced the same way (by the `cgroups` plugin), one group per CPU (`PERF_FLAG_PID_CGROUP`);
 * - the whole machine, one group per CPU, with `system_wide = true`.
 *
 * With `poll_interval` under 10 ms (`HOT_PERIOD_MS`), every target's groups are opened and read in the sampling
 * Worker (`machine_source.ts`, `target_source.ts`), never polled by a timer on the main thread.
 *
 * Values are cumulative since the counters were enabled (as in Alumet), scaled by time_enabled/time_running
 * when the PMU multiplexed them; `perf_running_ratio` reports that ratio per group. An event with a `.scale`
 * (RAPL's `power/energy-pkg/`, 2^-32 J per count) is reported scaled, in its `.unit` (`Joules` gives `J`), as
 * f64 deltas per poll. An event of a package or uncore PMU (one with a `cpumask`, such as `power`) is counted
 * once per package with `system_wide`, never once per CPU, and never for a process or a cgroup (see
 * `target.ts`).
 *
 * @module
 */
import { projectModule } from "../../src/plugin/module_url.ts";
import type {
  Diagnosis,
  PhaseContext,
  Plugin,
  PreStartContext,
  SourceHandle,
  SourceModule,
  StartContext,
} from "../../src/plugin/plugin.ts";
import { type DefinedPlugin, definePlugin } from "../../src/plugin/define.ts";
import type { MetricId } from "../../src/model/metrics.ts";
import { defineMetrics } from "../../src/model/metric_set.ts";
import type { Consumer } from "../../src/model/resources.ts";
import { parseUnit, type Unit, unit } from "../../src/model/units.ts";
import { duration, z } from "../../src/plugin/schema.ts";
import { encodeNamePart } from "../../src/pipeline/names.ts";
import type { Logger } from "../../src/log.ts";
import { AlumetError, closest, messageOf } from "../../src/errors.ts";
import { cString, ErrnoError, libc, O_RDONLY_CLOEXEC, unwrap } from "../../src/ffi/libc.ts";
import { isStopped } from "../../src/sys/proc_state.ts";
import { PerfGroup } from "../../src/ffi/perf_event.ts";
import {
  isLibpfmStyle,
  listPmus,
  type ParsedPerfEvent,
  parsePerfEvent,
  PerfEventError,
} from "../../src/ffi/perf_events_parse.ts";
import { HOT_PERIOD_MS } from "../../src/pipeline/sampler.ts";
import {
  type MachineSourceConfig,
  type OpenedGroup,
  openMachineSource,
  openPlan,
  type PerfTarget,
  planTarget,
  SYSFS_ROOT,
  type TargetPlan,
  TargetSource,
  type Usable,
} from "./target.ts";
import { type CgroupLayout, detectLayout } from "../../src/sys/cgroup_layout.ts";
import type { TargetSourceConfig } from "./target_source.ts";

/** The default `events`: software events that exist everywhere, and the two hardware events most asked for. */
const DEFAULT_EVENTS = ["task-clock", "page-faults", "context-switches", "cycles", "instructions"];

/** Alumet 0.9's `hardware_events` names (`plugins/perf/src/events.rs`, `parse_hardware`). */
export const ALUMET_HARDWARE_EVENTS = [
  "CPU_CYCLES",
  "INSTRUCTIONS",
  "CACHE_REFERENCES",
  "CACHE_MISSES",
  "BRANCH_INSTRUCTIONS",
  "BRANCH_MISSES",
  "BUS_CYCLES",
  "STALLED_CYCLES_FRONTEND",
  "STALLED_CYCLES_BACKEND",
  "REF_CPU_CYCLES",
] as const;

/** Alumet 0.9's `software_events` names (`parse_software`). */
export const ALUMET_SOFTWARE_EVENTS = [
  "PAGE_FAULTS",
  "CONTEXT_SWITCHES",
  "CPU_MIGRATIONS",
  "PAGE_FAULTS_MIN",
  "PAGE_FAULTS_MAJ",
  "ALIGNMENT_FAULTS",
  "EMULATION_FAULTS",
  "CGROUP_SWITCHES",
] as const;

/** Alumet 0.9's `cache_events` names, `<cache>_<op>_<result>` (`parse_cache`). */
export const ALUMET_CACHE_EVENTS: readonly string[] = ["L1D", "L1I", "LL", "DTLB", "ITLB", "BPU", "NODE"]
  .flatMap((c) =>
    ["READ", "WRITE", "PREFETCH"].flatMap((o) => ["ACCESS", "MISS"].map((r) => `${c}_${o}_${r}`))
  );

/** An entry of `events`: an event, or Alumet's `{ event = "…", rename = "…" }`. */
export interface PerfEventEntry {
  readonly event: string;
  readonly rename?: string;
}

const EVENT_ENTRY = 'a perf event such as "cycles" or "INSTRUCTIONS#u:k", or { event = "…", rename = "…" }';

/** `events` entries: a string, or a table with `event` and an optional `rename` (Alumet's main branch). */
const eventEntry = z.unknown().transform((v, ctx): PerfEventEntry => {
  const fail = (message: string, path: (string | number)[] = []) => {
    ctx.issues.push({ code: "custom", message, path, input: v });
    return z.NEVER;
  };
  if (typeof v === "string") return v.trim() === "" ? fail(EVENT_ENTRY) : { event: v };
  if (typeof v !== "object" || v === null || Array.isArray(v)) return fail(EVENT_ENTRY);
  const t = v as Record<string, unknown>;
  for (const key of Object.keys(t)) {
    if (key !== "event" && key !== "rename") {
      const hint = closest(key, ["event", "rename"]);
      return fail(`a known key (event, rename)${hint ? `; did you mean "${hint}"?` : ""}`, [key]);
    }
  }
  if (typeof t.event !== "string" || t.event.trim() === "") {
    return fail('a perf event such as "CONTEXT_SWITCHES"', ["event"]);
  }
  if (t.rename === undefined) return { event: t.event };
  if (typeof t.rename !== "string" || alumetSanitize(t.rename) === "") {
    return fail('a metric name suffix such as "ctxsw" (the metric becomes perf_ctxsw)', ["rename"]);
  }
  return { event: t.event, rename: t.rename };
});

/** A list of Alumet 0.9 names (`hardware_events`…), case-insensitive as in Alumet, upper-cased. */
function alumet09List(what: string, names: readonly string[]) {
  return z.array(
    z.unknown().transform((v, ctx): string => {
      const upper = typeof v === "string" ? v.toUpperCase() : undefined;
      if (upper !== undefined && names.includes(upper)) return upper;
      const hint = typeof v === "string" ? closest(upper!, names) : undefined;
      const list = names.length > 12 ? `<cache>_<op>_<result>, e.g. ${names[14]}` : names.join(", ");
      ctx.issues.push({
        code: "custom",
        message: `one of Alumet 0.9's ${what} (${list})${hint ? `; did you mean "${hint}"?` : ""}`,
        input: v,
      });
      return z.NEVER;
    }),
  ).optional();
}

/**
 * `[plugins.perf]`, and its defaults: what `config regen` writes. Alumet's own keys are accepted with Alumet's
 * meaning: the main branch's `events` entries (`"INSTRUCTIONS#u:k"`, `{ event = "…", rename = "…" }`),
 * `add_source_in_pause_state` and `multiplexing_auto_scale`; Alumet 0.9's `hardware_events`,
 * `software_events` and `cache_events` (when one of them is given, the default `events` are not counted).
 *
 * @example
 * ```ts
 * import { perfConfigSchema } from "./mod.ts";
 * import assert from "node:assert/strict";
 * const c = perfConfigSchema.parse({ events: ["cycles:u"] });
 * assert.deepEqual(c, {
 *   events: [{ event: "cycles:u" }],
 *   poll_interval: 1000,
 *   flush_interval: 5000,
 *   system_wide: false,
 *   add_source_in_pause_state: false,
 *   multiplexing_auto_scale: true,
 * });
 * ```
 */
export const perfConfigSchema = z.strictObject({
  events: z.array(eventEntry).prefault(DEFAULT_EVENTS),
  poll_interval: duration().prefault("1s"),
  flush_interval: duration().prefault("5s"),
  system_wide: z.boolean().prefault(false),
  add_source_in_pause_state: z.boolean().prefault(false),
  multiplexing_auto_scale: z.boolean().prefault(true),
  hardware_events: alumet09List("hardware events", ALUMET_HARDWARE_EVENTS),
  software_events: alumet09List("software events", ALUMET_SOFTWARE_EVENTS),
  cache_events: alumet09List("cache events", ALUMET_CACHE_EVENTS),
  pfm_events: z.array(z.string().min(1, { error: 'a libpfm4 event such as "RESOURCE_STALLS:ANY"' }))
    .optional(),
});

/** The validated `[plugins.perf]` table. */
export type PerfConfig = z.infer<typeof perfConfigSchema>;

/**
 * The metrics the perf plugin always declares. The counts themselves are `perf_<event>` metrics, one per
 * configured event that opens here, created in `start` (see {@linkcode perfMetricName}).
 */
export const PERF_METRICS = defineMetrics({
  runningRatio: {
    name: "perf_running_ratio",
    unit: unit("1"),
    valueType: "f64",
    kind: "gauge",
    description: "time_running / time_enabled of a perf group (below 1: the PMU multiplexed it)",
  },
});

/** `perf_<event>` in snake_case: `task-clock` → `perf_task_clock`, `msr/tsc/` → `perf_msr_tsc`. */
export function perfMetricName(event: string): string {
  return "perf_" + event.toLowerCase().replace(/[^a-z0-9]+/g, "_").replace(/^_+|_+$/g, "");
}

/** Alumet's `sanitize` (`plugins/perf/src/plugin/config.rs`): lower case, each other character `_`, trimmed. */
function alumetSanitize(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9]/g, "_").replace(/^_+|_+$/g, "");
}

/** One event to count: as written, the metric it gives, and the config key it comes from. */
export interface PerfEventSpec {
  /** The event, in perf's or Alumet's syntax. */
  readonly event: string;
  /** The metric's name. */
  readonly metric: string;
  /** Where it is configured: `plugins.perf.events[2]`, `plugins.perf.hardware_events[0]`. */
  readonly key: string;
}

/**
 * The events of a config and their metrics' names, as Alumet names them for Alumet's keys:
 * - `events`: `perf_<event>` in snake_case (`cycles:u` → `perf_cycles_u`); Alumet's `#` modifiers do not
 *   change the name (`INSTRUCTIONS#u:k` → `perf_instructions`); a `rename` replaces the suffix
 *   (`{ event = "CONTEXT_SWITCHES", rename = "ctxsw" }` → `perf_ctxsw`);
 * - Alumet 0.9's lists: `perf_hardware_<NAME>`, `perf_software_<NAME>`, `perf_cache_<NAME>`, upper case
 *   (`perf_hardware_REF_CPU_CYCLES`, `perf_cache_LL_READ_MISS`); `pfm_events`: `perf_pfm_<NAME>`.
 *
 * When one of Alumet 0.9's lists is given, `events` counts only if it is not the default list.
 *
 * @example
 * ```ts
 * import { perfConfigSchema, perfEventSpecs } from "./mod.ts";
 * import assert from "node:assert/strict";
 * const c = perfConfigSchema.parse({
 *   events: ["INSTRUCTIONS#u:k", { event: "CONTEXT_SWITCHES", rename: "ctxsw" }, "cycles:u"],
 * });
 * assert.deepEqual(perfEventSpecs(c).map((s) => s.metric), ["perf_instructions", "perf_ctxsw", "perf_cycles_u"]);
 * const old = perfConfigSchema.parse({ hardware_events: ["ref_cpu_cycles"], cache_events: ["LL_READ_MISS"] });
 * assert.deepEqual(perfEventSpecs(old).map((s) => s.metric), ["perf_hardware_REF_CPU_CYCLES", "perf_cache_LL_READ_MISS"]);
 * ```
 */
export function perfEventSpecs(config: PerfConfig): PerfEventSpec[] {
  const out: PerfEventSpec[] = [];
  const legacy = config.hardware_events !== undefined || config.software_events !== undefined ||
    config.cache_events !== undefined || config.pfm_events !== undefined;
  const defaultEvents = config.events.length === DEFAULT_EVENTS.length &&
    config.events.every((e, i) => e.rename === undefined && e.event === DEFAULT_EVENTS[i]);
  if (!legacy || !defaultEvents) {
    config.events.forEach((e, i) => {
      const base = e.event.trim();
      const metric = e.rename !== undefined
        ? `perf_${alumetSanitize(e.rename)}`
        : base.includes("#")
        ? `perf_${alumetSanitize(base.slice(0, base.indexOf("#")))}`
        : perfMetricName(base);
      out.push({ event: base, metric, key: `plugins.perf.events[${i}]` });
    });
  }
  const lists = [
    ["hardware", config.hardware_events],
    ["software", config.software_events],
    ["cache", config.cache_events],
  ] as const;
  for (const [kind, names] of lists) {
    names?.forEach((name, i) =>
      out.push({ event: name, metric: `perf_${kind}_${name}`, key: `plugins.perf.${kind}_events[${i}]` })
    );
  }
  config.pfm_events?.forEach((name, i) =>
    out.push({
      event: name,
      metric: `perf_pfm_${name.replace(/[^A-Za-z0-9]/g, "_")}`,
      key: `plugins.perf.pfm_events[${i}]`,
    })
  );
  const seen = new Map<string, PerfEventSpec>();
  for (const spec of out) {
    const other = seen.get(spec.metric);
    if (other !== undefined) {
      throw new AlumetError(
        `Perf events "${other.event}" (${other.key}) and "${spec.event}" (${spec.key}) both give the metric ` +
          `${spec.metric}: give one of them a rename ({ event = "${spec.event}", rename = "…" })`,
      );
    }
    seen.set(spec.metric, spec);
  }
  return out;
}

const O_DIRECTORY = 0o200000;

/**
 * The name of the source that counts a target: `pid-<pid>` for a process, `cgroup-<path>` for a cgroup, the
 * path encoded with `encodeNamePart` so that two cgroups never share a name (`/a/b` gives `cgroup-:a:b`,
 * `/a_b` gives `cgroup-:a_5fb`); undefined for a kind of consumer perf does not count.
 *
 * @example
 * ```ts
 * import { targetSourceName } from "./mod.ts";
 * import { Consumer } from "../../src/model/resources.ts";
 * import assert from "node:assert/strict";
 * assert.equal(targetSourceName(Consumer.process(42)), "pid-42");
 * assert.equal(targetSourceName(Consumer.cgroup("/system.slice/cron.service")), "cgroup-:system.slice:cron.service");
 * ```
 */
export function targetSourceName(consumer: Consumer): string | undefined {
  if (consumer.kind === "process") return `pid-${consumer.id}`;
  if (consumer.kind === "cgroup") return `cgroup-${encodeNamePart(consumer.id)}`;
  return undefined;
}

/** CPUs online, from `<sysfsRoot>/devices/system/cpu/online` (`0-3,6`), or from `text`. */
export function onlineCpus(text?: string, sysfsRoot: string = SYSFS_ROOT): number[] {
  const t = text ?? (() => {
    try {
      return Deno.readTextFileSync(`${sysfsRoot}/devices/system/cpu/online`);
    } catch {
      return `0-${navigator.hardwareConcurrency - 1}`;
    }
  })();
  const out: number[] = [];
  for (const part of t.trim().split(",")) {
    const [a, b] = part.split("-").map(Number);
    if (a === undefined || !Number.isInteger(a)) continue;
    for (let c = a; c <= (b ?? a); c++) out.push(c);
  }
  return out;
}

/** An event that parses and opens here (or may, for the targets), with its spec. */
interface Probed {
  readonly spec: PerfEventSpec;
  readonly event: ParsedPerfEvent;
}

/** What {@linkcode probeEvents} found. */
interface Probe {
  /** Events that parse and open here. */
  readonly ok: Probed[];
  /** Events this machine cannot count (no such PMU here, a libpfm4 name): skipped with a warning. */
  readonly skipped: { spec: PerfEventSpec; why: string }[];
  /** Events no PMU and no generic list knows, or written wrong: errors. */
  readonly fatal: { spec: PerfEventSpec; error: PerfEventError }[];
}

const LIBPFM_WHY =
  "it is a libpfm4 event name, which Alumet resolves through libpfm4 for the CPU it runs on; " +
  "this agent does not resolve libpfm4 names (write it in perf's syntax, cpu/event=0x..,umask=0x../ or rNNNN, " +
  "to count it)";

/**
 * Sorts the configured events: those that parse and open here; those this machine cannot count (a known
 * event its PMUs lack, a PMU it does not have, a libpfm4 name); and those that are wrong everywhere (a name
 * no PMU and no generic list knows, a bad modifier), which stop the start.
 */
function probeEvents(specs: readonly PerfEventSpec[], sysfsRoot: string = SYSFS_ROOT): Probe {
  const probe: Probe = { ok: [], skipped: [], fatal: [] };
  for (const spec of specs) {
    let event: ParsedPerfEvent;
    try {
      event = parsePerfEvent(spec.event, { sysfsRoot: pmuRoot(sysfsRoot) });
    } catch (e) {
      if (e instanceof PerfEventError && e.reason === "no-pmu") {
        probe.skipped.push({ spec, why: messageOf(e) });
      } else if (e instanceof PerfEventError && e.reason === "unknown" && isLibpfmStyle(spec.event)) {
        probe.skipped.push({ spec, why: LIBPFM_WHY });
      } else if (e instanceof PerfEventError) probe.fatal.push({ spec, error: e });
      else probe.skipped.push({ spec, why: messageOf(e) });
      continue;
    }
    try {
      // Open it alone, disabled, to find out whether this machine has it: on this process, or, for a package
      // PMU's event (which no process can count), on the first CPU of its cpumask.
      const where = event.cpumask === undefined
        ? { pid: 0, cpu: -1 }
        : { pid: -1, cpu: event.cpumask[0] ?? 0 };
      PerfGroup.open([event], { ...where, enable: false }).close();
      probe.ok.push({ spec, event });
    } catch (e) {
      if (e instanceof ErrnoError && (e.code === "EACCES" || e.code === "EPERM")) {
        probe.ok.push({ spec, event }); // exists, but this process may not count itself: targets decide
      } else probe.skipped.push({ spec, why: messageOf(e) });
    }
  }
  return probe;
}

/** Where the PMUs are under a sysfs root. */
function pmuRoot(sysfsRoot: string): string {
  return `${sysfsRoot}/bus/event_source/devices`;
}

/**
 * The unit of a PMU event's `.unit` as perf writes it: `Joules` is `J` (so energy sums with the other energy
 * sources), `Watts` is `W`; a unit code (`ns`, `MHz`) is parsed; anything else (`MiB`) is a custom unit.
 *
 * @example
 * ```ts
 * import { pmuUnit } from "./mod.ts";
 * import assert from "node:assert/strict";
 * assert.equal(pmuUnit("Joules").code, "J");
 * assert.equal(pmuUnit("ns").code, "ns");
 * assert.equal(pmuUnit("MiB").custom, true);
 * ```
 */
export function pmuUnit(text: string): Unit {
  const known: Record<string, Unit> = { Joules: unit("J"), Watts: unit("W") };
  return known[text] ?? parseUnit(text);
}

/** Options of the perf plugin that are not part of its configuration (tests). */
export interface PerfPluginOptions {
  /**
   * The sysfs root: the PMUs under `<root>/bus/event_source/devices`, the CPUs' topology under
   * `<root>/devices/system/cpu`. Default `/sys`.
   */
  readonly sysfsRoot?: string;
}

/** The plugin instance. */
export class PerfPlugin implements Plugin {
  readonly armsBeforeExec = true;
  readonly #config: PerfConfig;
  #usable: Usable[] = [];
  #ratio: MetricId<"f64"> | undefined;
  /** The context of `preStart`: it adds the targets' sources, from the event listeners. */
  #ctx: PhaseContext | undefined;
  #log: Logger | undefined;
  /** The sources of the targets followed now, by consumer (`kind:id`). */
  #followed = new Map<string, SourceHandle>();
  #off: (() => void)[] = [];
  /** The cgroup hierarchies, read at the first cgroup to count. */
  #layout: CgroupLayout | undefined;

  readonly #specs: readonly PerfEventSpec[];
  readonly #sysfsRoot: string;
  /** Package events already reported as not countable for a process or cgroup (warned once each). */
  readonly #warnedPackage = new Set<string>();

  constructor(config: PerfConfig, options: PerfPluginOptions = {}) {
    this.#config = config;
    this.#specs = perfEventSpecs(config);
    this.#sysfsRoot = options.sysfsRoot ?? SYSFS_ROOT;
  }

  start(ctx: StartContext): void {
    this.#log = ctx.log;
    const { ok, skipped, fatal } = probeEvents(this.#specs, this.#sysfsRoot);
    if (fatal.length > 0) {
      // Wrong everywhere (a misspelling): measuring nothing and exiting 0 would hide it.
      throw new AlumetError(fatal.map((f) => `${f.error.message} (${f.spec.key})`).join("; "), {
        cause: fatal[0]!.error,
      });
    }
    for (const f of skipped) {
      ctx.log.warn(
        `Perf event "${f.spec.event}" is not counted: ${f.why}. The other events go on (PMUs here: ${
          listPmus(pmuRoot(this.#sysfsRoot)).join(", ")
        })`,
      );
    }
    if (ok.length === 0) {
      ctx.log.warn("No configured perf event can be counted here: the perf plugin measures nothing");
    }
    this.#usable = ok.map(({ spec, event }): Usable => ({
      event,
      metric: event.scale !== undefined
        ? ctx.createMetric({
          name: spec.metric,
          unit: event.unit !== undefined ? pmuUnit(event.unit) : unit("1"),
          valueType: "f64",
          kind: "delta",
          description:
            `perf event ${event.name}, scaled by its PMU's scale (${event.scale}), per poll interval`,
        })
        : ctx.createMetric({
          name: spec.metric,
          unit: event.unit !== undefined
            ? pmuUnit(event.unit)
            : /^(task|cpu)-clock\b/.test(event.name)
            ? unit("s", "nano")
            : unit("1"),
          valueType: "u64",
          kind: "counter",
          description: `perf event ${event.name}, cumulative since the counters were enabled`,
        }),
    }));
    this.#ratio = ctx.createMetrics(PERF_METRICS).runningRatio;
    if (this.#config.system_wide && this.#usable.length > 0) {
      const trigger = {
        pollInterval: this.#config.poll_interval,
        flushInterval: this.#config.flush_interval,
      };
      const options = { paused: this.#config.add_source_in_pause_state };
      if (this.#config.poll_interval < HOT_PERIOD_MS) {
        // Short periods: the counters are opened and read in the sampling Worker.
        const config: MachineSourceConfig = {
          events: this.#usable.map((u) => u.event.name),
          metrics: this.#usable.map((u) => u.metric),
          ratio: this.#ratio,
          cpus: onlineCpus(undefined, this.#sysfsRoot),
          scale: this.#config.multiplexing_auto_scale,
          sysfsRoot: this.#sysfsRoot,
        };
        ctx.addSource(
          "machine",
          { module: projectModule("plugins/perf/machine_source.ts"), config },
          trigger,
          options,
        );
      } else {
        ctx.addSource(
          "machine",
          openMachineSource(this.#usable, this.#ratio, onlineCpus(undefined, this.#sysfsRoot), {
            scale: this.#config.multiplexing_auto_scale,
            sysfsRoot: this.#sysfsRoot,
          }),
          trigger,
          options,
        );
      }
    }
  }

  preStart(ctx: PreStartContext): void {
    this.#ctx = ctx;
    this.#off = [
      ctx.events.on("startConsumerMeasurement", (cs) => this.#onStart(cs)),
      ctx.events.on("endConsumerMeasurement", (cs) => this.#onEnd(cs)),
    ];
  }

  stop(): void {
    for (const off of this.#off) off();
    this.#off = [];
    this.#followed.clear(); // their sources stopped with the pipeline
    this.#ctx = undefined;
  }

  /**
   * Counts the announced processes and cgroups, one source each. With `poll_interval` under
   * {@linkcode HOT_PERIOD_MS} the source is created in the sampling Worker (see `target_source.ts`): its
   * counters are read at each tick there, with the other hot sources, and its points cross to the main thread
   * once per flush. A 1 ms timer on the main thread would cost more than the whole Worker (ENVIRONMENT.md).
   */
  async #onStart(consumers: readonly Consumer[]): Promise<void> {
    const ctx = this.#ctx;
    if (this.#usable.length === 0 || ctx === undefined) return;
    const hot = this.#config.poll_interval < HOT_PERIOD_MS;
    for (const c of consumers) {
      const key = `${c.kind}:${c.id}`;
      const name = targetSourceName(c);
      if (name === undefined || this.#followed.has(key)) continue;
      let source: TargetSource | SourceModule | undefined;
      try {
        source = hot ? this.#targetModule(c) : this.#targetSource(c);
      } catch (e) {
        this.#log?.warn(`Cannot count ${c.kind} ${c.id} with perf: ${messageOf(e)}`);
        continue;
      }
      if (source === undefined) continue; // only package events, which no process or cgroup can count
      // Alumet's add_source_in_pause_state: the source waits, paused, for a control to resume it.
      const handle = ctx.addSource(name, source, {
        pollInterval: this.#config.poll_interval,
        flushInterval: this.#config.flush_interval,
      }, { paused: this.#config.add_source_in_pause_state });
      this.#followed.set(key, handle);
      try {
        await handle.ready;
      } catch (e) {
        if (source instanceof TargetSource) source.close();
        if (this.#followed.get(key) === handle) this.#followed.delete(key);
        this.#log?.warn(
          hot
            ? `Cannot count ${c.kind} ${c.id} with perf: ${messageOf(e)}`
            : `Cannot add a perf source for ${c.kind} ${c.id}: ${messageOf(e)}`,
        );
      }
    }
  }

  /** Opens a target's groups here, for a source polled on the main thread; undefined when it has none. */
  #targetSource(c: Consumer): TargetSource | undefined {
    let groups: OpenedGroup[];
    if (c.kind === "process") {
      const pid = Number(c.id);
      // A program `exec` holds stopped before its exec is armed to start counting at its first
      // instruction; a running one (watch) starts counting now.
      groups = openPlan(this.#plan(c, { kind: "process", pid, enableOnExec: isStopped(pid) }));
    } else groups = this.#openCgroup(c);
    if (groups.length === 0) return undefined;
    return new TargetSource(groups, c, this.#usable, this.#ratio!, {
      scale: this.#config.multiplexing_auto_scale,
    });
  }

  /**
   * A target's source as a module for the sampling Worker, which opens its groups (see `target_source.ts`);
   * planned here first, for the warnings about package events; undefined when it has no group.
   */
  #targetModule(c: Consumer): SourceModule | undefined {
    let target: TargetSourceConfig["target"];
    if (c.kind === "process") {
      const pid = Number(c.id);
      target = { kind: "process", pid, enableOnExec: isStopped(pid) };
      if (this.#plan(c, target).groups.length === 0) return undefined;
    } else {
      target = { kind: "cgroup", path: c.id, dir: this.#cgroupDir(c.id) };
      if (this.#plan(c, { kind: "cgroup", fd: -1 }).groups.length === 0) return undefined;
    }
    const config: TargetSourceConfig = {
      events: this.#usable.map((u) => u.event.name),
      metrics: this.#usable.map((u) => u.metric),
      ratio: this.#ratio!,
      cpus: onlineCpus(undefined, this.#sysfsRoot),
      scale: this.#config.multiplexing_auto_scale,
      sysfsRoot: this.#sysfsRoot,
      target,
    };
    return { module: projectModule("plugins/perf/target_source.ts"), config };
  }

  /** Plans a target's groups; warns once per package event it cannot count. */
  #plan(c: Consumer, target: PerfTarget): TargetPlan {
    const plan = planTarget(this.#usable, target, {
      cpus: onlineCpus(undefined, this.#sysfsRoot),
      sysfsRoot: this.#sysfsRoot,
    });
    for (const u of plan.skipped) {
      if (this.#warnedPackage.has(u.event.name)) continue;
      this.#warnedPackage.add(u.event.name);
      this.#log?.warn(
        `Perf event "${u.event.name}" counts whole packages (PMU "${u.event.pmu}" has a cpumask: CPUs ` +
          `${
            u.event.cpumask!.join(",")
          }): it cannot be counted for ${c.kind} ${c.id} nor any process or cgroup ` +
          `(perf stat -p refuses it too), and is skipped for them; set system_wide = true to count it per package`,
      );
    }
    return plan;
  }

  /** The directory of a cgroup, in the v2 hierarchy or else the v1 perf_event one. */
  #cgroupDir(path: string): string {
    this.#layout ??= detectLayout();
    const root = this.#layout.v2?.mountPoint ?? this.#layout.v1.get("perf_event")?.mountPoint;
    if (root === undefined) {
      throw new Error("no cgroup v2 hierarchy and no v1 perf_event hierarchy is mounted");
    }
    return `${root}${path.startsWith("/") ? path : `/${path}`}`;
  }

  #openCgroup(c: Consumer): OpenedGroup[] {
    const dir = this.#cgroupDir(c.id);
    const fd = unwrap(libc().open(cString(dir), O_RDONLY_CLOEXEC | O_DIRECTORY, 0), `open(${dir})`);
    try {
      return openPlan(this.#plan(c, { kind: "cgroup", fd }));
    } finally {
      libc().close(fd); // the counters keep their own reference to the cgroup
    }
  }

  async #onEnd(consumers: readonly Consumer[]): Promise<void> {
    for (const c of consumers) {
      const key = `${c.kind}:${c.id}`;
      const handle = this.#followed.get(key);
      if (handle === undefined) continue;
      this.#followed.delete(key);
      // A last read of a cgroup's counters, so that the counts up to its end are in the output (exec and watch
      // poll every source themselves just before they announce a process's end).
      if (c.kind === "cgroup") await handle.trigger();
      await handle.stop();
    }
  }
}

/** `alumet doctor`: which configured events parse and open here, and why the others do not. */
function diagnosePerf(config: PerfConfig, sysfsRoot: string = SYSFS_ROOT): Diagnosis[] {
  let specs: PerfEventSpec[];
  try {
    specs = perfEventSpecs(config);
  } catch (e) {
    return [{ check: "events", ok: false, detail: messageOf(e), fix: "rename one of the two events" }];
  }
  const { ok, skipped, fatal } = probeEvents(specs, sysfsRoot);
  const out: Diagnosis[] = [];
  if (ok.length > 0) out.push({ check: "events", ok: true, detail: ok.map((e) => e.event.name).join(", ") });
  const pkg = ok.filter((e) => e.event.cpumask !== undefined);
  if (pkg.length > 0) {
    out.push({
      check: "package events",
      ok: config.system_wide,
      detail: `${pkg.map((e) => e.event.name).join(", ")}: counted once per package (cpumask), only with ` +
        "system_wide; never for a process or a cgroup",
      ...(config.system_wide ? {} : { fix: "set system_wide = true in [plugins.perf] to count them" }),
    });
  }
  for (const f of fatal) {
    out.push({
      check: `event ${f.spec.event}`,
      ok: false,
      detail: f.error.message,
      fix: `correct ${f.spec.key}: the agent refuses to start with it`,
    });
  }
  for (const f of skipped) {
    out.push({
      check: `event ${f.spec.event}`,
      ok: false,
      detail: f.why,
      fix: `remove ${f.spec.key}, or run on a machine that has it (see the PMUs in the machine checks)`,
    });
  }
  return out;
}

/** The perf plugin's metadata: `[plugins.perf]`. */
export const perfPlugin = definePerfPlugin();

/** The perf plugin with options that are not part of its configuration: a sysfs root for fixtures. */
export function definePerfPlugin(
  options: PerfPluginOptions = {},
): DefinedPlugin<PerfConfig> & { readonly configSchema: typeof perfConfigSchema } {
  return definePlugin({
    name: "perf",
    version: "0.1.0",
    description:
      "Counts perf events (perf's syntax) for the exec/watch program, cgroups, or the whole machine",
    config: perfConfigSchema,
    init: (config) => new PerfPlugin(config, options),
    diagnose: (config) => diagnosePerf(config, options.sysfsRoot ?? SYSFS_ROOT),
  });
}

export default perfPlugin;

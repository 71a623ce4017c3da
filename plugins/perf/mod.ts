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
 * Values are cumulative since the counters were enabled (as in Alumet), scaled by time_enabled/time_running
 * when the PMU multiplexed them; `perf_running_ratio` reports that ratio per group.
 *
 * @module
 */
import type {
  Diagnosis,
  PhaseContext,
  Plugin,
  PreStartContext,
  SourceHandle,
  StartContext,
} from "../../src/plugin/plugin.ts";
import { definePlugin } from "../../src/plugin/define.ts";
import type { MetricId } from "../../src/model/metrics.ts";
import { defineMetrics } from "../../src/model/metric_set.ts";
import { type Consumer, type Resource, Resource as Resources } from "../../src/model/resources.ts";
import { customUnit, unit } from "../../src/model/units.ts";
import { duration, z } from "../../src/plugin/schema.ts";
import { encodeNamePart } from "../../src/pipeline/names.ts";
import type { Logger } from "../../src/log.ts";
import { messageOf } from "../../src/errors.ts";
import { cString, ErrnoError, libc, O_RDONLY_CLOEXEC, unwrap } from "../../src/ffi/libc.ts";
import { isStopped } from "../../src/sys/proc_state.ts";
import { PERF_FLAG_PID_CGROUP, PerfGroup } from "../../src/ffi/perf_event.ts";
import { listPmus, type ParsedPerfEvent, parsePerfEvent } from "../../src/ffi/perf_events_parse.ts";
import { HOT_PERIOD_MS } from "../../src/pipeline/sampler.ts";
import { type MachineSourceConfig, openMachineSource, TargetSource, type Usable } from "./target.ts";
import { type CgroupLayout, detectLayout } from "../../src/sys/cgroup_layout.ts";

/**
 * `[plugins.perf]`, and its defaults: what `config regen` writes.
 *
 * @example
 * ```ts
 * import { perfConfigSchema } from "./mod.ts";
 * import assert from "node:assert/strict";
 * const c = perfConfigSchema.parse({ events: ["cycles:u"] });
 * assert.deepEqual(c, { events: ["cycles:u"], poll_interval: 1000, flush_interval: 5000, system_wide: false });
 * ```
 */
export const perfConfigSchema = z.strictObject({
  events: z.array(z.string().min(1, { error: 'a perf event such as "cycles" or "msr/tsc/"' }))
    .prefault(["task-clock", "page-faults", "context-switches", "cycles", "instructions"]),
  poll_interval: duration().prefault("1s"),
  flush_interval: duration().prefault("5s"),
  system_wide: z.boolean().prefault(false),
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

/** CPUs online, from `/sys/devices/system/cpu/online` (`0-3,6`). */
export function onlineCpus(text?: string): number[] {
  const t = text ?? (() => {
    try {
      return Deno.readTextFileSync("/sys/devices/system/cpu/online");
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

/** The events of the config that parse and open on this machine; the others with the reason. */
function probeEvents(
  config: PerfConfig,
): { ok: ParsedPerfEvent[]; failed: { event: string; why: string }[] } {
  const ok: ParsedPerfEvent[] = [];
  const failed: { event: string; why: string }[] = [];
  for (const name of config.events) {
    try {
      const ev = parsePerfEvent(name);
      // Open it alone on this process, disabled, to find out whether this machine has it.
      PerfGroup.open([ev], { pid: 0, cpu: -1, enable: false }).close();
      ok.push(ev);
    } catch (e) {
      const why = messageOf(e);
      if (e instanceof ErrnoError && (e.code === "EACCES" || e.code === "EPERM")) {
        ok.push(parsePerfEvent(name)); // exists, but this process may not count itself: targets decide
      } else failed.push({ event: name, why });
    }
  }
  return { ok, failed };
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

  constructor(config: PerfConfig) {
    this.#config = config;
  }

  start(ctx: StartContext): void {
    this.#log = ctx.log;
    const { ok, failed } = probeEvents(this.#config);
    for (const f of failed) {
      ctx.log.warn(
        `Perf event "${f.event}" is not counted: ${f.why}. The other events go on (PMUs here: ${
          listPmus().join(", ")
        })`,
      );
    }
    if (ok.length === 0) {
      ctx.log.warn("No configured perf event can be counted here: the perf plugin measures nothing");
    }
    this.#usable = ok.map((event) => ({
      event,
      metric: ctx.createMetric({
        name: perfMetricName(event.name),
        unit: event.unit !== undefined
          ? customUnit(event.unit)
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
      if (this.#config.poll_interval < HOT_PERIOD_MS) {
        // Short periods: the counters are opened and read in the sampling Worker.
        const config: MachineSourceConfig = {
          events: this.#usable.map((u) => u.event.name),
          metrics: this.#usable.map((u) => u.metric),
          ratio: this.#ratio,
          cpus: onlineCpus(),
        };
        ctx.addSource(
          "machine",
          { module: new URL("./machine_source.ts", import.meta.url), config },
          trigger,
        );
      } else {
        ctx.addSource("machine", openMachineSource(this.#usable, this.#ratio, onlineCpus()), trigger);
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

  async #onStart(consumers: readonly Consumer[]): Promise<void> {
    const ctx = this.#ctx;
    if (this.#usable.length === 0 || ctx === undefined) return;
    for (const c of consumers) {
      const key = `${c.kind}:${c.id}`;
      const name = targetSourceName(c);
      if (name === undefined || this.#followed.has(key)) continue;
      let groups: { group: PerfGroup; resource: Resource }[];
      try {
        if (c.kind === "process") {
          const pid = Number(c.id);
          // A program `exec` holds stopped before its exec is armed to start counting at its first
          // instruction; a running one (watch) starts counting now.
          const armed = isStopped(pid);
          groups = [{
            group: PerfGroup.open(this.#usable.map((u) => u.event), {
              pid,
              cpu: -1,
              inherit: true,
              enableOnExec: armed,
            }),
            resource: Resources.localMachine(),
          }];
        } else groups = this.#openCgroup(c.id);
      } catch (e) {
        this.#log?.warn(`Cannot count ${c.kind} ${c.id} with perf: ${messageOf(e)}`);
        continue;
      }
      const source = new TargetSource(groups, c, this.#usable, this.#ratio!);
      const handle = ctx.addSource(name, source, {
        pollInterval: this.#config.poll_interval,
        flushInterval: this.#config.flush_interval,
      });
      this.#followed.set(key, handle);
      try {
        await handle.ready;
      } catch (e) {
        source.close();
        if (this.#followed.get(key) === handle) this.#followed.delete(key);
        this.#log?.warn(`Cannot add a perf source for ${c.kind} ${c.id}: ${messageOf(e)}`);
      }
    }
  }

  #openCgroup(path: string): { group: PerfGroup; resource: Resource }[] {
    this.#layout ??= detectLayout();
    const root = this.#layout.v2?.mountPoint ?? this.#layout.v1.get("perf_event")?.mountPoint;
    if (root === undefined) {
      throw new Error("no cgroup v2 hierarchy and no v1 perf_event hierarchy is mounted");
    }
    const dir = `${root}${path.startsWith("/") ? path : `/${path}`}`;
    const fd = unwrap(libc().open(cString(dir), O_RDONLY_CLOEXEC | O_DIRECTORY, 0), `open(${dir})`);
    try {
      return onlineCpus().map((cpu) => ({
        group: PerfGroup.open(this.#usable.map((u) => u.event), {
          cgroupFd: fd,
          cpu,
          flags: PERF_FLAG_PID_CGROUP,
        }),
        resource: Resources.cpuCore(cpu),
      }));
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
function diagnosePerf(config: PerfConfig): Diagnosis[] {
  const { ok, failed } = probeEvents(config);
  const out: Diagnosis[] = [];
  if (ok.length > 0) out.push({ check: "events", ok: true, detail: ok.map((e) => e.name).join(", ") });
  for (const f of failed) {
    out.push({
      check: `event ${f.event}`,
      ok: false,
      detail: f.why,
      fix:
        "remove it from plugins.perf.events, or run on a machine that has it (see the PMUs in the machine checks)",
    });
  }
  return out;
}

/** The perf plugin's metadata: `[plugins.perf]`. */
export const perfPlugin = definePlugin({
  name: "perf",
  version: "0.1.0",
  description: "Counts perf events (perf's syntax) for the exec/watch program, cgroups, or the whole machine",
  config: perfConfigSchema,
  init: (config) => new PerfPlugin(config),
  diagnose: diagnosePerf,
});

export default perfPlugin;

/**
 * A perf target's plan and source: which perf groups count it (one, one per CPU, one per package of a package
 * PMU), and the source that reads them with one `read` each per poll. Shared by the main thread and the
 * sampling Worker (`machine_source.ts`).
 *
 * Events of a PMU with a `cpumask` (a package or uncore PMU: `power`, `uncore_imc_0`, `cstate_pkg`) count a
 * whole package: the kernel refuses them for a process (`perf stat -p` refuses them too), and opened on every
 * CPU they would count each package once per CPU. They are opened once on each CPU of the cpumask with
 * `pid = -1`, in a group of their own per PMU and CPU, and their points are per `cpu_package` (the package of
 * that CPU, `devices/system/cpu/cpuN/topology/physical_package_id`). This is how perf stat counts them, and how
 * the kernel's RAPL PMU is meant to be used (Linux commit 4788e5b4b233, "perf/x86: Add Intel RAPL PMU support":
 * "only works in system-wide mode… the cpumask file can be used by tools to figure out which CPUs to
 * monitor").
 *
 * An event with a `.scale` (RAPL's `energy-pkg`: 2^-32 J per count, unit `Joules`) is reported scaled, as f64
 * deltas per poll in its unit: the first read only sets the baseline. The kernel gives RAPL's counts as a 64-bit
 * accumulation (it folds the 32-bit MSR's wraps in itself), so a decrease is a wrap at 2^64, as Alumet's RAPL
 * plugin treats it (`PERF_MAX_ENERGY = u64::MAX`); 2^64 counts are 2^32 J, 99 days at 500 W.
 *
 * @module
 */
import type { Batch } from "../../src/model/batch.ts";
import type { MetricId } from "../../src/model/metrics.ts";
import {
  type Consumer,
  Consumer as Consumers,
  type Resource,
  Resource as Resources,
} from "../../src/model/resources.ts";
import { Counter, NO_DELTA } from "../../src/model/counter.ts";
import { NormalStop } from "../../src/errors.ts";
import type { Source } from "../../src/plugin/plugin.ts";
import { PERF_FLAG_PID_CGROUP, PerfGroup, type PerfGroupOptions } from "../../src/ffi/perf_event.ts";
import type { ParsedPerfEvent } from "../../src/ffi/perf_events_parse.ts";

/** The default sysfs root. */
export const SYSFS_ROOT = "/sys";

/**
 * An event that opens here, with its metric: a u64 counter (cumulative since enabled) for an event without a
 * `.scale`, an f64 delta per poll in the event's unit for one with a `.scale`.
 */
export interface Usable {
  readonly event: ParsedPerfEvent;
  readonly metric: MetricId<"u64"> | MetricId<"f64">;
}

/** The serialisable config of the whole-machine source, for the sampling Worker. */
export interface MachineSourceConfig {
  readonly events: readonly string[];
  readonly metrics: readonly number[];
  readonly ratio: number;
  readonly cpus: readonly number[];
  /** Scale multiplexed counts (Alumet's `multiplexing_auto_scale`). */
  readonly scale: boolean;
  /** The sysfs root the events were parsed under. Default `/sys`. */
  readonly sysfsRoot?: string;
}

/** Options of a target's source. */
export interface TargetOptions {
  /**
   * Scale the counts of a multiplexed group by time_enabled / time_running, as perf does (Alumet's
   * `multiplexing_auto_scale`); false reports the raw counts. Default true.
   */
  readonly scale?: boolean;
}

/** What a target is: a process (with its children), a cgroup (its directory fd), or the whole machine. */
export type PerfTarget =
  | { readonly kind: "process"; readonly pid: number; readonly enableOnExec?: boolean }
  | { readonly kind: "cgroup"; readonly fd: number }
  | { readonly kind: "machine" };

/** One perf group to open: its events, where it counts, and the resource of its points. */
export interface PlannedGroup {
  readonly events: readonly Usable[];
  readonly options: PerfGroupOptions;
  readonly resource: Resource;
}

/** What {@linkcode planTarget} decided. */
export interface TargetPlan {
  readonly groups: PlannedGroup[];
  /** Package/uncore events, which a process or a cgroup cannot count: not opened for this target. */
  readonly skipped: Usable[];
}

/** Options of {@linkcode planTarget}. */
export interface PlanOptions {
  /** The online CPUs (the per-CPU groups of a cgroup or of the whole machine). */
  readonly cpus: readonly number[];
  /** Where `devices/system/cpu/cpuN/topology/physical_package_id` is read. Default `/sys`. */
  readonly sysfsRoot?: string;
}

/**
 * The package of a CPU, from `<root>/devices/system/cpu/cpu<N>/topology/physical_package_id`; undefined when
 * it cannot be read (or is -1, "no package").
 *
 * @example
 * ```ts
 * import { cpuPackageOf } from "./target.ts";
 * import assert from "node:assert/strict";
 * const root = new URL("../../src/ffi/testdata/sysfs_xeon_2s", import.meta.url).pathname;
 * assert.equal(cpuPackageOf(4, root), 1);
 * assert.equal(cpuPackageOf(99, root), undefined);
 * ```
 */
export function cpuPackageOf(cpu: number, root: string = SYSFS_ROOT): number | undefined {
  try {
    const text = Deno.readTextFileSync(`${root}/devices/system/cpu/cpu${cpu}/topology/physical_package_id`);
    const id = Number.parseInt(text.trim(), 10);
    return Number.isInteger(id) && id >= 0 ? id : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Plans the perf groups of a target:
 * - a process: one group of the core events (`pid`, `cpu = -1`, `inherit`), resource `local_machine`;
 * - a cgroup: one group of the core events per online CPU (`PERF_FLAG_PID_CGROUP`), resource `cpu_core`;
 * - the machine: one group of the core events per online CPU (`pid = -1`), resource `cpu_core`, and, for each
 *   PMU with a `cpumask`, one group of its events per CPU of the cpumask, resource `cpu_package` (never one per
 *   CPU: the kernel counts the whole package on each, so that would count it once per CPU).
 *
 * Events of a PMU with a `cpumask` are `skipped` for a process or a cgroup (the kernel cannot attach them to a
 * task, and perf stat refuses them with `-p`).
 *
 * @example
 * ```ts
 * import { planTarget } from "./target.ts";
 * import { parsePerfEvent } from "../../src/ffi/perf_events_parse.ts";
 * import assert from "node:assert/strict";
 * const root = new URL("../../src/ffi/testdata/sysfs_xeon_2s", import.meta.url).pathname;
 * const parse = (e: string) => parsePerfEvent(e, { sysfsRoot: `${root}/bus/event_source/devices` });
 * const usable = ["task-clock", "power/energy-pkg/"].map((e, i) => ({ event: parse(e), metric: i as never }));
 * const machine = planTarget(usable, { kind: "machine" }, { cpus: [0, 1, 2, 3, 4, 5, 6, 7], sysfsRoot: root });
 * assert.deepEqual(
 *   machine.groups.filter((g) => g.resource.kind === "cpu_package").map((g) => [g.options.cpu, g.resource.id]),
 *   [[0, "0"], [4, "1"]],
 * );
 * const process = planTarget(usable, { kind: "process", pid: 42 }, { cpus: [0], sysfsRoot: root });
 * assert.deepEqual(process.skipped.map((u) => u.event.name), ["power/energy-pkg/"]);
 * ```
 */
export function planTarget(usable: readonly Usable[], target: PerfTarget, options: PlanOptions): TargetPlan {
  const core = usable.filter((u) => u.event.cpumask === undefined);
  const pkg = usable.filter((u) => u.event.cpumask !== undefined);
  const groups: PlannedGroup[] = [];
  if (target.kind === "process") {
    if (core.length > 0) {
      groups.push({
        events: core,
        options: { pid: target.pid, cpu: -1, inherit: true, enableOnExec: target.enableOnExec ?? false },
        resource: Resources.localMachine(),
      });
    }
    return { groups, skipped: pkg };
  }
  if (target.kind === "cgroup") {
    if (core.length > 0) {
      for (const cpu of options.cpus) {
        groups.push({
          events: core,
          options: { cgroupFd: target.fd, cpu, flags: PERF_FLAG_PID_CGROUP },
          resource: Resources.cpuCore(cpu),
        });
      }
    }
    return { groups, skipped: pkg };
  }
  if (core.length > 0) {
    for (const cpu of options.cpus) {
      groups.push({ events: core, options: { pid: -1, cpu }, resource: Resources.cpuCore(cpu) });
    }
  }
  // One group per package PMU and CPU of its cpumask: events of different hardware PMUs cannot share a group.
  const byPmu = new Map<string, Usable[]>();
  for (const u of pkg) {
    const key = u.event.pmu ?? u.event.name;
    byPmu.set(key, [...(byPmu.get(key) ?? []), u]);
  }
  for (const events of byPmu.values()) {
    const cpus = events[0]!.event.cpumask!;
    cpus.forEach((cpu, i) => {
      // Alumet's RAPL plugin takes the i-th CPU of the cpumask as package i; the topology says it exactly.
      const id = cpuPackageOf(cpu, options.sysfsRoot) ?? i;
      groups.push({ events, options: { pid: -1, cpu }, resource: Resources.cpuPackage(id) });
    });
  }
  return { groups, skipped: [] };
}

/** A group opened from a plan. */
export interface OpenedGroup {
  readonly group: PerfGroup;
  readonly resource: Resource;
  /** The group's events, in the order of its counts. Default: the source's events. */
  readonly events?: readonly Usable[];
}

/** Opens every group of a plan; on a failure, closes those already open and throws. */
export function openPlan(plan: TargetPlan): OpenedGroup[] {
  const out: OpenedGroup[] = [];
  try {
    for (const g of plan.groups) {
      out.push({
        group: PerfGroup.open(g.events.map((u) => u.event), g.options),
        resource: g.resource,
        events: g.events,
      });
    }
  } catch (e) {
    for (const o of out) o.group.close();
    throw e;
  }
  return out;
}

/** Wrap of the perf power PMU's 64-bit accumulated count (Alumet: `PERF_MAX_ENERGY = u64::MAX`). */
const WRAP_64 = 2 ** 64;

/** One group being read: its events, their counters for scaled events, and the points' contexts. */
interface ReadGroup {
  readonly group: PerfGroup;
  readonly events: readonly Usable[];
  /** Per event: a Counter for an event with a `.scale` (its points are deltas), else undefined. */
  readonly counters: (Counter | undefined)[];
  readonly point: { resource: Resource; consumer: Consumer };
  readonly ratio: { resource: Resource; consumer: Consumer; attributes: Readonly<{ events: string }> };
}

/** One target: perf groups (one, one per CPU, one per package) and who they describe. */
export class TargetSource implements Source {
  readonly #groups: ReadGroup[];
  readonly #ratio: MetricId<"f64">;
  readonly #scale: boolean;
  #closed = false;

  constructor(
    groups: readonly OpenedGroup[],
    consumer: Consumer,
    events: readonly Usable[],
    ratio: MetricId<"f64">,
    options: TargetOptions = {},
  ) {
    this.#scale = options.scale ?? true;
    this.#ratio = ratio;
    // Created once: a poll allocates no context object.
    this.#groups = groups.map(({ group, resource, events: own }) => {
      const evs = own ?? events;
      const attributes = Object.freeze({ events: evs.map((e) => e.event.name).join(",") });
      return {
        group,
        events: evs,
        counters: evs.map((u) => u.event.scale === undefined ? undefined : new Counter({ wrapsAt: WRAP_64 })),
        point: { resource, consumer },
        ratio: { resource, consumer, attributes },
      };
    });
  }

  poll(batch: Batch): void {
    if (this.#closed) throw new NormalStop("closed");
    for (let g = 0; g < this.#groups.length; g++) {
      const rg = this.#groups[g]!;
      const r = rg.group.read();
      const events = rg.events;
      const exact = !this.#scale || r.timeRunning === r.timeEnabled;
      for (let i = 0; i < events.length; i++) {
        const counter = rg.counters[i];
        if (counter === undefined) {
          // Unscaled when the counters ran all the time (exact, even beyond 2^53) or scaling is off; scaled
          // otherwise.
          batch.push(
            events[i]!.metric as MetricId<"u64">,
            exact ? r.counts[i]! : BigInt(Math.round(r.scaled(i) ?? 0)),
            rg.point,
          );
          continue;
        }
        // A scaled event: the delta of the raw count (exact beyond 2^53 through the split), times its scale.
        const c = exact ? r.counts[i]! : Math.round(r.scaled(i) ?? 0);
        const d = typeof c === "bigint"
          ? counter.updateSplit(Number(c / 1_000_000_000n), Number(c % 1_000_000_000n))
          : counter.update(c);
        if (d !== NO_DELTA) {
          batch.push(events[i]!.metric as MetricId<"f64">, d * events[i]!.event.scale!, rg.point);
        }
      }
      const ratio = r.runningRatio();
      if (ratio !== undefined) batch.push(this.#ratio, ratio, rg.ratio);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const { group } of this.#groups) group.close();
  }
}

/**
 * The whole machine: one group per CPU (pid -1) for core events, points per `cpu_core`; one group per package
 * for the events of a PMU with a `cpumask`, points per `cpu_package`.
 */
export function openMachineSource(
  usable: readonly Usable[],
  ratio: MetricId<"f64">,
  cpus: readonly number[],
  options: TargetOptions & { readonly sysfsRoot?: string } = {},
): TargetSource {
  const plan = planTarget(usable, { kind: "machine" }, {
    cpus,
    ...(options.sysfsRoot === undefined ? {} : { sysfsRoot: options.sysfsRoot }),
  });
  return new TargetSource(openPlan(plan), Consumers.localMachine(), usable, ratio, options);
}

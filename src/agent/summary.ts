/**
 * The summary `exec` prints on stderr at the end, in the spirit of `perf stat`: each value measured for the
 * program (counters: the last value; deltas: the sum; gauges: the last and the peak), the energy the machine
 * and its devices consumed during the run, the elapsed time, and where the series went.
 *
 * ## Energy during the run
 *
 * Every point of a `delta` metric whose unit is an energy unit (J, mJ, µJ, kJ, Wh…: see
 * {@linkcode joulesPerUnit}) is converted to joules and summed per series (metric, resource, consumer,
 * attributes), whatever its consumer: these are the machine's and its devices' series (RAPL domains, GPUs,
 * hwmon rails), not the program's. A delta reported at a poll covers the time since the previous poll, so:
 *
 * - the points polled up to the start poll (`exec` polls every source just before the program starts, and
 *   calls {@linkcode ExecSummary.startPolled}) cover time before the program: they are left out, and the last
 *   of them is where the series' interval begins; a series with none (its first read at the start poll only set
 *   its baseline) begins at the start poll;
 * - the points after the end poll ({@linkcode ExecSummary.endPolled}) are left out too;
 * - the sum of the others covers exactly the interval from that beginning to the last point summed, and the
 *   mean power is the sum divided by that interval.
 *
 * Without the start and end polls (a summary fed by hand), the first point of each series is its baseline.
 * Series whose attributes name a total (`domain = package_total`: a plugin's sum over sockets) are shown as
 * totals, after the series they add up, and are never added to anything.
 *
 * @module
 */
import type { Batch } from "../model/batch.ts";
import type { Metric } from "../model/metrics.ts";
import type { Timestamp } from "../model/timestamp.ts";
import { parseUnit, PREFIXES, type Unit } from "../model/units.ts";
import type { ElementContext, PluginMetadata } from "../plugin/plugin.ts";
import { definePlugin } from "./agent.ts";
import { formatCount, humanBytes, shellQuote } from "./format.ts";

interface Row {
  readonly metric: Metric;
  readonly label: string;
  value: number;
  peak: number;
  count: number;
}

/**
 * How many joules one `u` is, for the units of energy: `J` with any SI prefix (mJ, µJ/uJ, kJ…) and `Wh` with
 * any prefix (kWh…), also as custom units spelled so (`µJ` with the micro sign, `uJ`, `joules`); undefined for
 * any other unit.
 *
 * @example
 * ```ts
 * import { joulesPerUnit } from "./summary.ts";
 * import { customUnit, unit } from "../model/units.ts";
 * import assert from "node:assert/strict";
 * assert.equal(joulesPerUnit(unit("J", "milli")), 1e-3);
 * assert.equal(joulesPerUnit(unit("W.h", "kilo")), 3.6e6);
 * assert.equal(joulesPerUnit(customUnit("µJ")), 1e-6);
 * assert.equal(joulesPerUnit(unit("W")), undefined);
 * ```
 */
export function joulesPerUnit(u: Unit): number | undefined {
  let base = u.base, prefix = u.prefix;
  if (u.custom) {
    const text = u.code.trim().replace(/\u00b5|\u03bc/g, "u");
    const word = /^(?:(kilo|milli|micro|nano)?joules?)$/i.exec(text);
    const parsed = word
      ? { base: "J", prefix: (word[1]?.toLowerCase() ?? "plain") as keyof typeof PREFIXES, custom: false }
      : parseUnit(text);
    if (parsed.custom) return undefined;
    base = parsed.base;
    prefix = parsed.prefix;
  }
  const scale = 10 ** PREFIXES[prefix].exponent;
  // 10 ** -3 is 0.001 exactly, but 10 ** -6 is not 1e-6: round to the prefix's own decimal form.
  const exact = Number(scale.toPrecision(1));
  if (base === "J") return exact;
  if (base === "W.h") return exact * 3600;
  return undefined;
}

/** Whether a series is a plugin's total over resources: an attribute value ending in `_total`. */
function isTotal(attributes: object): boolean {
  return Object.values(attributes).some((v) => typeof v === "string" && v.endsWith("_total"));
}

/** Whether a series is an estimate: its attribute `estimated` is true (or the string "true"). */
function isEstimated(attributes: Readonly<Record<string, unknown>>): boolean {
  const e = attributes.estimated;
  return e === true || e === "true";
}

/**
 * The CPU states whose time is the machine's busy time (`/proc/stat`): `idle` and `iowait` are idle, `steal` is
 * other machines' time, `guest` and `guest_nice` are already in `user` and `nice`.
 */
export const BUSY_CPU_STATES: ReadonlySet<string> = new Set(["user", "nice", "system", "irq", "softirq"]);

/**
 * Energy series split by `cpu_state` (`estimated_consumed_energy`: one per state of `/proc/stat`): the busy
 * states' series of one metric, resource, consumer and other attributes become one line
 * (`cpu_state=user+system`), the others are left out (an estimate for idle time is not the machine's use).
 * Lines without `cpu_state` are kept as they are.
 */
function busyOnly(lines: readonly EnergyLine[]): EnergyLine[] {
  const out: EnergyLine[] = [];
  const merged = new Map<string, { line: EnergyLine; states: string[] }>();
  for (const l of lines) {
    const state = l.attributes.cpu_state;
    if (state === undefined) {
      out.push(l);
      continue;
    }
    if (!BUSY_CPU_STATES.has(String(state))) continue;
    const { cpu_state: _, ...rest } = l.attributes;
    const key = JSON.stringify([l.metric, l.resource, l.consumer, Object.entries(rest)]);
    const m = merged.get(key);
    if (m === undefined) {
      merged.set(key, { line: { ...l, attributes: rest }, states: [String(state)] });
      continue;
    }
    m.states.push(String(state));
    const a = m.line;
    const from = l.from < a.from ? l.from : a.from;
    const to = l.to > a.to ? l.to : a.to;
    const joules = a.joules + l.joules;
    const secs = Number(to - from) / 1e9;
    m.line = {
      ...a,
      joules,
      from,
      to,
      points: a.points + l.points,
      watts: secs > 0 ? joules / secs : undefined,
    };
  }
  for (const { line, states } of merged.values()) {
    const order = [...BUSY_CPU_STATES];
    states.sort((x, y) => order.indexOf(x) - order.indexOf(y));
    const attributes = { cpu_state: states.join("+"), ...line.attributes };
    const label = line.metric + ` (${Object.entries(attributes).map(([k, v]) => `${k}=${v}`).join(", ")})` +
      (line.resource.kind === "local_machine" ? "" : ` [${line.resource.kind} ${line.resource.id}]`) +
      (line.consumer.kind === "local_machine" ? "" : ` for ${line.consumer.kind} ${line.consumer.id}`);
    out.push({ ...line, label, attributes });
  }
  return out.sort((a, b) =>
    a.metric !== b.metric
      ? (a.metric < b.metric ? -1 : 1)
      : a.total !== b.total
      ? (a.total ? 1 : -1)
      : (a.label < b.label ? -1 : a.label > b.label ? 1 : 0)
  );
}

/** The metric the `energy-attribution` transform emits: the share of an energy series each consumer gets. */
export const ATTRIBUTED_ENERGY = "attributed_energy";

/** One energy series: its points before the start poll, during the run, and after the end poll. */
interface EnergyRow {
  readonly label: string;
  readonly metric: string;
  readonly total: boolean;
  readonly resource: Target;
  readonly consumer: Target;
  readonly attributes: Readonly<Record<string, unknown>>;
  /** Points collected before the start poll was known, or at or before it: `first` is the earliest. */
  before: { first: Timestamp; firstJ: number; last: Timestamp; joules: number; count: number } | undefined;
  /** Points after the start poll and up to the end poll. */
  during: { last: Timestamp; joules: number; count: number } | undefined;
}

/** The energy of one series over the program's run, as {@linkcode ExecSummary.energy} gives it. */
export interface EnergyLine {
  /** `metric (attr=value, …) [resource kind id]`, plus ` for <consumer kind> <id>` when not the machine. */
  readonly label: string;
  /** The metric's name. */
  readonly metric: string;
  /** Joules summed over the interval. */
  readonly joules: number;
  /** Start and end of the interval the sum covers, ns since the epoch. */
  readonly from: Timestamp;
  readonly to: Timestamp;
  /** Mean power over the interval, W; undefined for an empty interval. */
  readonly watts: number | undefined;
  /** A plugin's total over resources (`domain = package_total`): not to be added to the other lines. */
  readonly total: boolean;
  /** Points summed. */
  readonly points: number;
  /** The series' resource, consumer and attributes. */
  readonly resource: Target;
  readonly consumer: Target;
  readonly attributes: Readonly<Record<string, unknown>>;
  /** Whether the series is an estimate (attribute `estimated = true`), not a measurement. */
  readonly estimated: boolean;
}

/** A resource or a consumer: `{ kind, id }`. */
export interface Target {
  readonly kind: string;
  readonly id: string;
}

/** The name of the plugin {@linkcode ExecSummary.plugin} returns (its output is not a place series go). */
export const EXEC_SUMMARY_PLUGIN = "exec-summary";

/**
 * Where the series went, for the summary's last line: each output's description (`Agent.outputs()`, from
 * `Output.describe`) and its plugin, once each; an output that describes nothing is named by its plugin.
 *
 * @param outputs the agent's outputs, `{ name: "output/<plugin>/<name>", description }`
 * @param exclude plugins whose outputs are not listed
 * @param stats the outputs' statistics by name (`Agent.stats().outputs`, read after `stop()`): when given,
 *   an output that wrote no point is not listed (none of the series went there)
 * @returns e.g. `["out.csv (csv)", "log"]`
 *
 * @example
 * ```ts
 * import { outputLabels } from "./summary.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(
 *   outputLabels([
 *     { name: "output/files/main", description: "out.txt" },
 *     { name: "output/console/main", description: "console" },
 *     { name: "output/exec-summary/summary", description: "exec-summary" },
 *   ], ["exec-summary"]),
 *   ["out.txt (files)", "console"],
 * );
 * ```
 */
export function outputLabels(
  outputs: readonly { readonly name: string; readonly description: string }[],
  exclude: readonly string[] = [],
  stats?: ReadonlyMap<string, { readonly points: number }>,
): string[] {
  const lines = new Set<string>();
  for (const { name, description } of outputs) {
    const plugin = name.split("/")[1] ?? name;
    if (exclude.includes(plugin)) continue;
    if (stats !== undefined && !((stats.get(name)?.points ?? 0) > 0)) continue;
    lines.add(description === plugin || description === "" ? plugin : `${description} (${plugin})`);
  }
  return [...lines];
}

/** Collects, from every batch, the points whose consumer is the watched process. */
export class ExecSummary {
  /** The pid to summarise; points of other consumers are ignored. Set once the program is spawned. */
  pid: string | undefined;
  readonly #rows = new Map<string, Row>();
  readonly #labels = new WeakMap<object, string>();
  readonly #energy = new Map<string, EnergyRow>();
  /** Joules per unit of each metric seen, by id; 0 for a metric that is not a delta of energy. */
  readonly #joules = new Map<number, number>();
  #startFrom: Timestamp | undefined;
  #startMark: Timestamp | undefined;
  #endMark: Timestamp | undefined;

  /**
   * Every source was polled just before the program started: `from` is when that poll was asked for, `to` when
   * it had ended. Points up to `to` cover time before the program and are left out of the energy (see the
   * module's documentation); a series whose first point comes later begins at `from`.
   */
  startPolled(from: Timestamp, to: Timestamp): void {
    this.#startFrom = from;
    this.#startMark = to;
  }

  /** Every source was polled just after the program ended, by `at`: later points are left out of the energy. */
  endPolled(at: Timestamp): void {
    this.#endMark = at;
  }

  /** A plugin that adds the collecting output; give it to the agent with the others. */
  plugin(): PluginMetadata {
    return definePlugin({
      name: EXEC_SUMMARY_PLUGIN,
      start: (ctx) =>
        ctx.addOutput("summary", { write: (b: Batch, c: ElementContext) => this.collect(b, c) }),
    });
  }

  /** Takes in the points of one batch, as the output of {@linkcode ExecSummary.plugin} does with each. */
  collect(b: Batch, ctx: ElementContext): void {
    this.#collect(b, ctx);
  }

  #attrLabel(a: object): string {
    let l = this.#labels.get(a);
    if (l === undefined) {
      const parts = Object.entries(a).map(([k, v]) => `${k}=${v}`);
      l = parts.length ? ` (${parts.join(", ")})` : "";
      this.#labels.set(a, l);
    }
    return l;
  }

  #collect(b: Batch, ctx: ElementContext): void {
    const pid = this.pid;
    for (let i = 0; i < b.length; i++) {
      const id = b.metricAt(i);
      let perUnit = this.#joules.get(id);
      if (perUnit === undefined) {
        const m = ctx.metric(id);
        perUnit = m.kind === "delta" ? joulesPerUnit(m.unit) ?? 0 : 0;
        this.#joules.set(id, perUnit);
      }
      if (perUnit !== 0) {
        this.#collectEnergy(b, i, ctx.metric(id).name, perUnit);
        continue;
      }
      if (pid === undefined) continue;
      const c = b.consumerAt(i);
      if (c.kind !== "process" || c.id !== pid) continue;
      const metric = ctx.metric(b.metricAt(i));
      const label = metric.name + this.#attrLabel(b.attributesAt(i)) +
        (b.resourceAt(i).kind === "local_machine" ? "" : ` [${b.resourceAt(i).kind} ${b.resourceAt(i).id}]`);
      const v = Number(b.valueAt(i));
      let row = this.#rows.get(label);
      if (row === undefined) {
        row = { metric, label, value: metric.kind === "delta" ? 0 : v, peak: v, count: 0 };
        this.#rows.set(label, row);
      }
      row.count++;
      if (metric.kind === "delta") row.value += v;
      else row.value = v;
      if (v > row.peak) row.peak = v;
    }
  }

  #collectEnergy(b: Batch, i: number, metric: string, perUnit: number): void {
    const r = b.resourceAt(i), c = b.consumerAt(i), a = b.attributesAt(i);
    const label = metric + this.#attrLabel(a) + (r.kind === "local_machine" ? "" : ` [${r.kind} ${r.id}]`) +
      (c.kind === "local_machine" ? "" : ` for ${c.kind} ${c.id}`);
    let row = this.#energy.get(label);
    if (row === undefined) {
      row = {
        label,
        metric,
        total: isTotal(a),
        resource: r,
        consumer: c,
        attributes: a as Readonly<Record<string, unknown>>,
        before: undefined,
        during: undefined,
      };
      this.#energy.set(label, row);
    }
    const ts = b.timestampAt(i);
    const joules = Number(b.valueAt(i)) * perUnit;
    // Until the start poll is known, every point collected was polled before it ended: before the program.
    if (this.#startMark === undefined || ts <= this.#startMark) {
      const p = row.before;
      if (p === undefined) row.before = { first: ts, firstJ: joules, last: ts, joules, count: 1 };
      else {
        if (ts < p.first) [p.first, p.firstJ] = [ts, joules];
        if (ts > p.last) p.last = ts;
        p.joules += joules;
        p.count++;
      }
    } else if (this.#endMark === undefined || ts <= this.#endMark) {
      const d = row.during;
      if (d === undefined) row.during = { last: ts, joules, count: 1 };
      else {
        if (ts > d.last) d.last = ts;
        d.joules += joules;
        d.count++;
      }
    }
  }

  /**
   * The energy of each series over the program's run (see the module's documentation for the rule), sorted by
   * metric, each metric's totals after its other series. Series with nothing during the run are left out, and
   * so are the `attributed_energy` series (see {@linkcode ExecSummary.attributedEnergy}).
   */
  energy(): EnergyLine[] {
    return busyOnly(this.#lines().filter((l) => l.metric !== ATTRIBUTED_ENERGY));
  }

  /**
   * The `attributed_energy` series over the program's run, by the same rule as {@linkcode ExecSummary.energy}:
   * the shares of each energy series that the `energy-attribution` transform gave each consumer (the program,
   * other processes, `unattributed`).
   */
  attributedEnergy(): EnergyLine[] {
    return busyOnly(this.#lines().filter((l) => l.metric === ATTRIBUTED_ENERGY));
  }

  #lines(): EnergyLine[] {
    const out: EnergyLine[] = [];
    for (const r of this.#energy.values()) {
      let joules: number, from: Timestamp, to: Timestamp, points: number;
      if (this.#startMark !== undefined) {
        if (r.during === undefined) continue;
        joules = r.during.joules;
        points = r.during.count;
        from = r.before?.last ?? this.#startFrom ?? this.#startMark;
        to = r.during.last;
      } else {
        // No start poll: the first point is the baseline (it covers time before anything was watched).
        if (r.before === undefined || r.before.count < 2) continue;
        joules = r.before.joules - r.before.firstJ;
        points = r.before.count - 1;
        from = r.before.first;
        to = r.before.last;
      }
      const secs = Number(to - from) / 1e9;
      out.push({
        label: r.label,
        metric: r.metric,
        joules,
        from,
        to,
        watts: secs > 0 ? joules / secs : undefined,
        total: r.total,
        points,
        resource: r.resource,
        consumer: r.consumer,
        attributes: r.attributes,
        estimated: isEstimated(r.attributes),
      });
    }
    return out.sort((a, b) =>
      a.metric !== b.metric
        ? (a.metric < b.metric ? -1 : 1)
        : a.total !== b.total
        ? (a.total ? 1 : -1)
        : (a.label < b.label ? -1 : a.label > b.label ? 1 : 0)
    );
  }

  /**
   * The peak of the program's resident memory series (`memory_usage`, kind resident: for `exec` and `watch`
   * the sum over its process tree at each poll), bytes; undefined when there is none.
   */
  peakResidentBytes(): number | undefined {
    const r = this.#rows.get("memory_usage (kind=resident)");
    return r === undefined || r.count === 0 ? undefined : r.peak;
  }

  /** The CPU time of the program's series (`cpu_time_delta`, kinds user and system), ns; undefined when none. */
  cpuFromSeries(): { userNs: number; systemNs: number } | undefined {
    let userNs = 0, systemNs = 0, found = false;
    for (const r of this.#rows.values()) {
      if (r.metric.name !== "cpu_time_delta") continue;
      if (r.label === "cpu_time_delta (kind=user)") userNs += r.value;
      else if (r.label === "cpu_time_delta (kind=system)") systemNs += r.value;
      else continue;
      found = true;
    }
    return found ? { userNs, systemNs } : undefined;
  }

  /**
   * The energy of the program and its children over the run, next to what each energy source measured, with
   * the method named:
   * - the `attributed_energy` points whose consumer is the program (`process <pid>`: for `exec` and `watch` the
   *   procfs plugin follows the program's whole process tree as that one consumer), per source series (the
   *   transform's `source_metric` and `domain`, summed over resources), the method from their `method`
   *   attribute (`cpu_time_share`, `gpu_sm_share`), an estimate when `estimated = true`;
   * - without any `attributed_energy` point but with the machine's energy and the program's CPU time
   *   (`options.cpu`): the machine's CPU energy (every series but the GPUs') × the program's share of the CPU
   *   time available over the run, CPU time ÷ (CPUs × interval), method `rusage_cpu_share`;
   * - undefined otherwise (no energy at all).
   *
   * The total adds the sources that do not overlap: RAPL's `pp0`, `pp1`, `core`, `uncore` (parts of the
   * package) and `platform`/`psys` (the whole platform) are left out of it when other sources exist.
   */
  programEnergy(
    options: { readonly cpu?: CpuTime | undefined; readonly nCpus: number },
  ): ProgramEnergy | undefined {
    const machine = machineGroups(this.energy());
    const attributed = this.attributedEnergy();
    const sources: ProgramEnergySource[] = [];
    const methods = new Set<string>();
    if (attributed.length > 0) {
      const groups = new Map<
        string,
        {
          metric: string;
          domain: string | undefined;
          program: number;
          unattributed: number;
          other: number;
          estimated: boolean;
        }
      >();
      for (const l of attributed) {
        const metric = String(l.attributes.source_metric ?? "energy");
        const domain = l.attributes.domain === undefined ? undefined : String(l.attributes.domain);
        const key = groupKey(metric, domain);
        let g = groups.get(key);
        if (g === undefined) {
          g = { metric, domain, program: 0, unattributed: 0, other: 0, estimated: false };
          groups.set(key, g);
        }
        if (l.estimated) g.estimated = true;
        if (l.consumer.kind === "process" && l.consumer.id === this.pid) {
          g.program += l.joules;
          if (l.attributes.method !== undefined) methods.add(String(l.attributes.method));
        } else if (l.consumer.kind === "unattributed") g.unattributed += l.joules;
        else g.other += l.joules;
      }
      for (const [key, g] of groups) {
        const m = machine.get(key);
        sources.push({
          metric: g.metric,
          domain: g.domain,
          joules: g.program,
          machineJoules: m?.joules,
          unattributedJoules: g.unattributed,
          otherJoules: g.other,
          estimated: g.estimated || (m?.estimated ?? false),
        });
      }
      if (methods.size === 0) {
        for (const l of attributed) {
          if (l.attributes.method !== undefined) methods.add(String(l.attributes.method));
        }
      }
    } else {
      const cpu = options.cpu;
      if (cpu === undefined || machine.size === 0) return undefined;
      const cpuS = (cpu.userNs + cpu.systemNs) / 1e9;
      for (const g of machine.values()) {
        if (g.gpu) continue;
        const secs = Number(g.to - g.from) / 1e9;
        if (!(secs > 0)) continue;
        const share = Math.min(1, cpuS / (options.nCpus * secs));
        sources.push({
          metric: g.metric,
          domain: g.domain,
          joules: g.joules * share,
          machineJoules: g.joules,
          unattributedJoules: undefined,
          otherJoules: undefined,
          estimated: g.estimated,
        });
      }
      if (sources.length === 0) return undefined;
      methods.add("rusage_cpu_share");
    }
    sources.sort((a, b) => (sourceLabel(a) < sourceLabel(b) ? -1 : sourceLabel(a) > sourceLabel(b) ? 1 : 0));
    const added = sources.some((x) => !OVERLAPPING.has(x.domain ?? ""))
      ? sources.filter((x) => !OVERLAPPING.has(x.domain ?? ""))
      : sources;
    const estimated = sources.some((x) => x.estimated);
    const method = [...methods].sort().join("+") || "unknown";
    return {
      method,
      description: methodDescription(method, estimated),
      estimated,
      joules: added.reduce((a, x) => a + x.joules, 0),
      machineJoules: added.every((x) => x.machineJoules !== undefined)
        ? added.reduce((a, x) => a + x.machineJoules!, 0)
        : undefined,
      added: added.map(sourceLabel),
      sources,
    };
  }

  /**
   * The energy above idle: for each of the machine's series, its energy over the run less its mean power while
   * the machine was idle (`baseline`: the same series over a window measured just before the program) times the
   * series' interval; for the program (given its energy and CPU time, with a CPU-time share), its energy less
   * the idle power of each source it was given a share of × its CPU time ÷ the CPUs — under a CPU-time share,
   * exactly the part of the idle power its intervals were given, when the idle power holds steady.
   */
  aboveIdle(
    baseline: { readonly seconds: number; readonly lines: readonly EnergyLine[] },
    options: {
      readonly cpu?: CpuTime | undefined;
      readonly nCpus: number;
      readonly program?: ProgramEnergy | undefined;
    },
  ): AboveIdle {
    const idle = new Map(baseline.lines.map((l) => [l.label, l]));
    const lines: AboveIdleLine[] = [];
    for (const l of this.energy()) {
      const b = idle.get(l.label);
      if (b === undefined || b.watts === undefined) continue;
      const seconds = Number(l.to - l.from) / 1e9;
      lines.push({
        label: l.label,
        joules: l.joules,
        idleWatts: b.watts,
        seconds,
        aboveJoules: l.joules - b.watts * seconds,
        total: l.total,
        domain: l.attributes.domain === undefined ? undefined : String(l.attributes.domain),
        estimated: l.estimated,
      });
    }
    let program: AboveIdle["program"];
    const p = options.program;
    if (p !== undefined && options.cpu !== undefined && /cpu/.test(p.method)) {
      const idleGroups = machineGroups(baseline.lines);
      const cpuS = (options.cpu.userNs + options.cpu.systemNs) / 1e9;
      let idleWatts = 0, joules = 0, complete = true;
      for (const x of p.sources) {
        if (!p.added.includes(sourceLabel(x))) continue;
        const g = idleGroups.get(groupKey(x.metric, x.domain));
        const secs = g === undefined ? 0 : Number(g.to - g.from) / 1e9;
        if (g === undefined || !(secs > 0)) {
          complete = false;
          continue;
        }
        idleWatts += g.joules / secs;
        joules += x.joules;
      }
      if (complete) {
        const shareSeconds = cpuS / options.nCpus;
        program = { joules, idleWatts, cpuSeconds: cpuS, aboveJoules: joules - idleWatts * shareSeconds };
      }
    }
    const machine = lines.filter((l) => !l.total && !OVERLAPPING.has(l.domain ?? ""));
    return {
      baselineSeconds: baseline.seconds,
      lines,
      machineAboveJoules: machine.length ? machine.reduce((a, l) => a + l.aboveJoules, 0) : undefined,
      program,
    };
  }

  /**
   * The summary as one JSON-ready object (`exec --json`): every figure of {@linkcode ExecSummary.format}, with
   * its unit in its key.
   */
  report(options: SummaryOptions): RunReport {
    const cpu = options.cpu ?? this.cpuFromSeries();
    const secs = options.elapsedMs / 1000;
    const program = this.programEnergy({ cpu, nCpus: options.nCpus });
    const energy = this.energy();
    let from: Timestamp | undefined, to: Timestamp | undefined;
    for (const l of energy) {
      if (from === undefined || l.from < from) from = l.from;
      if (to === undefined || l.to > to) to = l.to;
    }
    const above = options.baseline === undefined
      ? undefined
      : this.aboveIdle(options.baseline, { cpu, nCpus: options.nCpus, program });
    const rows = [...this.#rows.values()].sort((
      a,
      b,
    ) => (a.label < b.label ? -1 : a.label > b.label ? 1 : 0));
    const total = cpu === undefined ? undefined : (cpu.userNs + cpu.systemNs) / 1e9;
    return {
      command: options.command === undefined ? null : [...options.command],
      pid: this.pid === undefined ? null : Number(this.pid),
      exit_code: options.exitCode ?? null,
      signal: options.signal ?? null,
      elapsed_s: secs,
      n_cpus: options.nCpus,
      cpu: cpu === undefined ? null : {
        total_s: total!,
        user_s: cpu.userNs / 1e9,
        system_s: cpu.systemNs / 1e9,
        share_percent: secs > 0 ? 100 * total! / secs / options.nCpus : null,
        cpus_busy: secs > 0 ? total! / secs : null,
        source: options.cpu !== undefined ? "rusage" : "cpu_time_delta series",
      },
      peak_memory_bytes: options.peakRssBytes !== undefined && options.peakRssBytes > 0
        ? options.peakRssBytes
        : null,
      peak_memory_source: options.peakRssBytes !== undefined && options.peakRssBytes > 0
        ? options.peakSource ?? "max resident set size"
        : null,
      series: rows.map((r) => ({
        label: r.label,
        metric: r.metric.name,
        unit: r.metric.unit.display,
        kind: r.metric.kind,
        value: r.value,
        peak: r.metric.kind === "gauge" ? r.peak : null,
        points: r.count,
      })),
      energy: energy.length === 0 ? null : {
        interval_s: Number(to! - from!) / 1e9,
        estimated: energy.some((l) => l.estimated),
        series: energy.map((l) => ({
          label: l.label,
          metric: l.metric,
          resource: { kind: l.resource.kind, id: l.resource.id },
          consumer: { kind: l.consumer.kind, id: l.consumer.id },
          attributes: { ...l.attributes },
          joules: l.joules,
          watts: l.watts ?? null,
          interval_s: Number(l.to - l.from) / 1e9,
          total: l.total,
          estimated: l.estimated,
          points: l.points,
        })),
      },
      program_energy: program === undefined ? null : {
        joules: program.joules,
        machine_joules: program.machineJoules ?? null,
        share_percent: program.machineJoules ? 100 * program.joules / program.machineJoules : null,
        method: program.method,
        description: program.description,
        estimated: program.estimated,
        added: [...program.added],
        sources: program.sources.map((x) => ({
          label: sourceLabel(x),
          metric: x.metric,
          domain: x.domain ?? null,
          joules: x.joules,
          machine_joules: x.machineJoules ?? null,
          unattributed_joules: x.unattributedJoules ?? null,
          other_consumers_joules: x.otherJoules ?? null,
          estimated: x.estimated,
        })),
      },
      above_idle: above === undefined ? null : {
        baseline_s: above.baselineSeconds,
        machine_joules: above.machineAboveJoules ?? null,
        series: above.lines.map((l) => ({
          label: l.label,
          joules: l.joules,
          idle_watts: l.idleWatts,
          interval_s: l.seconds,
          above_idle_joules: l.aboveJoules,
          total: l.total,
          estimated: l.estimated,
        })),
        program: above.program === undefined ? null : {
          joules: above.program.joules,
          idle_watts: above.program.idleWatts,
          cpu_s: above.program.cpuSeconds,
          above_idle_joules: above.program.aboveJoules,
        },
      },
      estimate_note: energy.some((l) => l.estimated) || program?.estimated
        ? options.estimateNote ?? null
        : null,
      outputs: [...options.outputs],
      lost_points: options.lost ?? 0,
    };
  }

  /**
   * The text: the whole program first (CPU time, CPU share, peak memory, elapsed time), then one line per
   * series of the program, then where the series went (or how many points were lost).
   */
  format(options: SummaryOptions): string {
    const n = formatCount;
    const pid = `pid ${this.pid ?? "?"}`;
    const command = options.command?.length ? `${shellQuote(options.command)} (${pid})` : pid;
    const lines = [``, ` Measured for ${command} by alumet:`, ``];
    const secs = options.elapsedMs / 1000;
    const cpu = options.cpu ?? this.cpuFromSeries();
    if (cpu !== undefined) {
      const total = (cpu.userNs + cpu.systemNs) / 1e9;
      lines.push(
        `${total.toFixed(6).padStart(20)} s   CPU time (user ${(cpu.userNs / 1e9).toFixed(3)} s, system ${
          (cpu.systemNs / 1e9).toFixed(3)
        } s)`,
      );
      if (secs > 0) {
        const busy = total / secs;
        lines.push(
          `${(100 * busy / options.nCpus).toFixed(2).padStart(20)} %   CPU share of the machine (${
            busy.toFixed(2)
          } of ${options.nCpus} CPUs busy on average)`,
        );
      }
    }
    if (options.peakRssBytes !== undefined && options.peakRssBytes > 0) {
      const [value, unit] = humanBytes(options.peakRssBytes);
      lines.push(
        `${value.padStart(20)} ${unit.padEnd(3)} peak memory (${n(options.peakRssBytes / 1024)} KiB, ${
          options.peakSource ?? "max resident set size"
        })`,
      );
    }
    lines.push(`${secs.toFixed(6).padStart(20)} s   elapsed`, ``);
    const rows = [...this.#rows.values()].sort((
      a,
      b,
    ) => (a.label < b.label ? -1 : a.label > b.label ? 1 : 0));
    if (rows.length === 0) {
      lines.push("   (no series for the program: enable a plugin that measures processes)");
    }
    for (const r of rows) {
      const unit = r.metric.unit.display;
      const what = r.metric.kind === "gauge" && r.count > 1 ? `   (peak ${n(r.peak)})` : "";
      lines.push(`${n(r.value).padStart(20)} ${unit.padEnd(3)} ${r.label}${what}`);
    }
    const energy = this.energy();
    lines.push(...formatEnergy(energy));
    const program = this.programEnergy({ cpu, nCpus: options.nCpus });
    if (program !== undefined) lines.push(...formatProgramEnergy(program));
    if (options.baseline !== undefined) {
      const above = this.aboveIdle(options.baseline, { cpu, nCpus: options.nCpus, program });
      lines.push(...formatAboveIdle(above, options.baseline.lines.length));
    }
    if ((energy.some((l) => l.estimated) || program?.estimated) && options.estimateNote !== undefined) {
      lines.push(``, ` ${options.estimateNote}`);
    }
    const lost = options.lost ?? 0;
    if (lost > 0) {
      lines.push(
        ``,
        ` Series incomplete: ${n(lost)} point${lost === 1 ? "" : "s"} lost (see the errors above)${
          options.outputs.length
            ? `; the others went to: ${options.outputs.join(", ")}`
            : "; no output wrote any"
        }`,
      );
    } else if (options.outputs.length) lines.push(``, ` Series written to: ${options.outputs.join(", ")}`);
    return lines.join("\n") + "\n";
  }
}

/** The seconds between two timestamps, for people (`0.312 s`). */
function seconds(from: Timestamp, to: Timestamp): string {
  return `${(Number(to - from) / 1e9).toFixed(3)} s`;
}

/**
 * The "Energy" block: a heading with the interval the sums rest on, then per series its joules and mean power;
 * a series whose interval is shorter than the heading's by more than a millisecond (both ends together) says
 * its own.
 */
function formatEnergy(lines: readonly EnergyLine[]): string[] {
  if (lines.length === 0) return [];
  let from = lines[0]!.from, to = lines[0]!.to;
  for (const l of lines) {
    if (l.from < from) from = l.from;
    if (l.to > to) to = l.to;
  }
  const out = [
    ``,
    ` Energy (whole machine, during the run: ${
      seconds(from, to)
    }, from the poll at the program's start to the poll at its end):`,
  ];
  for (const l of lines) {
    const power = l.watts === undefined ? "" : `${l.watts.toFixed(3)} W`;
    // Both ends together: a line may start a little later and end a little earlier than the heading.
    const own = Number(l.from - from) + Number(to - l.to) > 1e6 ? `, over ${seconds(l.from, l.to)}` : "";
    const notes = [
      l.estimated ? "an estimate, not a measurement" : "",
      l.total ? "a total over resources: not added to the lines above" : "",
      own.slice(2),
    ]
      .filter((x) => x !== "");
    out.push(
      `${l.joules.toFixed(6).padStart(20)} J   ${power.padStart(13)}   ${l.label}${
        notes.length ? `   (${notes.join("; ")})` : ""
      }`,
    );
  }
  return out;
}

/** CPU time, ns. */
export interface CpuTime {
  readonly userNs: number;
  readonly systemNs: number;
}

/** The program's share of one energy source: a metric and its domain, summed over resources. */
export interface ProgramEnergySource {
  /** The energy metric shared (`rapl_consumed_energy`). */
  readonly metric: string;
  /** Its `domain` attribute, when it has one. */
  readonly domain: string | undefined;
  /** Joules of the program and its children over the run. */
  readonly joules: number;
  /**
   * Joules the source measured over the run (its series on the machine, summed over resources; its totals when
   * only they were shared); undefined when its series were not seen.
   */
  readonly machineJoules: number | undefined;
  /** Joules the transform gave `unattributed`, and other consumers; undefined without the transform. */
  readonly unattributedJoules: number | undefined;
  readonly otherJoules: number | undefined;
  /** An estimate (`estimated = true`), not a measurement. */
  readonly estimated: boolean;
}

/** The program's energy, as {@linkcode ExecSummary.programEnergy} gives it. */
export interface ProgramEnergy {
  /** `cpu_time_share`, `gpu_sm_share` (the transform's, `+`-joined when several), or `rusage_cpu_share`. */
  readonly method: string;
  /** The method in words, with "measured" or "TDP estimate". */
  readonly description: string;
  /** Whether any source is an estimate. */
  readonly estimated: boolean;
  /** Joules over the sources added (see `added`). */
  readonly joules: number;
  /** The machine's joules over the same sources; undefined when one was not seen. */
  readonly machineJoules: number | undefined;
  /** The labels of the sources added to the total (those that do not overlap). */
  readonly added: readonly string[];
  /** Each source. */
  readonly sources: readonly ProgramEnergySource[];
}

/** One series' energy above idle. */
export interface AboveIdleLine {
  readonly label: string;
  readonly joules: number;
  readonly idleWatts: number;
  readonly seconds: number;
  readonly aboveJoules: number;
  readonly total: boolean;
  readonly domain: string | undefined;
  /**
   * A TDP estimate: it has no idle power, so its "idle" figure is the CPU time other processes used during the
   * baseline × the watts per CPU (the machine was not idle when that is above 0).
   */
  readonly estimated: boolean;
}

/** What {@linkcode ExecSummary.aboveIdle} gives. */
export interface AboveIdle {
  /** How long the machine was measured idle, s. */
  readonly baselineSeconds: number;
  readonly lines: readonly AboveIdleLine[];
  /** The sum over the machine's series that do not overlap (no totals); undefined when none. */
  readonly machineAboveJoules: number | undefined;
  /** The program's energy less its CPU-time share of the idle power; undefined when it cannot be said. */
  readonly program:
    | {
      readonly joules: number;
      readonly idleWatts: number;
      readonly cpuSeconds: number;
      readonly aboveJoules: number;
    }
    | undefined;
}

/** The summary of one run as JSON (`exec --json`): units in the keys; null where the text shows nothing. */
export interface RunReport {
  command: string[] | null;
  pid: number | null;
  exit_code: number | null;
  signal: string | null;
  elapsed_s: number;
  n_cpus: number;
  cpu: {
    total_s: number;
    user_s: number;
    system_s: number;
    share_percent: number | null;
    cpus_busy: number | null;
    source: string;
  } | null;
  peak_memory_bytes: number | null;
  peak_memory_source: string | null;
  series: {
    label: string;
    metric: string;
    unit: string;
    kind: string;
    value: number;
    peak: number | null;
    points: number;
  }[];
  energy: {
    interval_s: number;
    estimated: boolean;
    series: {
      label: string;
      metric: string;
      resource: Target;
      consumer: Target;
      attributes: Record<string, unknown>;
      joules: number;
      watts: number | null;
      interval_s: number;
      total: boolean;
      estimated: boolean;
      points: number;
    }[];
  } | null;
  program_energy: {
    joules: number;
    machine_joules: number | null;
    share_percent: number | null;
    method: string;
    description: string;
    estimated: boolean;
    added: string[];
    sources: {
      label: string;
      metric: string;
      domain: string | null;
      joules: number;
      machine_joules: number | null;
      unattributed_joules: number | null;
      other_consumers_joules: number | null;
      estimated: boolean;
    }[];
  } | null;
  above_idle: {
    baseline_s: number;
    machine_joules: number | null;
    series: {
      label: string;
      joules: number;
      idle_watts: number;
      interval_s: number;
      above_idle_joules: number;
      total: boolean;
      estimated: boolean;
    }[];
    program: { joules: number; idle_watts: number; cpu_s: number; above_idle_joules: number } | null;
  } | null;
  estimate_note: string | null;
  outputs: string[];
  lost_points: number;
}

/**
 * RAPL domains that overlap others: parts of the package (`pp0`/`core`, `pp1`/`uncore`) and the whole
 * platform (`platform`/`psys`, which holds the package and more). Left out of the program's total when other
 * sources exist.
 */
const OVERLAPPING: ReadonlySet<string> = new Set([
  "pp0",
  "pp1",
  "core",
  "cores",
  "uncore",
  "platform",
  "psys",
]);

function groupKey(metric: string, domain: string | undefined): string {
  return `${metric}\u0000${domain ?? ""}`;
}

/** `rapl_consumed_energy (domain=package)`, or the metric alone. */
function sourceLabel(x: { readonly metric: string; readonly domain: string | undefined }): string {
  return x.domain === undefined ? x.metric : `${x.metric} (domain=${x.domain})`;
}

/** The machine's energy in one metric and domain, over resources. */
interface MachineGroup {
  readonly metric: string;
  readonly domain: string | undefined;
  joules: number;
  from: Timestamp;
  to: Timestamp;
  estimated: boolean;
  gpu: boolean;
}

/** The machine's energy series (consumer: the machine) summed per metric and domain, over resources. */
function machineGroups(lines: readonly EnergyLine[]): Map<string, MachineGroup> {
  const plain = new Map<string, MachineGroup>();
  const totals = new Map<string, MachineGroup>();
  for (const l of lines) {
    if (l.consumer.kind !== "local_machine") continue;
    const domain = l.attributes.domain === undefined ? undefined : String(l.attributes.domain);
    const key = groupKey(l.metric, domain);
    const into = l.total ? totals : plain;
    const g = into.get(key);
    if (g === undefined) {
      into.set(key, {
        metric: l.metric,
        domain,
        joules: l.joules,
        from: l.from,
        to: l.to,
        estimated: l.estimated,
        gpu: l.resource.kind === "gpu",
      });
    } else {
      g.joules += l.joules;
      if (l.from < g.from) g.from = l.from;
      if (l.to > g.to) g.to = l.to;
      g.estimated ||= l.estimated;
      g.gpu ||= l.resource.kind === "gpu";
    }
  }
  for (const [k, g] of totals) if (!plain.has(k)) plain.set(k, g);
  return plain;
}

/** A method in words: `measured, share of CPU time` or `TDP estimate, share of CPU time`. */
function methodDescription(method: string, estimated: boolean): string {
  const words: Record<string, string> = {
    cpu_time_share: "share of CPU time, per interval (energy-attribution)",
    gpu_sm_share: "share of GPU use (SM), per interval (energy-attribution)",
    rusage_cpu_share:
      "share of the machine's CPU time over the whole run (kernel rusage: no energy-attribution points)",
  };
  const how = method.split("+").map((m) => words[m] ?? m).join(" and ");
  return `${estimated ? "TDP estimate" : "measured"}, ${how}`;
}

function percent(part: number, whole: number | undefined): string {
  return whole !== undefined && whole > 0 ? ` (${(100 * part / whole).toFixed(1)} %)` : "";
}

/** The block of the program's energy: per source, its joules of the machine's; then the total. */
function formatProgramEnergy(p: ProgramEnergy): string[] {
  const out = [``, ` Energy of the program and its children (${p.description}):`];
  const of = (machine: number | undefined) =>
    machine === undefined ? "".padEnd(22) : `of ${machine.toFixed(6).padStart(16)} J`;
  for (const x of p.sources) {
    const rest: string[] = [];
    if (x.unattributedJoules !== undefined && x.unattributedJoules !== 0) {
      rest.push(`${x.unattributedJoules.toFixed(6)} J unattributed`);
    }
    if (x.otherJoules !== undefined && x.otherJoules !== 0) {
      rest.push(`${x.otherJoules.toFixed(6)} J other consumers`);
    }
    const notes = [x.estimated ? "an estimate" : "", rest.length ? `the rest: ${rest.join(", ")}` : ""]
      .filter((n) => n !== "");
    out.push(
      `${x.joules.toFixed(6).padStart(20)} J   ${of(x.machineJoules)}${
        percent(x.joules, x.machineJoules).padEnd(10)
      }   ${sourceLabel(x)}${notes.length ? `   (${notes.join("; ")})` : ""}`,
    );
  }
  if (p.sources.length > 1 || p.added.length !== p.sources.length) {
    out.push(
      `${p.joules.toFixed(6).padStart(20)} J   ${of(p.machineJoules)}${
        percent(p.joules, p.machineJoules).padEnd(10)
      }   total (${p.added.join(" + ")})`,
    );
  }
  return out;
}

/** The block of the energy above idle. */
function formatAboveIdle(a: AboveIdle, idleSeries: number): string[] {
  const out = [
    ``,
    ` Energy above idle (the machine measured idle for ${
      a.baselineSeconds.toFixed(3)
    } s just before the program; energy − idle power × interval):`,
  ];
  if (idleSeries === 0 || a.lines.length === 0) {
    out.push("   (no energy series during the idle measurement: nothing to subtract)");
    return out;
  }
  for (const l of a.lines) {
    out.push(
      `${l.aboveJoules.toFixed(6).padStart(20)} J   (${l.joules.toFixed(6)} J − ${
        l.idleWatts.toFixed(3)
      } W × ${l.seconds.toFixed(3)} s)   ${l.label}${l.total ? "   (a total over resources)" : ""}`,
    );
  }
  if (a.machineAboveJoules !== undefined) {
    out.push(
      `${
        a.machineAboveJoules.toFixed(6).padStart(20)
      } J   machine, above idle (the series above, totals and overlapping domains left out)`,
    );
  }
  if (a.lines.some((l) => l.estimated)) {
    out.push(
      "   (the estimates have no idle power: their idle figure is the CPU time other processes used during the " +
        "baseline × the watts per CPU, so above 0 W the machine was not idle and the difference is the program's " +
        "estimate plus any change in the others' load)",
    );
  }
  if (a.program !== undefined) {
    const p = a.program;
    out.push(
      `${p.aboveJoules.toFixed(6).padStart(20)} J   the program, above idle (${p.joules.toFixed(6)} J − ${
        p.idleWatts.toFixed(3)
      } W idle × ${p.cpuSeconds.toFixed(3)} s CPU time ÷ CPUs)`,
    );
  }
  return out;
}

/** What {@linkcode ExecSummary.format} prints besides the series. */
export interface SummaryOptions {
  /**
   * The program's command line, as typed (printed shell-quoted). Default: none, the pid only (a watched
   * process whose command line cannot be read).
   */
  readonly command?: readonly string[];
  /** Wall-clock time from the start of the program to its end, ms. */
  readonly elapsedMs: number;
  /** Where the series went: the outputs that wrote points ({@linkcode outputLabels} with their statistics). */
  readonly outputs: readonly string[];
  /** The whole program's CPU time (the kernel's rusage for `exec`). Default: the sum of its `cpu_time_delta`. */
  readonly cpu?: CpuTime;
  /** Online CPUs: the CPU share is of the whole machine, as `cpu_percent`. */
  readonly nCpus: number;
  /** Peak memory, bytes (printed in KiB, MiB or GiB, and exactly in KiB). Default: not shown. */
  readonly peakRssBytes?: number;
  /** What the peak is, for its line. Default `max resident set size`. */
  readonly peakSource?: string;
  /** Points the outputs lost. Default 0. */
  readonly lost?: number;
  /** The program's exit code (for the JSON). Default: unknown. */
  readonly exitCode?: number;
  /** The signal that killed it, else null (for the JSON). Default: unknown. */
  readonly signal?: string | null;
  /**
   * The machine measured idle just before the program (`exec --baseline DUR`): how long, and its energy series
   * over that window ({@linkcode ExecSummary.energy} of a summary whose start and end polls bracket it). Default:
   * no energy above idle.
   */
  readonly baseline?: { readonly seconds: number; readonly lines: readonly EnergyLine[] };
  /** A sentence printed when an energy figure is an estimate: the TDP assumed and how to set it. Default: none. */
  readonly estimateNote?: string;
}

// --- Repeated runs (`exec --repeat N`) -------------------------------------------------------------------------

/** One figure of a run, for the statistics over runs. */
export interface Figure {
  /** What it is, as the text summary names it (unique within a run). */
  readonly label: string;
  /** Its unit (`s`, `%`, `B`, `J`, `W`, or a series' unit). */
  readonly unit: string;
  readonly value: number;
}

/**
 * Every figure of a run's report, in the order the text summary gives them: CPU time, its user and system parts,
 * CPU share, peak memory, elapsed time, each series of the program, each energy series (joules and mean power),
 * the program's energy (per source and total), the energy above idle.
 */
export function figuresOf(r: RunReport): Figure[] {
  const out: Figure[] = [];
  const add = (label: string, unit: string, value: number | null | undefined) => {
    if (value !== null && value !== undefined && Number.isFinite(value)) out.push({ label, unit, value });
  };
  if (r.cpu !== null) {
    add("CPU time", "s", r.cpu.total_s);
    add("CPU time, user", "s", r.cpu.user_s);
    add("CPU time, system", "s", r.cpu.system_s);
    add("CPU share of the machine", "%", r.cpu.share_percent);
  }
  add("peak memory", "B", r.peak_memory_bytes);
  add("elapsed", "s", r.elapsed_s);
  for (const s of r.series) {
    add(s.label, s.unit, s.value);
    if (s.peak !== null && s.points > 1) add(`${s.label}, peak`, s.unit, s.peak);
  }
  for (const e of r.energy?.series ?? []) {
    const est = e.estimated ? ", an estimate" : "";
    add(`${e.label}${est}`, "J", e.joules);
    add(`${e.label}, mean power${est}`, "W", e.watts);
  }
  const p = r.program_energy;
  if (p !== null) {
    for (const x of p.sources) add(`program: ${x.label}${x.estimated ? ", an estimate" : ""}`, "J", x.joules);
    if (p.sources.length > 1 || p.added.length !== p.sources.length) {
      add(`program: total (${p.added.join(" + ")})${p.estimated ? ", an estimate" : ""}`, "J", p.joules);
    }
    add("program: share of the machine's energy", "%", p.share_percent);
  }
  const a = r.above_idle;
  if (a !== null) {
    for (const l of a.series) add(`above idle: ${l.label}`, "J", l.above_idle_joules);
    add("above idle: machine", "J", a.machine_joules);
    add("above idle: the program", "J", a.program?.above_idle_joules);
  }
  return out;
}

/** A figure over several runs: mean, sample standard deviation (n − 1), range. */
export interface FigureStats {
  readonly label: string;
  readonly unit: string;
  /** Runs that have the figure. */
  readonly n: number;
  readonly mean: number;
  /** Sample standard deviation (divided by n − 1, as hyperfine's σ); 0 for one run. */
  readonly stddev: number;
  readonly min: number;
  readonly max: number;
}

/**
 * Mean, standard deviation and range of each figure over `runs`, in the order of first appearance.
 *
 * @example
 * ```ts
 * import { figureStats } from "./summary.ts";
 * import assert from "node:assert/strict";
 * const [s] = figureStats([[{ label: "x", unit: "J", value: 1 }], [{ label: "x", unit: "J", value: 3 }]]);
 * assert.deepEqual(s, { label: "x", unit: "J", n: 2, mean: 2, stddev: Math.SQRT2, min: 1, max: 3 });
 * ```
 */
export function figureStats(runs: readonly (readonly Figure[])[]): FigureStats[] {
  const by = new Map<string, { unit: string; values: number[] }>();
  for (const run of runs) {
    for (const f of run) {
      let e = by.get(f.label);
      if (e === undefined) by.set(f.label, e = { unit: f.unit, values: [] });
      e.values.push(f.value);
    }
  }
  return [...by].map(([label, { unit, values }]) => {
    const n = values.length;
    const mean = values.reduce((a, v) => a + v, 0) / n;
    const variance = n > 1 ? values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1) : 0;
    return {
      label,
      unit,
      n,
      mean,
      stddev: Math.sqrt(variance),
      min: Math.min(...values),
      max: Math.max(...values),
    };
  });
}

/** How a repeated run ended, for its summary and exit code. */
export interface RepeatOutcome {
  /** Runs asked for, and done. */
  readonly asked: number;
  readonly done: number;
  /** The exit code `exec` returns: the first failure's (a run that exited non-zero), else the last run's. */
  readonly exitCode: number;
  /** Which run it is (1-based), and why: "first failure" or "last run". */
  readonly exitCodeOf: { readonly run: number; readonly why: "first failure" | "last run" };
  /** Why fewer runs than asked were done, if so. */
  readonly stopped?: string;
}

/** The JSON of `exec --repeat N --json PATH`: each run's report and the statistics of every figure. */
export interface RepeatReport {
  command: string[];
  runs_asked: number;
  runs: number;
  exit_code: number;
  exit_code_of: { run: number; why: string };
  stopped: string | null;
  statistics: {
    label: string;
    unit: string;
    n: number;
    mean: number;
    stddev: number;
    min: number;
    max: number;
  }[];
  results: RunReport[];
}

/** The report of a repeated run. */
export function repeatReport(
  command: readonly string[],
  reports: readonly RunReport[],
  o: RepeatOutcome,
): RepeatReport {
  return {
    command: [...command],
    runs_asked: o.asked,
    runs: o.done,
    exit_code: o.exitCode,
    exit_code_of: { ...o.exitCodeOf },
    stopped: o.stopped ?? null,
    statistics: figureStats(reports.map(figuresOf)).map((s) => ({ ...s })),
    results: [...reports],
  };
}

/** Decimals to show for a figure of this unit. */
function decimals(unit: string): number {
  return unit === "s" || unit === "J" ? 6 : unit === "W" || unit === "%" ? 3 : 3;
}

/** A value of a figure, for people: bytes in KiB with separators, others fixed or counted. */
function figureText(value: number, unit: string): [string, string] {
  if (unit === "B") return [formatCount(value / 1024), "KiB"];
  if (unit === "s" || unit === "J" || unit === "W" || unit === "%") {
    return [value.toFixed(decimals(unit)), unit];
  }
  return [formatCount(value), unit];
}

/**
 * The text summary of a repeated run, as `perf stat -r` gives it: each figure's mean ± standard deviation
 * (with the deviation in % of the mean) and its range over the runs.
 */
export function formatRepeat(
  options: {
    readonly command: readonly string[];
    readonly outcome: RepeatOutcome;
    readonly reports: readonly RunReport[];
    readonly outputs: readonly string[];
    readonly lost: number;
  },
): string {
  const o = options.outcome;
  const stats = figureStats(options.reports.map(figuresOf));
  const lines = [
    ``,
    ` Measured for ${shellQuote(options.command)} by alumet, ${o.done} run${o.done === 1 ? "" : "s"}${
      o.done !== o.asked ? ` of ${o.asked}` : ""
    } (mean ± standard deviation, [min … max]):`,
    ``,
  ];
  for (const s of stats) {
    const [mean, unit] = figureText(s.mean, s.unit);
    const [sd] = figureText(s.stddev, s.unit);
    const [min] = figureText(s.min, s.unit);
    const [max] = figureText(s.max, s.unit);
    const rel = s.mean !== 0 && o.done > 1 ? ` (${(100 * s.stddev / Math.abs(s.mean)).toFixed(1)} %)` : "";
    const some = s.n !== o.done ? `, in ${s.n} of ${o.done} runs` : "";
    lines.push(
      `${mean.padStart(20)} ± ${(sd + rel).padEnd(20)} ${
        unit.padEnd(3)
      } ${s.label}   [${min} … ${max}${some}]`,
    );
  }
  const last = options.reports.at(-1);
  if (last?.program_energy != null) {
    lines.push(``, ` Program's energy: ${last.program_energy.description}.`);
  }
  if (last?.estimate_note != null) lines.push(``, ` ${last.estimate_note}`);
  if (o.stopped !== undefined) lines.push(``, ` ${o.stopped}`);
  lines.push(
    ``,
    ` Exit code ${o.exitCode}: that of run ${o.exitCodeOf.run} (${o.exitCodeOf.why}).`,
  );
  if (options.lost > 0) {
    lines.push(
      ``,
      ` Series incomplete: ${formatCount(options.lost)} point${
        options.lost === 1 ? "" : "s"
      } lost (see the errors above)`,
    );
  } else if (options.outputs.length) lines.push(``, ` Series written to: ${options.outputs.join(", ")}`);
  return lines.join("\n") + "\n";
}

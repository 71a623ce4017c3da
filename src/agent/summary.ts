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

/** One energy series: its points before the start poll, during the run, and after the end poll. */
interface EnergyRow {
  readonly label: string;
  readonly metric: string;
  readonly total: boolean;
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
      row = { label, metric, total: isTotal(a), before: undefined, during: undefined };
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
   * metric, each metric's totals after its other series. Series with nothing during the run are left out.
   */
  energy(): EnergyLine[] {
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
    lines.push(...formatEnergy(this.energy()));
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
    const notes = [l.total ? "a total over resources: not added to the lines above" : "", own.slice(2)]
      .filter((x) => x !== "");
    out.push(
      `${l.joules.toFixed(6).padStart(20)} J   ${power.padStart(13)}   ${l.label}${
        notes.length ? `   (${notes.join("; ")})` : ""
      }`,
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
  readonly cpu?: { readonly userNs: number; readonly systemNs: number };
  /** Online CPUs: the CPU share is of the whole machine, as `cpu_percent`. */
  readonly nCpus: number;
  /** Peak memory, bytes (printed in KiB, MiB or GiB, and exactly in KiB). Default: not shown. */
  readonly peakRssBytes?: number;
  /** What the peak is, for its line. Default `max resident set size`. */
  readonly peakSource?: string;
  /** Points the outputs lost. Default 0. */
  readonly lost?: number;
}

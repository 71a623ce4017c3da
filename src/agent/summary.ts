/**
 * The summary `exec` prints on stderr at the end, in the spirit of `perf stat`: each value measured for the
 * program (counters: the last value; deltas: the sum; gauges: the last and the peak), the elapsed time, and
 * where the series went.
 *
 * @module
 */
import type { Batch } from "../model/batch.ts";
import type { Metric } from "../model/metrics.ts";
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

  /** A plugin that adds the collecting output; give it to the agent with the others. */
  plugin(): PluginMetadata {
    return definePlugin({
      name: EXEC_SUMMARY_PLUGIN,
      start: (ctx) =>
        ctx.addOutput("summary", { write: (b: Batch, c: ElementContext) => this.#collect(b, c) }),
    });
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
    if (pid === undefined) return;
    for (let i = 0; i < b.length; i++) {
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

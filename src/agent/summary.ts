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
import { formatCount } from "./format.ts";

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
): string[] {
  const lines = new Set<string>();
  for (const { name, description } of outputs) {
    const plugin = name.split("/")[1] ?? name;
    if (exclude.includes(plugin)) continue;
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

  /** The text: one line per series of the program, then the elapsed time and the outputs. */
  format(options: { command: string; elapsedMs: number; outputs: readonly string[] }): string {
    const n = formatCount;
    const lines = [``, ` Measured for '${options.command}' (pid ${this.pid ?? "?"}) by alumet:`, ``];
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
    lines.push(``, `${(options.elapsedMs / 1000).toFixed(6).padStart(20)} s   elapsed`);
    if (options.outputs.length) lines.push(``, ` Series written to: ${options.outputs.join(", ")}`);
    return lines.join("\n") + "\n";
  }
}

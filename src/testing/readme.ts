/**
 * Checks a plugin README's metrics table against the metrics the plugin declares ({@linkcode defineMetrics}),
 * so that the documentation cannot drift from the code. One helper for every plugin.
 *
 * The table is the first one after a heading named "Metrics". Its first column names metrics in backticks
 * (several per row allowed: `` `a`, `b` ``); columns named Type, Unit and Kind are compared when present. A row
 * that names a family (`` `perf_<event>` ``, or a list ending with `…`) documents metrics created at run time:
 * its names are examples, not declarations.
 *
 * @example
 * ```ts
 * import { checkMetricsTable } from "./readme.ts";
 * import { defineMetrics } from "../model/metric_set.ts";
 * import { unit } from "../model/units.ts";
 * import assert from "node:assert/strict";
 * const METRICS = defineMetrics({
 *   t: { name: "board_temperature", unit: unit("Cel"), valueType: "f64", kind: "gauge", description: "" },
 * });
 * const readme = "## Metrics\n\n| Metric | Type | Unit | Kind |\n|---|---|---|---|\n| `board_temperature` | f64 | °C | gauge |\n";
 * checkMetricsTable(readme, METRICS);
 * assert.throws(() => checkMetricsTable(readme.replace("f64", "u64"), METRICS), /board_temperature: type/);
 * ```
 *
 * @module
 */
import assert, { AssertionError } from "node:assert/strict";
import type { MetricDefinition, MetricDefinitions } from "../model/metric_set.ts";
import type { PluginMetadata } from "../plugin/plugin.ts";
import { defaultConfigOf } from "../plugin/config.ts";
import { parseToml } from "../deps.ts";

/** One row of a metrics table. */
interface Row {
  readonly line: number;
  readonly names: string[];
  readonly family: boolean;
  readonly cells: Record<string, string>;
}

/** `µ` (micro sign) and `μ` (Greek mu) are the same to a reader. */
const norm = (s: string) => s.replaceAll("\u00b5", "\u03bc").replaceAll("`", "").trim();

/** The rows of the first table after the "Metrics" heading. */
export function metricsTableRows(markdown: string): Row[] {
  const lines = markdown.split("\n");
  const heading = lines.findIndex((l) => /^#{1,6}\s+Metrics\b/i.test(l));
  if (heading < 0) throw new AssertionError({ message: 'The README has no "Metrics" heading' });
  let i = heading + 1;
  while (i < lines.length && !lines[i]!.trimStart().startsWith("|")) {
    if (/^#{1,6}\s/.test(lines[i]!)) break;
    i++;
  }
  if (i >= lines.length || !lines[i]!.trimStart().startsWith("|")) {
    throw new AssertionError({ message: 'The README has no table under its "Metrics" heading' });
  }
  const split = (l: string) => l.trim().replace(/^\||\|$/g, "").split("|").map((c) => c.trim());
  const header = split(lines[i]!).map((h) => h.toLowerCase());
  const rows: Row[] = [];
  for (i += 2; i < lines.length && lines[i]!.trimStart().startsWith("|"); i++) {
    const cells = split(lines[i]!);
    const first = cells[0] ?? "";
    const names = [...first.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
    const family = names.some((n) => /[<>*]/.test(n)) || /…|\.\.\./.test(first);
    const byHeader: Record<string, string> = {};
    header.forEach((h, k) => (byHeader[h] = cells[k] ?? ""));
    rows.push({
      line: i + 1,
      names: names.filter((n) => /^[a-z_][a-z0-9_]*$/.test(n)),
      family,
      cells: byHeader,
    });
  }
  return rows;
}

/**
 * Checks the README's metrics table against the declared metrics: every declared metric has a row with its
 * type, unit (UCUM code or display form) and kind; every metric named by a row (not a family) is declared.
 *
 * @param markdown the README's text
 * @param sets the plugin's metric sets (one or several {@linkcode defineMetrics} results, or single definitions)
 * @throws {AssertionError} listing every mismatch
 */
export function checkMetricsTable(
  markdown: string,
  ...sets: readonly (MetricDefinitions | MetricDefinition)[]
): void {
  const rows = metricsTableRows(markdown);
  const declared = new Map<string, MetricDefinition>();
  for (const set of sets) {
    const defs = "name" in set && typeof set.name === "string"
      ? [set as MetricDefinition]
      : Object.values(set as MetricDefinitions);
    for (const d of defs) declared.set(d.name, d);
  }
  const problems: string[] = [];
  const documented = new Map<string, Row>();
  for (const row of rows) for (const n of row.names) documented.set(n, row);
  for (const [name, d] of declared) {
    const row = documented.get(name);
    if (row === undefined) {
      problems.push(`${name}: declared but not in the README's metrics table`);
      continue;
    }
    const type = row.cells["type"];
    if (type !== undefined && norm(type) !== d.valueType) {
      problems.push(`${name}: type is ${d.valueType}, the README says "${type}" (line ${row.line})`);
    }
    const unit = row.cells["unit"];
    if (unit !== undefined) {
      const u = norm(unit);
      const ok = [d.unit.code, d.unit.display, d.unit.display === "" ? "1" : d.unit.display].map(norm);
      if (!ok.includes(u)) {
        problems.push(`${name}: unit is ${d.unit.code}, the README says "${unit}" (line ${row.line})`);
      }
    }
    const kind = row.cells["kind"];
    if (kind !== undefined && !norm(kind).startsWith(d.kind)) {
      problems.push(`${name}: kind is ${d.kind}, the README says "${kind}" (line ${row.line})`);
    }
  }
  for (const row of rows) {
    if (row.family) continue;
    for (const n of row.names) {
      if (!declared.has(n)) {
        problems.push(`${n}: in the README's metrics table (line ${row.line}) but not declared`);
      }
    }
  }
  if (problems.length > 0) {
    throw new AssertionError({ message: `README metrics table:\n  ${problems.join("\n  ")}` });
  }
}

/**
 * Checks that the README's configuration block (the first ```toml block after a "Configuration" heading) is
 * exactly the plugin's default table, `[plugins.<name>]` with what `config regen` writes.
 *
 * @param markdown the README's text
 * @param plugin the plugin
 * @throws {AssertionError} when the block is missing or differs
 */
export function checkConfigBlock(markdown: string, plugin: PluginMetadata<unknown>): void {
  const block = /#{1,6}\s+Configuration\b[\s\S]*?```toml\n([\s\S]*?)```/.exec(markdown)?.[1];
  if (block === undefined) {
    throw new AssertionError({ message: 'The README has no ```toml block under a "Configuration" heading' });
  }
  assert.deepEqual(JSON.parse(JSON.stringify(parseToml(block))), {
    plugins: { [plugin.name]: defaultConfigOf(plugin) },
  }, "The README's configuration block is not the plugin's default config");
}

/**
 * The plugins built into the `alumet` agent, imported statically so that `deno compile` embeds them.
 *
 * @module
 */
import type { PluginMetadata } from "../plugin/plugin.ts";
import cgroups from "../../plugins/cgroups/mod.ts";
import csv from "../../plugins/csv/mod.ts";
import log from "../../plugins/log/mod.ts";
import perf from "../../plugins/perf/mod.ts";
import procfs from "../../plugins/procfs/mod.ts";

/** Built-in plugins by name, in the order `plugins list` shows them. */
export const BUILTIN_PLUGINS: ReadonlyMap<string, PluginMetadata<unknown>> = new Map<
  string,
  PluginMetadata<unknown>
>(
  [procfs, perf, cgroups, csv, log].map((p) => [p.name, p as PluginMetadata<unknown>]),
);

/** The plugins enabled when there is no config file and no `--plugins`. */
export const DEFAULT_ENABLED: readonly string[] = ["procfs", "csv"];

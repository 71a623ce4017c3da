/**
 * The plugins built into the `alumet` agent. Each is imported only when used (an import with a literal
 * specifier, which `deno compile` still embeds): importing all of them costs every `exec` tens of ms of
 * start-up, and most runs enable two or three.
 *
 * @module
 */
import type { PluginMetadata } from "../plugin/plugin.ts";

/** Built-in plugins by name, in the order `plugins list` shows them: a loader each. */
export const BUILTIN_LOADERS: ReadonlyMap<string, () => Promise<PluginMetadata<unknown>>> = new Map<
  string,
  () => Promise<PluginMetadata<unknown>>
>([
  ["procfs", () => import("../../plugins/procfs/mod.ts").then((m) => m.default as PluginMetadata<unknown>)],
  ["perf", () => import("../../plugins/perf/mod.ts").then((m) => m.default as PluginMetadata<unknown>)],
  ["cgroups", () => import("../../plugins/cgroups/mod.ts").then((m) => m.default as PluginMetadata<unknown>)],
  ["rapl", () => import("../../plugins/rapl/mod.ts").then((m) => m.default as PluginMetadata<unknown>)],
  ["nvml", () => import("../../plugins/nvml/mod.ts").then((m) => m.default as PluginMetadata<unknown>)],
  ["hwmon", () => import("../../plugins/hwmon/mod.ts").then((m) => m.hwmonPlugin as PluginMetadata<unknown>)],
  [
    "grace-hopper",
    () => import("../../plugins/hwmon/mod.ts").then((m) => m.graceHopperPlugin as PluginMetadata<unknown>),
  ],
  [
    "jetson",
    () => import("../../plugins/hwmon/mod.ts").then((m) => m.jetsonPlugin as PluginMetadata<unknown>),
  ],
  ["csv", () => import("../../plugins/csv/mod.ts").then((m) => m.default as PluginMetadata<unknown>)],
  ["sqlite", () => import("../../plugins/sqlite/mod.ts").then((m) => m.default as PluginMetadata<unknown>)],
  [
    "prometheus-exporter",
    () =>
      import("../../plugins/prometheus-exporter/mod.ts").then((m) => m.default as PluginMetadata<unknown>),
  ],
  [
    "prometheus-remote-write",
    () =>
      import("../../plugins/prometheus-remote-write/mod.ts").then((m) =>
        m.default as PluginMetadata<unknown>
      ),
  ],
  [
    "influxdb",
    () => import("../../plugins/influxdb/mod.ts").then((m) => m.default as PluginMetadata<unknown>),
  ],
  [
    "opentelemetry",
    () => import("../../plugins/opentelemetry/mod.ts").then((m) => m.default as PluginMetadata<unknown>),
  ],
  ["log", () => import("../../plugins/log/mod.ts").then((m) => m.default as PluginMetadata<unknown>)],
  [
    "energy-estimation-tdp",
    () =>
      import("../../plugins/energy-estimation-tdp/mod.ts").then((m) =>
        m.energyEstimationTdpPlugin as PluginMetadata<unknown>
      ),
  ],
  [
    "energy-attribution",
    () => import("../../plugins/energy-attribution/mod.ts").then((m) => m.default as PluginMetadata<unknown>),
  ],
  [
    "energy-to-carbon",
    () =>
      import("../../plugins/energy-to-carbon/mod.ts").then((m) =>
        m.energyToCarbonPlugin as PluginMetadata<unknown>
      ),
  ],
  [
    "filter",
    () => import("../../plugins/filter/mod.ts").then((m) => m.filterPlugin as PluginMetadata<unknown>),
  ],
  [
    "aggregation",
    () =>
      import("../../plugins/aggregation/mod.ts").then((m) => m.aggregationPlugin as PluginMetadata<unknown>),
  ],
]);

/** The names of the built-in plugins. */
export const BUILTIN_NAMES: readonly string[] = [...BUILTIN_LOADERS.keys()];

/** Loads one built-in plugin; undefined for an unknown name. */
export async function loadBuiltin(name: string): Promise<PluginMetadata<unknown> | undefined> {
  return await BUILTIN_LOADERS.get(name)?.();
}

/** Loads every built-in plugin, in order (for `plugins list`, `doctor`). */
export async function loadAllBuiltins(): Promise<PluginMetadata<unknown>[]> {
  return await Promise.all([...BUILTIN_LOADERS.values()].map((load) => load()));
}

/** The plugins enabled when there is no config file and no `--plugins`. */
export const DEFAULT_ENABLED: readonly string[] = ["procfs", "csv"];

/**
 * The names of Alumet's plugins (alumet-dev/alumet: `static_plugins!` of the agent's `main.rs` at v0.9.5 and on
 * the main branch, and the `name()` of each crate under `plugins/`), with the names older releases used
 * (`nvidia`, `OAR3`, `oar2-plugin`, `kwollect`). A config section for one this agent does not implement is
 * skipped with a warning, so that Alumet's own configs start here.
 */
export const ALUMET_PLUGIN_NAMES: ReadonlySet<string> = new Set([
  // every target
  "csv",
  "prometheus-exporter",
  "influxdb",
  "mongodb",
  "relay-client",
  "relay-server",
  "opentelemetry",
  "aggregation",
  "energy-attribution",
  "energy-estimation-tdp",
  "energy-to-carbon",
  "elasticsearch",
  "filter",
  "kwollect-input",
  "kwollect-output",
  // Linux
  "socket-control",
  "k8s",
  "slurm",
  "oar",
  "cgroups",
  "containers",
  "grace-hopper",
  "rapl",
  "perf",
  "procfs",
  "nvml",
  "jetson",
  "amd-gpu",
  "quarch",
  "process-to-cgroup-bridge",
  // names of earlier releases (0.8: the packaged config and the Helm chart still use some)
  "nvidia",
  "OAR3",
  "oar2-plugin",
  "kwollect",
]);

/** The Alumet plugins this agent does not implement: their sections are skipped with a warning. */
export const ALUMET_ONLY: ReadonlySet<string> = new Set(
  [...ALUMET_PLUGIN_NAMES].filter((n) => !BUILTIN_LOADERS.has(n)),
);

/**
 * Alumet for Deno: a modular framework for hardware and software measurement, energy first.
 *
 * Import it by URL in a `deno run` script, build an agent from plugins, add your own sources (a `Source`
 * polled on a trigger, or a `ReadableStream` of batches) and outputs (an `Output`, or a `WritableStream`),
 * control it while it runs, and stop it with `await using`.
 *
 * ```ts
 * import { Agent, Batch, definePlugin, unit } from "./mod.ts";
 *
 * const hello = definePlugin({
 *   name: "hello",
 *   start(ctx) {
 *     const m = ctx.createMetric({ name: "hello_count", unit: unit("1"), valueType: "u64", kind: "counter" });
 *     let n = 0;
 *     ctx.addSource("in", { poll: (b: Batch) => b.push(m, ++n) }, { pollInterval: "100ms" });
 *     ctx.addOutput("out", new WritableStream<Batch>({ write: (b) => console.log(b.length, "points") }));
 *   },
 * });
 * await using agent = new Agent({ plugins: [hello] });
 * await agent.start();
 * ```
 *
 * @module
 */
export * from "./src/model/units.ts";
export * from "./src/model/resources.ts";
export * from "./src/model/metrics.ts";
export * from "./src/model/common_metrics.ts";
export * from "./src/model/metric_set.ts";
export * from "./src/model/counter.ts";
export * from "./src/model/batch.ts";
export * from "./src/model/timestamp.ts";
export * from "./src/model/duration.ts";
export * from "./src/errors.ts";
export { ProcFile, type ReadOutcome } from "./src/ffi/proc_file.ts";
export {
  diagnoseLibrary,
  LibraryError,
  type LibrarySpec,
  type LoadAttempt,
  type LoadedLibrary,
  openLibrary,
} from "./src/ffi/library.ts";
export * from "./src/log.ts";
export * from "./src/plugin/plugin.ts";
export * from "./src/plugin/events.ts";
export * from "./src/plugin/schema.ts";
export * from "./src/plugin/define.ts";
export { defaultConfigOf, defaultsOf, validatePluginConfig } from "./src/plugin/config.ts";
export * from "./src/pipeline/control.ts";
export {
  type ElementKind,
  type ElementName,
  ElementPattern,
  encodeNamePart,
  formatName,
} from "./src/pipeline/names.ts";
export type { ElementState, SourceStats } from "./src/pipeline/source.ts";
export { OutputBlockedError, type OutputStats } from "./src/pipeline/output.ts";
export { Agent, type AgentOptions, type PluginEntry } from "./src/agent/agent.ts";
export { BUILTIN_NAMES, loadAllBuiltins, loadBuiltin } from "./src/agent/builtin.ts";
// The built-in plugins, to run or extend from a script (each also has its own subpath export, with its sources
// and helpers: `…/plugins/procfs`, `…/plugins/perf`, `…/plugins/cgroups`, `…/plugins/csv`, `…/plugins/log`).
export { procfsPlugin } from "./plugins/procfs/mod.ts";
export { perfPlugin } from "./plugins/perf/mod.ts";
export { raplPlugin } from "./plugins/rapl/mod.ts";
export { nvmlPlugin } from "./plugins/nvml/mod.ts";
export { graceHopperPlugin, hwmonPlugin, jetsonPlugin } from "./plugins/hwmon/mod.ts";
export { cgroupsPlugin } from "./plugins/cgroups/mod.ts";
export { csvPlugin } from "./plugins/csv/mod.ts";
export { logPlugin } from "./plugins/log/mod.ts";
export { prometheusExporterPlugin } from "./plugins/prometheus-exporter/mod.ts";
// Outputs whose dependencies cost start-up (node:sqlite; protobuf and snappy from npm) are not re-exported here,
// so that a script importing this module does not pay for them: import `…/plugins/sqlite`,
// `…/plugins/prometheus-remote-write` or `…/plugins/opentelemetry` (the agent loads them only when enabled).
export { influxdbPlugin } from "./plugins/influxdb/mod.ts";

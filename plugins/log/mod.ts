/**
 * The `log` plugin: an output that prints every measurement point as one readable line on stdout, for a
 * quick look at what the sources measure.
 *
 * ```text
 * 2024-05-01T12:00:00.123456789Z rapl_consumed_energy = 12.5 J [cpu_package 0 / local_machine] domain=package
 * ```
 *
 * @module
 */
import { z } from "../../src/plugin/schema.ts";
import { definePlugin } from "../../src/plugin/define.ts";
import type { ElementContext, Output, Plugin, StartContext } from "../../src/plugin/plugin.ts";
import type { Attributes, Batch } from "../../src/model/batch.ts";
import type { Metric } from "../../src/model/metrics.ts";
import { type Timestamp, toRfc3339 } from "../../src/model/timestamp.ts";

/** The schema of `[plugins.log]`: the plugin takes no options. */
export const logConfigSchema = z.strictObject({});

/** The validated `[plugins.log]` table (empty). */
export type LogConfig = z.infer<typeof logConfigSchema>;

/** Where a {@linkcode LogOutput} writes: anything with a `writeSync` that may write part of the bytes. */
export interface SyncWriter {
  /** Writes some of `p`, returns how many bytes were written. */
  writeSync(p: Uint8Array): number;
}

const encoder = new TextEncoder();

/** A `{kind id}` pair as the log shows it: the kind alone when the id is empty. */
function targetText(t: { readonly kind: string; readonly id: string }): string {
  return t.id === "" ? t.kind : `${t.kind} ${t.id}`;
}

/** ` key=value key=value`, or the empty string when there is no attribute. */
function attributesText(a: Attributes): string {
  let s = "";
  for (const key in a) {
    const v = a[key];
    // One line per point: a string with spaces, quotes or line breaks is written as a JSON string.
    s += ` ${key}=${typeof v === "string" && /[\s"=]/.test(v) ? JSON.stringify(v) : String(v)}`;
  }
  return s;
}

/**
 * The log output: one line per point, `<time> <metric> = <value> <unit> [<resource> / <consumer>] <k=v>…`.
 * A batch is formatted into one string and written with `writeSync` until every byte is out.
 *
 * @example
 * ```ts
 * import { LogOutput } from "./mod.ts";
 * import { Batch } from "../../src/model/batch.ts";
 * import { MetricRegistry } from "../../src/model/metrics.ts";
 * import { Resource } from "../../src/model/resources.ts";
 * import { unit } from "../../src/model/units.ts";
 * import assert from "node:assert/strict";
 * const registry = new MetricRegistry();
 * const energy = registry.register("rapl", { name: "rapl_consumed_energy", unit: unit("J"), valueType: "f64" });
 * const batch = new Batch();
 * batch.push(energy, 12.5, {
 *   timestamp: 1_714_564_800_123_456_789n,
 *   resource: Resource.cpuPackage(0),
 *   attributes: { domain: "package" },
 * });
 * const chunks: Uint8Array[] = [];
 * const output = new LogOutput({ writeSync: (p) => (chunks.push(p.slice()), p.length) });
 * output.write(batch, { metric: (id) => registry.get(id) });
 * assert.equal(
 *   new TextDecoder().decode(chunks[0]),
 *   "2024-05-01T12:00:00.123456789Z rapl_consumed_energy = 12.5 J [cpu_package 0 / local_machine] domain=package\n",
 * );
 * ```
 */
export class LogOutput implements Output {
  readonly #out: SyncWriter;
  /** `<metric> = ` by metric id. */
  #prefixes: (string | undefined)[] = [];
  /** ` <unit> [` by metric id (just ` [` for a unit with no display name). */
  #units: (string | undefined)[] = [];
  #lastTs: Timestamp | undefined;
  #lastTsText = "";

  /** @param out where lines go; default: `Deno.stdout` */
  constructor(out: SyncWriter = Deno.stdout) {
    this.#out = out;
  }

  /** Prints one line per point of `batch`. */
  write(batch: Batch, ctx: ElementContext): void {
    const n = batch.length;
    if (n === 0) return;
    let text = "";
    for (let i = 0; i < n; i++) {
      const id = batch.metricAt(i);
      let prefix = this.#prefixes[id];
      let unit = this.#units[id];
      if (prefix === undefined || unit === undefined) [prefix, unit] = this.#describe(ctx.metric(id));
      const ts = batch.timestampAt(i);
      if (ts !== this.#lastTs) {
        this.#lastTs = ts;
        this.#lastTsText = toRfc3339(ts);
      }
      text += this.#lastTsText + " " + prefix + batch.valueAt(i).toString() + unit +
        targetText(batch.resourceAt(i)) + " / " + targetText(batch.consumerAt(i)) + "]" +
        attributesText(batch.attributesAt(i)) + "\n";
    }
    const bytes = encoder.encode(text);
    let done = 0;
    while (done < bytes.length) done += this.#out.writeSync(bytes.subarray(done));
  }

  /** Nothing to release: stdout stays open. */
  close(): void {}

  #describe(m: Metric): [string, string] {
    const prefix = `${m.name} = `;
    const unit = m.unit.display === "" ? " [" : ` ${m.unit.display} [`;
    this.#prefixes[m.id] = prefix;
    this.#units[m.id] = unit;
    return [prefix, unit];
  }
}

/**
 * The `log` plugin: adds one output, `out`, that prints the points on stdout.
 *
 * @example
 * ```ts
 * import { logPlugin } from "./mod.ts";
 * import assert from "node:assert/strict";
 * assert.equal(logPlugin.configSchema.safeParse(logPlugin.defaultConfig()).success, true);
 * assert.equal(logPlugin.configSchema.safeParse({ verbose: true }).success, false);
 * ```
 */
export const logPlugin = definePlugin({
  name: "log",
  version: "0.1.0",
  description: "Prints the measurements on stdout, one readable line per point",
  config: logConfigSchema,
  init: function initLog(_config: LogConfig): Plugin {
    return {
      start: function startLog(ctx: StartContext): void {
        ctx.addOutput("out", new LogOutput());
      },
    };
  },
});

export default logPlugin;

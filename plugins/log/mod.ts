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
import { blockedCode, OutputBlockedError } from "../../src/pipeline/output.ts";
import { messageOf } from "../../src/errors.ts";
import { errno, libc, strerror } from "../../src/ffi/libc.ts";

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

/** `SYS_write` by architecture. */
const SYS_WRITE: Readonly<Record<string, number>> = { x86_64: 1, aarch64: 64 };

/** The errno values a write to stdout can meet that the pipeline acts on, by number. */
const WRITE_ERRNO: Readonly<Record<number, string>> = {
  11: "EAGAIN",
  28: "ENOSPC",
  32: "EPIPE",
  122: "EDQUOT",
};

/**
 * Standard output written with `write(2)` on fd 1 itself (libc's `syscall`): a short write says exactly how
 * many bytes went out, a failure that none did. `Deno.stdout.writeSync` goes through Rust's line-buffered
 * stdout instead, which on a full disk can keep part of the bytes in its buffer (written later) and still
 * throw: its caller cannot know what went out, and retrying the batch wrote lines twice (issue 8).
 * Without FFI (no `--allow-ffi`, no glibc), `Deno.stdout` is used, and a failed write is not retried.
 */
export class StdoutWriter implements SyncWriter {
  #raw: boolean | undefined;
  #sys: number | undefined;

  /** True when the writes go to fd 1 through write(2), false when through `Deno.stdout`. */
  get raw(): boolean {
    if (this.#raw === undefined) {
      this.#sys = SYS_WRITE[Deno.build.arch];
      try {
        this.#raw = this.#sys !== undefined && Deno.build.os === "linux" && libc() !== undefined;
      } catch {
        this.#raw = false;
      }
    }
    return this.#raw;
  }

  writeSync(p: Uint8Array): number {
    if (!this.raw) return Deno.stdout.writeSync(p);
    if (p.length === 0) return 0;
    const address = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(p as Uint8Array<ArrayBuffer>)));
    for (;;) {
      const n = Number(libc().syscall6(BigInt(this.#sys!), 1n, address, BigInt(p.length), 0n, 0n, 0n));
      if (n >= 0) return n;
      const e = errno();
      if (e === 4) continue; // EINTR: nothing was written
      const code = WRITE_ERRNO[e] ?? `errno ${e}`;
      const message = `${strerror(e)} (os error ${e})`;
      if (code === "EPIPE") throw Object.assign(new Deno.errors.BrokenPipe(message), { code });
      throw Object.assign(new Error(message), { code });
    }
  }
}

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
 * When the disk under stdout is full (ENOSPC, EDQUOT, EAGAIN), what was written stays written and the rest is
 * kept: an {@linkcode OutputBlockedError} pauses the output, and the pipeline's retry of the same batch writes
 * only that rest. No line is written twice, none is lost once there is room again. (On standard output this
 * needs {@linkcode StdoutWriter}'s raw writes, so FFI; without it a failed write is counted as lost, not retried.)
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
  /** What a write blocked for lack of room did not write, and the batch it belongs to. */
  #tail: Uint8Array | undefined;
  #tailOf: Batch | undefined;

  /** @param out where lines go; default: standard output (a {@linkcode StdoutWriter}) */
  constructor(out: SyncWriter = new StdoutWriter()) {
    this.#out = out;
  }

  /**
   * Prints one line per point of `batch`. Throws an {@linkcode OutputBlockedError} when there is no room,
   * keeping what it did not write: called again with the same batch, it writes only that.
   */
  write(batch: Batch, ctx: ElementContext): void {
    let bytes: Uint8Array;
    if (this.#tail !== undefined && this.#tailOf === batch) {
      bytes = this.#tail; // the retry of a blocked batch: only what did not go out
    } else {
      // (Another batch after a blocked one: the pipeline gave that one up and counted its rest as lost.)
      if (batch.length === 0) return;
      bytes = encoder.encode(this.#text(batch, ctx));
    }
    this.#tail = this.#tailOf = undefined;
    let done = 0;
    try {
      while (done < bytes.length) done += this.#out.writeSync(bytes.subarray(done));
    } catch (e) {
      const code = blockedCode(e);
      // Deno.stdout (no FFI) may have taken part of the bytes before it threw: the rest is unknown, so the
      // error stays bare and the pipeline counts the batch as lost rather than write lines twice.
      if (
        code === undefined || this.#out === Deno.stdout ||
        (this.#out instanceof StdoutWriter && !this.#out.raw)
      ) {
        throw e;
      }
      const rest = bytes.subarray(done);
      this.#tail = rest;
      this.#tailOf = batch;
      let lines = 0; // the line cut short counts: its line break is in the rest
      for (let i = rest.indexOf(10); i >= 0; i = rest.indexOf(10, i + 1)) lines++;
      throw new OutputBlockedError(`Cannot write to stdout: ${messageOf(e)}`, {
        cause: e,
        code,
        unwrittenPoints: lines,
      });
    }
  }

  /** One line per point of `batch`. */
  #text(batch: Batch, ctx: ElementContext): string {
    const n = batch.length;
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
    return text;
  }

  /**
   * Nothing to release: stdout stays open. What a blocked write kept is dropped: the pipeline gave its batch up
   * and counted those points as lost.
   */
  close(): void {
    this.#tail = this.#tailOf = undefined;
  }

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

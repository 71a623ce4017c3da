/**
 * The `csv` plugin: an output that writes every measurement point as one line of a CSV file, in the format
 * of Alumet's csv plugin, so that files from both agents can be read by the same scripts.
 *
 * ```text
 * metric;timestamp;value;resource_kind;resource_id;consumer_kind;consumer_id;domain;__late_attributes
 * rapl_consumed_energy_J;2024-05-01T12:00:00.123456789Z;12.5;cpu_package;0;local_machine;;package;
 * ```
 *
 * @module
 */
import { z } from "../../src/plugin/schema.ts";
import { definePlugin } from "../../src/plugin/define.ts";
import { diagnoseOutputFile } from "../../src/plugin/output_file.ts";
import type { Diagnosis, ElementContext, Output, Plugin, StartContext } from "../../src/plugin/plugin.ts";
import type { Attributes, AttributeValue, Batch } from "../../src/model/batch.ts";
import type { Metric, MetricId } from "../../src/model/metrics.ts";
import type { Consumer, Resource } from "../../src/model/resources.ts";
import { type Timestamp, toRfc3339 } from "../../src/model/timestamp.ts";
import { AlumetError, messageOf } from "../../src/errors.ts";
import { blockedCode, OutputBlockedError } from "../../src/pipeline/output.ts";

/** A single character that can separate CSV cells: not a double quote, not a line break. */
function delimiter() {
  return z.string().refine(
    (s) => [...s].length === 1 && s !== '"' && s !== "\n" && s !== "\r",
    { error: 'a single character other than a double quote or a line break, such as ";"' },
  );
}

/** The schema of `[plugins.csv]`, with every default: `config regen` writes them in this order. */
export const csvConfigSchema = z.strictObject({
  output_path: z.string().min(1, { error: "a non-empty file path" }).default("alumet-output.csv"),
  force_flush: z.boolean().default(true),
  append_unit_to_metric_name: z.boolean().default(true),
  use_unit_display_name: z.boolean().default(true),
  csv_delimiter: delimiter().default(";"),
  // Equal to csv_delimiter is allowed, as in Alumet: the late-attributes cell is then quoted.
  csv_late_delimiter: delimiter().default(","),
});

/** The validated `[plugins.csv]` table. */
export type CsvConfig = z.infer<typeof csvConfigSchema>;

/** How a {@linkcode CsvOutput} writes its file. */
export interface CsvOutputOptions {
  /** Write each batch as soon as it arrives; when false, buffer about 64 KiB between writes. Default `true`. */
  readonly forceFlush?: boolean;
  /** Append `_<unit>` to the metric name (nothing for a unit whose name is empty). Default `true`. */
  readonly appendUnitToMetricName?: boolean;
  /**
   * Use the unit's display name (`μs`, `kB`) rather than Alumet's unique name (`micros`, `kiloBy`: the prefix's
   * name, then the base unit's UCUM code). Default `true`.
   */
  readonly useUnitDisplayName?: boolean;
  /** Separates the cells. Default `";"`. */
  readonly delimiter?: string;
  /** Separates the `key=value` pairs of the `__late_attributes` cell. Default `","`. */
  readonly lateDelimiter?: string;
}

/** The columns every line starts with, before the attribute columns. */
export const FIXED_COLUMNS = [
  "metric",
  "timestamp",
  "value",
  "resource_kind",
  "resource_id",
  "consumer_kind",
  "consumer_id",
] as const;

/** The last column: attributes whose key has no column of its own, as `key=value` pairs. */
export const LATE_ATTRIBUTES_COLUMN = "__late_attributes";

/** Pending bytes written at once when `forceFlush` is false; a large batch goes out in pieces of this size. */
const BUFFER_TARGET = 64 * 1024;

/**
 * Room kept free in the buffer beyond a line's cached parts: a timestamp cell (quoted, its quotes doubled) and a
 * value cell (at most 330 characters: `formatNumber(5e-324)`; a u64 has 20 digits), with room to spare.
 */
const ROW_MARGIN = 1024;

/** The longest timestamp cell: a quoted, escaped RFC 3339 time with 9 fractional digits, and room to spare. */
const TS_MAX = 128;

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const EMPTY = new Uint8Array(0);

const encoder = new TextEncoder();

/** Writes the ASCII string `s` at `p`; returns the position after it. */
function writeAscii(buf: Uint8Array, p: number, s: string): number {
  for (let k = 0; k < s.length; k++) buf[p++] = s.charCodeAt(k);
  return p;
}

/** Writes a non-zero integer of at most 2^53 in magnitude as `String` would, at `p`; returns the position after. */
function writeInteger(buf: Uint8Array, p: number, v: number): number {
  if (v < 0) {
    buf[p++] = 45; // -
    v = -v;
  }
  let digits = 1;
  for (let x = v; x >= 10; x = Math.floor(x / 10)) digits++;
  for (let k = p + digits - 1; k >= p; k--) {
    const q = Math.floor(v / 10);
    buf[k] = 48 + (v - q * 10);
    v = q;
  }
  return p + digits;
}

/**
 * Formats a number as Rust formats an `f64` (what Alumet writes): shortest round-trip digits, never in
 * exponent notation, `inf`, `-inf`, `NaN`, and `-0` for negative zero.
 *
 * @example
 * ```ts
 * import { formatNumber } from "./mod.ts";
 * import assert from "node:assert/strict";
 * assert.equal(formatNumber(12.5), "12.5");
 * assert.equal(formatNumber(1e21), "1000000000000000000000");
 * assert.equal(formatNumber(1.5e-7), "0.00000015");
 * assert.equal(formatNumber(-Infinity), "-inf");
 * ```
 */
export function formatNumber(v: number): string {
  if (v < 1e21 && v > -1e21 && (v >= 1e-6 || v <= -1e-6)) return String(v);
  if (v === 0) return Object.is(v, -0) ? "-0" : "0";
  if (v !== v) return "NaN";
  if (v === Infinity) return "inf";
  if (v === -Infinity) return "-inf";
  return expandExponent(String(v));
}

/** `"1.5e-7"` → `"0.00000015"`, `"1.2e+21"` → `"1200000000000000000000"`. */
function expandExponent(s: string): string {
  const e = s.indexOf("e");
  if (e < 0) return s;
  const negative = s[0] === "-";
  const mantissa = s.slice(negative ? 1 : 0, e);
  const exponent = Number(s.slice(e + 1));
  const dot = mantissa.indexOf(".");
  const digits = dot < 0 ? mantissa : mantissa.slice(0, dot) + mantissa.slice(dot + 1);
  const point = (dot < 0 ? mantissa.length : dot) + exponent;
  let out: string;
  if (point <= 0) out = "0." + "0".repeat(-point) + digits;
  else if (point >= digits.length) out = digits + "0".repeat(point - digits.length);
  else out = digits.slice(0, point) + "." + digits.slice(point);
  return negative ? "-" + out : out;
}

/**
 * Formats a timestamp as Alumet's csv output does (Rust's `time` crate, RFC 3339): UTC, with the fraction
 * of a second trimmed of its trailing zeros, and no fraction at all on a whole second.
 *
 * @example
 * ```ts
 * import { formatTimestamp } from "./mod.ts";
 * import assert from "node:assert/strict";
 * assert.equal(formatTimestamp(1_714_564_800_123_456_789n), "2024-05-01T12:00:00.123456789Z");
 * assert.equal(formatTimestamp(1_714_564_800_120_000_000n), "2024-05-01T12:00:00.12Z");
 * assert.equal(formatTimestamp(0n), "1970-01-01T00:00:00Z");
 * ```
 */
export function formatTimestamp(ts: Timestamp): string {
  const s = toRfc3339(ts); // always nine fractional digits, then "Z"
  let end = s.length - 1;
  while (s.charCodeAt(end - 1) === 48 /* 0 */) end--;
  if (s.charCodeAt(end - 1) === 46 /* . */) end--;
  return s.slice(0, end) + "Z";
}

/**
 * Alumet's unique name of a unit (`PrefixedUnit::unique_name` in alumet/src/units.rs): the prefix's name
 * (`milli`, `micro`, `kilo`…, nothing when plain), then the base unit's UCUM code; a custom unit's unique name.
 *
 * @example
 * ```ts
 * import { unitUniqueName } from "./mod.ts";
 * import { unit } from "../../src/model/units.ts";
 * import assert from "node:assert/strict";
 * assert.equal(unitUniqueName(unit("s", "milli")), "millis");
 * assert.equal(unitUniqueName(unit("By", "kilo")), "kiloBy");
 * assert.equal(unitUniqueName(unit("1")), "1");
 * ```
 */
export function unitUniqueName(u: Metric["unit"]): string {
  if (u.custom) return u.code;
  return (u.prefix === "plain" ? "" : u.prefix) + u.base;
}

/**
 * The csv output. The file is created (or truncated) by {@linkcode CsvOutput.open}; the header line is
 * written with the first non-empty batch, whose attribute keys, sorted, become the attribute columns.
 * Attributes with other keys, in later points, go to the last column, `__late_attributes`, as
 * `key=value` pairs separated by the late delimiter (in a key or a value, the late delimiter is escaped as
 * `\,` and a backslash as `\\`). A cell that contains the delimiter, a double quote or a line break is quoted,
 * its quotes doubled (RFC 4180).
 *
 * Only whole lines reach the file: when a write fails for lack of room (ENOSPC, EDQUOT), the file is cut back to
 * the end of the last batch written and an {@linkcode OutputBlockedError} is thrown, so that the pipeline pauses
 * the output and retries the same batch. The file is locked (`flock`) while open: a second agent writing the same
 * path refuses to start rather than truncating it.
 *
 * `write` is synchronous: a batch is formatted straight into a reused byte buffer (each series' constant
 * cells encoded once, a timestamp once per distinct value, integers digit by digit: no string per line) and
 * written with `writeSync` (with `forceFlush`), or kept until about 64 KiB are pending (without). Not safe for
 * two writers at once; the pipeline never overlaps calls to one output.
 *
 * @example
 * ```ts
 * import { CsvOutput } from "./mod.ts";
 * import { Batch } from "../../src/model/batch.ts";
 * import { MetricRegistry } from "../../src/model/metrics.ts";
 * import { unit } from "../../src/model/units.ts";
 * import assert from "node:assert/strict";
 * const registry = new MetricRegistry();
 * const power = registry.register("test", { name: "power", unit: unit("W"), valueType: "f64" });
 * const batch = new Batch();
 * batch.push(power, 42.5, { timestamp: 0n });
 * const dir = await Deno.makeTempDir();
 * const output = new CsvOutput(`${dir}/out.csv`);
 * output.open();
 * output.write(batch, { metric: (id) => registry.get(id) });
 * output.close();
 * assert.equal(
 *   await Deno.readTextFile(`${dir}/out.csv`),
 *   "metric;timestamp;value;resource_kind;resource_id;consumer_kind;consumer_id;__late_attributes\n" +
 *     "power_W;1970-01-01T00:00:00Z;42.5;local_machine;;local_machine;;\n",
 * );
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class CsvOutput implements Output {
  /** The file this output writes. */
  readonly path: string;
  readonly #forceFlush: boolean;
  readonly #appendUnit: boolean;
  readonly #useDisplay: boolean;
  readonly #delim: string;
  readonly #late: string;
  /** Matches what must be escaped in a late attribute's key or value: a backslash, the late delimiter. */
  readonly #lateSpecial: RegExp;
  /** Matches a cell that must be quoted. */
  readonly #special: RegExp;
  /** True when the delimiter can occur in a number or a timestamp (e.g. `.`), which then need a check. */
  readonly #numbersNeedCheck: boolean;

  #file: Deno.FsFile | undefined;
  #opens = 0;
  /** Bytes of whole lines in the file: where a failed write cuts it back to. */
  #offset = 0;
  /** True for a regular file, which can be cut back; false for a device or a pipe. */
  #regular = true;
  /** Lines formatted and not written yet: `#buf[0…#len)` (always empty between writes with `forceFlush`). */
  #buf = new Uint8Array(BUFFER_TARGET + ROW_MARGIN);
  #len = 0;
  /** The header line is in `#buf`, not written yet. */
  #headerPending = false;
  /** Attribute columns, fixed by the first non-empty batch; undefined until then. */
  #columns: readonly string[] | undefined;
  #columnSet: ReadonlySet<string> = new Set();
  /** The delimiter, encoded. */
  readonly #delimBytes: Uint8Array;
  /** The metric cell (name, unit, escaped) and the delimiter, encoded, by metric id. */
  #metricPrefixes: (Uint8Array | undefined)[] = [];
  /** `kind;id` cells of resources and consumers (both are `{ kind, id }`), by identity. */
  #targetCells = new WeakMap<object, string>();
  /** Attribute cells and the late-attributes cell, each preceded by the delimiter, by attribute set. */
  #attributeCells = new WeakMap<Attributes, string>();
  /**
   * The end of a line from the value on — `;<resource>;<consumer>;<attributes>;<late>\n` — encoded, by
   * resource, consumer and attribute set (identities: sources reuse them).
   */
  #suffixes = new WeakMap<object, WeakMap<object, WeakMap<Attributes, Uint8Array>>>();
  /** The timestamp cell of the last distinct timestamp written, and that timestamp as two 32-bit halves. */
  #tsBytes = new Uint8Array(TS_MAX);
  #tsLen = 0;
  #tsLo = 0;
  #tsHi = -1;
  /** The `YYYY-MM-DDTHH:MM:SS` of `#sec`, encoded. */
  #secBytes = new Uint8Array(24);
  #secLen = 0;
  #sec = Number.NaN;
  /** The header line (with its line break) once the columns are fixed; empty before. */
  #header = "";

  /**
   * @param path the file to write; a relative path is relative to the working directory
   * @param options formatting and flushing; see {@linkcode CsvOutputOptions} for the defaults
   */
  constructor(path: string, options: CsvOutputOptions = {}) {
    this.path = path;
    this.#forceFlush = options.forceFlush ?? true;
    this.#appendUnit = options.appendUnitToMetricName ?? true;
    this.#useDisplay = options.useUnitDisplayName ?? true;
    this.#delim = options.delimiter ?? ";";
    this.#late = options.lateDelimiter ?? ",";
    for (const [what, d] of [["delimiter", this.#delim], ["late delimiter", this.#late]] as const) {
      if (d === "" || d.includes('"') || d.includes("\n") || d.includes("\r")) {
        throw new RangeError(
          `The csv ${what} cannot be empty, a quote or a line break: ${JSON.stringify(d)}`,
        );
      }
    }
    this.#lateSpecial = new RegExp(`[\\\\${this.#late.replace(/[\\^\]-]/g, "\\$&")}]`, "g");
    this.#special = new RegExp(`["\\r\\n]|${this.#delim.replace(/[\\^$.*+?()[\]{}|/-]/g, "\\$&")}`);
    this.#numbersNeedCheck = /[0-9A-Za-z.:+-]/.test(this.#delim);
    this.#delimBytes = encoder.encode(this.#delim);
  }

  /**
   * Opens and locks the file: the first call creates or truncates it, a later one (after
   * {@linkcode CsvOutput.close}, when the plugin is started again) appends to it and keeps the columns. The
   * exclusive lock is taken before anything is truncated. Throws an {@linkcode AlumetError} naming the path when
   * the file cannot be opened, or when another agent holds its lock.
   */
  open(): void {
    if (this.#file !== undefined) return;
    const first = this.#opens === 0;
    let file: Deno.FsFile;
    try {
      file = Deno.openSync(this.path, { write: true, create: true, append: !first });
    } catch (e) {
      throw new AlumetError(`Cannot open csv output "${this.path}": ${messageOf(e)}`, { cause: e });
    }
    try {
      const st = file.statSync();
      this.#regular = st.isFile;
      if (this.#regular && !file.tryLockSync(true)) {
        throw new AlumetError(
          `Cannot write csv output "${this.path}": another agent is writing it (the file is locked); ` +
            `stop that agent or set plugins.csv.output_path (or --output-file) to another file`,
        );
      }
      if (first && this.#regular) {
        file.truncateSync(0);
        this.#offset = 0;
      } else {
        this.#offset = this.#regular ? st.size : 0;
      }
    } catch (e) {
      file.close();
      if (e instanceof AlumetError) throw e;
      throw new AlumetError(`Cannot open csv output "${this.path}": ${messageOf(e)}`, { cause: e });
    }
    this.#file = file;
    this.#opens++;
  }

  /** What was pending when the current `write` started, kept once a write in it reused the buffer. */
  #savedPending: Uint8Array | undefined;
  /** How many bytes were pending when the current `write` started (-1 outside a `write`). */
  #startLen = -1;

  /**
   * Appends one line per point of `batch`. All or nothing: when writing fails, the file is cut back to where
   * it was (and what was pending is kept) before the error is thrown.
   */
  write(batch: Batch, ctx: ElementContext): void {
    const n = batch.length;
    if (n === 0) return;
    if (this.#file === undefined) throw new Error(`The csv output "${this.path}" is not open`);
    const offset = this.#offset;
    const columns = this.#columns;
    const headerPending = this.#headerPending;
    this.#startLen = this.#len;
    this.#savedPending = undefined;
    try {
      this.#format(batch, ctx);
      if (this.#forceFlush && this.#len > 0) this.#emit();
    } catch (e) {
      const saved = this.#savedPending as Uint8Array | undefined;
      if (saved !== undefined) this.#buf.set(saved, 0);
      this.#len = saved !== undefined ? saved.length : this.#startLen;
      this.#headerPending = headerPending;
      this.#rollBack(offset, columns, e);
    } finally {
      this.#startLen = -1;
      this.#savedPending = undefined;
    }
  }

  /** Undoes a failed write: cuts the file back to `offset` (what was pending is restored by the caller), rethrows. */
  #rollBack(offset: number, columns: readonly string[] | undefined, e: unknown): never {
    const file = this.#file!;
    const undone = this.#offset === offset;
    if (!undone && this.#regular) {
      try {
        file.truncateSync(offset);
        file.seekSync(offset, Deno.SeekMode.Start);
        this.#offset = offset;
      } catch (e2) {
        throw new AlumetError(
          `Cannot write csv output "${this.path}": ${messageOf(e)}; cutting it back to its last whole line ` +
            `failed too: ${messageOf(e2)}`,
          { cause: e },
        );
      }
    }
    if (columns === undefined) {
      // The header went out with this batch (or would have): the retry writes it again.
      this.#columns = undefined;
      this.#columnSet = new Set();
      this.#attributeCells = new WeakMap();
      this.#suffixes = new WeakMap();
      this.#headerPending = false;
    }
    const message = `Cannot write csv output "${this.path}": ${messageOf(e)}`;
    const code = blockedCode(e);
    // A device or a pipe that took part of the batch cannot be cut back: retrying would repeat lines.
    if (code !== undefined && this.#offset === offset) {
      throw new OutputBlockedError(message, { cause: e, code });
    }
    throw e instanceof AlumetError ? e : new AlumetError(message, { cause: e });
  }

  /**
   * Formats the lines of `batch` into `#buf`, each line's bytes written directly: the metric's cell and the
   * line's end (resource, consumer, attributes) are encoded once per series, the timestamp once per distinct
   * value (its date and time once per second), and an integer value digit by digit. What is pending goes out
   * whenever about 64 KiB are, so that a large batch never needs a buffer as big as itself.
   */
  #format(batch: Batch, ctx: ElementContext): void {
    const n = batch.length;
    if (this.#columns === undefined) this.#appendText(this.#startColumns(batch), true);
    const { metrics, timestamps, values, big } = batch.columns();
    const halves = new Int32Array(timestamps.buffer, timestamps.byteOffset, n * 2);
    const check = this.#numbersNeedCheck;
    const delim = this.#delimBytes;
    const prefixes = this.#metricPrefixes;
    let lastR: object | undefined;
    let lastC: object | undefined;
    let lastA: Attributes | undefined;
    let suffix: Uint8Array = EMPTY;
    for (let i = 0; i < n; i++) {
      const id = metrics[i]!;
      let prefix = prefixes[id];
      if (prefix === undefined) {
        prefix = prefixes[id] = encoder.encode(this.#metricCell(ctx.metric(id as MetricId)) + this.#delim);
      }
      const r = batch.resourceAt(i);
      const c = batch.consumerAt(i);
      const a = batch.attributesAt(i);
      if (r !== lastR || c !== lastC || a !== lastA) {
        suffix = this.#suffixOf(r, c, a);
        lastR = r;
        lastC = c;
        lastA = a;
      }
      if (this.#len + prefix.length + suffix.length + ROW_MARGIN > this.#buf.length) {
        this.#grow(this.#len + prefix.length + suffix.length + ROW_MARGIN);
      }
      const buf = this.#buf;
      let p = this.#len;
      for (let k = 0; k < prefix.length; k++) buf[p++] = prefix[k]!;
      // The timestamp: compared by its two 32-bit halves (no bigint made); formatted when it changes.
      const lo = halves[2 * i]!;
      const hi = halves[2 * i + 1]!;
      if (lo !== this.#tsLo || hi !== this.#tsHi) this.#formatTimestampAt(batch, i, lo, hi);
      const ts = this.#tsBytes;
      for (let k = 0, m = this.#tsLen; k < m; k++) buf[p++] = ts[k]!;
      for (let k = 0; k < delim.length; k++) buf[p++] = delim[k]!;
      const b = big === undefined ? undefined : big.get(i);
      const v = values[i]!;
      if (b === undefined && !check && v === Math.trunc(v) && v <= MAX_SAFE && v >= -MAX_SAFE && v !== 0) {
        p = writeInteger(buf, p, v);
      } else {
        const text = b !== undefined ? b.toString() : formatNumber(v);
        p = writeAscii(buf, p, check ? this.#escape(text) : text);
      }
      for (let k = 0; k < suffix.length; k++) buf[p++] = suffix[k]!;
      this.#len = p;
      if (p >= BUFFER_TARGET) this.#emit();
    }
  }

  /** Makes the timestamp cell of row `i` (halves `lo`, `hi`) the current one. */
  #formatTimestampAt(batch: Batch, i: number, lo: number, hi: number): void {
    this.#tsLo = lo;
    this.#tsHi = hi;
    if (hi < 0 || this.#numbersNeedCheck) {
      // Before 1970, or a delimiter that can occur in a timestamp: the general path.
      const text = formatTimestamp(batch.timestampAt(i));
      this.#tsLen = writeAscii(this.#tsBytes, 0, this.#numbersNeedCheck ? this.#escape(text) : text);
      return;
    }
    // ts = hi·2^32 + lo, exactly: nanos = ts mod 10^9 in steps that stay below 2^53; seconds within rounding.
    const ulo = lo >>> 0;
    const nanos = (((hi * 65536) % 1e9) * 65536 + ulo) % 1e9;
    const sec = Math.round((hi * 4294967296 - nanos + ulo) / 1e9);
    if (sec !== this.#sec) {
      this.#sec = sec;
      this.#secLen = writeAscii(this.#secBytes, 0, new Date(sec * 1000).toISOString().slice(0, 19));
    }
    const out = this.#tsBytes;
    let p = 0;
    for (let k = 0; k < this.#secLen; k++) out[p++] = this.#secBytes[k]!;
    if (nanos !== 0) {
      out[p++] = 46; // .
      let digits = 9;
      let f = nanos;
      while (f % 10 === 0) {
        f /= 10;
        digits--;
      }
      for (let k = digits - 1; k >= 0; k--) {
        out[p + k] = 48 + (f % 10);
        f = Math.floor(f / 10);
      }
      p += digits;
    }
    out[p++] = 90; // Z
    this.#tsLen = p;
  }

  /** The encoded end of a line for a resource, a consumer and an attribute set. */
  #suffixOf(r: Resource, c: Consumer, a: Attributes): Uint8Array {
    let byConsumer = this.#suffixes.get(r);
    if (byConsumer === undefined) this.#suffixes.set(r, byConsumer = new WeakMap());
    let byAttributes = byConsumer.get(c);
    if (byAttributes === undefined) byConsumer.set(c, byAttributes = new WeakMap());
    let suffix = byAttributes.get(a);
    if (suffix === undefined) {
      const d = this.#delim;
      suffix = encoder.encode(
        d + this.#targetCellsOf(r) + d + this.#targetCellsOf(c) + this.#attributeCellsFor(a) + "\n",
      );
      byAttributes.set(a, suffix);
    }
    return suffix;
  }

  #targetCellsOf(t: { kind: string; id: string }): string {
    let cells = this.#targetCells.get(t);
    if (cells === undefined) {
      cells = this.#escape(t.kind) + this.#delim + this.#escape(t.id);
      this.#targetCells.set(t, cells);
    }
    return cells;
  }

  #attributeCellsFor(a: Attributes): string {
    let cells = this.#attributeCells.get(a);
    if (cells === undefined) {
      cells = this.#attributeCellsOf(a);
      this.#attributeCells.set(a, cells);
    }
    return cells;
  }

  /** Room for `need` bytes in `#buf`, keeping what it holds. */
  #grow(need: number): void {
    const bigger = new Uint8Array(Math.max(need, this.#buf.length * 2));
    bigger.set(this.#buf.subarray(0, this.#len));
    this.#buf = bigger;
  }

  /** Appends text (the header) to what is pending. */
  #appendText(text: string, header: boolean): void {
    const need = this.#len + text.length * 3 + ROW_MARGIN;
    if (need > this.#buf.length) this.#grow(need);
    const { written } = encoder.encodeInto(text, this.#buf.subarray(this.#len));
    this.#len += written;
    if (header) this.#headerPending = true;
  }

  /**
   * Writes what is pending. Within a `write` that started with something pending (without `forceFlush`), a
   * copy of that is kept first, so that a later failure in the same `write` can restore it.
   */
  #emit(): void {
    if (!this.#forceFlush && this.#len < BUFFER_TARGET) return;
    if (this.#startLen > 0 && this.#savedPending === undefined) {
      this.#savedPending = this.#buf.slice(0, this.#startLen);
    }
    this.#writeBytes();
  }

  /**
   * Writes what is pending (only without `forceFlush` can something be pending). On failure, the file is cut
   * back and the lines stay pending.
   */
  flush(): void {
    if (this.#len === 0 || this.#file === undefined) return;
    const offset = this.#offset;
    const len = this.#len;
    const headerPending = this.#headerPending;
    try {
      this.#writeBytes();
    } catch (e) {
      this.#len = len;
      this.#headerPending = headerPending;
      this.#rollBack(offset, this.#columns, e);
    }
  }

  /** The file this output writes, as it was given (a relative path stays relative): exec's summary shows it. */
  describe(): string {
    return this.path;
  }

  /**
   * Writes what is pending and closes the file. Idempotent. When the last write fails for lack of room, the
   * file stays open and an {@linkcode OutputBlockedError} says how many lines are not written, so that the
   * pipeline can retry the close.
   */
  close(): void {
    if (this.#file === undefined) return;
    try {
      this.flush();
    } catch (e) {
      if (e instanceof OutputBlockedError) {
        // The header goes out with the first lines: when it is still pending, it is a line but not a point.
        let lines = this.#headerPending ? -1 : 0;
        const buf = this.#buf;
        for (let i = 0; i < this.#len; i++) if (buf[i] === 10) lines++;
        throw new OutputBlockedError(e.message, { cause: e.cause, code: e.code, unwrittenPoints: lines });
      }
      this.#closeFile();
      throw e;
    }
    this.#closeFile();
  }

  #closeFile(): void {
    try {
      this.#file?.close(); // releases the lock
    } finally {
      this.#file = undefined;
    }
  }

  /**
   * Writes `#buf[0…#len)` and empties it; `#offset` counts the bytes that went out, also when it throws
   * midway (the buffer is then unchanged: the caller decides what stays pending).
   */
  #writeBytes(): void {
    const file = this.#file!;
    const bytes = this.#buf;
    const end = this.#len;
    let done = 0;
    while (done < end) {
      const n = file.writeSync(bytes.subarray(done, end));
      done += n;
      this.#offset += n;
    }
    this.#len = 0;
    this.#headerPending = false;
  }

  /** Fixes the attribute columns from the first non-empty batch; returns the header line. */
  #startColumns(batch: Batch): string {
    const keys = new Set<string>();
    const seen = new Set<Attributes>();
    for (let i = 0; i < batch.length; i++) {
      const a = batch.attributesAt(i);
      if (seen.has(a)) continue;
      seen.add(a);
      for (const k in a) keys.add(k);
    }
    const columns = [...keys].sort();
    this.#columns = columns;
    this.#columnSet = keys;
    this.#header = [...FIXED_COLUMNS, ...columns, LATE_ATTRIBUTES_COLUMN].map((c) => this.#escape(c)).join(
      this.#delim,
    ) +
      "\n";
    return this.#header;
  }

  #metricCell(m: Metric): string {
    let name = m.name;
    if (this.#appendUnit) {
      const unit = this.#useDisplay ? m.unit.display : unitUniqueName(m.unit);
      if (unit !== "") name += "_" + unit;
    }
    return this.#escape(name);
  }

  /** `;<col 1>;…;<col n>;<late attributes>` for one attribute set. */
  #attributeCellsOf(a: Attributes): string {
    const d = this.#delim;
    let cells = "";
    for (const key of this.#columns!) {
      const v = a[key];
      cells += d;
      if (v !== undefined) cells += this.#escape(attributeText(v));
    }
    let late = "";
    for (const key in a) {
      if (this.#columnSet.has(key)) continue;
      if (late !== "") late += this.#late;
      late += key.replace(this.#lateSpecial, "\\$&") + "=" +
        attributeText(a[key]!).replace(this.#lateSpecial, "\\$&");
    }
    return cells + d + this.#escape(late);
  }

  /** Quotes a cell that contains the delimiter, a quote or a line break (RFC 4180). */
  #escape(cell: string): string {
    return this.#special.test(cell) ? '"' + cell.replaceAll('"', '""') + '"' : cell;
  }
}

/** An attribute value as Alumet prints it. */
function attributeText(v: AttributeValue): string {
  return typeof v === "number" ? formatNumber(v) : String(v);
}

/**
 * The `csv` plugin: adds one output, `out`, that writes `output_path` (the key `--output-file` sets).
 *
 * @example
 * ```ts
 * import { csvPlugin } from "./mod.ts";
 * import assert from "node:assert/strict";
 * assert.equal(csvPlugin.defaultConfig().output_path, "alumet-output.csv");
 * assert.equal(csvPlugin.configSchema.parse({}).csv_delimiter, ";");
 * const bad = csvPlugin.configSchema.safeParse({ csv_delimiter: ";;" });
 * assert.equal(bad.success, false);
 * ```
 */
export const csvPlugin = definePlugin({
  name: "csv",
  version: "0.1.0",
  description: "Writes the measurements to a CSV file, in the format of Alumet's csv plugin",
  config: csvConfigSchema,
  outputFileKey: "output_path",
  diagnose: (config: CsvConfig): Diagnosis[] => diagnoseOutputFile(config.output_path, "csv"),
  init: function initCsv(config: CsvConfig): Plugin {
    const output = new CsvOutput(config.output_path, {
      forceFlush: config.force_flush,
      appendUnitToMetricName: config.append_unit_to_metric_name,
      useUnitDisplayName: config.use_unit_display_name,
      delimiter: config.csv_delimiter,
      lateDelimiter: config.csv_late_delimiter,
    });
    return {
      start: function startCsv(ctx: StartContext): void {
        output.open();
        ctx.addOutput("out", output);
      },
    };
  },
});

export default csvPlugin;

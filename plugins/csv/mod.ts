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
import type { Metric } from "../../src/model/metrics.ts";
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

/** Pending text written at once when `forceFlush` is false (in UTF-16 code units, about as many bytes). */
const BUFFER_TARGET = 64 * 1024;

const encoder = new TextEncoder();

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
 * `write` is synchronous: a batch is formatted into one string, encoded once and written with
 * `writeSync` (with `forceFlush`), or kept until about 64 KiB are pending (without). Not safe for two
 * writers at once; the pipeline never overlaps calls to one output.
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
  #bytes = new Uint8Array(BUFFER_TARGET * 3);
  #pending = "";
  /** Attribute columns, fixed by the first non-empty batch; undefined until then. */
  #columns: readonly string[] | undefined;
  #columnSet: ReadonlySet<string> = new Set();
  /** The metric cell (name, unit, escaped), by metric id. */
  #metricCells: (string | undefined)[] = [];
  /** `kind;id` cells of resources and consumers (both are `{ kind, id }`), by identity. */
  #targetCells = new WeakMap<object, string>();
  /** Attribute cells and the late-attributes cell, each preceded by the delimiter, by attribute set. */
  #attributeCells = new WeakMap<Attributes, string>();
  #lastTs: Timestamp | undefined;
  #lastTsCell = "";
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

  /**
   * Appends one line per point of `batch`. All or nothing: when writing fails, the file is cut back to where
   * it was (and what was pending is kept) before the error is thrown.
   */
  write(batch: Batch, ctx: ElementContext): void {
    const n = batch.length;
    if (n === 0) return;
    if (this.#file === undefined) throw new Error(`The csv output "${this.path}" is not open`);
    const offset = this.#offset;
    const pending = this.#pending;
    const columns = this.#columns;
    try {
      this.#format(batch, ctx);
    } catch (e) {
      this.#rollBack(offset, pending, columns, e);
    }
  }

  /** Undoes a failed write: cuts the file back to `offset`, restores what was pending, rethrows. */
  #rollBack(offset: number, pending: string, columns: readonly string[] | undefined, e: unknown): never {
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
    this.#pending = pending;
    if (columns === undefined) {
      // The header went out with this batch (or would have): the retry writes it again.
      this.#columns = undefined;
      this.#columnSet = new Set();
      this.#attributeCells = new WeakMap();
    }
    const message = `Cannot write csv output "${this.path}": ${messageOf(e)}`;
    const code = blockedCode(e);
    // A device or a pipe that took part of the batch cannot be cut back: retrying would repeat lines.
    if (code !== undefined && this.#offset === offset) {
      throw new OutputBlockedError(message, { cause: e, code });
    }
    throw e instanceof AlumetError ? e : new AlumetError(message, { cause: e });
  }

  #format(batch: Batch, ctx: ElementContext): void {
    const n = batch.length;
    let out = "";
    if (this.#columns === undefined) out = this.#startColumns(batch);
    const d = this.#delim;
    const metricCells = this.#metricCells;
    const targetCells = this.#targetCells;
    const attributeCells = this.#attributeCells;
    const check = this.#numbersNeedCheck;
    let lastTs = this.#lastTs;
    let tsCell = this.#lastTsCell;
    for (let i = 0; i < n; i++) {
      const id = batch.metricAt(i);
      let metricCell = metricCells[id];
      if (metricCell === undefined) metricCell = metricCells[id] = this.#metricCell(ctx.metric(id));
      const ts = batch.timestampAt(i);
      if (ts !== lastTs) {
        lastTs = ts;
        tsCell = formatTimestamp(ts);
        if (check) tsCell = this.#escape(tsCell);
      }
      const v = batch.valueAt(i);
      let valueCell = typeof v === "number" ? formatNumber(v) : v.toString();
      if (check) valueCell = this.#escape(valueCell);
      const r = batch.resourceAt(i);
      let resourceCells = targetCells.get(r);
      if (resourceCells === undefined) {
        resourceCells = this.#escape(r.kind) + d + this.#escape(r.id);
        targetCells.set(r, resourceCells);
      }
      const c = batch.consumerAt(i);
      let consumerCells = targetCells.get(c);
      if (consumerCells === undefined) {
        consumerCells = this.#escape(c.kind) + d + this.#escape(c.id);
        targetCells.set(c, consumerCells);
      }
      const a = batch.attributesAt(i);
      let attrCells = attributeCells.get(a);
      if (attrCells === undefined) {
        attrCells = this.#attributeCellsOf(a);
        attributeCells.set(a, attrCells);
      }
      out += metricCell + d + tsCell + d + valueCell + d + resourceCells + d + consumerCells + attrCells +
        "\n";
      // A large batch goes out in pieces, so that it never needs one string (and one encoded copy) as big as
      // itself: 1000 followed processes make batches of about 9000 rows.
      if (out.length >= BUFFER_TARGET) {
        this.#emit(out);
        out = "";
      }
    }
    this.#lastTs = lastTs;
    this.#lastTsCell = tsCell;
    if (out !== "") this.#emit(out);
  }

  #emit(out: string): void {
    if (this.#forceFlush || (this.#pending === "" && out.length >= BUFFER_TARGET)) {
      this.#writeText(out);
    } else {
      this.#pending += out;
      if (this.#pending.length >= BUFFER_TARGET) {
        const text = this.#pending;
        this.#pending = "";
        this.#writeText(text); // on failure, write() cuts the file back and restores what was pending
      }
    }
  }

  /**
   * Writes what is pending (only without `forceFlush` can something be pending). On failure, the file is cut
   * back and the text stays pending.
   */
  flush(): void {
    if (this.#pending === "" || this.#file === undefined) return;
    const text = this.#pending;
    const offset = this.#offset;
    this.#pending = "";
    try {
      this.#writeText(text);
    } catch (e) {
      this.#rollBack(offset, text, this.#columns, e);
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
        const pending = this.#pending;
        // The header goes out with the first lines: when it is still pending, it is a line but not a point.
        let lines = this.#header !== "" && pending.startsWith(this.#header) ? -1 : 0;
        for (let i = pending.indexOf("\n"); i >= 0; i = pending.indexOf("\n", i + 1)) lines++;
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

  /** Writes all of `text`; `#offset` counts the bytes that went out, also when it throws midway. */
  #writeText(text: string): void {
    const need = text.length * 3; // the most UTF-8 bytes a UTF-16 code unit can take
    if (this.#bytes.length < need) this.#bytes = new Uint8Array(Math.max(need, this.#bytes.length * 2));
    const { written } = encoder.encodeInto(text, this.#bytes);
    const file = this.#file!;
    const bytes = this.#bytes;
    let done = 0;
    while (done < written) {
      const n = file.writeSync(bytes.subarray(done, written));
      done += n;
      this.#offset += n;
    }
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

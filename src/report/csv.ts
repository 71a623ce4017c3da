/**
 * Reads a file of the csv output (this agent's or Alumet's) into a {@linkcode Collector}, streaming: 1 MiB
 * at a time, one line at a time, so that a day-long run is never held in memory. The delimiter is the one the
 * header line uses (`csv_delimiter`), the unit suffix is optional, and the late delimiter of
 * `__late_attributes` (`csv_late_delimiter`, not written in the file) is recognised from the cells.
 *
 * @module
 */
import type { Collector, SeriesDesc } from "./collect.ts";
import { ReportInputError } from "./error.ts";
import { classifyCsvMetric, type MetricInfo } from "./units.ts";

const FIXED = [
  "metric",
  "timestamp",
  "value",
  "resource_kind",
  "resource_id",
  "consumer_kind",
  "consumer_id",
];
const LATE = "__late_attributes";
/** A line longer than this is skipped as malformed (a file that is not text would otherwise fill memory). */
const MAX_LINE = 1 << 20;

/**
 * The cells of a record (RFC 4180: a quoted cell may hold the delimiter, doubled quotes, line breaks);
 * undefined when a quote is still open at the end (the record goes on on the next line).
 */
export function splitCells(record: string, d: string): string[] | undefined {
  const cells: string[] = [];
  let i = 0;
  const n = record.length;
  for (;;) {
    if (record[i] === '"') {
      let cell = "";
      let j = i + 1;
      for (;;) {
        const q = record.indexOf('"', j);
        if (q < 0) return undefined;
        cell += record.slice(j, q);
        if (record[q + 1] === '"') {
          cell += '"';
          j = q + 2;
          continue;
        }
        i = q + 1;
        break;
      }
      // Text after the closing quote, up to the delimiter, is kept (lenient).
      const end = record.indexOf(d, i);
      cell += record.slice(i, end < 0 ? n : end);
      cells.push(cell);
      if (end < 0) return cells;
      i = end + d.length;
    } else {
      const end = record.indexOf(d, i);
      cells.push(record.slice(i, end < 0 ? n : end));
      if (end < 0) return cells;
      i = end + d.length;
    }
  }
}

const LATE_KEY = /^[A-Za-z_][A-Za-z0-9_.-]*=/;

/**
 * Splits a `__late_attributes` cell into pairs. The pairs are separated by the csv output's late delimiter
 * (`,` by default), in which a backslash escapes the delimiter and itself; the delimiter is not in the file,
 * so `late` carries the one found so far: `,` when an unescaped comma is there, else the first unescaped
 * character that a `key=` follows.
 *
 * @example
 * ```ts
 * import { parseLateAttributes } from "./csv.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseLateAttributes("a=1,b=x\\,y", { delimiter: undefined }), { a: "1", b: "x,y" });
 * assert.deepEqual(parseLateAttributes("a=1|b=2", { delimiter: undefined }), { a: "1", b: "2" });
 * ```
 */
export function parseLateAttributes(
  cell: string,
  late: { delimiter: string | undefined },
): Record<string, string> {
  const out: Record<string, string> = {};
  if (cell === "") return out;
  let d = late.delimiter;
  if (d === undefined) {
    for (let i = 0; i < cell.length; i++) {
      const c = cell[i]!;
      if (c === "\\") {
        i++;
        continue;
      }
      if (c === ",") {
        d = ",";
        break;
      }
      if (d === undefined && !/[A-Za-z0-9_.=-]/.test(c) && LATE_KEY.test(cell.slice(i + 1))) d = c;
    }
    if (d !== undefined) late.delimiter = d;
  }
  let text = "";
  const pairs: string[] = [];
  for (let i = 0; i < cell.length; i++) {
    const c = cell[i]!;
    if (c === "\\" && i + 1 < cell.length) {
      text += cell[++i];
    } else if (c === d) {
      pairs.push(text);
      text = "";
    } else text += c;
  }
  pairs.push(text);
  for (const p of pairs) {
    const eq = p.indexOf("=");
    if (eq > 0) out[p.slice(0, eq)] = p.slice(eq + 1);
  }
  return out;
}

/** Parses RFC 3339 timestamps into seconds since 1970, caching the whole-second part. */
class TimestampParser {
  #prefix = "";
  #seconds = NaN;

  parse(cell: string): number {
    if (cell.length >= 20 && cell.charCodeAt(10) === 84 /* T */ && cell.charCodeAt(cell.length - 1) === 90) {
      const prefix = cell.slice(0, 19);
      if (prefix !== this.#prefix) {
        const ms = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$/.test(prefix) ? Date.parse(prefix + "Z") : NaN;
        if (ms !== ms) return NaN;
        this.#prefix = prefix;
        this.#seconds = ms / 1000;
      }
      if (cell.length === 20) return this.#seconds;
      const frac = cell.slice(19, -1);
      if (/^\.\d{1,9}$/.test(frac)) return this.#seconds + Number("0" + frac);
    }
    // Other RFC 3339 forms (an offset instead of Z): to the millisecond.
    return /^\d{4}-\d\d-\d\dT/.test(cell) ? Date.parse(cell) / 1000 : NaN;
  }
}

function parseValue(cell: string): number {
  const v = Number(cell);
  if (v === v && cell !== "" && cell.trim() === cell) return v;
  if (cell === "NaN") return NaN;
  if (cell === "inf" || cell === "+inf") return Infinity;
  if (cell === "-inf") return -Infinity;
  return NaN;
}

const isNumberCell = (cell: string) => parseValue(cell) === parseValue(cell) || cell === "NaN";

/** The delimiter of a csv output header line, or undefined when the line is not one. */
function headerDelimiter(line: string): string | undefined {
  if (!line.startsWith("metric")) return undefined;
  const d = line[6];
  if (d === undefined || d === '"') return undefined;
  const cells = splitCells(line, d);
  if (cells === undefined || cells.length < FIXED.length + 1) return undefined;
  if (!FIXED.every((c, i) => cells[i] === c) || cells[cells.length - 1] !== LATE) return undefined;
  return d;
}

/**
 * Streams the csv output file `path` into `collector`. Throws a {@linkcode ReportInputError} when the file
 * is not a csv of the csv output (no header line with its columns); a row that does not parse is counted as
 * malformed and skipped.
 */
export async function readCsv(path: string, collector: Collector): Promise<void> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    throw ReportInputError.cannotRead(path, e);
  }
  try {
    await readOpen(path, file, collector);
  } finally {
    file.close();
  }
}

async function readOpen(path: string, file: Deno.FsFile, collector: Collector): Promise<void> {
  const buffer = new Uint8Array(1 << 20);
  const decoder = new TextDecoder();
  let carry = "";
  let lineNo = 0;
  let recordStart = 0;
  let record: string | undefined; // a record whose quoted cell spans lines
  let header: { d: string; columns: string[] } | undefined;
  const ts = new TimestampParser();
  const late = { delimiter: undefined as string | undefined };

  const notOurs = (found: string) =>
    new ReportInputError(
      `${path} is not a file of the csv output: its first line should be the header ` +
        `metric;timestamp;value;resource_kind;resource_id;consumer_kind;consumer_id;…;__late_attributes ` +
        `(any one-character delimiter), not ${JSON.stringify(found.slice(0, 80))}`,
    );

  const describe = (cells: readonly string[], metric: MetricInfo): SeriesDesc | string => {
    const columns = header!.columns;
    if (cells.length !== columns.length) {
      return `${cells.length} cells where the header has ${columns.length}`;
    }
    const attributes: Record<string, string> = {};
    for (let c = FIXED.length; c < columns.length - 1; c++) {
      if (cells[c] !== "") attributes[columns[c]!] = cells[c]!;
    }
    Object.assign(attributes, parseLateAttributes(cells[columns.length - 1]!, late));
    return {
      metric,
      resourceKind: cells[3]!,
      resourceId: cells[4]!,
      consumerKind: cells[5]!,
      consumerId: cells[6]!,
      attributes,
    };
  };

  const onRecord = (text: string, line: number): void => {
    if (header === undefined) {
      const d = headerDelimiter(text);
      if (d === undefined) throw notOurs(text);
      header = { d, columns: splitCells(text, d)! };
      return;
    }
    if (text === "") return;
    const d = header.d;
    let key: string, tsCell: string, valueCell: string;
    let cells: string[] | undefined;
    if (!text.includes('"')) {
      const i1 = text.indexOf(d), i2 = text.indexOf(d, i1 + 1), i3 = text.indexOf(d, i2 + 1);
      if (i1 < 0 || i2 < 0 || i3 < 0) {
        collector.malformed(line, "fewer than 4 cells", text);
        return;
      }
      key = text.slice(0, i1) + "\0" + text.slice(i3 + 1);
      tsCell = text.slice(i1 + 1, i2);
      valueCell = text.slice(i2 + 1, i3);
    } else {
      cells = splitCells(text, d)!;
      if (cells.length < 4) {
        collector.malformed(line, "fewer than 4 cells", text);
        return;
      }
      key = cells[0] + "\0" + cells.slice(3).join("\0");
      tsCell = cells[1]!;
      valueCell = cells[2]!;
    }
    let s = collector.lookup(key);
    if (s === undefined) {
      cells ??= splitCells(text, d)!;
      const desc = describe(cells, classifyCsvMetric(cells[0]!));
      if (typeof desc === "string") {
        collector.define(key, null);
        collector.malformed(line, desc, text);
        return;
      }
      s = collector.define(key, desc);
    }
    if (s === null) {
      collector.malformed(line, `not as many cells as the header has`, text);
      return;
    }
    const t = ts.parse(tsCell);
    if (t !== t) {
      collector.malformed(line, `timestamp ${JSON.stringify(tsCell.slice(0, 40))} is not RFC 3339`, text);
      return;
    }
    if (!isNumberCell(valueCell)) {
      collector.malformed(line, `value ${JSON.stringify(valueCell.slice(0, 40))} is not a number`, text);
      return;
    }
    collector.add(s, t, parseValue(valueCell));
  };

  /** Whether a line starts like a row of the csv output: a metric cell, then an RFC 3339 timestamp. */
  const rowStart = (text: string): boolean => {
    const i = text.indexOf(header!.d);
    return i > 0 && /^"?\d{4}-\d\d-\d\dT\d\d:\d\d/.test(text.slice(i + header!.d.length));
  };

  const onLine = (raw: string): void => {
    lineNo++;
    const text = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (record !== undefined) {
      // The csv output quotes a cell with a line break, so a record may go on on the next lines; but a line that
      // starts like a row is one: the open quote was a stray one, and only its row is lost.
      if (rowStart(text)) {
        collector.malformed(recordStart, "a quoted cell is not closed (a stray quote?)", record);
        record = undefined;
      } else {
        record += "\n" + text;
        if (splitCells(record, header!.d) !== undefined) {
          const r = record;
          record = undefined;
          onRecord(r, recordStart);
        } else if (record.length > MAX_LINE) {
          collector.malformed(recordStart, "a quoted cell is never closed", record);
          record = undefined;
        }
        return;
      }
    }
    if (header === undefined || !text.includes('"') || splitCells(text, header.d) !== undefined) {
      return onRecord(text, lineNo);
    }
    record = text;
    recordStart = lineNo;
  };

  let skipping = false; // inside an overlong line
  for (;;) {
    const n = await file.read(buffer);
    const last = n === null;
    let text = last ? decoder.decode() : decoder.decode(buffer.subarray(0, n), { stream: true });
    if (header === undefined && lineNo === 0 && carry === "" && text.startsWith("\uFEFF")) {
      text = text.slice(1);
    }
    text = carry + text;
    let start = 0;
    for (;;) {
      const nl = text.indexOf("\n", start);
      if (nl < 0) break;
      if (skipping) {
        skipping = false;
        lineNo++;
      } else onLine(text.slice(start, nl));
      start = nl + 1;
    }
    carry = text.slice(start);
    if (carry.length > MAX_LINE) {
      if (header === undefined) throw notOurs(carry);
      if (!skipping) collector.malformed(lineNo + 1, "line longer than 1 MiB", carry);
      skipping = true;
      carry = "";
    }
    if (last) break;
  }
  if (carry !== "" && !skipping) onLine(carry);
  if (record !== undefined) collector.malformed(recordStart, "a quoted cell is never closed", record);
  if (header === undefined) {
    throw new ReportInputError(`${path} is empty: a file of the csv output starts with its header line`);
  }
}

/**
 * `alumet report`'s builder: reads a run (a file of the csv output, or a database of the sqlite output),
 * streaming and downsampling it, and writes one self-contained HTML page with its power over time, energy per
 * consumer, the program's CPU and memory and a summary table.
 *
 * @example
 * ```ts
 * import { buildReport } from "./mod.ts";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/run.csv`,
 *   "metric;timestamp;value;resource_kind;resource_id;consumer_kind;consumer_id;domain;__late_attributes\n" +
 *   "rapl_consumed_energy_J;2024-05-01T12:00:00Z;10;cpu_package;0;local_machine;;package;\n" +
 *   "rapl_consumed_energy_J;2024-05-01T12:00:01Z;12;cpu_package;0;local_machine;;package;\n");
 * const r = await buildReport(`${dir}/run.csv`);
 * assert.equal(r.path, `${dir}/run.html`);
 * assert.equal(r.model.sources[0]!.joules, 22);
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
import { messageOf } from "../errors.ts";
import { analyze, type ReportModel } from "./analyze.ts";
import { Collector } from "./collect.ts";
import { readCsv } from "./csv.ts";
import { ReportInputError } from "./error.ts";
import { renderHtml } from "./html.ts";
import { isSqliteHeader, readSqlite } from "./sqlite.ts";

export { ReportInputError } from "./error.ts";
export type { ReportModel } from "./analyze.ts";

/** Options of {@linkcode buildReport}. */
export interface ReportOptions {
  /** Where to write the page. Default: the input's path with its extension replaced by `.html`. */
  readonly output?: string;
  /** Consumers named in the energy and program charts; the others are summed as `other`. Default 10. */
  readonly top?: number;
  /** Downsampling buckets per series (2 points each at most). Default 1024. */
  readonly buckets?: number;
}

/** What {@linkcode buildReport} wrote. */
export interface ReportResult {
  /** The page's path. */
  readonly path: string;
  /** The page's size in bytes. */
  readonly bytes: number;
  readonly model: ReportModel;
}

/** `run.csv` → `run.html`, `dir/run.sqlite` → `dir/run.html`, `run` → `run.html`. */
export function defaultOutput(input: string): string {
  const slash = input.lastIndexOf("/");
  const dot = input.lastIndexOf(".");
  return (dot > slash + 1 ? input.slice(0, dot) : input) + ".html";
}

async function head(path: string): Promise<Uint8Array> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (e) {
    throw ReportInputError.cannotRead(path, e);
  }
  if (info.isDirectory) {
    throw new ReportInputError(
      `Cannot read ${path}: it is a directory (give the file the csv or sqlite output wrote)`,
    );
  }
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    throw ReportInputError.cannotRead(path, e);
  }
  try {
    const buf = new Uint8Array(16);
    let n = 0;
    while (n < buf.length) {
      const r = await file.read(buf.subarray(n));
      if (r === null) break;
      n += r;
    }
    return buf.subarray(0, n);
  } catch (e) {
    throw ReportInputError.cannotRead(path, e);
  } finally {
    file.close();
  }
}

/** Whether `a` and `b` are one file (the same real path, or hard links to one inode); false if `b` is not. */
async function sameFile(a: string, b: string): Promise<boolean> {
  try {
    const [ra, rb] = await Promise.all([Deno.realPath(a), Deno.realPath(b)]);
    if (ra === rb) return true;
    const [sa, sb] = await Promise.all([Deno.stat(ra), Deno.stat(rb)]);
    return sa.ino !== null && sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return false; // `b` does not exist yet (or cannot be read: writing it will say why)
  }
}

/**
 * Reads the run in `input` and writes its page (see the module doc). Throws a {@linkcode ReportInputError}
 * when `input` cannot be read as a run, or the page cannot be written.
 */
export async function buildReport(input: string, options: ReportOptions = {}): Promise<ReportResult> {
  const collector = new Collector(options.buckets);
  const sqlite = isSqliteHeader(await head(input));
  const path = options.output ?? defaultOutput(input);
  if (await sameFile(input, path)) {
    throw new ReportInputError(
      `Refusing to write the report over its input ${input}${
        path === input ? "" : ` (${path} is the same file)`
      }: ` +
        `give another output with -o PATH`,
    );
  }
  if (sqlite) readSqlite(input, collector);
  else await readCsv(input, collector);
  const model = analyze(collector, { input, format: sqlite ? "sqlite" : "csv" }, {
    ...(options.top !== undefined ? { top: options.top } : {}),
  });
  const html = renderHtml(model);
  const bytes = new TextEncoder().encode(html);
  try {
    await Deno.writeFile(path, bytes);
  } catch (e) {
    throw new ReportInputError(`Cannot write the report ${path}: ${messageOf(e)}`, { cause: e });
  }
  return { path, bytes: bytes.length, model };
}

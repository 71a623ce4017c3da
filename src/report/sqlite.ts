/**
 * Reads a database of the sqlite output (see `plugins/sqlite/README.md`, schema version 1) into a
 * {@linkcode Collector}: read-only, a metric at a time in time order (the `points_metric_time` index), row by
 * row through `node:sqlite`'s iterator, so the points are never all in memory.
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import { messageOf } from "../errors.ts";
import type { Collector } from "./collect.ts";
import { ReportInputError } from "./error.ts";
import { classifySqliteMetric } from "./units.ts";

/** `PRAGMA application_id` of the sqlite output's databases ("Alum"). */
const APPLICATION_ID = 1097626989;

/** Whether `head` (a file's first bytes) is an SQLite database's header. */
export function isSqliteHeader(head: Uint8Array): boolean {
  const magic = "SQLite format 3\0";
  if (head.length < magic.length) return false;
  for (let i = 0; i < magic.length; i++) if (head[i] !== magic.charCodeAt(i)) return false;
  return true;
}

interface PointRow {
  metric_id: number;
  t_us: number | null;
  v: number | null;
  resource_kind: string;
  resource_id: string;
  consumer_kind: string;
  consumer_id: string;
  attributes: string | null;
}

/**
 * Reads the sqlite output's database `path` into `collector`. Throws a {@linkcode ReportInputError} for a
 * database this output did not write; a point whose attributes are not a JSON object is counted as malformed.
 */
export function readSqlite(path: string, collector: Collector): void {
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(path, { readOnly: true });
  } catch (e) {
    throw ReportInputError.cannotRead(path, e);
  }
  try {
    let appId: number;
    try {
      appId = Number(
        (db.prepare("PRAGMA application_id").get() as { application_id: number }).application_id,
      );
    } catch (e) {
      throw new ReportInputError(`Cannot read ${path} as an SQLite database: ${messageOf(e)}`, { cause: e });
    }
    if (appId !== APPLICATION_ID) {
      throw new ReportInputError(
        `${path} is an SQLite database, but not one of the sqlite output (its application_id is ${appId}, ` +
          `not ${APPLICATION_ID})`,
      );
    }
    const metrics = new Map<number, ReturnType<typeof classifySqliteMetric>>();
    for (const row of db.prepare("SELECT id, name, unit, kind FROM metrics").all()) {
      const r = row as { id: number; name: string; unit: string; kind: string };
      metrics.set(Number(r.id), classifySqliteMetric(r.name, r.unit, r.kind));
    }
    // Timestamps in µs and values as REAL: node:sqlite refuses integers beyond 2^53 as numbers.
    const points = db.prepare(
      "SELECT metric_id, timestamp_ns / 1000 AS t_us, CAST(value AS REAL) AS v, resource_kind, resource_id, " +
        "consumer_kind, consumer_id, attributes FROM points ORDER BY metric_id, timestamp_ns",
    );
    let n = 0;
    for (const row of points.iterate()) {
      n++;
      const r = row as unknown as PointRow;
      const key = r.metric_id + "\0" + r.resource_kind + "\0" + r.resource_id + "\0" + r.consumer_kind +
        "\0" +
        r.consumer_id + "\0" + (r.attributes ?? "");
      let s = collector.lookup(key);
      const text = () => JSON.stringify(r);
      if (s === undefined) {
        const metric = metrics.get(Number(r.metric_id));
        const attributes = attributesOf(r.attributes);
        if (metric === undefined || attributes === undefined) {
          collector.define(key, null);
        } else {
          s = collector.define(key, {
            metric,
            resourceKind: r.resource_kind,
            resourceId: r.resource_id,
            consumerKind: r.consumer_kind,
            consumerId: r.consumer_id,
            attributes,
          });
        }
        s ??= null;
      }
      if (s === null) {
        const why = metrics.has(Number(r.metric_id))
          ? "attributes are not a JSON object"
          : `metric_id ${r.metric_id} is not in the metrics table`;
        collector.malformed(n, why, text());
        continue;
      }
      if (typeof r.t_us !== "number") {
        collector.malformed(n, "timestamp_ns is not an integer", text());
        continue;
      }
      collector.add(s, r.t_us / 1e6, r.v ?? NaN);
    }
  } catch (e) {
    if (e instanceof ReportInputError) throw e;
    throw new ReportInputError(`Cannot read ${path} as a database of the sqlite output: ${messageOf(e)}`, {
      cause: e,
    });
  } finally {
    db.close();
  }
}

function attributesOf(json: string | null): Record<string, string> | undefined {
  if (json === null) return {};
  try {
    const o = JSON.parse(json);
    if (o === null || typeof o !== "object" || Array.isArray(o)) return undefined;
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(o)) out[k] = typeof v === "string" ? v : JSON.stringify(v);
    return out;
  } catch {
    return undefined;
  }
}

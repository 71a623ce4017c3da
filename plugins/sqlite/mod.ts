/**
 * The `sqlite` plugin: an output that writes the metrics and every measurement point into an SQLite database
 * file (`node:sqlite`, built into Deno: no npm package), in WAL mode, so that a run can be queried with the
 * `sqlite3` shell, or any SQLite client, without a server.
 *
 * ```sql
 * SELECT m.name, p.timestamp_ns, p.value, p.resource_kind, p.resource_id, p.attributes
 * FROM points p JOIN metrics m ON m.id = p.metric_id
 * WHERE m.name = 'rapl_consumed_energy' ORDER BY p.timestamp_ns;
 * ```
 *
 * @module
 */
import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";
import { z } from "../../src/plugin/schema.ts";
import { definePlugin } from "../../src/plugin/define.ts";
import { diagnoseOutputFile } from "../../src/plugin/output_file.ts";
import type { Diagnosis, ElementContext, Output, Plugin, StartContext } from "../../src/plugin/plugin.ts";
import type { Attributes, Batch } from "../../src/model/batch.ts";
import type { Metric } from "../../src/model/metrics.ts";
import { AlumetError, messageOf } from "../../src/errors.ts";
import { OutputBlockedError } from "../../src/pipeline/output.ts";

/** The schema of `[plugins.sqlite]`, with every default: `config regen` writes them in this order. */
export const sqliteConfigSchema = z.strictObject({
  output_path: z.string().min(1, { error: "a non-empty file path" }).default("alumet-output.sqlite"),
  append: z.boolean().default(false),
});

/** The validated `[plugins.sqlite]` table. */
export type SqliteConfig = z.infer<typeof sqliteConfigSchema>;

/** How a {@linkcode SqliteOutput} opens its database. */
export interface SqliteOutputOptions {
  /**
   * `false` (default): the first open replaces what the file held (as the csv output truncates its file).
   * `true`: the points are added to those already there.
   */
  readonly append?: boolean;
  /** How long a write waits for another writer's lock before the output pauses (`SQLITE_BUSY`), ms. Default 100. */
  readonly busyTimeoutMs?: number;
}

/**
 * `PRAGMA application_id` of the files this output writes ("Alum"): a file with another id is never replaced or
 * appended to.
 */
export const APPLICATION_ID = 0x416c756d;

/** `PRAGMA user_version`: the version of the schema below. */
export const SCHEMA_VERSION = 1;

/** The tables and index, created when missing. */
export const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS metrics (
  id          INTEGER PRIMARY KEY,
  name        TEXT NOT NULL UNIQUE,
  unit        TEXT NOT NULL,
  value_type  TEXT NOT NULL,
  kind        TEXT NOT NULL,
  description TEXT NOT NULL,
  plugin      TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS points (
  metric_id     INTEGER NOT NULL REFERENCES metrics(id),
  timestamp_ns  INTEGER NOT NULL,
  value         ANY,
  resource_kind TEXT NOT NULL,
  resource_id   TEXT NOT NULL,
  consumer_kind TEXT NOT NULL,
  consumer_id   TEXT NOT NULL,
  attributes    TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS points_metric_time ON points (metric_id, timestamp_ns);
`;

const INSERT_POINT = "INSERT INTO points (metric_id, timestamp_ns, value, resource_kind, resource_id, " +
  "consumer_kind, consumer_id, attributes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
/** The columns of `points`, bound for each point. */
const COLUMNS = 8;
/** Points inserted by one statement (a multiple-row INSERT binds about 1.7 times faster than one row each). */
const ROWS_PER_INSERT = 32;
const UPSERT_METRIC = "INSERT INTO metrics (name, unit, value_type, kind, description, plugin) " +
  "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET unit = excluded.unit, " +
  "value_type = excluded.value_type, kind = excluded.kind, description = excluded.description, " +
  "plugin = excluded.plugin RETURNING id";

/** SQLite's primary result codes this output tells apart. */
const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;
const SQLITE_FULL = 13;

/** The largest value an SQLite INTEGER holds. */
const INT64_MAX = 2n ** 63n - 1n;

/** `SQLite format 3\0`: the first 16 bytes of every database file. */
const MAGIC = new TextEncoder().encode("SQLite format 3\0");

/**
 * Formats an attribute set as a JSON object, `null` when it is empty. A bigint is written with all its digits
 * (exact, as JSON allows); a non-finite number as `null`, as `JSON.stringify` does.
 *
 * @example
 * ```ts
 * import { attributesJson } from "./mod.ts";
 * import assert from "node:assert/strict";
 * assert.equal(attributesJson({}), null);
 * assert.equal(attributesJson({ domain: "package", socket: 0, big: 2n ** 64n - 1n, up: true }),
 *   '{"domain":"package","socket":0,"big":18446744073709551615,"up":true}');
 * ```
 */
export function attributesJson(a: Attributes): string | null {
  let out = "";
  for (const key in a) {
    const v = a[key]!;
    out += (out === "" ? "{" : ",") + JSON.stringify(key) + ":" +
      (typeof v === "bigint" ? v.toString() : JSON.stringify(v));
  }
  return out === "" ? null : out + "}";
}

/**
 * The primary SQLite result code of a `node:sqlite` error (its `errcode`, which a statement's error carries), or
 * for an error without one (`exec`'s), the code its message names; else undefined.
 */
function sqliteCode(e: unknown): number | undefined {
  const code = (e as { errcode?: unknown } | null)?.errcode;
  if (typeof code === "number") return code & 0xff;
  const message = messageOf(e);
  if (message.includes("database or disk is full")) return SQLITE_FULL;
  if (message.includes("database is locked")) return SQLITE_BUSY;
  return undefined;
}

/**
 * The sqlite output. {@linkcode SqliteOutput.open} locks the file (`flock`, so that a second agent refuses to
 * start rather than replace it), replaces it on the first open unless `append`, and creates the schema
 * ({@linkcode SCHEMA_SQL}) in WAL mode. Each batch is written in one transaction with prepared statements: a
 * metric's row when the metric is first seen, then one row per point.
 *
 * A batch is all or nothing: when SQLite reports that the disk is full (`SQLITE_FULL`), the transaction is rolled
 * back and an {@linkcode OutputBlockedError} with the code `ENOSPC` is thrown, so that the pipeline pauses the
 * output and retries the same batch, which writes nothing twice. Another writer holding the database's lock longer
 * than the busy timeout (`SQLITE_BUSY`) pauses it the same way, with the code `SQLITE_BUSY`.
 *
 * Values: an `f64` is a REAL (NaN becomes NULL); a `u64` is an INTEGER, exact up to 2^63 − 1, and beyond that (an
 * INTEGER is signed) a TEXT of its decimal digits, exact too. Timestamps are INTEGER nanoseconds since the epoch.
 *
 * @example
 * ```ts
 * import { SqliteOutput } from "./mod.ts";
 * import { Batch } from "../../src/model/batch.ts";
 * import { MetricRegistry } from "../../src/model/metrics.ts";
 * import { unit } from "../../src/model/units.ts";
 * import { DatabaseSync } from "node:sqlite";
 * import assert from "node:assert/strict";
 * const registry = new MetricRegistry();
 * const power = registry.register("test", { name: "power", unit: unit("W"), valueType: "f64" });
 * const batch = new Batch();
 * batch.push(power, 42.5, { timestamp: 1_714_564_800_123_456_789n });
 * const dir = await Deno.makeTempDir();
 * const output = new SqliteOutput(`${dir}/out.sqlite`);
 * output.open();
 * output.write(batch, { metric: (id) => registry.get(id) });
 * output.close();
 * const db = new DatabaseSync(`${dir}/out.sqlite`);
 * const row = db.prepare("SELECT name, timestamp_ns, value FROM points JOIN metrics ON id = metric_id");
 * row.setReadBigInts(true);
 * assert.deepEqual({ ...row.get() }, { name: "power", timestamp_ns: 1_714_564_800_123_456_789n, value: 42.5 });
 * db.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class SqliteOutput implements Output {
  /** The database file this output writes. */
  readonly path: string;
  readonly #append: boolean;
  readonly #busyTimeoutMs: number;
  #lock: Deno.FsFile | undefined;
  #db: DatabaseSync | undefined;
  #insertPoint: StatementSync | undefined;
  /** Inserts {@linkcode ROWS_PER_INSERT} points at once: binding costs less per point than one at a time. */
  #insertPoints: StatementSync | undefined;
  /** The parameters of `#insertPoints`, reused. */
  #args: SQLInputValue[] = new Array(ROWS_PER_INSERT * COLUMNS);
  #upsertMetric: StatementSync | undefined;
  // Prepared, not `exec`: only a statement's error carries SQLite's result code (`errcode`).
  #begin: StatementSync | undefined;
  #commit: StatementSync | undefined;
  #rollback: StatementSync | undefined;
  #opens = 0;
  /** The `metrics.id` of each metric, by the agent's metric id; set once its row is committed. */
  #rowIds: (number | undefined)[] = [];
  /** True for a `u64` metric, by the agent's metric id (its integral numbers are bound as INTEGER). */
  #u64: boolean[] = [];
  /** The `attributes` cell of each attribute set, by identity. */
  #attributeText = new WeakMap<Attributes, string | null>();

  /**
   * @param path the database file; a relative path is relative to the working directory
   * @param options see {@linkcode SqliteOutputOptions} for the defaults
   */
  constructor(path: string, options: SqliteOutputOptions = {}) {
    this.path = path;
    this.#append = options.append ?? false;
    this.#busyTimeoutMs = options.busyTimeoutMs ?? 100;
  }

  /**
   * Locks and opens the database: the first call replaces the file's content unless `append`, a later one (after
   * {@linkcode SqliteOutput.close}, when the plugin is started again) adds to it. Throws an
   * {@linkcode AlumetError} naming the path when the file cannot be opened, is not a database this output wrote
   * (it is then left as it is), or another agent holds its lock.
   */
  open(): void {
    if (this.#db !== undefined) return;
    const replace = this.#opens === 0 && !this.#append;
    let lock: Deno.FsFile;
    try {
      lock = Deno.openSync(this.path, { read: true, write: true, create: true });
    } catch (e) {
      throw new AlumetError(`Cannot open sqlite output "${this.path}": ${messageOf(e)}`, { cause: e });
    }
    let db: DatabaseSync | undefined;
    try {
      if (!lock.tryLockSync(true)) {
        throw new AlumetError(
          `Cannot write sqlite output "${this.path}": another agent is writing it (the file is locked); ` +
            `stop that agent or set plugins.sqlite.output_path (or --output-file) to another file`,
        );
      }
      this.#checkHeader(lock);
      if (replace) {
        // The old WAL would be replayed onto the emptied file: it goes too, with the shared-memory index.
        for (const suffix of ["-wal", "-shm", "-journal"]) {
          try {
            Deno.removeSync(this.path + suffix);
          } catch (e) {
            if (!(e instanceof Deno.errors.NotFound)) throw e;
          }
        }
        lock.truncateSync(0);
      }
      db = new DatabaseSync(this.path);
      db.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.round(this.#busyTimeoutMs))}`);
      // Before WAL mode, so that the id is in the file itself, not only in its WAL, from the start.
      db.exec(`PRAGMA application_id = ${APPLICATION_ID}`);
      const mode = (db.prepare("PRAGMA journal_mode = WAL").get() as { journal_mode?: string }).journal_mode;
      if (mode !== "wal") throw new Error(`SQLite refused WAL mode (journal_mode is ${mode})`);
      db.exec("PRAGMA synchronous = NORMAL");
      db.exec(SCHEMA_SQL);
      db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
      this.#insertPoint = db.prepare(INSERT_POINT);
      this.#insertPoints = db.prepare(
        INSERT_POINT + ", (?, ?, ?, ?, ?, ?, ?, ?)".repeat(ROWS_PER_INSERT - 1),
      );
      this.#upsertMetric = db.prepare(UPSERT_METRIC);
      this.#begin = db.prepare("BEGIN IMMEDIATE");
      this.#commit = db.prepare("COMMIT");
      this.#rollback = db.prepare("ROLLBACK");
    } catch (e) {
      try {
        db?.close();
      } finally {
        lock.close(); // after the database: closing a descriptor of the file drops SQLite's fcntl locks
      }
      if (e instanceof AlumetError) throw e;
      throw new AlumetError(`Cannot open sqlite output "${this.path}": ${messageOf(e)}`, { cause: e });
    }
    this.#lock = lock;
    this.#db = db;
    this.#rowIds = [];
    this.#opens++;
  }

  /** Refuses a non-empty file that is not an SQLite database, or one written by another application. */
  #checkHeader(file: Deno.FsFile): void {
    const head = new Uint8Array(100);
    let n = 0;
    while (n < head.length) {
      const r = file.readSync(head.subarray(n));
      if (r === null || r === 0) break;
      n += r;
    }
    file.seekSync(0, Deno.SeekMode.Start);
    if (n === 0) return;
    const refuse = (why: string) =>
      new AlumetError(
        `Cannot write sqlite output "${this.path}": ${why}; it is left as it is: remove it or set ` +
          `plugins.sqlite.output_path (or --output-file) to another file`,
      );
    if (n < 100 || MAGIC.some((b, i) => head[i] !== b)) throw refuse("the file is not an SQLite database");
    const id = new DataView(head.buffer).getUint32(68);
    if (id !== APPLICATION_ID) {
      throw refuse(`the database was not written by this output (its application_id is ${id})`);
    }
  }

  /** Writes the batch's points (and the rows of metrics seen for the first time) in one transaction. */
  write(batch: Batch, ctx: ElementContext): void {
    const n = batch.length;
    if (n === 0) return;
    const db = this.#db;
    if (db === undefined) throw new Error(`The sqlite output "${this.path}" is not open`);
    const insertOne = this.#insertPoint!;
    const insertMany = this.#insertPoints!;
    const rowIds = this.#rowIds;
    const u64 = this.#u64;
    const attributeText = this.#attributeText;
    let added: number[] | undefined;
    try {
      this.#begin!.run();
      const args = this.#args;
      let j = 0;
      for (let i = 0; i < n; i++) {
        const id = batch.metricAt(i);
        let rowId = rowIds[id];
        if (rowId === undefined) {
          const m = ctx.metric(id);
          rowId = rowIds[id] = this.#metricRow(m);
          u64[id] = m.valueType === "u64";
          (added ??= []).push(id);
        }
        let v = batch.valueAt(i);
        if (typeof v === "bigint") {
          if (v > INT64_MAX) v = v.toString() as unknown as bigint; // a TEXT of its digits: exact
        } else if (u64[id] === true && Number.isInteger(v)) v = BigInt(v);
        const a = batch.attributesAt(i);
        let attrs = attributeText.get(a);
        if (attrs === undefined) {
          attrs = attributesJson(a);
          attributeText.set(a, attrs);
        }
        const r = batch.resourceAt(i);
        const c = batch.consumerAt(i);
        args[j++] = rowId;
        args[j++] = batch.timestampAt(i);
        args[j++] = v;
        args[j++] = r.kind;
        args[j++] = r.id;
        args[j++] = c.kind;
        args[j++] = c.id;
        args[j++] = attrs;
        if (j === args.length) {
          insertMany.run(...args);
          j = 0;
        }
      }
      // The rest, one row at a time.
      for (let k = 0; k < j; k += COLUMNS) insertOne.run(...args.slice(k, k + COLUMNS));
      this.#commit!.run();
    } catch (e) {
      // The rows of metrics added in this transaction are gone with it: they are added again on the retry.
      if (added !== undefined) { for (const id of added) rowIds[id] = undefined; }
      let rollback: unknown;
      try {
        if (db.isTransaction) this.#rollback!.run(); // SQLite may have rolled back already (SQLITE_FULL does)
      } catch (e2) {
        rollback = e2;
      }
      const message = `Cannot write sqlite output "${this.path}": ${messageOf(e)}`;
      if (rollback !== undefined) {
        throw new AlumetError(`${message}; rolling the transaction back failed too: ${messageOf(rollback)}`, {
          cause: e,
        });
      }
      const code = sqliteCode(e);
      if (code === SQLITE_FULL) throw new OutputBlockedError(message, { cause: e, code: "ENOSPC" });
      if (code === SQLITE_BUSY || code === SQLITE_LOCKED) {
        throw new OutputBlockedError(message, { cause: e, code: "SQLITE_BUSY" });
      }
      throw new AlumetError(message, { cause: e });
    }
  }

  /** Inserts (or updates) a metric's row; returns its id. */
  #metricRow(m: Metric): number {
    const row = this.#upsertMetric!.get(
      m.name,
      m.unit.code,
      m.valueType,
      m.kind,
      m.description,
      m.plugin,
    ) as {
      id: number;
    };
    return row.id;
  }

  /** The file this output writes, as it was given (a relative path stays relative): exec's summary shows it. */
  describe(): string {
    return this.path;
  }

  /**
   * Closes the database (SQLite checkpoints its WAL into the file and removes it when no one else has it open),
   * then releases the lock. Idempotent.
   */
  close(): void {
    const db = this.#db;
    if (db === undefined) return;
    this.#db = undefined;
    this.#insertPoint = undefined;
    this.#insertPoints = undefined;
    this.#upsertMetric = undefined;
    this.#begin = this.#commit = this.#rollback = undefined;
    try {
      db.close();
    } finally {
      this.#lock?.close();
      this.#lock = undefined;
    }
  }
}

/**
 * The `sqlite` plugin: adds one output, `out`, that writes `output_path` (the key `--output-file` sets).
 *
 * @example
 * ```ts
 * import { sqlitePlugin } from "./mod.ts";
 * import assert from "node:assert/strict";
 * assert.equal(sqlitePlugin.defaultConfig().output_path, "alumet-output.sqlite");
 * assert.equal(sqlitePlugin.configSchema.parse({}).append, false);
 * assert.equal(sqlitePlugin.outputFileKey, "output_path");
 * ```
 */
export const sqlitePlugin = definePlugin({
  name: "sqlite",
  version: "0.1.0",
  description: "Writes the measurements to an SQLite database file, queryable with the sqlite3 shell",
  config: sqliteConfigSchema,
  outputFileKey: "output_path",
  diagnose: (config: SqliteConfig): Diagnosis[] => diagnoseOutputFile(config.output_path, "sqlite"),
  init: function initSqlite(config: SqliteConfig): Plugin {
    const output = new SqliteOutput(config.output_path, { append: config.append });
    return {
      start: function startSqlite(ctx: StartContext): void {
        output.open();
        ctx.addOutput("out", output);
      },
    };
  },
});

export default sqlitePlugin;

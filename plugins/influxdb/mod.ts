/**
 * The `influxdb` plugin: an output that writes every measurement point in InfluxDB's line protocol over HTTP,
 * to InfluxDB v2/v3 (`/api/v2/write`, with Alumet's keys `host`, `token`, `org`, `bucket`) or v1
 * (`/write?db=…`), through the journal-backed {@linkcode Delivery} (at-least-once).
 *
 * ```text
 * rapl_consumed_energy,resource_kind=cpu_package,resource_id=0,resource_consumer_kind=local_machine domain="package",value=12.5 1714564800123456789
 * ```
 *
 * @module
 */
import { duration, z } from "../../src/plugin/schema.ts";
import { definePlugin } from "../../src/plugin/define.ts";
import type { ElementContext, Output, Plugin, StartContext } from "../../src/plugin/plugin.ts";
import type { AttributeValue, Batch } from "../../src/model/batch.ts";
import { AlumetError, messageOf } from "../../src/errors.ts";
import { Delivery, RejectedError } from "../../src/pipeline/delivery.ts";
import { Logger } from "../../src/log.ts";

/** Alumet's placeholder for the keys a user must fill. */
const FILL_ME = "FILL ME";

/** The schema of `[plugins.influxdb]`, with every default: `config regen` writes them in this order. */
export const influxdbConfigSchema = z.strictObject({
  host: z.string().min(1).default("http://localhost:8086"),
  token: z.string().default(FILL_ME),
  org: z.string().default(FILL_ME),
  bucket: z.string().default(FILL_ME),
  attributes_as: z.enum(["field", "tag"]).default("field"),
  attributes_as_tags: z.array(z.string()).default([]),
  attributes_as_fields: z.array(z.string()).default([]),
  api_version: z.enum(["auto", "v1", "v2"]).default("auto"),
  database: z.string().default(""),
  timeout: duration().prefault("10s"),
  journal_path: z.string().min(1).default("alumet-influxdb-journal"),
  journal_max_mib: z.int().positive().default(64),
  journal_fsync: z.enum(["batch", "none"]).default("batch"),
  max_backoff: duration().prefault("5s"),
  final_attempt: duration().prefault("5s"),
});

/** The validated `[plugins.influxdb]` table. */
export type InfluxdbConfig = z.infer<typeof influxdbConfigSchema>;

/** Tag keys Alumet writes for resources and consumers: an attribute with one of these names is renamed. */
const RESERVED_TAGS: ReadonlySet<string> = new Set([
  "resource_kind",
  "resource_id",
  "resource_consumer_kind",
  "resource_consumer_id",
]);

const I64_MAX = (1n << 63n) - 1n;

/**
 * Escapes a measurement name: commas and spaces get a backslash; a line break (which line protocol cannot
 * carry) becomes an escaped space.
 *
 * @example
 * ```ts
 * import { escapeMeasurement } from "./mod.ts";
 * import assert from "node:assert/strict";
 * assert.equal(escapeMeasurement("cpu load,x"), "cpu\\ load\\,x");
 * assert.equal(escapeMeasurement("a=b"), "a=b");
 * ```
 */
export function escapeMeasurement(s: string): string {
  return /[, \r\n]/.test(s) ? s.replace(/[\r\n]/g, " ").replace(/[, ]/g, "\\$&") : s;
}

/**
 * Escapes a tag key, a tag value or a field key: commas, equals signs and spaces get a backslash; a line break
 * becomes an escaped space.
 *
 * @example
 * ```ts
 * import { escapeKey } from "./mod.ts";
 * import assert from "node:assert/strict";
 * assert.equal(escapeKey("a b,c=d"), "a\\ b\\,c\\=d");
 * ```
 */
export function escapeKey(s: string): string {
  return /[,= \r\n]/.test(s) ? s.replace(/[\r\n]/g, " ").replace(/[,= ]/g, "\\$&") : s;
}

/**
 * Quotes a string field value: double quotes and backslashes get a backslash.
 *
 * @example
 * ```ts
 * import { quoteString } from "./mod.ts";
 * import assert from "node:assert/strict";
 * assert.equal(quoteString('say "hi" \\o/'), '"say \\"hi\\" \\\\o/"');
 * ```
 */
export function quoteString(s: string): string {
  return '"' + (/["\\]/.test(s) ? s.replace(/["\\]/g, "\\$&") : s) + '"';
}

/** How {@linkcode LineProtocolEncoder} writes points. */
export interface EncoderOptions {
  /** `"v1"`: u64 as `123i` (InfluxDB 1.x has no `u`); `"v2"`: `123u`. Default `"v2"`. */
  readonly version?: "v1" | "v2";
  /** Attributes become fields (default, as in Alumet) or tags. */
  readonly attributesAs?: "field" | "tag";
  /** Attributes that are always tags. */
  readonly attributesAsTags?: Iterable<string>;
  /** Attributes that are always fields. */
  readonly attributesAsFields?: Iterable<string>;
}

/**
 * Turns batches into line protocol, as Alumet's influxdb plugin does: the measurement is the metric's name;
 * tags `resource_kind`, `resource_id`, `resource_consumer_kind`, `resource_consumer_id` (empty ones left out);
 * attributes as fields or tags (a reserved tag name, or the field name `value`, gets the prefix
 * `alumet_attribute__`); the value in the field `value`; the timestamp in nanoseconds.
 *
 * @example
 * ```ts
 * import { LineProtocolEncoder } from "./mod.ts";
 * import { Batch } from "../../src/model/batch.ts";
 * import { MetricRegistry } from "../../src/model/metrics.ts";
 * import { unit } from "../../src/model/units.ts";
 * import assert from "node:assert/strict";
 * const registry = new MetricRegistry();
 * const e = registry.register("test", { name: "energy", unit: unit("J"), valueType: "u64" });
 * const batch = new Batch();
 * batch.push(e, 123, { timestamp: 1_755_604_520_429_334_196n, attributes: { domain: "package" } });
 * const ctx = { metric: (id: number) => registry.get(id) };
 * assert.equal(
 *   new LineProtocolEncoder().encode(batch, ctx).text,
 *   'energy,resource_kind=local_machine,resource_consumer_kind=local_machine domain="package",value=123u 1755604520429334196\n',
 * );
 * ```
 */
export class LineProtocolEncoder {
  readonly #v1: boolean;
  readonly #asTag: boolean;
  readonly #tags: ReadonlySet<string>;
  readonly #fields: ReadonlySet<string>;
  #measurements: (string | undefined)[] = [];
  /** Tags of resources and of consumers (apart: the local machine is one object for both), by identity. */
  #resourceTags = new WeakMap<object, string>();
  #consumerTags = new WeakMap<object, string>();
  /** `[tags, fields]` of an attribute set: `,k=v…` and `k=v,…` (fields end with a comma when non-empty). */
  #attrs = new WeakMap<object, [string, string]>();

  constructor(options: EncoderOptions = {}) {
    this.#v1 = options.version === "v1";
    this.#asTag = options.attributesAs === "tag";
    this.#tags = new Set(options.attributesAsTags ?? []);
    this.#fields = new Set(options.attributesAsFields ?? []);
  }

  /**
   * Encodes a batch; points whose value InfluxDB cannot store (NaN, ±Infinity) are left out and counted.
   *
   * @returns the lines (each ending with `\n`), the points written and the points left out
   */
  encode(batch: Batch, ctx: ElementContext): { text: string; points: number; skipped: number } {
    let text = "";
    let points = 0;
    let skipped = 0;
    for (let i = 0; i < batch.length; i++) {
      const v = batch.valueAt(i);
      let value: string;
      if (typeof v === "bigint" || ctx.metric(batch.metricAt(i)).valueType === "u64") {
        value = this.#integer(BigInt(v));
      } else if (Number.isFinite(v)) {
        value = String(v);
      } else {
        skipped++;
        continue;
      }
      const id = batch.metricAt(i);
      const m = this.#measurements[id] ??= escapeMeasurement(ctx.metric(id).name);
      const r = batch.resourceAt(i);
      let rt = this.#resourceTags.get(r);
      if (rt === undefined) {
        this.#resourceTags.set(r, rt = tag("resource_kind", r.kind) + tag("resource_id", r.id));
      }
      const c = batch.consumerAt(i);
      let ct = this.#consumerTags.get(c);
      if (ct === undefined) {
        this.#consumerTags.set(
          c,
          ct = tag("resource_consumer_kind", c.kind) + tag("resource_consumer_id", c.id),
        );
      }
      const a = batch.attributesAt(i);
      let at = this.#attrs.get(a);
      if (at === undefined) this.#attrs.set(a, at = this.#attributes(a));
      text += m + rt + ct + at[0] + " " + at[1] + "value=" + value + " " + batch.timestampAt(i) + "\n";
      points++;
    }
    return { text, points, skipped };
  }

  #integer(v: bigint): string {
    if (!this.#v1) return v + "u";
    // InfluxDB 1.x stores signed 64-bit integers: beyond, the value goes as a float (rounded), never wrapped.
    return v <= I64_MAX ? v + "i" : String(Number(v));
  }

  #attributes(a: Readonly<Record<string, AttributeValue>>): [string, string] {
    let tags = "";
    let fields = "";
    for (const key in a) {
      const v = a[key]!;
      const isTag = this.#asTag ? !this.#fields.has(key) : this.#tags.has(key);
      if (isTag) tags += tag(RESERVED_TAGS.has(key) ? "alumet_attribute__" + key : key, attributeText(v));
      else {
        const k = key === "value" ? "alumet_attribute__value" : key;
        fields += escapeKey(k) + "=" + this.#fieldValue(v) + ",";
      }
    }
    return [tags, fields];
  }

  #fieldValue(v: AttributeValue): string {
    switch (typeof v) {
      case "string":
        return quoteString(v);
      case "boolean":
        return v ? "T" : "F";
      case "bigint":
        return v >= 0n ? this.#integer(v) : v + "i";
      default:
        return Number.isFinite(v) ? String(v) : quoteString(String(v));
    }
  }
}

/** `,key=value`, or nothing for an empty value (line protocol has no empty tag value). */
function tag(key: string, value: string): string {
  return value === "" ? "" : "," + escapeKey(key) + "=" + escapeKey(value);
}

function attributeText(v: AttributeValue): string {
  return String(v);
}

/** Where and how an {@linkcode InfluxdbOutput} writes. */
export interface InfluxdbOutputOptions {
  readonly host: string;
  readonly version: "v1" | "v2";
  /** v2: the token (`Authorization: Token …`); v1: sent the same way when not empty (`user:password`). */
  readonly token: string;
  readonly org: string;
  readonly bucket: string;
  /** v1: the database. */
  readonly database: string;
  /** Per request, ms. */
  readonly timeoutMs: number;
  readonly journalPath: string;
  readonly journalMaxBytes: number;
  readonly journalFsync: "batch" | "none";
  readonly maxBackoffMs: number;
  readonly finalAttemptMs: number;
  readonly encoder: EncoderOptions;
  readonly log?: Logger;
}

/** The write URL for these options: v2 `/api/v2/write?org=…&bucket=…&precision=ns`, v1 `/write?db=…&precision=ns`. */
export function writeUrl(
  o: Pick<InfluxdbOutputOptions, "host" | "version" | "org" | "bucket" | "database">,
): URL {
  const base = o.host.replace(/\/+$/, "");
  if (o.version === "v1") {
    const url = new URL(base + "/write");
    url.searchParams.set("db", o.database);
    url.searchParams.set("precision", "ns");
    return url;
  }
  const url = new URL(base + "/api/v2/write");
  url.searchParams.set("org", o.org);
  url.searchParams.set("bucket", o.bucket);
  url.searchParams.set("precision", "ns");
  return url;
}

const encoder = new TextEncoder();

/**
 * The influxdb output: `write` encodes a batch and appends it to the journal (synchronously, synced to disk by
 * default); the journal's pump sends it (see {@linkcode Delivery}). `close` makes one bounded final attempt and
 * leaves what is unsent in the journal for the next start. {@linkcode InfluxdbOutput.lostPoints} counts the
 * points lost: dropped from a full journal, rejected by InfluxDB (400), or not representable (NaN, ±Infinity).
 */
export class InfluxdbOutput implements Output {
  readonly url: URL;
  readonly #encoder: LineProtocolEncoder;
  readonly #delivery: Delivery;
  readonly #headers: Headers;
  readonly #timeoutMs: number;
  readonly #log: Logger;
  #skipped = 0;
  #lastSkipLog = -Infinity;

  constructor(options: InfluxdbOutputOptions) {
    this.url = writeUrl(options);
    this.#encoder = new LineProtocolEncoder({ ...options.encoder, version: options.version });
    this.#timeoutMs = options.timeoutMs;
    this.#log = options.log ?? new Logger("influxdb");
    this.#headers = new Headers({ "content-type": "text/plain; charset=utf-8", accept: "application/json" });
    if (options.token !== "" && options.token !== FILL_ME) {
      this.#headers.set("authorization", `Token ${options.token}`);
    }
    this.#delivery = new Delivery({
      journalPath: options.journalPath,
      maxBytes: options.journalMaxBytes,
      fsync: options.journalFsync,
      maxBackoffMs: options.maxBackoffMs,
      finalAttemptMs: options.finalAttemptMs,
      log: this.#log,
      target: this.url.origin + this.url.pathname,
      send: (payloads, signal) => this.#post(payloads, signal),
    });
  }

  /** The journal and pump (for tests and status). */
  get delivery(): Delivery {
    return this.#delivery;
  }

  /** Points lost so far: dropped from a full journal, rejected by the server, or NaN/±Infinity values. */
  lostPoints(): number {
    return this.#delivery.droppedPoints + this.#skipped;
  }

  /** Opens the journal (and replays what an earlier run left there). The server is not contacted. */
  open(): void {
    this.#delivery.open();
  }

  write(batch: Batch, ctx: ElementContext): void {
    const { text, points, skipped } = this.#encoder.encode(batch, ctx);
    if (skipped > 0) {
      this.#skipped += skipped;
      const t = performance.now();
      if (t - this.#lastSkipLog > 10_000) {
        this.#lastSkipLog = t;
        this.#log.warn(
          `Left out ${skipped} points whose value is NaN or infinite (InfluxDB cannot store them)`,
        );
      }
    }
    if (points > 0) this.#delivery.append(encoder.encode(text), points);
  }

  async #post(payloads: readonly Uint8Array[], signal: AbortSignal): Promise<void> {
    let size = 0;
    for (const p of payloads) size += p.length;
    const body = new Uint8Array(size);
    let off = 0;
    for (const p of payloads) {
      body.set(p, off);
      off += p.length;
    }
    let res: Response;
    try {
      res = await fetch(this.url, {
        method: "POST",
        headers: this.#headers,
        body,
        signal: AbortSignal.any([signal, AbortSignal.timeout(this.#timeoutMs)]),
      });
    } catch (e) {
      throw new AlumetError(`POST ${this.url.origin}${this.url.pathname} failed: ${messageOf(e)}`, {
        cause: e,
      });
    }
    if (res.ok) {
      await res.body?.cancel();
      return;
    }
    const detail = (await res.text().catch(() => "")).trim().slice(0, 300);
    const message = `InfluxDB answered ${res.status} ${res.statusText}${detail ? `: ${detail}` : ""}`;
    // 400 (bad line, type conflict) and 413 (too large) fail the same way every time: retrying would block the
    // journal for good. Auth, a missing database (404), 429 and 5xx can be fixed on the server: keep retrying.
    if (res.status === 400 || res.status === 413 || res.status === 422) throw new RejectedError(message);
    throw new AlumetError(message);
  }

  /** One bounded final attempt; what is unsent stays in the journal. */
  async close(): Promise<void> {
    await this.#delivery.close();
  }

  describe(): string {
    return `${this.url.origin}${this.url.pathname}${this.url.search}`;
  }
}

/** The API version these settings use: `api_version`, or with `auto`, v1 when `database` is set, else v2. */
export function apiVersionOf(config: Pick<InfluxdbConfig, "api_version" | "database">): "v1" | "v2" {
  if (config.api_version !== "auto") return config.api_version;
  return config.database !== "" ? "v1" : "v2";
}

/**
 * The `influxdb` plugin: adds one output, `out`.
 *
 * @example
 * ```ts
 * import { influxdbPlugin } from "./mod.ts";
 * import assert from "node:assert/strict";
 * assert.equal(influxdbPlugin.defaultConfig().host, "http://localhost:8086");
 * assert.equal(influxdbPlugin.configSchema.parse({}).attributes_as, "field");
 * ```
 */
export const influxdbPlugin = definePlugin({
  name: "influxdb",
  version: "0.1.0",
  description:
    "Writes the measurements to InfluxDB (v1, v2 or v3) in line protocol, journaled (at-least-once)",
  config: influxdbConfigSchema,
  init: function initInfluxdb(config: InfluxdbConfig): Plugin {
    const version = apiVersionOf(config);
    if (version === "v1" && config.database === "" && config.bucket === FILL_ME) {
      throw new AlumetError(
        `plugins.influxdb: api_version = "v1" needs a database: set plugins.influxdb.database`,
      );
    }
    let output: InfluxdbOutput | undefined;
    return {
      start: function startInfluxdb(ctx: StartContext): void {
        output = new InfluxdbOutput({
          host: config.host,
          version,
          token: config.token,
          org: config.org,
          bucket: config.bucket,
          database: config.database !== "" ? config.database : config.bucket,
          timeoutMs: config.timeout,
          journalPath: config.journal_path,
          journalMaxBytes: config.journal_max_mib * 1024 * 1024,
          journalFsync: config.journal_fsync,
          maxBackoffMs: config.max_backoff,
          finalAttemptMs: config.final_attempt,
          encoder: {
            attributesAs: config.attributes_as,
            attributesAsTags: config.attributes_as_tags,
            attributesAsFields: config.attributes_as_fields,
          },
          log: ctx.log,
        });
        output.open();
        ctx.addOutput("out", output);
      },
    };
  },
});

export default influxdbPlugin;

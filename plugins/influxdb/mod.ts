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
import { AlumetError, ConfigError, messageOf } from "../../src/errors.ts";
import {
  Delivery,
  deliveryOptions,
  type JournalOptions,
  RejectedError,
} from "../../src/pipeline/delivery.ts";
import { Logger } from "../../src/log.ts";
import { baseUrlProblem } from "../../src/plugin/url.ts";

/** Alumet's placeholder for the keys a user must fill. */
const FILL_ME = "FILL ME";

const HOST_URL = {
  whose: "InfluxDB's",
  example: "http://localhost:8086",
  credentials: "use token, or username and password",
};

/** The schema of `[plugins.influxdb]`, with every default: `config regen` writes them in this order. */
export const influxdbConfigSchema = z.strictObject({
  host: z.string().transform((text, ctx) => {
    const problem = baseUrlProblem(text, HOST_URL);
    if (problem === undefined) return text;
    ctx.issues.push({ code: "custom", input: text, message: problem });
    return z.NEVER;
  }).prefault("http://localhost:8086"),
  token: z.string().default(FILL_ME),
  org: z.string().default(FILL_ME),
  bucket: z.string().default(FILL_ME),
  attributes_as: z.enum(["field", "tag"]).default("tag"),
  attributes_as_tags: z.array(z.string()).default([]),
  attributes_as_fields: z.array(z.string()).default([]),
  api_version: z.enum(["auto", "v1", "v2"]).default("auto"),
  database: z.string().default(""),
  username: z.string().default(""),
  password: z.string().default(""),
  timeout: duration().prefault("10s"),
  journal_path: z.string().min(1).default("alumet-influxdb-journal"),
  journal_max_mib: z.int().positive().default(64),
  journal_fsync: z.enum(["batch", "none"]).default("batch"),
  max_backoff: duration().prefault("5s"),
  final_attempt: duration().prefault("5s"),
})
  .refine((c) => apiVersionOf(c) !== "v1" || c.database !== "" || !unset(c.bucket), {
    path: ["database"],
    error: 'the InfluxDB 1.x database to write to, since api_version = "v1"',
  })
  .refine((c) => apiVersionOf(c) !== "v2" || c.username === "", {
    path: ["username"],
    error: "no username with the v2 API (username and password are InfluxDB 1.x's): use token, or set " +
      'database (or api_version = "v1") for InfluxDB 1.x',
  })
  .refine((c) => apiVersionOf(c) !== "v2" || c.password === "", {
    path: ["password"],
    error: "no password with the v2 API (username and password are InfluxDB 1.x's): use token, or set " +
      'database (or api_version = "v1") for InfluxDB 1.x',
  });

/** Whether a key is left empty or at Alumet's placeholder. */
function unset(v: string): boolean {
  return v === "" || v === FILL_ME;
}

/** The validated `[plugins.influxdb]` table. */
export type InfluxdbConfig = z.infer<typeof influxdbConfigSchema>;

/** Tag keys Alumet writes for resources and consumers: an attribute with one of these names is renamed. */
const RESERVED_TAGS: ReadonlySet<string> = new Set([
  "resource_kind",
  "resource_id",
  "resource_consumer_kind",
  "resource_consumer_id",
]);

/** Keys InfluxDB refuses as tag keys (`time` in 1.x and 2.x; `_measurement`, `_field` in 2.x) or as field keys. */
const RESERVED_TAG_KEYS: ReadonlySet<string> = new Set(["time", "_measurement", "_field"]);
const RESERVED_FIELD_KEYS: ReadonlySet<string> = new Set(["time", "value"]);
const ATTRIBUTE_PREFIX = "alumet_attribute__";

const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;
const U64_MAX = (1n << 64n) - 1n;

/**
 * Escapes a measurement name: commas and spaces get a backslash; a line break (which line protocol cannot
 * carry) becomes an escaped space; trailing backslashes are removed (line protocol would read the next
 * separator as escaped, and InfluxDB refuses the line).
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
  if (s.endsWith("\\")) s = s.replace(/\\+$/, "");
  return /[, \r\n]/.test(s) ? s.replace(/[\r\n]/g, " ").replace(/[, ]/g, "\\$&") : s;
}

/**
 * Escapes a tag key, a tag value or a field key: commas, equals signs and spaces get a backslash; a line break
 * becomes an escaped space; trailing backslashes are removed (a name ending with a backslash cannot be written
 * in line protocol: InfluxDB would read the separator after it as escaped and refuse the line).
 *
 * @example
 * ```ts
 * import { escapeKey } from "./mod.ts";
 * import assert from "node:assert/strict";
 * assert.equal(escapeKey("a b,c=d"), "a\\ b\\,c\\=d");
 * assert.equal(escapeKey("C:\\"), "C:");
 * ```
 */
export function escapeKey(s: string): string {
  if (s.endsWith("\\")) s = s.replace(/\\+$/, "");
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
  /**
   * `"v1"`: u64 as `123i` (InfluxDB 1.x has no `u`; a value above 2^63 − 1 cannot be stored and its point is
   * left out and counted); `"v2"`: `123u`. Default `"v2"`.
   */
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
 * `alumet_attribute__`; so do the keys InfluxDB refuses: `time`, and the tag keys `_measurement` and `_field`;
 * a tag whose value is empty is left out); the value in the field `value`; the timestamp in nanoseconds.
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
  /**
   * `[tags, fields]` of an attribute set: `,k=v…` and `k=v,…` (fields end with a comma when non-empty); null
   * when a value cannot be written (an integer out of InfluxDB's range).
   */
  #attrs = new WeakMap<object, [string, string] | null>();

  /** The API version the lines are written for. */
  get version(): "v1" | "v2" {
    return this.#v1 ? "v1" : "v2";
  }

  constructor(options: EncoderOptions = {}) {
    this.#v1 = options.version === "v1";
    this.#asTag = options.attributesAs === "tag";
    this.#tags = new Set(options.attributesAsTags ?? []);
    this.#fields = new Set(options.attributesAsFields ?? []);
  }

  /**
   * Encodes a batch; points whose value InfluxDB cannot store (NaN, ±Infinity; for v1 an integer above
   * 2^63 − 1, in the value or in an attribute) are left out and counted.
   *
   * @returns the lines (each ending with `\n`), the points written and the points left out
   */
  encode(batch: Batch, ctx: ElementContext): { text: string; points: number; skipped: number } {
    let text = "";
    let points = 0;
    let skipped = 0;
    for (let i = 0; i < batch.length; i++) {
      const v = batch.valueAt(i);
      let value: string | undefined;
      if (typeof v === "bigint" || ctx.metric(batch.metricAt(i)).valueType === "u64") {
        value = this.#integer(BigInt(v));
      } else if (Number.isFinite(v)) {
        value = String(v);
      }
      const a = batch.attributesAt(i);
      let at = this.#attrs.get(a);
      if (at === undefined) this.#attrs.set(a, at = this.#attributes(a));
      if (value === undefined || at === null) {
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
      text += m + rt + ct + at[0] + " " + at[1] + "value=" + value + " " + batch.timestampAt(i) + "\n";
      points++;
    }
    return { text, points, skipped };
  }

  /** A non-negative integer value (u64): `123u` (v2), `123i` (v1), or undefined when v1 cannot store it. */
  #integer(v: bigint): string | undefined {
    if (!this.#v1) return v <= U64_MAX ? v + "u" : undefined;
    // InfluxDB 1.x stores signed 64-bit integers only. Written as a float, a larger value would conflict with
    // the field's integer type (InfluxDB refuses the point): it is left out and counted instead of wrapped.
    return v <= I64_MAX ? v + "i" : undefined;
  }

  #attributes(a: Readonly<Record<string, AttributeValue>>): [string, string] | null {
    let tags = "";
    let fields = "";
    for (const key in a) {
      const v = a[key]!;
      const isTag = this.#asTag ? !this.#fields.has(key) : this.#tags.has(key);
      if (isTag) {
        const k = RESERVED_TAGS.has(key) || RESERVED_TAG_KEYS.has(key) ? ATTRIBUTE_PREFIX + key : key;
        tags += tag(k, attributeText(v));
      } else {
        const value = this.#fieldValue(v);
        if (value === undefined) return null;
        fields += fieldKey(RESERVED_FIELD_KEYS.has(key) ? ATTRIBUTE_PREFIX + key : key) + "=" + value + ",";
      }
    }
    return [tags, fields];
  }

  #fieldValue(v: AttributeValue): string | undefined {
    switch (typeof v) {
      case "string":
        return quoteString(v);
      case "boolean":
        return v ? "T" : "F";
      case "bigint":
        if (v >= 0n) return this.#integer(v);
        return v >= I64_MIN ? v + "i" : undefined;
      default:
        return Number.isFinite(v) ? String(v) : quoteString(String(v));
    }
  }
}

/** A field key, escaped; one that would be empty (`""`, or only backslashes) gets the attribute prefix. */
function fieldKey(key: string): string {
  return escapeKey(key) || ATTRIBUTE_PREFIX;
}

/**
 * `,key=value`, or nothing when the value is empty once escaped (line protocol has no empty tag value, and
 * InfluxDB refuses the whole line: the tag is left out, the point kept). An empty key gets the attribute prefix.
 */
function tag(key: string, value: string): string {
  const v = escapeKey(value);
  if (v === "") return "";
  return "," + (escapeKey(key) || ATTRIBUTE_PREFIX) + "=" + v;
}

function attributeText(v: AttributeValue): string {
  return String(v);
}

/** Where and how an {@linkcode InfluxdbOutput} writes. */
export interface InfluxdbOutputOptions extends JournalOptions {
  readonly host: string;
  readonly version: "v1" | "v2";
  /**
   * v2: the token (`Authorization: Token …`). v1: `user:password` is sent as Basic authentication (what
   * InfluxDB 1.x reads), any other token as `Authorization: Token …` (InfluxDB 1.8+, 3.x). Empty or
   * `"FILL ME"`: none.
   */
  readonly token: string;
  /** v1: Basic authentication (InfluxDB 1.x's user and password), instead of the token. */
  readonly username?: string;
  readonly password?: string;
  readonly org: string;
  readonly bucket: string;
  /** v1: the database. */
  readonly database: string;
  /** Per request, ms. */
  readonly timeoutMs: number;
  readonly encoder: EncoderOptions;
  readonly log?: Logger;
}

/**
 * Parses `host` as InfluxDB's base URL; an {@linkcode AlumetError} names the key and the value (credentials
 * and query values redacted) otherwise. The config schema makes the same check.
 *
 * @example
 * ```ts
 * import { parseHost } from "./mod.ts";
 * import assert from "node:assert/strict";
 * assert.equal(parseHost("http://db:8086/").href, "http://db:8086/");
 * assert.throws(() => parseHost("db:8086"), /plugins.influxdb.host/);
 * assert.throws(() => parseHost("http://u:hunter2@db:8086"), (e: Error) => !e.message.includes("hunter2"));
 * ```
 */
export function parseHost(host: string): URL {
  const problem = baseUrlProblem(host, HOST_URL);
  if (problem !== undefined) throw new AlumetError(`plugins.influxdb.host: expected ${problem}`);
  return new URL(host);
}

/** The write URL for these options: v2 `/api/v2/write?org=…&bucket=…&precision=ns`, v1 `/write?db=…&precision=ns`. */
export function writeUrl(
  o: Pick<InfluxdbOutputOptions, "host" | "version" | "org" | "bucket" | "database">,
): URL {
  const base = parseHost(o.host).href.replace(/\/+$/, "");
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

/** The `Authorization` header for these options, or undefined for none. */
export function authorizationOf(
  o: Pick<InfluxdbOutputOptions, "version" | "token" | "username" | "password">,
): string | undefined {
  const basic = (user: string, password: string) => {
    const raw = encoder.encode(`${user}:${password}`);
    let bin = "";
    for (const b of raw) bin += String.fromCharCode(b);
    return `Basic ${btoa(bin)}`;
  };
  const token = o.token === FILL_ME ? "" : o.token;
  if (o.version === "v1") {
    if ((o.username ?? "") !== "" || (o.password ?? "") !== "") {
      return basic(o.username ?? "", o.password ?? "");
    }
    const colon = token.indexOf(":");
    if (colon > 0) return basic(token.slice(0, colon), token.slice(colon + 1));
  }
  return token !== "" ? `Token ${token}` : undefined;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const NEWLINE = 10;

/** How often a warning about refused points may repeat, ms. */
const WARN_EVERY_MS = 10_000;

/** InfluxDB's answer to a request it refused for good (400, 413, 422). */
interface Refusal {
  readonly status: number;
  /** Status and the server's message, shortened, for log lines. */
  readonly message: string;
  /** The points InfluxDB dropped when it stored the others (a partial write), else undefined. */
  readonly dropped: number | undefined;
}

/**
 * Reads a refusal's body. InfluxDB 1.x and 2.x store the valid points of a batch and answer
 * `partial write: <why> dropped=N` (1.x: `{"error": …}`, 400; 2.x: `{"message": …}`, 422); 1.x lists each
 * line it could not parse (`unable to parse '…'`) with `dropped=0`. InfluxDB 3 answers
 * `{"error":"partial write of line protocol occurred","data":[{line_number…}, …]}`, one entry per refused line.
 */
export function readRefusal(status: number, statusText: string, body: string): Refusal {
  let text = body.trim();
  let dropped: number | undefined;
  try {
    const json = JSON.parse(text);
    if (json !== null && typeof json === "object") {
      const m = json.error ?? json.message;
      if (typeof m === "string") {
        if (/^partial write of line protocol/i.test(m) && Array.isArray(json.data)) {
          dropped = json.data.length;
        }
        text = m + (dropped !== undefined ? ` (${dropped} lines)` : "");
      }
    }
  } catch {
    // not JSON: the text as it is
  }
  const partial = /\bpartial write: ([\s\S]*)\bdropped=(\d+)\s*$/.exec(text);
  if (partial) {
    const unparsed = partial[1]!.split("unable to parse '").length - 1;
    dropped = Number(partial[2]) + unparsed;
  }
  const short = text.length > 300 ? text.slice(0, 300) + "…" : text;
  return { status, dropped, message: `${status} ${statusText}${short ? `: ${short}` : ""}` };
}

/** The lines of `payloads` (each with its `\n`), in order. */
function splitLines(payloads: readonly Uint8Array[]): Uint8Array[] {
  const lines: Uint8Array[] = [];
  for (const p of payloads) {
    let start = 0;
    while (start < p.length) {
      let end = p.indexOf(NEWLINE, start);
      end = end < 0 ? p.length : end + 1;
      lines.push(p.subarray(start, end));
      start = end;
    }
  }
  return lines;
}

function concat(parts: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  let size = 0;
  for (const p of parts) size += p.length;
  const body = new Uint8Array(size);
  let off = 0;
  for (const p of parts) {
    body.set(p, off);
    off += p.length;
  }
  return body;
}

/** What a send of the journal's records has settled so far: its first `done` lines (sent or refused). */
interface Progress {
  done: number;
  refused: number;
  why: string[];
}

/**
 * The influxdb output: `write` encodes a batch and appends it to the journal (synchronously, synced to disk by
 * default); the journal's pump sends it (see {@linkcode Delivery}). A request InfluxDB refuses for good is
 * split: on a 413 (too large) it is halved until each part passes (and later requests are cut below that
 * size); on a 400 or 422 it is bisected until only the refused lines are left, which are dropped and counted,
 * the others delivered. A partial write (InfluxDB stored the other lines and says how many it dropped) counts
 * those and sends nothing again. `close` makes one bounded final attempt and leaves what is unsent in the
 * journal for the next start. {@linkcode InfluxdbOutput.lostPoints} counts the points lost: dropped from a full
 * journal, refused by InfluxDB, or not representable (NaN, ±Infinity, u64 above 2^63 − 1 for v1).
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
  #refused = 0;
  #lastRefuseLog = -Infinity;
  /** Bytes above which a request is cut, learnt from a 413. */
  #maxBody = Infinity;
  /** Settled lines of a send that a retriable failure interrupted, keyed by its first record. */
  readonly #progress = new WeakMap<Uint8Array, Progress>();

  constructor(options: InfluxdbOutputOptions) {
    this.url = writeUrl(options);
    this.#encoder = new LineProtocolEncoder({ ...options.encoder, version: options.version });
    this.#timeoutMs = options.timeoutMs;
    this.#log = options.log ?? new Logger("influxdb");
    this.#headers = new Headers({ "content-type": "text/plain; charset=utf-8", accept: "application/json" });
    const auth = authorizationOf(options);
    if (auth !== undefined) this.#headers.set("authorization", auth);
    const journal: JournalOptions = options; // Delivery reads its own keys of these options, no others
    this.#delivery = new Delivery({
      ...journal,
      log: this.#log,
      target: this.url.origin + this.url.pathname,
      send: (payloads, signal) => this.#send(payloads, signal),
    });
  }

  /** The journal and pump (for tests and status). */
  get delivery(): Delivery {
    return this.#delivery;
  }

  /**
   * Points lost so far: dropped from a full journal, refused by the server, or not representable (NaN,
   * ±Infinity, for v1 integers above 2^63 − 1).
   */
  lostPoints(): number {
    return this.#delivery.droppedPoints + this.#skipped + this.#refused;
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
      if (t - this.#lastSkipLog > WARN_EVERY_MS) {
        this.#lastSkipLog = t;
        this.#log.warn(
          `Left out ${skipped} points whose value InfluxDB cannot store (NaN, infinite` +
            `${this.#encoder.version === "v1" ? ", or an integer above 2^63 - 1 for InfluxDB 1.x" : ""}); ` +
            `${this.#skipped} left out so far`,
        );
      }
    }
    if (points > 0) this.#delivery.append(encoder.encode(text), points);
  }

  /**
   * Sends the journal's records. Accepted whole: done. Refused: split (see the class doc). A retriable failure
   * (unreachable, 5xx, 401…) throws, and the journal retries the same records: the lines settled before it are
   * not sent again. Every line refused: RejectedError (the journal drops and counts the records).
   */
  async #send(payloads: readonly Uint8Array[], signal: AbortSignal): Promise<void> {
    const key = payloads[0]!;
    let progress = this.#progress.get(key);
    let size = 0;
    for (const p of payloads) size += p.length;
    if (progress === undefined && size <= this.#maxBody) {
      const refusal = await this.#post(payloads, size, signal);
      if (refusal === undefined) return;
      progress = { done: 0, refused: 0, why: [] };
      this.#progress.set(key, progress);
      const lines = splitLines(payloads);
      await this.#settle(lines, 0, lines.length, refusal, progress, signal);
      return this.#finish(key, lines.length, progress);
    }
    progress ??= { done: 0, refused: 0, why: [] };
    this.#progress.set(key, progress);
    const lines = splitLines(payloads);
    await this.#deliverCut(lines, progress.done, lines.length, progress, signal);
    return this.#finish(key, lines.length, progress);
  }

  /** Sends lines `[lo, hi)` in requests of at most #maxBody bytes (a longer line goes alone), in order. */
  async #deliverCut(
    lines: readonly Uint8Array[],
    lo: number,
    hi: number,
    progress: Progress,
    signal: AbortSignal,
  ): Promise<void> {
    let from = lo;
    while (from < hi) {
      // #maxBody may shrink during the loop (a 413): each request is cut with the latest.
      let to = from + 1;
      let bytes = lines[from]!.length;
      while (to < hi && bytes + lines[to]!.length <= this.#maxBody) bytes += lines[to++]!.length;
      await this.#deliver(lines, from, to, progress, signal);
      from = to;
    }
  }

  #finish(key: Uint8Array, total: number, progress: Progress): void {
    this.#progress.delete(key);
    if (progress.refused === 0) return;
    const why = progress.why.slice(0, 3).join("; ") + (progress.why.length > 3 ? "; …" : "");
    if (progress.refused >= total) throw new RejectedError(why);
    this.#refused += progress.refused;
    const t = performance.now();
    if (t - this.#lastRefuseLog >= WARN_EVERY_MS) {
      this.#lastRefuseLog = t;
      this.#log.warn(
        `Dropped ${progress.refused} of ${total} points: InfluxDB refused them (${why}); the others were ` +
          `delivered; ${this.#refused} refused so far`,
      );
    }
  }

  /** Sends lines `[lo, hi)`, splitting them when refused. */
  async #deliver(
    lines: readonly Uint8Array[],
    lo: number,
    hi: number,
    progress: Progress,
    signal: AbortSignal,
  ): Promise<void> {
    const part = lines.slice(lo, hi);
    let size = 0;
    for (const l of part) size += l.length;
    const refusal = await this.#post(part, size, signal);
    if (refusal === undefined) progress.done = hi;
    else await this.#settle(lines, lo, hi, refusal, progress, signal);
  }

  /** Lines `[lo, hi)` were refused: count what InfluxDB dropped of them, or split them and send the halves. */
  async #settle(
    lines: readonly Uint8Array[],
    lo: number,
    hi: number,
    refusal: Refusal,
    progress: Progress,
    signal: AbortSignal,
  ): Promise<void> {
    if (refusal.status === 413 && hi - lo > 1) {
      // Too large: halve the size of requests from now on, and send these lines again cut to it.
      let size = 0;
      for (let i = lo; i < hi; i++) size += lines[i]!.length;
      this.#maxBody = Math.min(this.#maxBody, Math.max(1, Math.floor(size / 2)));
      return this.#deliverCut(lines, lo, hi, progress, signal);
    }
    if (refusal.dropped !== undefined || hi - lo === 1) {
      // A partial write (the other lines are stored), or one line refused.
      const n = Math.min(hi - lo, refusal.dropped ?? 1);
      progress.refused += n;
      if (n > 0) {
        progress.why.push(
          hi - lo === 1
            ? `${decoder.decode(lines[lo]!).trimEnd().slice(0, 200)}: ${refusal.message}`
            : refusal.message,
        );
      }
      progress.done = hi;
      return;
    }
    const mid = (lo + hi) >>> 1;
    await this.#deliver(lines, lo, mid, progress, signal);
    await this.#deliver(lines, mid, hi, progress, signal);
  }

  /** One request: undefined when accepted, the refusal when InfluxDB refused it for good; throws else. */
  async #post(parts: readonly Uint8Array[], size: number, signal: AbortSignal): Promise<Refusal | undefined> {
    const body = parts.length === 1 && parts[0]!.length === size ? parts[0]! : concat(parts);
    let res: Response;
    try {
      res = await fetch(this.url, {
        method: "POST",
        headers: this.#headers,
        body: body as Uint8Array<ArrayBuffer>,
        signal: AbortSignal.any([signal, AbortSignal.timeout(this.#timeoutMs)]),
      });
    } catch (e) {
      throw new AlumetError(`POST ${this.url.origin}${this.url.pathname} failed: ${messageOf(e)}`, {
        cause: e,
      });
    }
    if (res.ok) {
      await res.body?.cancel();
      return undefined;
    }
    const text = await res.text().catch(() => "");
    // 400 (bad line, type conflict), 413 (too large) and 422 (v2: unprocessable) fail the same way every time:
    // retrying would block the journal for good. Auth, a missing database (404), 429 and 5xx can be fixed on
    // the server: keep retrying.
    const refusal = readRefusal(res.status, res.statusText, text);
    if (res.status === 400 || res.status === 413 || res.status === 422) return refusal;
    throw new AlumetError(`InfluxDB answered ${refusal.message}`);
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
export function apiVersionOf(
  config: { readonly api_version: "auto" | "v1" | "v2"; readonly database: string },
): "v1" | "v2" {
  if (config.api_version !== "auto") return config.api_version;
  return config.database !== "" ? "v1" : "v2";
}

/**
 * For the v2 API, `org`, `bucket` or `token` left empty or at Alumet's placeholder `"FILL ME"`, as a
 * {@linkcode ConfigError} naming the key (exit code 2); `undefined` when they are set. Checked in `init`, not in
 * the schema: the defaults are placeholders, and `alumet doctor` validates every plugin's defaults.
 *
 * @example
 * ```ts
 * import { influxdbConfigSchema, placeholderProblem } from "./mod.ts";
 * import assert from "node:assert/strict";
 * const e = placeholderProblem(influxdbConfigSchema.parse({}));
 * assert.equal(e?.problem.key, "plugins.influxdb.org");
 * assert.match(e!.message, /"FILL ME" is Alumet's placeholder/);
 * assert.equal(placeholderProblem(influxdbConfigSchema.parse({ database: "d" })), undefined);
 * ```
 */
export function placeholderProblem(config: InfluxdbConfig): ConfigError | undefined {
  if (apiVersionOf(config) !== "v2") return undefined;
  const what = {
    org: "the InfluxDB organization to write to (InfluxDB 3 ignores it: any name will do)",
    bucket: "the InfluxDB bucket to write to",
    token: 'an InfluxDB API token ("" for a server without authentication)',
  } as const;
  for (const key of ["org", "bucket", "token"] as const) {
    const value = config[key];
    if (value === FILL_ME) {
      return new ConfigError({
        source: "the config file",
        key: `plugins.influxdb.${key}`,
        expected: `${what[key]}; "FILL ME" is Alumet's placeholder: replace it`,
        suggestion: key === "token" ? undefined : "or set database for InfluxDB 1.x",
      });
    }
    if (value === "" && key !== "token") {
      return new ConfigError({
        source: "the config file",
        key: `plugins.influxdb.${key}`,
        expected: `${what[key]}, since the v2 API is used`,
        suggestion: "or set database for InfluxDB 1.x",
      });
    }
  }
  return undefined;
}

/**
 * The `influxdb` plugin: adds one output, `out`.
 *
 * @example
 * ```ts
 * import { influxdbPlugin } from "./mod.ts";
 * import assert from "node:assert/strict";
 * assert.equal(influxdbPlugin.defaultConfig().host, "http://localhost:8086");
 * assert.equal(influxdbPlugin.configSchema.parse({}).attributes_as, "tag");
 * assert.throws(() => influxdbPlugin.configSchema.parse({ host: "localhost:8086" }), /host: InfluxDB's http/);
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
    const placeholder = placeholderProblem(config);
    if (placeholder !== undefined) throw placeholder;
    let output: InfluxdbOutput | undefined;
    return {
      start: function startInfluxdb(ctx: StartContext): void {
        output = new InfluxdbOutput({
          host: config.host,
          version,
          token: config.token,
          username: config.username,
          password: config.password,
          org: config.org,
          bucket: config.bucket,
          database: config.database !== "" ? config.database : config.bucket,
          timeoutMs: config.timeout,
          ...deliveryOptions(config),
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

/**
 * The `opentelemetry` plugin: an output that sends every measurement point as OTLP metrics over HTTP
 * (`POST …/v1/metrics`, protobuf by default, or JSON) to an OpenTelemetry Collector or any OTLP/HTTP receiver
 * (Prometheus ≥ 2.47, most vendors), through the journal-backed {@linkcode Delivery} (at-least-once).
 *
 * Energy and other `delta` metrics become monotonic cumulative Sums (the running total since the output
 * started, its `startTimeUnixNano`), `counter` metrics cumulative Sums, `gauge` metrics Gauges; units are UCUM
 * codes.
 *
 * @module
 */
import { duration, z } from "../../src/plugin/schema.ts";
import { definePlugin } from "../../src/plugin/define.ts";
import type { ElementContext, Output, Plugin, StartContext } from "../../src/plugin/plugin.ts";
import type { Attributes, AttributeValue, Batch } from "../../src/model/batch.ts";
import type { Metric, MetricId } from "../../src/model/metrics.ts";
import type { Consumer, Resource } from "../../src/model/resources.ts";
import type { Unit } from "../../src/model/units.ts";
import { AlumetError, ConfigError, messageOf } from "../../src/errors.ts";
import {
  Delivery,
  deliveryOptions,
  type JournalOptions,
  RejectedError,
} from "../../src/pipeline/delivery.ts";
import { Logger } from "../../src/log.ts";
import { BinaryReader, BinaryWriter, WireType } from "./deps.ts";
import { baseUrlProblem, HEADER_NAME, HEADER_VALUE, redactUrl } from "../../src/plugin/url.ts";

const VERSION = "0.1.0";

const COLLECTOR_URL = {
  whose: "the OTLP/HTTP receiver's",
  example: "http://localhost:4318",
  credentials: "put them in headers, such as Authorization",
  query: true,
};

/** The schema of `[plugins.opentelemetry]`, with every default: `config regen` writes them in this order. */
export const opentelemetryConfigSchema = z.strictObject({
  collector_host: z.string().transform((text, ctx) => {
    const problem = text.trim() === "" ? undefined : baseUrlProblem(text.trim(), COLLECTOR_URL);
    if (problem === undefined) return text;
    ctx.issues.push({
      code: "custom",
      input: text,
      message: problem.replace(
        /, not /,
        ' (or "" for the OTEL_EXPORTER_OTLP_* variables or the default), not ',
      ),
    });
    return z.NEVER;
  }).prefault(""),
  protocol: z.enum(["", "http/protobuf", "http/json"]).default(""),
  prefix: z.string().default(""),
  suffix: z.string().default("_alumet"),
  use_unit_display_name: z.boolean().default(false),
  add_attributes_to_labels: z.boolean().default(true),
  headers: z.record(
    z.string()
      .regex(HEADER_NAME, { error: "an HTTP header name (letters, digits and !#$%&'*+-.^_`|~; no space)" })
      .refine((k) => k.toLowerCase() !== "content-type", {
        error: "a header other than Content-Type (the output sets it from protocol)",
      }),
    z.string().regex(HEADER_VALUE, { error: "a header value on one line" }),
  ).default({}),
  timeout: duration().prefault("10s"),
  journal_path: z.string().min(1).default("alumet-opentelemetry-journal"),
  journal_max_mib: z.int().positive().default(64),
  journal_fsync: z.enum(["batch", "none"]).default("batch"),
  max_backoff: duration().prefault("5s"),
  final_attempt: duration().prefault("5s"),
  /** Alumet 0.8's key: accepted and ignored (each batch is sent as soon as it is journaled). */
  push_interval_seconds: z.int().min(0).optional(),
});

/** The validated `[plugins.opentelemetry]` table. */
export type OpentelemetryConfig = z.infer<typeof opentelemetryConfigSchema>;

/** The two OTLP/HTTP encodings. */
export type OtlpProtocol = "http/protobuf" | "http/json";

/** Where and how to send, as {@linkcode resolveEndpoint} works it out from the config and the environment. */
export interface ResolvedEndpoint {
  /** The full URL of the metrics endpoint (`…/v1/metrics`). */
  readonly url: URL;
  readonly protocol: OtlpProtocol;
  /** Extra request headers (the environment's, then the config's). */
  readonly headers: Readonly<Record<string, string>>;
  /** Lines to log once at start (the gRPC port, an ignored variable). */
  readonly warnings: readonly string[];
}

/** The OTLP/HTTP default endpoint, used when neither the config nor the environment names one. */
export const DEFAULT_COLLECTOR = "http://localhost:4318";

/**
 * Parses `OTEL_EXPORTER_OTLP_HEADERS`: `key1=value1,key2=value2`, values percent-decoded (W3C baggage form).
 * Malformed entries are skipped.
 *
 * @example
 * ```ts
 * import { parseOtlpHeaders } from "./mod.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseOtlpHeaders("api-key=a%20b, x=1,bad"), { "api-key": "a b", x: "1" });
 * ```
 */
export function parseOtlpHeaders(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(",")) {
    const eq = part.indexOf("=");
    if (eq <= 0) continue;
    const key = part.slice(0, eq).trim();
    let value = part.slice(eq + 1).trim();
    try {
      value = decodeURIComponent(value);
    } catch {
      // left as written
    }
    if (key !== "") out[key] = value;
  }
  return out;
}

/** `…/v1/metrics` under a base URL (a base that already ends so is kept). */
function metricsUrl(base: string): URL {
  const url = new URL(base);
  if (!/\/v1\/metrics\/?$/.test(url.pathname)) {
    url.pathname = url.pathname.replace(/\/+$/, "") + "/v1/metrics";
  }
  return url;
}

function readEnv(name: string): string | undefined {
  try {
    const v = Deno.env.get(name);
    return v === undefined || v.trim() === "" ? undefined : v.trim();
  } catch {
    return undefined; // no --allow-env: as if unset
  }
}

/**
 * Works out the endpoint, the encoding and the headers. Order, for the endpoint: `collector_host` when set
 * (a base URL: `/v1/metrics` is appended), else `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` (used as is), else
 * `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL), else `http://localhost:4318`. A `collector_host` on port 4317
 * (Alumet's gRPC default) is sent to port 4318 of the same host, with one warning. The encoding: `protocol`
 * when set, else `OTEL_EXPORTER_OTLP_METRICS_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`, else protobuf
 * (`grpc` there is not spoken: warned, protobuf used). Headers: `OTEL_EXPORTER_OTLP_HEADERS`, then
 * `OTEL_EXPORTER_OTLP_METRICS_HEADERS`, then the config's `headers` (later wins).
 *
 * @param env reads an environment variable (default: `Deno.env`, as unset without permission)
 *
 * @example
 * ```ts
 * import { resolveEndpoint } from "./mod.ts";
 * import assert from "node:assert/strict";
 * const r = resolveEndpoint({ collector_host: "http://localhost:4317", protocol: "", headers: {} }, () => undefined);
 * assert.equal(r.url.href, "http://localhost:4318/v1/metrics");
 * assert.equal(r.protocol, "http/protobuf");
 * assert.equal(r.warnings.length, 1);
 * ```
 */
export function resolveEndpoint(
  config: Pick<OpentelemetryConfig, "collector_host" | "protocol" | "headers">,
  env: (name: string) => string | undefined = readEnv,
): ResolvedEndpoint {
  const warnings: string[] = [];
  let url: URL;
  /** The URL in `text`, or a ConfigError naming where it came from (the value redacted). */
  const from = (source: string, key: string, text: string, f: () => URL): URL => {
    const problem = baseUrlProblem(text, COLLECTOR_URL);
    if (problem !== undefined) throw new ConfigError({ source, key, expected: problem });
    return f();
  };
  const host = config.collector_host.trim();
  if (host !== "") {
    url = from("the config file", "plugins.opentelemetry.collector_host", host, () => metricsUrl(host));
    if (url.port === "4317") {
      url.port = "4318";
      warnings.push(
        `collector_host ${redactUrl(host)} is OTLP/gRPC's port (Alumet's default); this output speaks ` +
          `OTLP/HTTP: sending to ${
            redactUrl(url.href)
          } (port 4318 of that host). Set collector_host to the ` +
          `receiver's OTLP/HTTP address to silence this`,
      );
    }
  } else {
    const m = env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT");
    const b = env("OTEL_EXPORTER_OTLP_ENDPOINT");
    if (m !== undefined) {
      url = from("the environment", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", m, () => new URL(m));
    } else if (b !== undefined) {
      url = from("the environment", "OTEL_EXPORTER_OTLP_ENDPOINT", b, () => metricsUrl(b));
    } else url = metricsUrl(DEFAULT_COLLECTOR);
  }
  let protocol: OtlpProtocol = "http/protobuf";
  if (config.protocol !== "") protocol = config.protocol;
  else {
    const name = env("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL") !== undefined
      ? "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
      : "OTEL_EXPORTER_OTLP_PROTOCOL";
    const p = env(name);
    if (p === "http/protobuf" || p === "http/json") protocol = p;
    else if (p !== undefined) {
      warnings.push(
        `${name}=${p} is not spoken by this output (OTLP/HTTP only: http/protobuf or http/json); ` +
          `using http/protobuf`,
      );
    }
  }
  const headers: Record<string, string> = {};
  for (const name of ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_METRICS_HEADERS"]) {
    const h = env(name);
    if (h !== undefined) Object.assign(headers, parseOtlpHeaders(h));
  }
  Object.assign(headers, config.headers);
  return { url, protocol, headers, warnings };
}

// ---- encoding ----

/** OTLP's `AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE`. */
const CUMULATIVE = 2;
const I64_MAX = (1n << 63n) - 1n;
const I64_MIN = -(1n << 63n);
/** Data point attributes named like these get the prefix `alumet_attribute__` (as in Alumet's outputs). */
const RESERVED: ReadonlySet<string> = new Set([
  "resource_kind",
  "resource_id",
  "resource_consumer_kind",
  "resource_consumer_id",
]);
/** A series not seen for this long is forgotten (its next point starts a new cumulative sum). */
const SERIES_TTL_MS = 3_600_000;

/**
 * The unit OTLP carries: the UCUM code (`J`, `mJ`, `us`, `By`, `Cel`, `1`), a custom unit as a UCUM annotation
 * (`{packets}`); with `displayName`, the human form instead (`µs`, `B`, `°C`), as Alumet's
 * `use_unit_display_name`.
 *
 * @example
 * ```ts
 * import { otlpUnit } from "./mod.ts";
 * import { customUnit, unit } from "../../src/model/units.ts";
 * import assert from "node:assert/strict";
 * assert.equal(otlpUnit(unit("s", "micro"), false), "us");
 * assert.equal(otlpUnit(unit("Cel"), true), "°C");
 * assert.equal(otlpUnit(customUnit("packets"), false), "{packets}");
 * ```
 */
export function otlpUnit(u: Unit, displayName: boolean): string {
  if (displayName) return u.display;
  if (u.custom) return /^\{.*\}$/.test(u.code) ? u.code : `{${u.code.replace(/[{}]/g, "")}}`;
  return u.code;
}

/**
 * A metric name as OpenTelemetry's instrument-name syntax allows (`[A-Za-z][A-Za-z0-9_.\-/]*`, at most 255
 * characters), sanitised as the Prometheus exporter and remote write do: each run of other characters becomes
 * one `_`, and those at the end of the name are dropped (meminfo's `active(anon)` → `active_anon`), before
 * the suffix is added.
 *
 * @example
 * ```ts
 * import { otlpName } from "./mod.ts";
 * import assert from "node:assert/strict";
 * assert.equal(otlpName("", "active(anon)", "_alumet"), "active_anon_alumet");
 * assert.equal(otlpName("", "cpu percent (%)", ""), "cpu_percent");
 * ```
 */
export function otlpName(prefix: string, name: string, suffix: string): string {
  const invalid = /[^A-Za-z0-9_.\-/]+/g;
  let base = name.replace(invalid, "_");
  if (/[^A-Za-z0-9_.\-/]$/.test(name)) base = base.replace(/_+$/, "");
  let n = (prefix + base + suffix).replace(invalid, "_");
  if (!/^[A-Za-z]/.test(n)) n = "a" + n;
  return n.slice(0, 255);
}

/** A point's attributes, encoded both ways, and their identity as text. */
interface AttrSet {
  /** `repeated KeyValue attributes = 7` of a NumberDataPoint, encoded. */
  readonly pb: Uint8Array;
  readonly json: readonly unknown[];
  readonly key: string;
}

interface MetricInfo {
  readonly name: string;
  readonly unit: string;
  readonly description: string;
  readonly metric: Metric;
}

interface SeriesState {
  start: bigint;
  sum: number | bigint;
  last: number | bigint;
  lastTime: bigint;
  seen: number;
}

interface DataPoint {
  readonly attrs: AttrSet;
  readonly start: bigint | undefined;
  readonly time: bigint;
  readonly value: number | bigint;
}

/** How {@linkcode OtlpEncoder} names and labels. */
export interface OtlpEncoderOptions {
  /** Before each metric name. Default `""`. */
  readonly prefix?: string;
  /** After each metric name. Default `"_alumet"` (Alumet's). */
  readonly suffix?: string;
  /** Units in their display form instead of UCUM codes. Default false. */
  readonly useUnitDisplayName?: boolean;
  /** The points' attributes become data point attributes (beside resource and consumer). Default true. */
  readonly addAttributesToLabels?: boolean;
  /** Resource attributes. Default `service.name = "alumet"`, and `host.name` when the host name is readable. */
  readonly resource?: Readonly<Record<string, string>>;
  /**
   * When the running sums of `delta` metrics began (Unix ns): their `startTimeUnixNano`. Default: the encoder's
   * creation (the output's start), before the first delta it will be given.
   */
  readonly startTime?: bigint;
}

/** What {@linkcode OtlpEncoder.encode} gives for one batch. */
export interface EncodedBatch {
  /** `http/protobuf`: a whole `ExportMetricsServiceRequest`; `http/json`: one `ResourceMetrics` object's JSON. */
  readonly payload: Uint8Array;
  /** Data points written. */
  readonly points: number;
  /** Points left out: a NaN or infinite delta (it would poison the running sum). */
  readonly skipped: number;
}

function hostName(): string | undefined {
  try {
    return Deno.hostname();
  } catch {
    return undefined;
  }
}

/** The default resource attributes: `host.name` (when readable) and `service.name = "alumet"`. */
export function defaultResource(): Record<string, string> {
  const h = hostName();
  return h === undefined ? { "service.name": "alumet" } : { "host.name": h, "service.name": "alumet" };
}

/** Writes one KeyValue (field `field` of its parent) with a typed AnyValue. */
function writeKeyValue(w: BinaryWriter, field: number, key: string, v: AttributeValue): void {
  w.tag(field, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string(key);
  w.tag(2, WireType.LengthDelimited).fork();
  switch (typeof v) {
    case "string":
      w.tag(1, WireType.LengthDelimited).string(v);
      break;
    case "boolean":
      w.tag(2, WireType.Varint).bool(v);
      break;
    case "bigint":
      if (v <= I64_MAX && v >= I64_MIN) w.tag(3, WireType.Varint).int64(v);
      else w.tag(1, WireType.LengthDelimited).string(String(v));
      break;
    default:
      if (Number.isSafeInteger(v)) w.tag(3, WireType.Varint).int64(v);
      else w.tag(4, WireType.Bit64).double(v);
  }
  w.join().join();
}

/** A double as proto3 JSON writes it: NaN and the infinities as strings. */
function jsonDouble(v: number): number | string {
  return Number.isFinite(v) ? v : Number.isNaN(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity";
}

function jsonAnyValue(v: AttributeValue): Record<string, unknown> {
  switch (typeof v) {
    case "string":
      return { stringValue: v };
    case "boolean":
      return { boolValue: v };
    case "bigint":
      return v <= I64_MAX && v >= I64_MIN ? { intValue: String(v) } : { stringValue: String(v) };
    default:
      return Number.isSafeInteger(v) ? { intValue: String(v) } : { doubleValue: jsonDouble(v) };
  }
}

/**
 * Turns batches into OTLP metrics. It keeps the running sums of `delta` metrics and the start times of
 * cumulative series, so one encoder serves one output for its whole life. Per batch: one `ResourceMetrics`
 * (resource attributes `host.name`, `service.name = "alumet"`), one scope `alumet`, one `Metric` per metric
 * with its data points in batch order.
 *
 * - `gauge` metrics: a Gauge; `u64` values as `asInt` (beyond 2^63 − 1, `asDouble`), `f64` as `asDouble`.
 * - `delta` metrics (energy): a monotonic cumulative Sum whose value is the running total of the deltas since
 *   the encoder's start (`startTime`), which is the `startTimeUnixNano` of every series: a series begins at 0
 *   then, so its first point's value counts as an increase (OpenTelemetry's data model: a start time before the
 *   point's time is a true reset at a known time; a start equal to it would say "unknown start", and a consumer
 *   would take the first point as a baseline and lose its joules). A series whose first point is not after the
 *   start gets its point's time minus 1 ns instead; a series forgotten after an hour idle starts again after
 *   its last point. A NaN or infinite delta is left out and counted.
 * - `counter` metrics: a monotonic cumulative Sum of the values as they are, started at the series' first
 *   point; a value below the previous one is a reset: the start time moves to the previous point's time.
 * - Data point attributes: `resource_kind`, `resource_id`, `resource_consumer_kind`, `resource_consumer_id`
 *   (empty ids left out), then the point's attributes (typed) unless `addAttributesToLabels` is false.
 */
export class OtlpEncoder {
  readonly #prefix: string;
  readonly #suffix: string;
  readonly #display: boolean;
  readonly #withAttrs: boolean;
  readonly #resourcePb: Uint8Array;
  readonly #resourceJson: unknown;
  #metrics: (MetricInfo | undefined)[] = [];
  #attrCache = new WeakMap<Resource, WeakMap<Consumer, WeakMap<Attributes, AttrSet>>>();
  #series = new Map<string, SeriesState>();
  #lastPrune = 0;
  /** The start of the sums of `delta` series created from now on (Unix ns). */
  #origin: bigint;

  constructor(options: OtlpEncoderOptions = {}) {
    this.#prefix = options.prefix ?? "";
    this.#suffix = options.suffix ?? "_alumet";
    this.#display = options.useUnitDisplayName ?? false;
    this.#withAttrs = options.addAttributesToLabels ?? true;
    this.#origin = options.startTime ?? BigInt(Date.now()) * 1_000_000n;
    const resource = options.resource ?? defaultResource();
    const w = new BinaryWriter();
    const json: unknown[] = [];
    for (const [k, v] of Object.entries(resource)) {
      writeKeyValue(w, 1, k, v);
      json.push({ key: k, value: jsonAnyValue(v) });
    }
    this.#resourcePb = w.finish();
    this.#resourceJson = { attributes: json };
  }

  /** Series whose running state is kept (for tests). */
  get seriesCount(): number {
    return this.#series.size;
  }

  #info(id: MetricId, ctx: ElementContext): MetricInfo {
    let m = this.#metrics[id];
    if (m === undefined) {
      const metric = ctx.metric(id);
      m = {
        name: otlpName(this.#prefix, metric.name, this.#suffix),
        unit: otlpUnit(metric.unit, this.#display),
        description: metric.description,
        metric,
      };
      this.#metrics[id] = m;
    }
    return m;
  }

  #attrs(r: Resource, c: Consumer, a: Attributes): AttrSet {
    let byC = this.#attrCache.get(r);
    if (byC === undefined) this.#attrCache.set(r, byC = new WeakMap());
    let byA = byC.get(c);
    if (byA === undefined) byC.set(c, byA = new WeakMap());
    let set = byA.get(a);
    if (set === undefined) {
      const kv: [string, AttributeValue][] = [["resource_kind", r.kind]];
      if (r.id !== "") kv.push(["resource_id", r.id]);
      kv.push(["resource_consumer_kind", c.kind]);
      if (c.id !== "") kv.push(["resource_consumer_id", c.id]);
      if (this.#withAttrs) {
        for (const key in a) kv.push([RESERVED.has(key) ? "alumet_attribute__" + key : key, a[key]!]);
      }
      const w = new BinaryWriter();
      const json: unknown[] = [];
      let key = "";
      for (const [k, v] of kv) {
        writeKeyValue(w, 7, k, v);
        json.push({ key: k, value: jsonAnyValue(v) });
        key += `${k}\u0000${typeof v}:${String(v)}\u0001`;
      }
      set = { pb: w.finish(), json, key };
      byA.set(a, set);
    }
    return set;
  }

  /**
   * Encodes a batch for `protocol`.
   *
   * @param now for forgetting idle series, ms (default `performance.now()`)
   */
  encode(
    batch: Batch,
    ctx: ElementContext,
    protocol: OtlpProtocol,
    now: number = performance.now(),
  ): EncodedBatch {
    const groups = new Map<number, DataPoint[]>();
    let skipped = 0;
    let points = 0;
    for (let i = 0; i < batch.length; i++) {
      const id = batch.metricAt(i);
      const info = this.#info(id, ctx);
      const attrs = this.#attrs(batch.resourceAt(i), batch.consumerAt(i), batch.attributesAt(i));
      const time = batch.timestampAt(i);
      let v = batch.valueAt(i);
      const kind = info.metric.kind;
      let start: bigint | undefined;
      if (kind !== "gauge") {
        const key = `${id}\u0002${attrs.key}`;
        let s = this.#series.get(key);
        if (kind === "delta") {
          if (typeof v === "number" && !Number.isFinite(v)) {
            skipped++;
            continue;
          }
          if (s === undefined) {
            s = {
              // The sum began before this first delta's interval: at the start, or just before the point.
              start: this.#origin < time ? this.#origin : time - 1n,
              sum: typeof v === "bigint" || info.metric.valueType === "u64" ? 0n : 0,
              last: 0,
              lastTime: time,
              seen: now,
            };
            this.#series.set(key, s);
          }
          if (typeof s.sum === "bigint") s.sum += BigInt(v);
          else s.sum += Number(v);
          v = s.sum;
        } else {
          if (s === undefined) {
            s = { start: time, sum: 0, last: v, lastTime: time, seen: now };
            this.#series.set(key, s);
          } else if (v < s.last) {
            s.start = s.lastTime;
          }
          s.last = v;
        }
        s.lastTime = time;
        s.seen = now;
        start = s.start;
      }
      let g = groups.get(id);
      if (g === undefined) groups.set(id, g = []);
      g.push({ attrs, start, time, value: v });
      points++;
    }
    if (now - this.#lastPrune > 60_000) {
      this.#lastPrune = now;
      for (const [k, s] of this.#series) {
        if (now - s.seen <= SERIES_TTL_MS) continue;
        this.#series.delete(k);
        // Should it come back, its sum starts again from 0: a new start, after its last point.
        if (s.lastTime >= this.#origin) this.#origin = s.lastTime + 1n;
      }
    }
    const payload = protocol === "http/json"
      ? new TextEncoder().encode(this.#json(groups))
      : this.#protobuf(groups);
    return { payload, points, skipped };
  }

  #protobuf(groups: Map<number, DataPoint[]>): Uint8Array {
    const L = WireType.LengthDelimited;
    const w = new BinaryWriter();
    w.tag(1, L).fork(); // ExportMetricsServiceRequest.resource_metrics
    w.tag(1, L).fork().raw(this.#resourcePb).join(); // ResourceMetrics.resource
    w.tag(2, L).fork(); // ResourceMetrics.scope_metrics
    w.tag(1, L).fork().tag(1, L).string("alumet").tag(2, L).string(VERSION).join(); // ScopeMetrics.scope
    for (const [id, pts] of groups) {
      const info = this.#metrics[id]!;
      w.tag(2, L).fork(); // ScopeMetrics.metrics
      w.tag(1, L).string(info.name);
      if (info.description !== "") w.tag(2, L).string(info.description);
      if (info.unit !== "") w.tag(3, L).string(info.unit);
      const sum = info.metric.kind !== "gauge";
      w.tag(sum ? 7 : 5, L).fork(); // Metric.sum / Metric.gauge
      for (const p of pts) {
        w.tag(1, L).fork(); // data_points
        w.raw(p.attrs.pb);
        if (p.start !== undefined) w.tag(2, WireType.Bit64).fixed64(p.start);
        w.tag(3, WireType.Bit64).fixed64(p.time);
        const v = p.value;
        if (typeof v === "bigint" || info.metric.valueType === "u64") {
          const b = BigInt(v);
          if (b <= I64_MAX) w.tag(6, WireType.Bit64).sfixed64(b);
          else w.tag(4, WireType.Bit64).double(Number(b));
        } else w.tag(4, WireType.Bit64).double(v);
        w.join();
      }
      if (sum) w.tag(2, WireType.Varint).int32(CUMULATIVE).tag(3, WireType.Varint).bool(true);
      w.join().join();
    }
    w.join().join();
    return w.finish();
  }

  #json(groups: Map<number, DataPoint[]>): string {
    const metrics: unknown[] = [];
    for (const [id, pts] of groups) {
      const info = this.#metrics[id]!;
      const dataPoints = pts.map((p) => {
        const o: Record<string, unknown> = { attributes: p.attrs.json };
        if (p.start !== undefined) o.startTimeUnixNano = String(p.start);
        o.timeUnixNano = String(p.time);
        const v = p.value;
        if (typeof v === "bigint" || info.metric.valueType === "u64") {
          const b = BigInt(v);
          if (b <= I64_MAX) o.asInt = String(b);
          else o.asDouble = Number(b);
        } else o.asDouble = jsonDouble(v);
        return o;
      });
      const m: Record<string, unknown> = { name: info.name };
      if (info.description !== "") m.description = info.description;
      if (info.unit !== "") m.unit = info.unit;
      if (info.metric.kind === "gauge") m.gauge = { dataPoints };
      else m.sum = { dataPoints, aggregationTemporality: CUMULATIVE, isMonotonic: true };
      metrics.push(m);
    }
    return JSON.stringify({
      resource: this.#resourceJson,
      scopeMetrics: [{ scope: { name: "alumet", version: VERSION }, metrics }],
    });
  }
}

// ---- the response ----

/** What an `ExportMetricsServiceResponse` says of the points it did not take. */
export interface PartialSuccess {
  readonly rejected: number;
  readonly message: string;
}

/**
 * Reads `partial_success` from an OTLP/HTTP answer (protobuf or JSON); `undefined` when none (all accepted) or
 * unreadable.
 */
export function parsePartialSuccess(body: Uint8Array, contentType: string): PartialSuccess | undefined {
  if (body.length === 0) return undefined;
  try {
    if (contentType.includes("json")) {
      const ps = JSON.parse(new TextDecoder().decode(body))?.partialSuccess;
      if (ps === undefined || ps === null) return undefined;
      const rejected = Number(ps.rejectedDataPoints ?? 0);
      const message = String(ps.errorMessage ?? "");
      return rejected > 0 || message !== "" ? { rejected, message } : undefined;
    }
    const r = new BinaryReader(body);
    while (r.pos < r.len) {
      const [no, wt] = r.tag();
      if (no !== 1 || wt !== WireType.LengthDelimited) {
        r.skip(wt, no);
        continue;
      }
      const inner = new BinaryReader(r.bytes());
      let rejected = 0;
      let message = "";
      while (inner.pos < inner.len) {
        const [n, t] = inner.tag();
        if (n === 1 && t === WireType.Varint) rejected = Number(inner.int64());
        else if (n === 2 && t === WireType.LengthDelimited) message = inner.string();
        else inner.skip(t, n);
      }
      return rejected > 0 || message !== "" ? { rejected, message } : undefined;
    }
  } catch {
    // an answer we cannot read is not a failure: the status said success
  }
  return undefined;
}

/** The `message` of a `google.rpc.Status` (protobuf error answers), or the text of a JSON/plain one. */
function errorDetail(body: Uint8Array, contentType: string): string {
  if (body.length === 0) return "";
  if (contentType.includes("protobuf")) {
    try {
      const r = new BinaryReader(body);
      while (r.pos < r.len) {
        const [n, t] = r.tag();
        if (n === 2 && t === WireType.LengthDelimited) return r.string();
        r.skip(t, n);
      }
    } catch {
      // fall through
    }
    return "";
  }
  const text = new TextDecoder().decode(body).trim();
  try {
    const m = JSON.parse(text)?.message;
    if (typeof m === "string") return m;
  } catch {
    // plain text
  }
  return text.slice(0, 300);
}

// ---- the output ----

/**
 * Where and how an {@linkcode OpentelemetryOutput} sends; the journal's options (`journalPath`, `maxBytes`,
 * `fsync`, back-off, final attempt) are {@linkcode Delivery}'s.
 */
export interface OpentelemetryOutputOptions extends JournalOptions {
  readonly endpoint: ResolvedEndpoint;
  readonly encoder: OtlpEncoderOptions;
  /** Per request, ms. */
  readonly timeoutMs: number;
  readonly log?: Logger;
}

const OPEN_BRACE = 0x7b;

/**
 * The opentelemetry output: `write` encodes a batch and appends it to the journal (synchronously, synced to
 * disk by default); the journal's pump POSTs it (see {@linkcode Delivery}), several batches per request when
 * it has fallen behind (protobuf requests concatenate into one; JSON ones are joined into one
 * `resourceMetrics` array). `close` makes one bounded final attempt and leaves what is unsent in the journal.
 */
export class OpentelemetryOutput implements Output {
  readonly url: URL;
  readonly protocol: OtlpProtocol;
  readonly #encoder: OtlpEncoder;
  readonly #delivery: Delivery;
  readonly #headers: Record<string, string>;
  readonly #timeoutMs: number;
  readonly #log: Logger;
  #skipped = 0;
  #rejected = 0;
  #lastSkipLog = -Infinity;
  #lastPartialLog = -Infinity;

  constructor(options: OpentelemetryOutputOptions) {
    this.url = options.endpoint.url;
    this.protocol = options.endpoint.protocol;
    this.#encoder = new OtlpEncoder(options.encoder);
    this.#timeoutMs = options.timeoutMs;
    this.#log = options.log ?? new Logger("opentelemetry");
    this.#headers = { ...options.endpoint.headers };
    this.#delivery = new Delivery({
      ...options,
      log: this.#log,
      target: this.url.origin + this.url.pathname,
      send: (payloads, signal) => this.#send(payloads, signal),
    });
  }

  /** The journal and pump (for tests and status). */
  get delivery(): Delivery {
    return this.#delivery;
  }

  /** Points lost: dropped from a full journal, rejected (400, or a partial success), or NaN/±∞ deltas. */
  lostPoints(): number {
    return this.#delivery.droppedPoints + this.#skipped + this.#rejected;
  }

  /** Opens the journal (and replays what an earlier run left there). The receiver is not contacted. */
  open(): void {
    this.#delivery.open();
  }

  write(batch: Batch, ctx: ElementContext): void {
    const { payload, points, skipped } = this.#encoder.encode(batch, ctx, this.protocol);
    if (skipped > 0) {
      this.#skipped += skipped;
      const t = performance.now();
      if (t - this.#lastSkipLog > 10_000) {
        this.#lastSkipLog = t;
        this.#log.warn(`Left out ${skipped} points: a NaN or infinite delta cannot join a cumulative sum`);
      }
    }
    if (points > 0) this.#delivery.append(payload, points);
  }

  async #send(payloads: readonly Uint8Array[], signal: AbortSignal): Promise<void> {
    // The journal may hold both encodings (the protocol changed between two runs): each run of one goes as is.
    let i = 0;
    while (i < payloads.length) {
      const json = payloads[i]![0] === OPEN_BRACE;
      let j = i + 1;
      while (j < payloads.length && (payloads[j]![0] === OPEN_BRACE) === json) j++;
      await this.#post(payloads.slice(i, j), json, signal);
      i = j;
    }
  }

  async #post(payloads: readonly Uint8Array[], json: boolean, signal: AbortSignal): Promise<void> {
    const parts: Uint8Array[] = json ? [new TextEncoder().encode('{"resourceMetrics":[')] : [];
    payloads.forEach((p, k) => {
      if (json && k > 0) parts.push(new Uint8Array([0x2c]));
      parts.push(p);
    });
    if (json) parts.push(new TextEncoder().encode("]}"));
    let size = 0;
    for (const p of parts) size += p.length;
    const body = new Uint8Array(size);
    let off = 0;
    for (const p of parts) {
      body.set(p, off);
      off += p.length;
    }
    const contentType = json ? "application/json" : "application/x-protobuf";
    const target = `${this.url.origin}${this.url.pathname}`;
    let res: Response;
    try {
      res = await fetch(this.url, {
        method: "POST",
        headers: { ...this.#headers, "content-type": contentType },
        body,
        signal: AbortSignal.any([signal, AbortSignal.timeout(this.#timeoutMs)]),
      });
    } catch (e) {
      throw new AlumetError(`POST ${target} failed: ${messageOf(e)}`, { cause: e });
    }
    const answer = new Uint8Array(await res.arrayBuffer().catch(() => new ArrayBuffer(0)));
    const answerType = res.headers.get("content-type") ?? "";
    if (res.ok) {
      const ps = parsePartialSuccess(answer, answerType);
      if (ps !== undefined && ps.rejected > 0) {
        this.#rejected += ps.rejected;
        const t = performance.now();
        if (t - this.#lastPartialLog > 10_000) {
          this.#lastPartialLog = t;
          this.#log.warn(
            `${target} rejected ${ps.rejected} data points${ps.message ? `: ${ps.message}` : ""}; ` +
              `${this.#rejected} rejected so far`,
          );
        }
      } else if (ps !== undefined) this.#log.debug(`${target} answered: ${ps.message}`);
      return;
    }
    const detail = errorDetail(answer, answerType);
    const message = `The OTLP receiver answered ${res.status} ${res.statusText}${
      detail ? `: ${detail}` : ""
    }`;
    // 400 (malformed), 413 (too large), 415 (an encoding it does not take) fail the same way every time:
    // retrying would block the journal for good. Auth, 404, 429 and 5xx can be fixed on the receiver's side.
    if (res.status === 400 || res.status === 413 || res.status === 415 || res.status === 422) {
      throw new RejectedError(message);
    }
    throw new AlumetError(message);
  }

  /** One bounded final attempt; what is unsent stays in the journal. */
  async close(): Promise<void> {
    await this.#delivery.close();
  }

  describe(): string {
    return `${redactUrl(this.url.href)} (OTLP ${this.protocol})`;
  }
}

/**
 * The `opentelemetry` plugin: adds one output, `out`.
 *
 * @example
 * ```ts
 * import { opentelemetryPlugin } from "./mod.ts";
 * import assert from "node:assert/strict";
 * assert.equal(opentelemetryPlugin.defaultConfig().suffix, "_alumet");
 * assert.equal(opentelemetryPlugin.configSchema.parse({}).use_unit_display_name, false);
 * ```
 */
export const opentelemetryPlugin = definePlugin({
  name: "opentelemetry",
  version: VERSION,
  description:
    "Sends the measurements as OTLP metrics over HTTP (protobuf or JSON), journaled (at-least-once)",
  config: opentelemetryConfigSchema,
  init: function initOpentelemetry(config: OpentelemetryConfig): Plugin {
    const endpoint = resolveEndpoint(config);
    let output: OpentelemetryOutput | undefined;
    return {
      start: function startOpentelemetry(ctx: StartContext): void {
        for (const w of endpoint.warnings) ctx.log.warn(w);
        if (config.push_interval_seconds !== undefined) {
          ctx.log.info(
            "push_interval_seconds (Alumet 0.8) is ignored: each batch is sent as soon as it is journaled",
          );
        }
        output = new OpentelemetryOutput({
          endpoint,
          encoder: {
            prefix: config.prefix,
            suffix: config.suffix,
            useUnitDisplayName: config.use_unit_display_name,
            addAttributesToLabels: config.add_attributes_to_labels,
          },
          timeoutMs: config.timeout,
          ...deliveryOptions(config),
          log: ctx.log,
        });
        output.open();
        ctx.addOutput("out", output);
      },
    };
  },
});

export default opentelemetryPlugin;

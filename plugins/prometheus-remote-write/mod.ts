/**
 * The `prometheus-remote-write` plugin: an output that pushes every measurement point to a Prometheus
 * remote-write receiver (Prometheus with `--web.enable-remote-write-receiver`, Mimir, Thanos Receive,
 * VictoriaMetrics, Grafana Cloud…): protobuf `WriteRequest`s compressed with Snappy, batched, with custom
 * headers and basic or bearer authentication, through the journal-backed {@linkcode Delivery} (at-least-once).
 *
 * Names and labels are those of the `prometheus-exporter` plugin (its naming helpers are imported): `delta`
 * metrics such as energy become cumulative `…_total` counters in base units, gauges stay gauges, and the
 * series carry `__name__`, `resource_kind`, `resource_id`, `resource_consumer_kind`, `resource_consumer_id`
 * and the attributes.
 *
 * Receivers refuse a whole request (Prometheus: 400 `out of order sample`) when one sample is older than the
 * newest of its series, so the output sends each series in time order and never older than what it already
 * sent; a request refused all the same is split until only the offending series are dropped (and counted).
 *
 * The counters' running sums survive an agent restart on the same journal: the last value the receiver
 * acknowledged of each counter series is kept in `remote-write-counters.json` in the journal's directory, and
 * the next agent continues from it (or from newer samples still in the journal), so Prometheus sees no reset.
 *
 * @module
 */
import { duration, z } from "../../src/plugin/schema.ts";
import { definePlugin } from "../../src/plugin/define.ts";
import type { ElementContext, Output, Plugin, StartContext } from "../../src/plugin/plugin.ts";
import type { Attributes, Batch } from "../../src/model/batch.ts";
import type { Metric, MetricKind } from "../../src/model/metrics.ts";
import type { Consumer, Resource } from "../../src/model/resources.ts";
import { AlumetError, messageOf } from "../../src/errors.ts";
import {
  Delivery,
  deliveryOptions,
  type JournalOptions,
  RejectedError,
} from "../../src/pipeline/delivery.ts";
import { Logger } from "../../src/log.ts";
import { exportedName, labelName, promUnit, sanitizeName } from "../prometheus-exporter/mod.ts";
import { BinaryReader, BinaryWriter, SnappyJS, WireType } from "./deps.ts";
import { baseUrlProblem, HEADER_NAME, HEADER_VALUE } from "../../src/plugin/url.ts";

const ENDPOINT_URL = {
  whose: "the receiver's remote-write",
  example: "http://localhost:9090/api/v1/write",
  credentials: "use basic_auth or bearer_token",
  query: true,
};

/** Headers the output sets itself: a `headers` entry cannot replace them. */
const OWN_HEADERS: ReadonlySet<string> = new Set([
  "content-type",
  "content-encoding",
  "x-prometheus-remote-write-version",
]);

/** Compresses bytes in Snappy's block format (what `Content-Encoding: snappy` means in remote write). */
export function snappyCompress(data: Uint8Array): Uint8Array<ArrayBuffer> {
  return SnappyJS.compress(data);
}

/** Uncompresses Snappy's block format (for receivers in tests). */
export function snappyUncompress(data: Uint8Array): Uint8Array<ArrayBuffer> {
  return SnappyJS.uncompress(data);
}

/** The schema of `[plugins.prometheus-remote-write]`, with every default, in the order `config regen` writes. */
export const prometheusRemoteWriteConfigSchema = z.strictObject({
  endpoint: z.string().transform((text, ctx) => {
    const problem = baseUrlProblem(text, ENDPOINT_URL);
    if (problem === undefined) return text;
    ctx.issues.push({ code: "custom", input: text, message: problem });
    return z.NEVER;
  }).prefault("http://localhost:9090/api/v1/write"),
  headers: z.record(
    z.string()
      .regex(HEADER_NAME, { error: "an HTTP header name (letters, digits and !#$%&'*+-.^_`|~; no space)" })
      .refine((k) => !OWN_HEADERS.has(k.toLowerCase()), {
        error: "a header the output does not set itself (Content-Type, Content-Encoding and " +
          "X-Prometheus-Remote-Write-Version are remote write's)",
      }),
    z.string().regex(HEADER_VALUE, { error: "a header value on one line" }),
  ).default({}),
  labels: z.record(
    z.string().refine((k) => sanitizeName(k) === k && !k.startsWith("__"), {
      error: "a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)",
    }),
    z.string(),
  ).default({}),
  basic_auth: z.strictObject({
    username: z.string().default(""),
    password: z.string().default(""),
  }).prefault({}),
  bearer_token: z.string().default(""),
  prefix: z.string().default(""),
  suffix: z.string().default("_alumet"),
  add_attributes_to_labels: z.boolean().default(true),
  batch_points: z.int().positive().default(5000),
  series_ttl: duration().prefault("5m"),
  timeout: duration().prefault("10s"),
  journal_path: z.string().min(1).default("alumet-remote-write-journal"),
  journal_max_mib: z.int().positive().default(64),
  journal_fsync: z.enum(["batch", "none"]).default("batch"),
  max_backoff: duration().prefault("5s"),
  final_attempt: duration().prefault("5s"),
}).refine((c) => c.bearer_token === "" || (c.basic_auth.username === "" && c.basic_auth.password === ""), {
  path: ["bearer_token"],
  error: "no bearer_token when basic_auth is set: use one or the other",
});

/** The validated `[plugins.prometheus-remote-write]` table. */
export type PrometheusRemoteWriteConfig = z.infer<typeof prometheusRemoteWriteConfigSchema>;

/** One series as the encoder keeps it between batches. */
interface SeriesState {
  /** The labels, sorted by name, `__name__` included. */
  readonly labels: readonly (readonly [string, string])[];
  /** The `labels` field of a `TimeSeries`, encoded once. */
  readonly labelBytes: Uint8Array;
  readonly kind: MetricKind;
  /** Timestamp (ms) of the newest sample encoded: nothing older or equal goes out after it. */
  lastMs: number;
  /** A `delta` metric's running sum, in the base unit. */
  total: number;
  /** When it last got a point (ms, monotonic). */
  updated: number;
  readonly local: boolean;
}

interface Family {
  readonly sample: string;
  readonly kind: MetricKind;
  readonly scale: number;
  readonly offset: number;
  readonly series: Map<string, SeriesState>;
}

/** How a {@linkcode RemoteWriteEncoder} names series. */
export interface RemoteWriteEncoderOptions {
  /** Put before every metric name. Default `""`. */
  readonly prefix?: string;
  /** Put after every metric name, before the unit. Default `"_alumet"` (as the exporter). */
  readonly suffix?: string;
  /** Attributes become labels. Default `true`. */
  readonly addAttributesToLabels?: boolean;
  /** Labels added to every series (`instance`, `job`…); an attribute of the same name gives way. */
  readonly labels?: Readonly<Record<string, string>>;
  /** How long (ms) a series of a consumer other than the local machine is kept without a point. Default 5 min. */
  readonly seriesTtlMs?: number;
  /** The clock, ms (monotonic). Default `performance.now`. */
  readonly now?: () => number;
  /** Where warnings go (a metric whose name is taken). */
  readonly log?: Logger;
}

/** What {@linkcode RemoteWriteEncoder.encode} made of a batch. */
export interface EncodedBatch {
  /** A protobuf `WriteRequest` (uncompressed), empty when no sample goes out. */
  readonly bytes: Uint8Array;
  /** Samples in it. */
  readonly samples: number;
  /** Series in it. */
  readonly series: number;
  /**
   * Points lost: a gauge or counter point older than (or in the same millisecond as) what its series already
   * sent, and a NaN or infinite delta (which would poison the running sum).
   */
  readonly dropped: number;
  /**
   * `delta` points without a sample of their own, not lost: one older than its series' last sample, or in the
   * same millisecond as another, is added to the running sum, which the series' next sample carries.
   */
  readonly folded: number;
}

const textEncoder = new TextEncoder();
const NS_PER_MS = 1_000_000n;

/**
 * Turns batches into remote-write `WriteRequest`s, keeping per series the running sum of a `delta` metric and
 * the newest timestamp sent. Within a batch the points of a series are sorted by time; timestamps are cut to
 * milliseconds (remote write's unit); a point not newer than what its series already sent is not sent: a gauge's
 * is dropped and counted, a delta's is folded into the sum.
 *
 * @example
 * ```ts
 * import { RemoteWriteEncoder, decodeWriteRequest } from "./mod.ts";
 * import { Batch } from "../../src/model/batch.ts";
 * import { MetricRegistry } from "../../src/model/metrics.ts";
 * import { unit } from "../../src/model/units.ts";
 * import assert from "node:assert/strict";
 * const registry = new MetricRegistry();
 * const e = registry.register("t", { name: "energy", unit: unit("J", "milli"), valueType: "f64", kind: "delta" });
 * const batch = new Batch();
 * batch.push(e, 500, { timestamp: 2_000_000n });
 * batch.push(e, 1500, { timestamp: 1_000_000n });
 * const out = new RemoteWriteEncoder({ suffix: "" }).encode(batch, { metric: (id) => registry.get(id) });
 * const [series] = decodeWriteRequest(out.bytes);
 * assert.equal(series!.labels.__name__, "energy_joules_total");
 * assert.deepEqual(series!.samples, [[1.5, 1], [2, 2]]);
 * ```
 */
export class RemoteWriteEncoder {
  readonly #prefix: string;
  readonly #suffix: string;
  readonly #attributes: boolean;
  readonly #extra: readonly (readonly [string, string])[];
  readonly #ttl: number;
  readonly #now: () => number;
  readonly #log: Logger | undefined;
  readonly #byMetric: (Family | null | undefined)[] = [];
  readonly #families = new Map<string, Family>();
  readonly #resourceLabels = new WeakMap<object, [string, string][]>();
  readonly #consumerLabels = new WeakMap<object, [string, string][]>();
  readonly #attributeLabels = new WeakMap<Attributes, [string, string][]>();
  #lastPrune = 0;
  #restored: ReadonlyMap<string, CounterState> = new Map();

  constructor(options: RemoteWriteEncoderOptions = {}) {
    this.#prefix = options.prefix ?? "";
    this.#suffix = options.suffix ?? "_alumet";
    this.#attributes = options.addAttributesToLabels ?? true;
    this.#extra = Object.entries(options.labels ?? {}).map(([k, v]) => [labelName(k), v] as const);
    this.#ttl = options.seriesTtlMs ?? 300_000;
    this.#now = options.now ?? (() => performance.now());
    this.#log = options.log;
  }

  /**
   * Counter states to continue from (an earlier run's, see {@linkcode RemoteWriteOutput.open}), keyed by
   * {@linkcode seriesKey}: a series created after this starts its running sum (a `delta` metric) from the
   * state's total and sends nothing older than its timestamp.
   */
  restore(states: ReadonlyMap<string, CounterState>): void {
    this.#restored = states;
  }

  /** The number of series held. */
  get seriesCount(): number {
    let n = 0;
    for (const f of this.#families.values()) n += f.series.size;
    return n;
  }

  /** Encodes the points of `batch` (see the class doc). */
  encode(batch: Batch, ctx: ElementContext): EncodedBatch {
    const now = this.#now();
    // Points by series, in batch order: [ms, value in the base unit].
    const groups = new Map<SeriesState, [number, number][]>();
    for (let i = 0; i < batch.length; i++) {
      const id = batch.metricAt(i);
      let family = this.#byMetric[id];
      if (family === undefined) family = this.#byMetric[id] = this.#family(ctx.metric(id));
      if (family === null) continue;
      const s = this.#series(family, batch.resourceAt(i), batch.consumerAt(i), batch.attributesAt(i), now);
      const ts = batch.timestampAt(i);
      const ms = Number(ts >= 0n ? ts / NS_PER_MS : -((-ts + NS_PER_MS - 1n) / NS_PER_MS));
      const raw = Number(batch.valueAt(i)) * family.scale + (family.kind === "gauge" ? family.offset : 0);
      let g = groups.get(s);
      if (g === undefined) groups.set(s, g = []);
      g.push([ms, raw]);
    }
    const w = new BinaryWriter();
    let samples = 0;
    let series = 0;
    let dropped = 0;
    let folded = 0;
    for (const [s, points] of groups) {
      if (points.length > 1) points.sort((a, b) => a[0] - b[0]); // stable: same-ms points keep batch order
      const out: [number, number][] = [];
      const delta = s.kind === "delta";
      for (const [ms, v] of points) {
        if (delta) {
          if (!Number.isFinite(v)) {
            dropped++;
            continue;
          }
          s.total += v;
        }
        const value = delta ? s.total : v;
        if (ms <= s.lastMs) {
          const last = out.at(-1);
          if (last !== undefined && last[0] === ms) last[1] = value; // same ms: the later point wins
          if (delta) folded++;
          else dropped++;
          continue;
        }
        out.push([ms, value]);
        s.lastMs = ms;
      }
      if (out.length === 0) continue;
      w.tag(1, WireType.LengthDelimited).fork().raw(s.labelBytes);
      for (const [ms, value] of out) {
        w.tag(2, WireType.LengthDelimited).fork()
          .tag(1, WireType.Bit64).double(value)
          .tag(2, WireType.Varint).int64(ms)
          .join();
      }
      w.join();
      samples += out.length;
      series++;
    }
    this.prune(now);
    return { bytes: w.finish(), samples, series, dropped, folded };
  }

  /** Forgets the series of consumers other than the local machine that got no point for the time to live. */
  prune(now: number = this.#now(), force = false): void {
    if (!force && now - this.#lastPrune < 60_000) return;
    this.#lastPrune = now;
    for (const f of this.#families.values()) {
      for (const [key, s] of f.series) if (!s.local && now - s.updated >= this.#ttl) f.series.delete(key);
    }
  }

  #family(metric: Metric): Family | null {
    const unit = promUnit(metric.unit);
    const name = exportedName(metric.name, unit.name, metric.kind, this.#prefix, this.#suffix);
    const taken = this.#families.get(name.sample);
    if (taken !== undefined) {
      this.#log?.warn(
        `Metric "${metric.name}" (plugin ${metric.plugin}) is not sent: its Prometheus name "${name.sample}" ` +
          `is taken by another metric; set a prefix or suffix, or rename one of them`,
      );
      return null;
    }
    const family: Family = {
      sample: name.sample,
      kind: metric.kind,
      scale: unit.scale,
      offset: unit.offset,
      series: new Map(),
    };
    this.#families.set(name.sample, family);
    return family;
  }

  #series(family: Family, r: Resource, c: Consumer, a: Attributes, now: number): SeriesState {
    let rl = this.#resourceLabels.get(r);
    if (rl === undefined) {
      this.#resourceLabels.set(r, rl = [["resource_kind", r.kind], ["resource_id", r.id]]);
    }
    let cl = this.#consumerLabels.get(c);
    if (cl === undefined) {
      this.#consumerLabels.set(c, cl = [["resource_consumer_kind", c.kind], ["resource_consumer_id", c.id]]);
    }
    let al: [string, string][] = [];
    if (this.#attributes) {
      const cached = this.#attributeLabels.get(a);
      if (cached !== undefined) al = cached;
      else {
        const seen = new Set<string>();
        for (const key of Object.keys(a).sort()) {
          const name = labelName(key);
          if (seen.has(name)) continue;
          seen.add(name);
          al.push([name, String(a[key])]);
        }
        this.#attributeLabels.set(a, al);
      }
    }
    const key = `${r.kind}\u0000${r.id}\u0000${c.kind}\u0000${c.id}` +
      al.map(([k, v]) => `\u0000${k}\u0000${v}`).join("");
    let s = family.series.get(key);
    if (s === undefined) {
      const map = new Map<string, string>();
      for (const [k, v] of [...rl, ...cl, ...al]) if (v !== "") map.set(k, v);
      for (const [k, v] of this.#extra) if (v !== "") map.set(k, v);
      map.set("__name__", family.sample);
      const labels = [...map].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
      const lw = new BinaryWriter();
      for (const [k, v] of labels) {
        lw.tag(1, WireType.LengthDelimited).fork()
          .tag(1, WireType.LengthDelimited).string(k)
          .tag(2, WireType.LengthDelimited).string(v)
          .join();
      }
      const restored = family.kind === "gauge" ? undefined : this.#restored.get(seriesKey(labels));
      s = {
        labels,
        labelBytes: lw.finish(),
        kind: family.kind,
        lastMs: restored?.lastMs ?? -Infinity,
        total: family.kind === "delta" ? restored?.total ?? 0 : 0,
        updated: now,
        local: c.kind === "local_machine",
      };
      family.series.set(key, s);
    }
    s.updated = now;
    return s;
  }
}

/** Where a counter series stands: its last value sent (a `delta` metric's running sum) and its time, ms. */
export interface CounterState {
  readonly total: number;
  readonly lastMs: number;
}

/**
 * The identity of a series across runs: its labels (`__name__` included), sorted by name.
 *
 * @example
 * ```ts
 * import { seriesKey } from "./mod.ts";
 * import assert from "node:assert/strict";
 * assert.equal(seriesKey([["b", "2"], ["a", "x y"]]), seriesKey([["a", "x y"], ["b", "2"]]));
 * ```
 */
export function seriesKey(labels: readonly (readonly [string, string])[]): string {
  return JSON.stringify(labels.toSorted((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0)));
}

/** One `TimeSeries` of a `WriteRequest`, decoded (for tests, and for log lines about a refused series). */
export interface DecodedSeries {
  readonly labels: Record<string, string>;
  /** `[value, timestamp ms]`, as sent. */
  readonly samples: [number, number][];
}

/** Decodes a `TimeSeries` message's body. */
function decodeSeries(body: Uint8Array): DecodedSeries {
  const r = new BinaryReader(body);
  const labels: Record<string, string> = {};
  const samples: [number, number][] = [];
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no === 1 && wt === WireType.LengthDelimited) {
      const lr = new BinaryReader(r.bytes());
      let name = "";
      let value = "";
      while (lr.pos < lr.len) {
        const [n, t] = lr.tag();
        if (n === 1 && t === WireType.LengthDelimited) name = lr.string();
        else if (n === 2 && t === WireType.LengthDelimited) value = lr.string();
        else lr.skip(t, n);
      }
      labels[name] = value;
    } else if (no === 2 && wt === WireType.LengthDelimited) {
      const sr = new BinaryReader(r.bytes());
      let value = 0;
      let ts = 0;
      while (sr.pos < sr.len) {
        const [n, t] = sr.tag();
        if (n === 1 && t === WireType.Bit64) value = sr.double();
        else if (n === 2 && t === WireType.Varint) ts = Number(sr.int64());
        else sr.skip(t, n);
      }
      samples.push([value, ts]);
    } else r.skip(wt, no);
  }
  return { labels, samples };
}

/**
 * Decodes an uncompressed `WriteRequest` into its series, in order.
 *
 * @example
 * ```ts
 * import { decodeWriteRequest } from "./mod.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(decodeWriteRequest(new Uint8Array()), []);
 * ```
 */
export function decodeWriteRequest(bytes: Uint8Array): DecodedSeries[] {
  return seriesSpans(bytes).map((s) => decodeSeries(s.body));
}

/** A `TimeSeries` inside a journal record: the bytes of the whole field (tag and length included). */
interface Span {
  readonly field: Uint8Array;
  readonly body: Uint8Array;
  readonly samples: number;
}

/** The `TimeSeries` fields of a `WriteRequest`, with their sample counts. */
function seriesSpans(bytes: Uint8Array): Span[] {
  const r = new BinaryReader(bytes);
  const out: Span[] = [];
  while (r.pos < r.len) {
    const start = r.pos;
    const [no, wt] = r.tag();
    if (no !== 1 || wt !== WireType.LengthDelimited) {
      r.skip(wt, no);
      continue;
    }
    const body = r.bytes();
    let samples = 0;
    const sr = new BinaryReader(body);
    while (sr.pos < sr.len) {
      const [n, t] = sr.tag();
      sr.skip(t, n);
      if (n === 2) samples++;
    }
    out.push({ field: bytes.subarray(start, r.pos), body, samples });
  }
  return out;
}

/** `name{k="v",…}` of a series, for log lines. */
function seriesText(body: Uint8Array): string {
  const { labels } = decodeSeries(body);
  const rest = Object.entries(labels).filter(([k]) => k !== "__name__").map(([k, v]) => `${k}="${v}"`);
  return `${labels.__name__ ?? ""}{${rest.join(",")}}`;
}

/**
 * Where and how a {@linkcode RemoteWriteOutput} sends; the journal's options (`journalPath`, `maxBytes`,
 * `fsync`, back-off, final attempt) are {@linkcode Delivery}'s.
 */
export interface RemoteWriteOutputOptions extends JournalOptions {
  /** The receiver's write URL (`http://host:9090/api/v1/write`, `http://host:8428/api/v1/write`…). */
  readonly endpoint: string;
  /** Headers added to every request (`X-Scope-OrgID` for Mimir…). */
  readonly headers?: Readonly<Record<string, string>>;
  readonly basicAuth?: { readonly username: string; readonly password: string };
  readonly bearerToken?: string;
  /** Most samples in one request. Default 5000. */
  readonly batchPoints?: number;
  /** Per request, ms. Default 10 s. */
  readonly timeoutMs?: number;
  readonly encoder?: RemoteWriteEncoderOptions;
  readonly log?: Logger;
}

/** The file in the journal's directory where the counters' last acknowledged values are kept. */
const COUNTERS_FILE = "remote-write-counters.json";
/** How long a counter series not sent any more is remembered, ms. */
const COUNTERS_KEEP_MS = 24 * 3_600_000;

/** A counter series' key and where it stands after the samples of `span` (undefined for a gauge). */
function counterOf(span: Span): { key: string; total: number; lastMs: number } | undefined {
  const { labels, samples } = decodeSeries(span.body);
  if (!(labels.__name__ ?? "").endsWith("_total") || samples.length === 0) return undefined;
  let last = samples[0]!;
  for (const s of samples) if (s[1] >= last[1]) last = s;
  return { key: seriesKey(Object.entries(labels)), total: last[0], lastMs: last[1] };
}

/** How often a warning about dropped or refused samples may repeat, ms. */
const WARN_EVERY_MS = 10_000;

/**
 * The remote-write output: `write` encodes a batch ({@linkcode RemoteWriteEncoder}) and appends it to the
 * journal; the journal's pump sends it, up to `batchPoints` samples per request. A request the receiver
 * refuses (400, 413, 422) is split in halves, recursively, until only the series it refuses are left: those
 * are dropped and counted, the others delivered. {@linkcode RemoteWriteOutput.lostPoints} counts every point
 * lost (journal full, refused series, stale gauge points, NaN deltas).
 */
export class RemoteWriteOutput implements Output {
  readonly url: URL;
  readonly encoder: RemoteWriteEncoder;
  readonly #delivery: Delivery;
  readonly #headers: Headers;
  readonly #batchPoints: number;
  readonly #timeoutMs: number;
  readonly #log: Logger;
  #dropped = 0;
  #rejected = 0;
  #folded = 0;
  #lastDropWarn = -Infinity;
  #lastRejectWarn = -Infinity;
  readonly #countersPath: string;
  readonly #fsync: boolean;
  /** Counter series as the receiver has them (or refused them): key → [total, ms, saved at (wall ms)]. */
  readonly #counters = new Map<string, [number, number, number]>();
  #lastCountersWarn = -Infinity;

  constructor(options: RemoteWriteOutputOptions) {
    const problem = baseUrlProblem(options.endpoint, ENDPOINT_URL);
    if (problem !== undefined) {
      throw new AlumetError(`plugins.prometheus-remote-write.endpoint: expected ${problem}`);
    }
    this.url = new URL(options.endpoint);
    this.#log = options.log ?? new Logger("prometheus-remote-write");
    this.encoder = new RemoteWriteEncoder({ log: this.#log, ...options.encoder });
    this.#batchPoints = options.batchPoints ?? 5000;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#headers = new Headers(options.headers ?? {});
    this.#headers.set("content-type", "application/x-protobuf");
    this.#headers.set("content-encoding", "snappy");
    this.#headers.set("x-prometheus-remote-write-version", "0.1.0");
    if (!this.#headers.has("user-agent")) this.#headers.set("user-agent", "alumet-deno");
    const basic = options.basicAuth;
    const bearer = options.bearerToken ?? "";
    if (basic !== undefined && (basic.username !== "" || basic.password !== "")) {
      if (bearer !== "") {
        throw new AlumetError(
          "plugins.prometheus-remote-write.bearer_token: expected no bearer_token when basic_auth is set",
        );
      }
      const raw = textEncoder.encode(`${basic.username}:${basic.password}`);
      this.#headers.set("authorization", `Basic ${btoa(String.fromCharCode(...raw))}`);
    } else if (bearer !== "") this.#headers.set("authorization", `Bearer ${bearer}`);
    this.#countersPath = `${options.journalPath}/${COUNTERS_FILE}`;
    this.#fsync = (options.fsync ?? "batch") === "batch";
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

  /**
   * Points lost so far: dropped from a full journal, refused by the receiver (whole series, counted by
   * sample), gauge points not newer than what their series already sent, and NaN or infinite deltas.
   */
  lostPoints(): number {
    return this.#delivery.droppedPoints + this.#rejected + this.#dropped;
  }

  /** Delta points folded into their series' running sum without a sample of their own (not lost). */
  get foldedPoints(): number {
    return this.#folded;
  }

  /**
   * Opens the journal (and replays what an earlier run left there), and continues the counters of an earlier
   * run on this journal: each counter series starts from the last value the receiver acknowledged (the
   * journal's counters file), or, when the journal still holds newer samples of it (sent first), from the
   * newest of those. So a restart is no counter reset. The receiver is not contacted.
   */
  open(): void {
    this.#delivery.open();
    this.#loadCounters();
    const states = new Map<string, CounterState>();
    for (const [key, [total, lastMs]] of this.#counters) states.set(key, { total, lastMs });
    for (const payload of this.#delivery.unsentPayloads()) {
      for (const span of seriesSpans(payload)) {
        const c = counterOf(span);
        if (c !== undefined) states.set(c.key, c);
      }
    }
    this.encoder.restore(states);
  }

  #loadCounters(): void {
    let text: string;
    try {
      text = Deno.readTextFileSync(this.#countersPath);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) {
        this.#log.warn(
          `Cannot read ${this.#countersPath}: ${messageOf(e)}; energy counters start again from 0`,
        );
      }
      return;
    }
    try {
      const data = JSON.parse(text);
      if (data?.format !== 1 || typeof data.series !== "object" || data.series === null) {
        throw new Error("unknown format");
      }
      for (const [key, v] of Object.entries(data.series)) {
        if (Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === "number")) {
          this.#counters.set(key, v as [number, number, number]);
        }
      }
    } catch (e) {
      this.#log.warn(
        `Cannot read ${this.#countersPath} (${
          messageOf(e)
        }): energy counters start again from 0 (a counter ` +
          `reset to the receiver); the file is rewritten at the next delivery`,
      );
    }
  }

  /**
   * After a send of `spans` is done (delivered, or refused for good), records where their counter series stand,
   * before the journal moves its ack past them; synced to disk with `fsync: "batch"`. Entries not updated for
   * a day are forgotten.
   */
  #saveCounters(spans: readonly Span[]): void {
    const now = Date.now();
    let changed = false;
    for (const span of spans) {
      const c = counterOf(span);
      if (c === undefined) continue;
      this.#counters.set(c.key, [c.total, c.lastMs, now]);
      changed = true;
    }
    if (!changed) return;
    for (const [key, v] of this.#counters) if (now - v[2] > COUNTERS_KEEP_MS) this.#counters.delete(key);
    const tmp = `${this.#countersPath}.tmp`;
    try {
      const bytes = textEncoder.encode(
        JSON.stringify({ format: 1, series: Object.fromEntries(this.#counters) }),
      );
      const f = Deno.openSync(tmp, { write: true, create: true, truncate: true });
      try {
        let done = 0;
        while (done < bytes.length) done += f.writeSync(bytes.subarray(done));
        if (this.#fsync) f.syncDataSync();
      } finally {
        f.close();
      }
      Deno.renameSync(tmp, this.#countersPath);
    } catch (e) {
      const t = performance.now();
      if (t - this.#lastCountersWarn >= WARN_EVERY_MS) {
        this.#lastCountersWarn = t;
        this.#log.warn(
          `Cannot write ${this.#countersPath}: ${
            messageOf(e)
          }; after a restart the energy counters would start ` +
            `again from 0`,
        );
      }
    }
  }

  write(batch: Batch, ctx: ElementContext): void {
    const out = this.encoder.encode(batch, ctx);
    this.#folded += out.folded;
    if (out.dropped > 0) {
      this.#dropped += out.dropped;
      const t = performance.now();
      if (t - this.#lastDropWarn >= WARN_EVERY_MS) {
        this.#lastDropWarn = t;
        this.#log.warn(
          `Dropped ${out.dropped} points not newer than what their series already sent (or NaN energy ` +
            `deltas): a receiver would refuse them; ${this.#dropped} dropped so far`,
        );
      }
    }
    if (out.samples > 0) this.#delivery.append(out.bytes, out.samples);
  }

  /**
   * How far a send of the journal's records got before a later request of it failed, keyed by its first record
   * (the journal retries from the same records, maybe with more after them: the requests cut greedily from the
   * start are the same). Those requests are not sent again: a receiver would refuse them as duplicates.
   */
  readonly #progress = new WeakMap<
    Uint8Array,
    { requests: number; refused: { samples: number; why: string[] } }
  >();

  async #send(payloads: readonly Uint8Array[], signal: AbortSignal): Promise<void> {
    const spans = payloads.flatMap((p) => seriesSpans(p));
    const total = spans.reduce((t, s) => t + s.samples, 0);
    const key = payloads[0];
    const progress = (key && this.#progress.get(key)) || { requests: 0, refused: { samples: 0, why: [] } };
    const refused = progress.refused;
    let request = 0;
    const deliver = async (chunk: Span[]) => {
      if (request++ < progress.requests) return; // delivered by an earlier try of these records
      await this.#deliver(chunk, signal, refused);
      progress.requests = request;
      if (key) this.#progress.set(key, progress);
    };
    // Requests of at most batchPoints samples (a series with more goes alone), in order.
    let chunk: Span[] = [];
    let n = 0;
    for (const s of spans) {
      if (chunk.length > 0 && n + s.samples > this.#batchPoints) {
        await deliver(chunk);
        chunk = [];
        n = 0;
      }
      chunk.push(s);
      n += s.samples;
    }
    if (chunk.length > 0) await deliver(chunk);
    if (key) this.#progress.delete(key);
    this.#saveCounters(spans);
    if (refused.samples === 0) return;
    const why = refused.why.slice(0, 3).join("; ") + (refused.why.length > 3 ? `; …` : "");
    if (refused.samples >= total) throw new RejectedError(why);
    this.#rejected += refused.samples;
    const t = performance.now();
    if (t - this.#lastRejectWarn >= WARN_EVERY_MS) {
      this.#lastRejectWarn = t;
      this.#log.warn(
        `Dropped ${refused.samples} of ${total} samples: ${this.url.origin}${this.url.pathname} refused ` +
          `${refused.why.length} series (${why}); the other series were delivered; ${this.#rejected} refused so far`,
      );
    }
  }

  /** Sends `spans`; on a refusal, halves them until each refused series stands alone, and counts those. */
  async #deliver(
    spans: readonly Span[],
    signal: AbortSignal,
    refused: { samples: number; why: string[] },
  ): Promise<void> {
    const answer = await this.#post(spans, signal);
    if (answer === undefined) return;
    if (spans.length === 1) {
      refused.samples += spans[0]!.samples;
      refused.why.push(`${seriesText(spans[0]!.body)}: ${answer}`);
      return;
    }
    const mid = spans.length >>> 1;
    await this.#deliver(spans.slice(0, mid), signal, refused);
    await this.#deliver(spans.slice(mid), signal, refused);
  }

  /** One request: undefined when accepted; the receiver's answer when it refused the data for good; throws else. */
  async #post(spans: readonly Span[], signal: AbortSignal): Promise<string | undefined> {
    let size = 0;
    for (const s of spans) size += s.field.length;
    const body = new Uint8Array(size);
    let off = 0;
    for (const s of spans) {
      body.set(s.field, off);
      off += s.field.length;
    }
    let res: Response;
    try {
      res = await fetch(this.url, {
        method: "POST",
        headers: this.#headers,
        body: snappyCompress(body),
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
    const detail = (await res.text().catch(() => "")).trim().slice(0, 300);
    const message = `${res.status} ${res.statusText}${detail ? `: ${detail}` : ""}`;
    // 400 (out of order, duplicate, malformed), 413 (too large) and 422 fail the same way every time. Auth,
    // 404, 429 and 5xx can be fixed on the receiver's side: keep retrying (the journal holds the data).
    if (res.status === 400 || res.status === 413 || res.status === 422) return message;
    throw new AlumetError(`The receiver answered ${message}`);
  }

  /** One bounded final attempt; what is unsent stays in the journal. */
  async close(): Promise<void> {
    await this.#delivery.close();
  }

  describe(): string {
    return `${this.url.origin}${this.url.pathname}`;
  }
}

/**
 * The `prometheus-remote-write` plugin: adds one output, `out`.
 *
 * @example
 * ```ts
 * import { prometheusRemoteWritePlugin } from "./mod.ts";
 * import assert from "node:assert/strict";
 * const config = prometheusRemoteWritePlugin.configSchema.parse({});
 * assert.equal(config.endpoint, "http://localhost:9090/api/v1/write");
 * assert.equal(config.batch_points, 5000);
 * ```
 */
export const prometheusRemoteWritePlugin = definePlugin({
  name: "prometheus-remote-write",
  version: "0.1.0",
  description:
    "Pushes the measurements to a Prometheus remote-write receiver (Prometheus, Mimir, Thanos, VictoriaMetrics), journaled (at-least-once)",
  config: prometheusRemoteWriteConfigSchema,
  init: function initPrometheusRemoteWrite(config: PrometheusRemoteWriteConfig): Plugin {
    let output: RemoteWriteOutput | undefined;
    return {
      start: function startPrometheusRemoteWrite(ctx: StartContext): void {
        output = new RemoteWriteOutput({
          endpoint: config.endpoint,
          headers: config.headers,
          basicAuth: config.basic_auth,
          bearerToken: config.bearer_token,
          batchPoints: config.batch_points,
          timeoutMs: config.timeout,
          ...deliveryOptions(config),
          encoder: {
            prefix: config.prefix,
            suffix: config.suffix,
            addAttributesToLabels: config.add_attributes_to_labels,
            labels: config.labels,
            seriesTtlMs: config.series_ttl,
          },
          log: ctx.log,
        });
        output.open();
        ctx.addOutput("out", output);
      },
    };
  },
});

export default prometheusRemoteWritePlugin;

/**
 * Outputs' costs, for `deno task bench outputs` (issue 10's "Benchmark" and "Start-up stays fast"):
 *
 * 1. **Points per second through each output to its real server on loopback**, driven as the agent drives
 *    them: an {@linkcode Agent} with a synthetic source (batches of {@linkcode POINTS} points: 4 metrics —
 *    energy delta, power gauge, CPU time delta, memory gauge —, 8 CPU cores, 16 process consumers, attributes)
 *    and the output plugin with its default settings (journal synced per batch), except a 60 s final attempt
 *    so that `stop` waits until everything is delivered. The time runs from `agent.start()` to the end of
 *    `agent.stop()`; then the server is queried and must hold every point sent (counted by query, per run:
 *    each run writes metrics of its own names). Servers: influxd (v1 `/write`), VictoriaMetrics (InfluxDB v2
 *    `/api/v2/write`, and remote write), Prometheus (remote write), each started on a free loopback port with a
 *    throw-away data directory and stopped afterwards; a missing one is skipped with a printed reason. OTLP
 *    goes to a receiver run by this benchmark in its own process (`Deno.serve`: it keeps each request, and
 *    decodes them to count their data points once the run is over): no OpenTelemetry Collector is packaged
 *    here, so that figure is the output's own cost (encoding, journal, HTTP), not a Collector's. The same
 *    receiver also takes remote write and line protocol (counted the same way): the network outputs' own
 *    cost, to set beside the servers' figures. sqlite and csv files for reference. prometheus-exporter: points
 *    folded into its state, and the time of a `GET /metrics` (the scrape cost) for 1,000 and 10,000 series.
 * 2. **The journal's write cost per point**: {@linkcode Delivery.append} with `fsync: "batch"` (the default:
 *    each record `fdatasync`ed) and `"none"`, µs per point and bytes per point on disk, for records of 10, 100
 *    and 1000 points (influxdb's line protocol; remote write's and OTLP's protobuf for size). And each
 *    encoder alone (CPU µs per point, no I/O), which bounds what one output can send on one core.
 * 3. **Import cost**: the ms of an `import()` of each output's module in a fresh `deno run`, timed inside it
 *    (loading, compiling and evaluating the module and all it imports, as the agent's lazy loaders do; each
 *    figure includes the core modules every plugin shares, so csv's is the floor), one per round, rounds
 *    interleaved; and whether `alumet exec -- true` with the default config (procfs + csv) opens any code file
 *    of the protobuf or snappy packages (`strace -f -e openat`; a script that imports prometheus-remote-write
 *    is the control that shows the check sees them). Deno's start-up still reads those packages' npm metadata
 *    (`registry.json`) and the plugins' sources, because the loaders' `import()`s have literal specifiers
 *    (which `deno compile` needs): that is reported, not counted.
 *
 * Run alone: `deno run -A bench/outputs.ts` (`BENCH_QUICK=1` for one short run of each).
 *
 * @module
 */
import { Agent, type Attributes, Batch, Consumer, definePlugin, Resource, unit } from "../mod.ts";
import { DatabaseSync } from "node:sqlite";
import type { PluginMetadata } from "../src/plugin/plugin.ts";
import type { Metric, MetricId, MetricSpec, ValueType } from "../src/model/metrics.ts";
import { MetricRegistry } from "../src/model/metrics.ts";
import { Delivery } from "../src/pipeline/delivery.ts";
import { Logger, type LogSink, setLogSink } from "../src/log.ts";
import csv from "../plugins/csv/mod.ts";
import sqlite from "../plugins/sqlite/mod.ts";
import { influxdbPlugin, LineProtocolEncoder } from "../plugins/influxdb/mod.ts";
import {
  prometheusRemoteWritePlugin,
  RemoteWriteEncoder,
  snappyCompress,
} from "../plugins/prometheus-remote-write/mod.ts";
import { opentelemetryPlugin, OtlpEncoder } from "../plugins/opentelemetry/mod.ts";
import {
  PrometheusExporter,
  prometheusExporterPlugin,
  PrometheusState,
} from "../plugins/prometheus-exporter/mod.ts";
import { alumetTaskArgs } from "./memory.ts";

/** Points per batch of the synthetic source. */
export const POINTS = 500;

/** One benchmark figure: what `bench/main.ts` prints (median, min, max of `runs`). */
export interface OutputsBenchRow {
  name: string;
  unit: string;
  runs: number[];
  target?: { op: ">=" | "<="; value: number };
}

/** How {@linkcode runOutputsBench} runs. */
export interface OutputsBenchOptions {
  /** Measured runs per output (after one warm-up run). Default 3. */
  readonly runs?: number;
  /** Shorter runs, to check that the benchmark works (figures not comparable). Default false. */
  readonly quick?: boolean;
  /** Where progress and skip reasons go. Default stderr. */
  readonly say?: (line: string) => void;
}

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
// deno-lint-ignore no-console
const stderr = (s: string) => console.error(s);

// ---- the synthetic source ----

/** Metrics, resources, consumers and attributes of the synthetic batches; `tag` makes the names unique. */
function benchMetrics(register: (spec: MetricSpec<ValueType>) => MetricId, tag: string): MetricId[] {
  return [
    register({ name: `bench_${tag}_energy`, unit: unit("J"), valueType: "f64", kind: "delta" }),
    register({ name: `bench_${tag}_power`, unit: unit("W"), valueType: "f64", kind: "gauge" }),
    register({ name: `bench_${tag}_cpu_time`, unit: unit("s", "milli"), valueType: "u64", kind: "delta" }),
    register({ name: `bench_${tag}_memory`, unit: unit("By"), valueType: "u64", kind: "gauge" }),
  ];
}

const RESOURCES = Array.from({ length: 8 }, (_, i) => Resource.cpuCore(i));
const CONSUMERS = Array.from({ length: 16 }, (_, i) => Consumer.process(4000 + i));
const ATTRIBUTES = [
  { domain: "package", socket: 0 },
  { domain: "dram", socket: 0 },
  { kind: "user", scaled: true },
  { kind: "resident" },
] as const;

/**
 * Fills `b` with `n` points of one timestamp: point i is metric i % 4, core (i >> 2) % 8, process i >> 5, so
 * that (metric, resource, consumer) is unique within a batch (up to 512 points): every point is its own
 * sample in every backend (InfluxDB overwrites a point of the same series and time).
 */
function fillBatch(
  b: Batch,
  metrics: readonly MetricId[],
  n: number,
  k: number,
  ts: bigint,
  attributes: readonly Attributes[] = ATTRIBUTES,
): void {
  for (let i = 0; i < n; i++) {
    const m = i & 3;
    const value = m === 0
      ? 0.5 + (i % 7) * 0.01
      : m === 1
      ? 10 + ((i + k) % 13)
      : m === 2
      ? 10 + (i % 5)
      : 1_000_000 + i * 4096 + k;
    b.push(metrics[m]!, value, {
      resource: RESOURCES[(i >> 2) & 7]!,
      consumer: CONSUMERS[(i >> 5) & 15]!,
      attributes: attributes[m]!,
      timestamp: ts,
    });
  }
}

/** An autonomous source of `batches` batches of {@linkcode POINTS} points, 1 ms apart from `t0`. */
function benchSource(tag: string, batches: number, t0: bigint) {
  return definePlugin({
    name: "bench",
    start(ctx) {
      const metrics = benchMetrics((spec) => ctx.createMetric(spec), tag);
      ctx.addAutonomousSource("synthetic", () => {
        let made = 0;
        return new ReadableStream<Batch>({
          pull(c) {
            if (made === batches) {
              c.close();
              return;
            }
            const b = new Batch(POINTS);
            fillBatch(b, metrics, POINTS, made, t0 + BigInt(made) * 1_000_000n);
            made++;
            c.enqueue(b);
          },
        }, { highWaterMark: 4 });
      });
    },
  });
}

// ---- servers ----

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

function onPath(name: string): boolean {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return true;
    } catch {
      // not there
    }
  }
  return false;
}

async function commandText(cmd: string, args: string[]): Promise<string> {
  try {
    const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    return new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  } catch {
    return "";
  }
}

/** A server process on a free loopback port, ready when `ready` answers `status`. */
class Server {
  #child: Deno.ChildProcess | undefined;
  readonly url: string;
  constructor(
    readonly name: string,
    readonly cmd: string,
    readonly args: string[],
    readonly port: number,
    readonly ready: { path: string; status: number },
  ) {
    this.url = `http://127.0.0.1:${port}`;
  }

  async start(): Promise<void> {
    const child = this.#child = new Deno.Command(this.cmd, {
      args: this.args,
      stdout: "null",
      stderr: "piped",
    }).spawn();
    // The end of its stderr, kept to say why it exited (drained all along, so that it never blocks on it).
    let tail = "";
    const drained = child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
      new WritableStream({ write: (chunk) => void (tail = (tail + chunk).slice(-1000)) }),
    ).catch(() => {});
    let exited = false;
    child.status.then(() => (exited = true));
    const end = performance.now() + 60_000;
    while (performance.now() < end) {
      if (exited) {
        await drained;
        this.#child = undefined;
        throw new Error(`${this.name} exited while starting: ${tail.trim().slice(-500)}`);
      }
      try {
        const r = await fetch(this.url + this.ready.path);
        await r.body?.cancel();
        if (r.status === this.ready.status) return;
      } catch {
        // not up yet
      }
      await sleep(50);
    }
    throw new Error(`${this.name} did not answer ${this.url}${this.ready.path} within 60 s`);
  }

  async stop(): Promise<void> {
    const c = this.#child;
    if (c === undefined) return;
    this.#child = undefined;
    try {
      c.kill("SIGTERM");
    } catch {
      // already gone
    }
    const killer = setTimeout(() => {
      try {
        c.kill("SIGKILL");
      } catch {
        // gone
      }
    }, 15_000);
    await c.status;
    clearTimeout(killer);
  }
}

function influxd(dir: string): Server {
  const port = freePort();
  Deno.mkdirSync(`${dir}/influxd`);
  const config = `${dir}/influxd/influxdb.conf`;
  // The top-level bind-address (backup RPC) on loopback too, or influxd opens :8088 on every interface.
  Deno.writeTextFileSync(
    config,
    `reporting-disabled = true
bind-address = "127.0.0.1:${freePort()}"
[meta]
  dir = "${dir}/influxd/meta"
[data]
  dir = "${dir}/influxd/data"
  wal-dir = "${dir}/influxd/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:${port}"
  log-enabled = false
[monitor]
  store-enabled = false
`,
  );
  return new Server("influxd", "influxd", ["-config", config], port, { path: "/ping", status: 204 });
}

function prometheus(dir: string): Server {
  const port = freePort();
  Deno.mkdirSync(`${dir}/prometheus`);
  Deno.writeTextFileSync(`${dir}/prometheus/prometheus.yml`, "global:\n  scrape_interval: 1m\n");
  return new Server(
    "prometheus",
    "prometheus",
    [
      `--config.file=${dir}/prometheus/prometheus.yml`,
      `--storage.tsdb.path=${dir}/prometheus/data`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--web.enable-remote-write-receiver",
      "--log.level=error",
    ],
    port,
    { path: "/-/ready", status: 200 },
  );
}

function victoriaMetrics(dir: string): Server {
  const port = freePort();
  return new Server(
    "victoria-metrics",
    "victoria-metrics",
    [
      `-storageDataPath=${dir}/victoria-metrics`,
      `-httpListenAddr=127.0.0.1:${port}`,
      "-loggerLevel=ERROR",
    ],
    port,
    { path: "/health", status: 200 },
  );
}

/** The OTLP/HTTP receiver's code, run in its own process: counts requests, bytes and data points. */
/**
 * The code of this bench's receiver, run in its own process: `POST /v1/metrics` (OTLP/HTTP protobuf),
 * `POST /api/v1/write` (remote write) and `POST /api/v2/write` (line protocol) are accepted and kept;
 * `GET /count` decodes what came and counts the points by the run tag in their metric's name (`bench_<tag>_…`).
 * It stands in for an OpenTelemetry Collector (none is packaged here), and is a sink that shows each network
 * output's own cost, without a server's.
 */
function receiverSource(): string {
  const otlp = new URL("../plugins/opentelemetry/deps.ts", import.meta.url).href;
  const rw = new URL("../plugins/prometheus-remote-write/mod.ts", import.meta.url).href;
  return `import { BinaryReader, WireType } from ${JSON.stringify(otlp)};
import { decodeWriteRequest, snappyUncompress } from ${JSON.stringify(rw)};
let requests = 0, bytes = 0, undecodable = 0;
/** Bodies received, decoded when the counts are asked for (not while the outputs are timed). */
const pending = [];
/** Points by the run tag in their metric's name (bench_<tag>_…), by protocol. */
const points = { otlp: new Map(), rw: new Map(), lp: new Map() };
const add = (map, name, n) => {
  const tag = /^bench_([a-z0-9]+)_/.exec(name)?.[1] ?? "";
  map.set(tag, (map.get(tag) ?? 0) + n);
};
const decoder = new TextDecoder();
function each(buf, field, fn) {
  const r = new BinaryReader(buf);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no === field && wt === WireType.LengthDelimited) fn(r.bytes());
    else r.skip(wt, no);
  }
}
// ExportMetricsServiceRequest.resource_metrics(1).scope_metrics(2).metrics(2): name(1), gauge(5) or sum(7),
// each with data_points(1).
function countOtlp(req) {
  each(req, 1, (rm) => each(rm, 2, (sm) => each(sm, 2, (m) => {
    const r = new BinaryReader(m);
    let name = "";
    let n = 0;
    while (r.pos < r.len) {
      const [no, wt] = r.tag();
      if (no === 1 && wt === WireType.LengthDelimited) name = decoder.decode(r.bytes());
      else if ((no === 5 || no === 7) && wt === WireType.LengthDelimited) each(r.bytes(), 1, () => n++);
      else r.skip(wt, no);
    }
    add(points.otlp, name, n);
  })));
}
function countRw(body) {
  for (const s of decodeWriteRequest(snappyUncompress(body))) add(points.rw, s.labels.__name__ ?? "", s.samples.length);
}
function countLp(body) {
  for (const line of decoder.decode(body).split("\\n")) if (line !== "") add(points.lp, line, 1);
}
const routes = { "/v1/metrics": [countOtlp, 200], "/api/v1/write": [countRw, 204], "/api/v2/write": [countLp, 204] };
Deno.serve({ hostname: "127.0.0.1", port: Number(Deno.args[0]), onListen() {} }, async (req) => {
  const path = new URL(req.url).pathname;
  if (req.method === "GET" && path === "/count") {
    for (const [count, body] of pending.splice(0)) {
      try {
        count(body);
      } catch {
        undecodable++;
      }
    }
    const json = Object.fromEntries(Object.entries(points).map(([k, m]) => [k, Object.fromEntries(m)]));
    return Response.json({ requests, bytes, undecodable, points: json });
  }
  if (req.method === "GET" && path === "/health") return new Response("ok");
  const route = routes[path];
  if (req.method !== "POST" || route === undefined) return new Response("not found", { status: 404 });
  const body = new Uint8Array(await req.arrayBuffer());
  requests++;
  bytes += body.length;
  pending.push([route[0], body]);
  return route[1] === 204
    ? new Response(null, { status: 204 })
    : new Response(new Uint8Array(0), { headers: { "content-type": "application/x-protobuf" } });
});
`;
}

function receiver(dir: string): Server {
  const port = freePort();
  const script = `${dir}/receiver.js`;
  Deno.writeTextFileSync(script, receiverSource());
  return new Server(
    "the bench's receiver",
    Deno.execPath(),
    ["run", "--quiet", "--no-lock", "-A", script, String(port)],
    port,
    { path: "/health", status: 200 },
  );
}

// ---- counting what the servers received ----

async function getJson(url: string | URL, init?: RequestInit): Promise<unknown> {
  const r = await fetch(url, init);
  const text = await r.text();
  if (!r.ok) throw new Error(`${url}: ${r.status} ${text.slice(0, 300)}`);
  return JSON.parse(text);
}

/** `sum(count_over_time(...[1h]))` through a Prometheus-compatible query API. */
async function promCount(
  base: string,
  selector: string,
  extra: Record<string, string> = {},
): Promise<number> {
  const url = new URL(`${base}/api/v1/query`);
  url.searchParams.set("query", `sum(count_over_time(${selector}[1h]))`);
  url.searchParams.set("time", String(Date.now() / 1000 + 1));
  for (const [k, v] of Object.entries(extra)) url.searchParams.set(k, v);
  const body = await getJson(url) as { data: { result: { value: [number, string] }[] } };
  return Number(body.data.result[0]?.value[1] ?? 0);
}

async function vmCount(base: string, selector: string): Promise<number> {
  const f = await fetch(`${base}/internal/force_flush`);
  await f.body?.cancel();
  return await promCount(base, selector, { nocache: "1" });
}

async function influxCount(base: string, db: string, tag: string): Promise<number> {
  const url = new URL(`${base}/query`);
  url.searchParams.set("db", db);
  url.searchParams.set("q", `SELECT count(value) FROM /^bench_${tag}_/`);
  const body = await getJson(url, { method: "POST" }) as {
    results: { error?: string; series?: { values: [unknown, number][] }[] }[];
  };
  const res = body.results[0]!;
  if (res.error) throw new Error(`influxd: ${res.error}`);
  return (res.series ?? []).reduce((t, s) => t + Number(s.values[0]?.[1] ?? 0), 0);
}

/** Polls `count` until it reaches `expected` (searchable with a delay on some servers) or 15 s pass. */
async function settle(count: () => Promise<number>, expected: number): Promise<number> {
  const end = performance.now() + 15_000;
  let n = await count();
  while (n < expected && performance.now() < end) {
    await sleep(200);
    n = await count();
  }
  return n;
}

// ---- throughput ----

interface Target {
  /** The row's name, up to ` points/s`. */
  readonly label: string;
  // deno-lint-ignore no-explicit-any
  readonly plugin: PluginMetadata<any>;
  readonly config: (runDir: string) => Record<string, unknown>;
  /** Called once every point went through the output, before the agent stops. */
  readonly beforeStop?: (agent: Agent, tag: string) => Promise<void>;
  /** The points of run `tag` the backend holds. */
  readonly count: (tag: string, runDir: string) => Promise<number>;
}

let runSeq = 0;

/** One run: the agent from start to drained stop; then the backend's count. */
async function throughputRun(
  t: Target,
  dir: string,
  batches: number,
): Promise<{ pps: number; sent: number; found: number; lost: number }> {
  const tag = `r${++runSeq}`;
  const runDir = `${dir}/${tag}`;
  Deno.mkdirSync(runDir);
  // Five minutes ago: inside every backend's accepted window, never in the future.
  const t0 = BigInt(Date.now() - 300_000) * 1_000_000n;
  const sent = batches * POINTS;
  const agent = new Agent({
    plugins: [benchSource(tag, batches, t0), { plugin: t.plugin, config: t.config(runDir) }],
    selfInterval: 3_600_000,
  });
  const t0Ms = performance.now();
  await agent.start();
  for (;;) {
    const out = [...agent.stats()!.outputs.values()][0]!;
    if (out.points + out.droppedPoints >= sent) break;
    await sleep(2);
  }
  // A check that scrapes the output is not part of the time.
  const t1Ms = performance.now();
  await t.beforeStop?.(agent, tag);
  const t2Ms = performance.now();
  await agent.stop();
  const secs = (t1Ms - t0Ms + performance.now() - t2Ms) / 1000;
  const lost = agent.losses().total;
  await agent[Symbol.asyncDispose]();
  const found = await settle(() => t.count(tag, runDir), sent);
  return { pps: sent / secs, sent, found, lost };
}

/** Output settings the bench changes from the defaults: a long final attempt, so that stop waits for delivery. */
const DELIVERY = { final_attempt: "60s" };

function lineCount(path: string, needle: string): number {
  return Deno.readTextFileSync(path).split("\n").filter((l) => l.includes(needle)).length;
}

function sqliteCount(path: string, tag: string): number {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const row = db.prepare(
      "SELECT count(*) AS n FROM points JOIN metrics ON metrics.id = points.metric_id WHERE metrics.name LIKE ?",
    ).get(`bench_${tag}_%`) as { n: number };
    return Number(row.n);
  } finally {
    db.close();
  }
}

// ---- the exporter's scrape ----

/** Median ms of a `GET /metrics` (text format) with `series` series, and the body's size. */
async function scrapeCost(series: number, scrapes: number): Promise<{ ms: number; bytes: number }> {
  const registry = new MetricRegistry();
  const metrics = benchMetrics((spec) => registry.register("bench", spec), "scrape");
  const ctx = { metric: (id: number) => registry.get(id) as Metric };
  const exporter = new PrometheusExporter(new PrometheusState(), { port: 0 });
  exporter.listen();
  try {
    // 512 distinct series per batch at most; more series through more attribute sets.
    for (let done = 0, k = 0; done < series; k++) {
      const n = Math.min(512, series - done);
      const b = new Batch(n);
      const attributes = ATTRIBUTES.map((a) => ({ ...a, shard: k }));
      fillBatch(b, metrics, n, k, BigInt(Date.now()) * 1_000_000n, attributes);
      exporter.write(b, ctx);
      done += n;
    }
    const url = exporter.describe();
    const times: number[] = [];
    let bytes = 0;
    for (let i = 0; i < scrapes + 2; i++) {
      const t = performance.now();
      const body = await (await fetch(url)).arrayBuffer();
      const ms = performance.now() - t;
      bytes = body.byteLength;
      if (i >= 2) times.push(ms); // two warm-up scrapes
    }
    const lines = new TextDecoder().decode(new Uint8Array(await (await fetch(url)).arrayBuffer()))
      .split("\n").filter((l) => l.startsWith("bench_scrape_")).length;
    if (lines !== series) throw new Error(`the exporter served ${lines} series, not ${series}`);
    return { ms: median(times), bytes };
  } finally {
    await exporter.close();
  }
}

// ---- the journal ----

type Encoding = "line protocol" | "remote write" | "OTLP";

const JOURNAL_SCOPE = "bench-journal";

function payloadOf(points: number, encoding: Encoding): Uint8Array {
  const registry = new MetricRegistry();
  const metrics = benchMetrics((spec) => registry.register("bench", spec), "journal");
  const ctx = { metric: (id: number) => registry.get(id) as Metric };
  const b = new Batch(points);
  fillBatch(b, metrics, points, 0, BigInt(Date.now()) * 1_000_000n);
  if (encoding === "line protocol") {
    return new TextEncoder().encode(new LineProtocolEncoder().encode(b, ctx).text);
  }
  if (encoding === "remote write") return new RemoteWriteEncoder().encode(b, ctx).bytes;
  return new OtlpEncoder().encode(b, ctx, "http/protobuf").payload;
}

/**
 * µs per point of each output's encoder alone (what `write` does before the journal), on `batches` batches of
 * {@linkcode POINTS} points with timestamps 1 ms apart (one warm-up batch first); remote write's Snappy
 * compression (done when sending) apart.
 */
function encodeCosts(batches: number): Map<string, number> {
  const registry = new MetricRegistry();
  const metrics = benchMetrics((spec) => registry.register("bench", spec), "encode");
  const ctx = { metric: (id: number) => registry.get(id) as Metric };
  const t0 = BigInt(Date.now()) * 1_000_000n;
  const input = Array.from({ length: batches + 1 }, (_, k) => {
    const b = new Batch(POINTS);
    fillBatch(b, metrics, POINTS, k, t0 + BigInt(k) * 1_000_000n);
    return b;
  });
  const lp = new LineProtocolEncoder();
  const rw = new RemoteWriteEncoder();
  const otlp = new OtlpEncoder();
  const requests: Uint8Array[] = [];
  const cases: [string, (b: Batch, k: number) => unknown][] = [
    ["influxdb line protocol", (b) => lp.encode(b, ctx)],
    ["remote write protobuf (before Snappy)", (b) => requests.push(rw.encode(b, ctx).bytes)],
    ["remote write: Snappy compression", (_, k) => snappyCompress(requests[k]!)],
    ["OTLP protobuf", (b) => otlp.encode(b, ctx, "http/protobuf")],
  ];
  const out = new Map<string, number>();
  for (const [name, f] of cases) {
    f(input[0]!, 0);
    const t = performance.now();
    for (let k = 1; k <= batches; k++) f(input[k]!, k);
    out.set(name, (performance.now() - t) * 1000 / (batches * POINTS));
  }
  return out;
}

/**
 * Appends records of `points` points to a fresh journal (the backend never answers, so all stay on disk) for
 * about `budgetMs`: µs per point of `append` (the write and, with `"batch"`, its fdatasync), bytes per point
 * of the segment files.
 */
async function journalCost(
  dir: string,
  points: number,
  encoding: Encoding,
  fsync: "batch" | "none",
  budgetMs: number,
): Promise<{ usPerPoint: number; bytesPerPoint: number }> {
  const payload = payloadOf(points, encoding);
  const path = await Deno.makeTempDir({ dir, prefix: "journal-" });
  const d = new Delivery({
    journalPath: path,
    fsync,
    finalAttemptMs: 50,
    minBackoffMs: 60_000,
    // Its lines (the backend never answers, the records stay in the journal) are expected: not reported.
    log: new Logger(JOURNAL_SCOPE),
    send: (_payloads, signal) =>
      new Promise<void>((_, reject) => signal.addEventListener("abort", () => reject(signal.reason))),
  });
  d.open();
  // Stay well inside the default 64 MiB (a full journal would drop segments: another cost).
  const maxRecords = Math.max(5, Math.floor(32 * 1024 * 1024 / (payload.length + 8)));
  let n = 0;
  const t = performance.now();
  while (n < maxRecords && (n < 5 || performance.now() - t < budgetMs)) {
    d.append(payload, points);
    n++;
  }
  const ms = performance.now() - t;
  const bytes = d.journalBytes;
  await d.close();
  await Deno.remove(path, { recursive: true });
  return { usPerPoint: ms * 1000 / (n * points), bytesPerPoint: bytes / (n * points) };
}

// ---- import cost and what exec loads ----

const OUTPUT_MODULES = [
  "csv",
  "sqlite",
  "prometheus-exporter",
  "influxdb",
  "prometheus-remote-write",
  "opentelemetry",
] as const;

/** The ms a fresh `deno run` takes to `import()` `module` (measured inside it: loading, compiling, evaluating). */
async function importMs(script: string): Promise<number> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--no-lock", "-A", script],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (out.code !== 0 || !/^[\d.]+$/.test(text)) {
    throw new Error(
      `deno run ${script} failed (${out.code}): ${new TextDecoder().decode(out.stderr)}${text}`,
    );
  }
  return Number(text);
}

/** Per output module, the ms of its `import()` in a fresh process, one per round (rounds interleave modules). */
async function importCosts(dir: string, rounds: number): Promise<Map<string, number[]>> {
  const cases = OUTPUT_MODULES.map((m) => {
    const path = `${dir}/import_${m}.ts`;
    const url = JSON.stringify(`${ROOT}/plugins/${m}/mod.ts`);
    Deno.writeTextFileSync(
      path,
      `const t = performance.now();\nawait import(${url});\n` +
        `Deno.stdout.writeSync(new TextEncoder().encode(String(performance.now() - t)));\n`,
    );
    return [m, path] as const;
  });
  for (const [, path] of cases) await importMs(path); // warms Deno's caches (transpiled modules, npm)
  const out = new Map<string, number[]>(cases.map(([m]) => [m, []]));
  for (let r = 0; r < rounds; r++) {
    for (const [m, path] of cases) out.get(m)!.push(await importMs(path));
  }
  return out;
}

/** npm packages of the network outputs' encoders; the default `exec` must open none of their files. */
const HEAVY = /\/(snappyjs|@bufbuild|protobufjs|@protobufjs|@opentelemetry)\//;

/**
 * Files of {@linkcode HEAVY} packages a command opened (`strace -f -e openat`): their code, and their npm
 * metadata (`registry.json`, which Deno's npm resolution reads for every npm package in the module graph,
 * literal `import()`s included, without loading the package). Undefined without strace.
 */
async function heavyOpens(
  args: string[],
  cwd: string,
  trace: string,
): Promise<{ code: string[]; metadata: string[] } | undefined> {
  if (!onPath("strace")) return undefined;
  const out = await new Deno.Command("strace", {
    // -f follows Deno's threads (modules load on other threads); -b execve lets go of its children when they
    // exec (exec's stopped start: a traced child would stop as `t`, not `T`, and never be started).
    args: ["-f", "-b", "execve", "-qq", "-e", "trace=openat,open", "-o", trace, Deno.execPath(), ...args],
    cwd,
    stdout: "null",
    stderr: "piped",
    env: { ALUMET_LOG: "warn" },
  }).output();
  if (out.code !== 0) {
    throw new Error(
      `strace deno ${args.join(" ")} exited with ${out.code}: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
  const files = new Set<string>();
  for (const line of Deno.readTextFileSync(trace).split("\n")) {
    const m = /open(?:at)?\([^"]*"([^"]+)"/.exec(line);
    if (m && HEAVY.test(m[1]!)) files.add(m[1]!);
  }
  const all = [...files];
  return {
    code: all.filter((f) => !f.endsWith("/registry.json")),
    metadata: all.filter((f) => f.endsWith("/registry.json")),
  };
}

// ---- the whole benchmark ----

/**
 * Runs the outputs benchmark (see the module doc) and returns its rows; servers missing on this machine are
 * skipped with a line through `say`.
 */
export async function runOutputsBench(options: OutputsBenchOptions = {}): Promise<OutputsBenchRow[]> {
  const quick = options.quick ?? false;
  const runs = options.runs ?? (quick ? 1 : 3);
  const say = options.say ?? stderr;
  const batches = quick ? 40 : 200;
  const rows: OutputsBenchRow[] = [];
  const logs: string[] = [];
  const prevSink = setLogSink((level, scope, message) => {
    if ((level === "warn" || level === "error") && scope !== JOURNAL_SCOPE) {
      logs.push(`${level} ${scope}: ${message}`);
    }
  });
  const dir = await Deno.makeTempDir({ prefix: "alumet-bench-outputs-" });
  const servers: Server[] = [];
  try {
    try {
      // Servers, started together.
      const wanted: [string, (dir: string) => Server][] = [
        ["influxd", influxd],
        ["prometheus", prometheus],
        ["victoria-metrics", victoriaMetrics],
      ];
      const up = new Map<string, Server>();
      const version = new Map<string, string>();
      await Promise.all(wanted.map(async ([bin, make]) => {
        if (!onPath(bin)) {
          say(
            `outputs: ${bin} skipped: not on PATH (Debian: apt-get install --no-install-recommends ${
              bin === "influxd" ? "influxdb" : bin
            })`,
          );
          return;
        }
        const s = make(dir);
        try {
          await s.start();
          servers.push(s);
          up.set(bin, s);
        } catch (e) {
          await s.stop();
          say(`outputs: ${bin} skipped: ${(e as Error).message}`);
        }
      }));
      let rx: Server | undefined = receiver(dir);
      try {
        await rx.start();
        servers.push(rx);
      } catch (e) {
        say(`outputs: OTLP and the receiver's figures skipped: ${(e as Error).message}`);
        rx = undefined;
      }
      if (up.has("prometheus")) {
        const m = /version (\S+)/.exec(await commandText("prometheus", ["--version"]));
        version.set("prometheus", m ? m[1]!.replace(/\+.*/, "") : "(version unknown)");
      }
      if (up.has("influxd")) {
        const m = /InfluxDB v(\S+)/.exec(await commandText("influxd", ["version"]));
        version.set("influxd", m ? m[1]! : "(version unknown)");
        await getJson(`${up.get("influxd")!.url}/query?q=${encodeURIComponent("CREATE DATABASE bench")}`, {
          method: "POST",
        });
      }
      if (up.has("victoria-metrics")) {
        const v = (await commandText("dpkg-query", ["-W", "-f", "${Version}", "victoria-metrics"])).trim();
        version.set("victoria-metrics", /^\d/.test(v) ? v.replace(/\+.*/, "") : "(version unknown)");
      }
      say(
        `outputs: servers on loopback: ${
          [...up.keys()].map((b) => `${b} ${version.get(b)}`).join(", ") || "none"
        }; OTLP: this bench's receiver (no Collector here)`,
      );

      const targets: Target[] = [];
      const influx = up.get("influxd");
      if (influx) {
        targets.push({
          label: `influxdb v1 /write → influxd ${version.get("influxd")}`,
          plugin: influxdbPlugin,
          config: (d) => ({ host: influx.url, database: "bench", journal_path: `${d}/journal`, ...DELIVERY }),
          count: (tag) => influxCount(influx.url, "bench", tag),
        });
      }
      const vm = up.get("victoria-metrics");
      if (vm) {
        targets.push({
          label: `influxdb v2 /api/v2/write → VictoriaMetrics ${version.get("victoria-metrics")}`,
          plugin: influxdbPlugin,
          config: (d) => ({
            host: vm.url,
            org: "bench",
            bucket: "bench",
            token: "", // no authentication on loopback (the default is Alumet's "FILL ME" placeholder)
            journal_path: `${d}/journal`,
            ...DELIVERY,
          }),
          // VictoriaMetrics names a field `<measurement>_<field>`: the value is `…_value`.
          count: (tag) => vmCount(vm.url, `{__name__=~"bench_${tag}_.+_value"}`),
        });
      }
      const prom = up.get("prometheus");
      if (prom) {
        targets.push({
          label: `prometheus-remote-write → Prometheus ${version.get("prometheus")}`,
          plugin: prometheusRemoteWritePlugin,
          config: (d) => ({
            endpoint: `${prom.url}/api/v1/write`,
            journal_path: `${d}/journal`,
            ...DELIVERY,
          }),
          count: (tag) => promCount(prom.url, `{__name__=~"bench_${tag}_.+"}`),
        });
      }
      if (vm) {
        targets.push({
          label: `prometheus-remote-write → VictoriaMetrics ${version.get("victoria-metrics")}`,
          plugin: prometheusRemoteWritePlugin,
          config: (d) => ({ endpoint: `${vm.url}/api/v1/write`, journal_path: `${d}/journal`, ...DELIVERY }),
          count: (tag) => vmCount(vm.url, `{__name__=~"bench_${tag}_.+"}`),
        });
      }
      if (rx) {
        const url = rx.url;
        const received = (protocol: "otlp" | "rw" | "lp") => async (tag: string) => {
          const c = await getJson(`${url}/count`) as {
            points: Record<string, Record<string, number>>;
            undecodable: number;
          };
          if (c.undecodable > 0) {
            throw new Error(`the bench's receiver could not decode ${c.undecodable} requests`);
          }
          return c.points[protocol]?.[tag] ?? 0;
        };
        targets.push({
          label: "opentelemetry OTLP/HTTP → bench's receiver (no Collector)",
          plugin: opentelemetryPlugin,
          config: (d) => ({ collector_host: rx.url, journal_path: `${d}/journal`, ...DELIVERY }),
          count: received("otlp"),
        });
        targets.push({
          label: "prometheus-remote-write → bench's receiver (no storage)",
          plugin: prometheusRemoteWritePlugin,
          config: (d) => ({ endpoint: `${url}/api/v1/write`, journal_path: `${d}/journal`, ...DELIVERY }),
          count: received("rw"),
        });
        targets.push({
          label: "influxdb v2 → bench's receiver (no storage)",
          plugin: influxdbPlugin,
          config: (d) => ({
            host: rx.url,
            org: "bench",
            bucket: "bench",
            token: "", // no authentication on loopback (the default is Alumet's "FILL ME" placeholder)
            journal_path: `${d}/journal`,
            ...DELIVERY,
          }),
          count: received("lp"),
        });
      }
      targets.push({
        label: "sqlite file (reference)",
        plugin: sqlite,
        config: (d) => ({ output_path: `${d}/out.sqlite` }),
        count: (tag, d) => Promise.resolve(sqliteCount(`${d}/out.sqlite`, tag)),
      });
      targets.push({
        label: "csv file (reference)",
        plugin: csv,
        config: (d) => ({ output_path: `${d}/out.csv` }),
        count: (tag, d) => Promise.resolve(lineCount(`${d}/out.csv`, `bench_${tag}_`)),
      });
      // The exporter keeps one value per series: the batches it folded are counted from what a scrape serves
      // (each batch adds a known amount to the energy counters), times the points of a batch; the scrape must
      // also serve one series per point of a batch.
      const folded = new Map<string, number>();
      targets.push({
        label: "prometheus-exporter, folded into its state",
        plugin: prometheusExporterPlugin,
        config: () => ({ port: 0 }),
        beforeStop: async (agent, tag) => {
          const url = agent.outputs()[0]!.description;
          const text = await (await fetch(url)).text();
          const series = text.split("\n").filter((l) => l.startsWith(`bench_${tag}_`));
          const joules = series.filter((l) => l.startsWith(`bench_${tag}_energy_`))
            .reduce((t, l) => t + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
          let perBatch = 0;
          for (let i = 0; i < POINTS; i += 4) perBatch += 0.5 + (i % 7) * 0.01;
          const batchesFolded = Math.round(joules / perBatch);
          folded.set(tag, series.length === POINTS ? batchesFolded * POINTS : series.length);
        },
        count: (tag) => Promise.resolve(folded.get(tag) ?? 0),
      });

      let mismatched = 0;
      for (const t of targets) {
        say(`outputs: ${t.label}…`);
        const results = [];
        for (let r = 0; r <= runs; r++) {
          const res = await throughputRun(t, dir, r === 0 ? Math.max(10, batches / 5) : batches);
          if (res.found !== res.sent || res.lost > 0) {
            mismatched += Math.abs(res.sent - res.found) + res.lost;
            say(
              `outputs: ${t.label}: sent ${res.sent}, found ${res.found} by query, ${res.lost} counted lost`,
            );
          }
          if (r > 0) results.push(res); // run 0 warms up the JIT
        }
        rows.push({
          name: `${t.label}, ${POINTS}-pt batches`,
          unit: "points/s",
          runs: results.map((r) => r.pps),
        });
      }
      rows.push({
        name: "points sent but not found by query (or found twice), all runs above",
        unit: "points",
        runs: [mismatched],
        target: { op: "<=", value: 0 },
      });

      for (const series of [1000, 10_000]) {
        say(`outputs: prometheus-exporter, GET /metrics with ${series} series…`);
        const rs = [];
        for (let r = 0; r < runs; r++) rs.push(await scrapeCost(series, quick ? 5 : 20));
        rows.push({
          name: `prometheus-exporter: GET /metrics, ${series.toLocaleString("en-US")} series (${
            Math.round(rs[0]!.bytes / 1024)
          } KiB)`,
          unit: "ms",
          runs: rs.map((r) => r.ms),
        });
      }
    } finally {
      await Promise.all(servers.map((s) => s.stop()));
    }

    // The journal.
    say("outputs: journal append cost…");
    const budget = quick ? 150 : 400;
    for (const fsync of ["batch", "none"] as const) {
      for (const points of [10, 100, 1000]) {
        const rs = [];
        for (let r = 0; r < runs; r++) {
          rs.push(await journalCost(dir, points, "line protocol", fsync, budget));
        }
        rows.push({
          name: `journal append, ${
            fsync === "batch" ? "fsync per record (default)" : "fsync off"
          }, ${points}-pt records`,
          unit: "µs/point",
          runs: rs.map((r) => r.usPerPoint),
        });
        if (fsync === "none") {
          rows.push({
            name: `journal on disk, line protocol (influxdb), ${points}-pt records`,
            unit: "B/point",
            runs: rs.map((r) => r.bytesPerPoint),
          });
        }
      }
    }
    for (const encoding of ["remote write", "OTLP"] as const) {
      const r = await journalCost(dir, 100, encoding, "none", 50);
      rows.push({
        name: `journal on disk, ${encoding} protobuf, 100-pt records`,
        unit: "B/point",
        runs: [r.bytesPerPoint],
      });
    }

    say("outputs: encoders alone…");
    const enc: Map<string, number>[] = [];
    for (let r = 0; r < runs; r++) enc.push(encodeCosts(quick ? 20 : 100));
    for (const name of enc[0]!.keys()) {
      rows.push({ name: `encode (CPU only), ${name}`, unit: "µs/point", runs: enc.map((e) => e.get(name)!) });
    }

    // Import costs.
    say("outputs: import cost of each output's module in a fresh deno run…");
    const costs = await importCosts(dir, quick ? 2 : 7);
    for (const [m, ms] of costs) {
      rows.push({ name: `import() of plugins/${m}/mod.ts in a fresh deno run`, unit: "ms", runs: ms });
    }

    // What the default exec loads.
    say("outputs: files exec -- true (procfs + csv) opens…");
    const control = `${dir}/control.ts`;
    Deno.writeTextFileSync(
      control,
      `import ${JSON.stringify(`${ROOT}/plugins/prometheus-remote-write/mod.ts`)};\n`,
    );
    const seen = await heavyOpens(
      ["run", "--quiet", "--no-lock", "-A", control],
      ROOT,
      `${dir}/control.trace`,
    );
    if (seen === undefined) say("outputs: exec check skipped: strace is not on PATH");
    else if (seen.code.length === 0) {
      say(
        "outputs: exec check skipped: strace saw no protobuf/snappy code even where it loads (the control)",
      );
    } else {
      const execDir = await Deno.makeTempDir({ dir, prefix: "exec-" });
      const opened =
        (await heavyOpens([...alumetTaskArgs(), "exec", "--", "true"], execDir, `${dir}/exec.trace`))!;
      const short = (fs: string[]) => fs.map((f) => f.replace(/^.*registry\.npmjs\.org\//, "")).join(", ");
      say(
        `outputs: the control (importing prometheus-remote-write) opened ${seen.code.length} code files of ` +
          `protobuf/snappy packages; exec -- true opened ${opened.code.length}${
            opened.code.length ? ` (${short(opened.code.slice(0, 5))})` : ""
          }, and ${opened.metadata.length} npm metadata files${
            opened.metadata.length ? ` (${short(opened.metadata)}: read by Deno's npm resolution)` : ""
          }`,
      );
      rows.push({
        name: "exec -- true (default procfs + csv): protobuf/snappy code files opened",
        unit: "files",
        runs: [opened.code.length],
        target: { op: "<=", value: 0 },
      });
    }
  } finally {
    setLogSink(prevSink as LogSink);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  if (logs.length > 0) {
    say(`outputs: ${logs.length} warnings or errors logged during the runs:`);
    for (const l of logs.slice(0, 10)) say(`  ${l}`);
  }
  return rows;
}

if (import.meta.main) {
  const quick = Deno.env.get("BENCH_QUICK") === "1";
  const rows = await runOutputsBench({ quick });
  const fmt = (x: number) =>
    x >= 1000 ? Math.round(x).toLocaleString("en-US") : x >= 100 ? x.toFixed(0) : x.toFixed(2);
  const W = 78;
  let failed = 0;
  const lines = [
    `${"benchmark".padEnd(W)} ${"median".padStart(11)} ${"min".padStart(11)} ${
      "max".padStart(11)
    }  unit, target`,
  ];
  for (const r of rows) {
    const m = median(r.runs);
    let verdict = r.unit;
    if (r.target) {
      const ok = r.target.op === ">=" ? m >= r.target.value : m <= r.target.value;
      if (!ok) failed++;
      verdict = `${r.unit}, ${r.target.op} ${fmt(r.target.value)}: ${ok ? "PASS" : "FAIL"}`;
    }
    lines.push(
      `${r.name.padEnd(W)} ${fmt(m).padStart(11)} ${fmt(Math.min(...r.runs)).padStart(11)} ${
        fmt(Math.max(...r.runs)).padStart(11)
      }  ${verdict}`,
    );
  }
  // deno-lint-ignore no-console
  console.log(lines.join("\n"));
  Deno.exit(failed > 0 ? 1 : 0);
}

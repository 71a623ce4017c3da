/**
 * The real time-series servers the output tests write to — InfluxDB 1.6 (`influxd`), Prometheus 2.42 (with its
 * remote-write receiver) and VictoriaMetrics 1.79 — started on free loopback ports with throw-away data
 * directories, waited for until they answer, stopped, and started again on the same port and data (for outage
 * tests), and always cleaned up (`await using`).
 *
 * - Each server listens on 127.0.0.1 only: InfluxDB's top-level `bind-address` (its backup RPC service, which
 *   would otherwise open `:8088` on every interface) is on loopback too, and nothing reports home.
 * - A test names what it needs with {@linkcode serverNeeds} and `testWith` (src/testing/needs.ts): skipped with
 *   a printed reason where the binary is missing, failed under `CI=true`.
 * - `start` polls the server's readiness endpoint (up to 60 s by default: servers start slowly on a loaded
 *   machine) and fails early, with the end of the server's own log, when the process exits.
 * - `stop` sends SIGTERM and waits (SIGKILL after 15 s); `start` again reuses the port and the data directory;
 *   `kill` sends SIGKILL (a crash).
 * - Disposal stops the server and removes the data directory when this module created it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Influxd, serverNeeds } from "./servers.ts";
 * if (serverNeeds.influxd.missing() === undefined) {
 *   await using influx = await Influxd.start();
 *   await influx.createDatabase("db");
 *   const body = "m value=1 1714564800000000123\n";
 *   const w = await fetch(`${influx.url}/write?db=db&precision=ns`, { method: "POST", body });
 *   assert.equal(w.status, 204, await w.text());
 *   await influx.stop(); // an outage…
 *   await influx.start(); // …and back, on the same port and data
 *   const [series] = await influx.query("db", 'SELECT "value" FROM "m"');
 *   assert.deepEqual(series?.values, [["1714564800000000123", 1]]);
 * }
 * ```
 *
 * @module
 */
import { type Need, needs } from "./needs.ts";

/** What each server's tests need: its binary on PATH. */
export const serverNeeds: {
  readonly influxd: Need;
  readonly prometheus: Need;
  readonly victoriaMetrics: Need;
} = {
  influxd: needs.command("influxd"),
  prometheus: needs.command("prometheus"),
  victoriaMetrics: needs.command("victoria-metrics"),
};

/** A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's choice). */
export function freeLoopbackPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Options common to every server. */
export interface ServerOptions {
  /** The data directory. Default: a new temporary directory, removed when the server is disposed. */
  readonly dir?: string;
  /** Longest wait for the server to answer after a start, ms. Default 60 000. */
  readonly readyTimeoutMs?: number;
}

/** The last bytes of a server's output kept for error messages. */
const LOG_TAIL = 4096;

/**
 * A server process on a free loopback port with a data directory; restartable on both. Subclasses say how to
 * run it and how to tell it is ready.
 */
export abstract class TestServer implements AsyncDisposable {
  /** The data directory. */
  readonly dir: string;
  /** The HTTP port, chosen once: a restart listens on it again. */
  readonly port: number = freeLoopbackPort();
  /** `http://127.0.0.1:<port>`. */
  readonly url: string = `http://127.0.0.1:${this.port}`;
  readonly #ownsDir: boolean;
  readonly #readyMs: number;
  #child: Deno.ChildProcess | undefined;
  #drained: Promise<void> | undefined;
  #exited = false;
  #log = "";

  constructor(options: ServerOptions = {}) {
    this.#ownsDir = options.dir === undefined;
    this.dir = options.dir ?? Deno.makeTempDirSync({ prefix: "alumet-server-" });
    this.#readyMs = options.readyTimeoutMs ?? 60_000;
  }

  /** The program and its arguments. */
  protected abstract command(): { bin: string; args: string[] };
  /** The path polled until it answers `readyStatus`. */
  protected abstract readonly readyPath: string;
  /** The status the ready path answers once the server is up. */
  protected readonly readyStatus: number = 200;

  /** Whether the process runs (started and not stopped). */
  get running(): boolean {
    return this.#child !== undefined && !this.#exited;
  }

  /** The end of what the server printed (stdout and stderr), for a failure's message. */
  logTail(): string {
    return this.#log;
  }

  /** Starts the process and waits until it answers; throws with its log when it exits or never answers. */
  async start(): Promise<void> {
    if (this.#child !== undefined) {
      throw new Error(`${this.constructor.name} at ${this.url} is already running`);
    }
    const { bin, args } = this.command();
    const child = new Deno.Command(bin, { args, stdin: "null", stdout: "piped", stderr: "piped" }).spawn();
    this.#child = child;
    this.#exited = false;
    child.status.then(() => (this.#exited = true));
    this.#drained = Promise.all([this.#drain(child.stdout), this.#drain(child.stderr)]).then(() => {});
    const deadline = performance.now() + this.#readyMs;
    for (;;) {
      if (this.#exited) {
        const { code } = await child.status;
        await this.#reap();
        throw new Error(`${bin} exited (code ${code}) while starting; its output:\n${this.#log}`);
      }
      try {
        const r = await fetch(this.url + this.readyPath);
        await r.body?.cancel();
        if (r.status === this.readyStatus) return;
      } catch {
        // not listening yet
      }
      if (performance.now() > deadline) {
        await this.stop();
        throw new Error(
          `${bin} did not answer ${this.url}${this.readyPath} within ${this.#readyMs} ms; its output:\n${this.#log}`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async #drain(stream: ReadableStream<Uint8Array>): Promise<void> {
    try {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        this.#log = (this.#log + text).slice(-LOG_TAIL);
      }
    } catch {
      // the process went away
    }
  }

  async #reap(): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    await child.status;
    await this.#drained;
    this.#child = undefined;
    this.#drained = undefined;
  }

  /** Stops the server (SIGTERM, SIGKILL after 15 s) and waits for it; the data directory stays. Idempotent. */
  async stop(): Promise<void> {
    await this.#signal("SIGTERM", 15_000);
  }

  /** Kills the server with SIGKILL, as a crash would, and waits for it. Idempotent. */
  async kill(): Promise<void> {
    await this.#signal("SIGKILL", 0);
  }

  async #signal(sig: Deno.Signal, graceMs: number): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    try {
      child.kill(sig);
    } catch {
      // already exited
    }
    const killer = graceMs > 0
      ? setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // gone
        }
      }, graceMs)
      : undefined;
    await this.#reap();
    clearTimeout(killer);
  }

  /** Stops the server and removes the data directory when this module made it. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
    if (this.#ownsDir) await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** A series of an InfluxQL answer; nanosecond timestamps (with `epoch=ns`) are kept as strings. */
export interface InfluxSeries {
  readonly name: string;
  readonly tags?: Record<string, string>;
  readonly columns: string[];
  readonly values: unknown[][];
}

/** InfluxDB 1.x (`influxd`): HTTP API on {@linkcode TestServer.url}, the RPC bind address on loopback too. */
export class Influxd extends TestServer {
  protected readonly readyPath = "/ping";
  protected override readonly readyStatus = 204;
  /** The port of the backup/restore RPC service (top-level `bind-address`). */
  readonly rpcPort: number = freeLoopbackPort();

  /** Creates the server's files without starting it (a backend down at the agent's start). */
  constructor(options: ServerOptions = {}) {
    super(options);
    const d = this.dir;
    Deno.writeTextFileSync(
      `${d}/influxdb.conf`,
      `reporting-disabled = true
bind-address = "127.0.0.1:${this.rpcPort}"
[meta]
  dir = "${d}/meta"
[data]
  dir = "${d}/data"
  wal-dir = "${d}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:${this.port}"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
`,
    );
  }

  /** A started server. */
  static async start(options: ServerOptions = {}): Promise<Influxd> {
    const s = new Influxd(options);
    await s.start();
    return s;
  }

  protected command(): { bin: string; args: string[] } {
    return { bin: "influxd", args: ["-config", `${this.dir}/influxdb.conf`] };
  }

  /** `CREATE DATABASE` (idempotent). */
  async createDatabase(db: string): Promise<void> {
    await this.#post(undefined, `CREATE DATABASE "${db.replaceAll('"', '\\"')}"`);
  }

  /**
   * Runs an InfluxQL query against `db` and returns the series of its first statement (none: `[]`), with
   * nanosecond timestamps as strings (JSON numbers would round them). Throws on an error answer.
   */
  async query(db: string, q: string): Promise<InfluxSeries[]> {
    const body = await this.#post(db, q);
    return body.results?.[0]?.series ?? [];
  }

  // deno-lint-ignore no-explicit-any
  async #post(db: string | undefined, q: string): Promise<any> {
    const url = new URL(`${this.url}/query`);
    if (db !== undefined) url.searchParams.set("db", db);
    url.searchParams.set("q", q);
    url.searchParams.set("epoch", "ns");
    const r = await fetch(url, { method: "POST" });
    const text = (await r.text()).replace(/\[(\d{16,})\s*,/g, '["$1",');
    if (r.status !== 200) throw new Error(`InfluxDB answered ${r.status} to ${q}: ${text}`);
    const body = JSON.parse(text);
    const error = body.results?.[0]?.error ?? body.error;
    if (error !== undefined) throw new Error(`InfluxDB refused ${q}: ${error}`);
    return body;
  }
}

/** Prometheus's options. */
export interface PrometheusOptions extends ServerOptions {
  /** `storage.tsdb.out_of_order_time_window` (such as `"10m"`), for writers that send older samples. Default none. */
  readonly outOfOrderWindow?: string;
  /** Extra `scrape_configs` YAML (a list, indented as under the key). Default none. */
  readonly scrapeConfigs?: string;
}

/** A result of a Prometheus range-vector or instant query. */
export interface PromSeries {
  readonly metric: Record<string, string>;
  readonly values?: [number, string][];
  readonly value?: [number, string];
}

/** Prometheus 2.x with `--web.enable-remote-write-receiver` (write to {@linkcode Prometheus.remoteWriteUrl}). */
export class Prometheus extends TestServer {
  protected readonly readyPath = "/-/ready";

  /** Creates the server's files without starting it. */
  constructor(options: PrometheusOptions = {}) {
    super(options);
    let yml = "global:\n  scrape_interval: 1m\n";
    if (options.outOfOrderWindow !== undefined) {
      yml += `storage:\n  tsdb:\n    out_of_order_time_window: ${options.outOfOrderWindow}\n`;
    }
    if (options.scrapeConfigs !== undefined) yml += `scrape_configs:\n${options.scrapeConfigs}\n`;
    Deno.writeTextFileSync(`${this.dir}/prometheus.yml`, yml);
  }

  /** A started server. */
  static async start(options: PrometheusOptions = {}): Promise<Prometheus> {
    const s = new Prometheus(options);
    await s.start();
    return s;
  }

  /** The remote-write receiver's URL. */
  get remoteWriteUrl(): string {
    return `${this.url}/api/v1/write`;
  }

  protected command(): { bin: string; args: string[] } {
    return {
      bin: "prometheus",
      args: [
        `--config.file=${this.dir}/prometheus.yml`,
        `--storage.tsdb.path=${this.dir}/data`,
        `--web.listen-address=127.0.0.1:${this.port}`,
        "--web.enable-remote-write-receiver",
        "--log.level=warn",
      ],
    };
  }

  /** An instant query (`/api/v1/query`) at `time` (seconds; default a minute from now). Throws on an error. */
  async query(promql: string, time = Date.now() / 1000 + 60): Promise<PromSeries[]> {
    const url = new URL(`${this.url}/api/v1/query`);
    url.searchParams.set("query", promql);
    url.searchParams.set("time", String(time));
    const r = await fetch(url);
    const body = await r.json();
    if (r.status !== 200) {
      throw new Error(`Prometheus answered ${r.status} to ${promql}: ${JSON.stringify(body)}`);
    }
    return body.data.result;
  }
}

/** VictoriaMetrics's options. */
export interface VictoriaMetricsOptions extends ServerOptions {
  /**
   * `-dedup.minScrapeInterval`: samples of a series within it are one. Default `"1ms"`, so that a batch sent
   * twice (an at-least-once replay) is stored once; `""` keeps every duplicate.
   */
  readonly dedup?: string;
}

/** A series as `/api/v1/export` gives it: values and millisecond timestamps, in storage order. */
export interface VmSeries {
  readonly metric: Record<string, string>;
  readonly values: number[];
  readonly timestamps: number[];
}

/** VictoriaMetrics single-node (write to {@linkcode VictoriaMetrics.remoteWriteUrl}, read with `exportSeries`). */
export class VictoriaMetrics extends TestServer {
  protected readonly readyPath = "/health";
  readonly #dedup: string;

  /** Creates the server without starting it. */
  constructor(options: VictoriaMetricsOptions = {}) {
    super(options);
    this.#dedup = options.dedup ?? "1ms";
  }

  /** A started server. */
  static async start(options: VictoriaMetricsOptions = {}): Promise<VictoriaMetrics> {
    const s = new VictoriaMetrics(options);
    await s.start();
    return s;
  }

  /** The remote-write receiver's URL. */
  get remoteWriteUrl(): string {
    return `${this.url}/api/v1/write`;
  }

  protected command(): { bin: string; args: string[] } {
    return {
      bin: "victoria-metrics",
      args: [
        `-storageDataPath=${this.dir}/data`,
        `-httpListenAddr=127.0.0.1:${this.port}`,
        ...(this.#dedup === "" ? [] : [`-dedup.minScrapeInterval=${this.#dedup}`]),
        "-loggerLevel=ERROR",
      ],
    };
  }

  /** Every series matching `match` (a series selector), after making what was written searchable. */
  async exportSeries(match: string): Promise<VmSeries[]> {
    const f = await fetch(`${this.url}/internal/force_flush`);
    await f.body?.cancel();
    const url = new URL(`${this.url}/api/v1/export`);
    url.searchParams.set("match[]", match);
    const r = await fetch(url);
    const text = await r.text();
    if (r.status !== 200) throw new Error(`VictoriaMetrics answered ${r.status} to export ${match}: ${text}`);
    return text.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l));
  }
}

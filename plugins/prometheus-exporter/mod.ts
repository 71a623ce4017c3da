/**
 * The `prometheus-exporter` plugin: an output that keeps the latest state of every series in memory and serves
 * it at `GET /metrics` for Prometheus (or any OpenMetrics scraper) to pull, with Alumet's keys (`host`, `port`,
 * `prefix`, `suffix`, `add_attributes_to_labels`). It binds 127.0.0.1 by default, where Alumet binds 0.0.0.0.
 *
 * Energy and every other `delta` metric are exported as counters of their sum (`…_joules_total`), gauges as
 * gauges, counters as counters, in the Prometheus base units.
 *
 * @module
 */
import { duration, z } from "../../src/plugin/schema.ts";
import { definePlugin } from "../../src/plugin/define.ts";
import type {
  ElementContext,
  Output,
  Plugin,
  PreStartContext,
  StartContext,
} from "../../src/plugin/plugin.ts";
import type { Batch } from "../../src/model/batch.ts";
import { AlumetError, messageOf } from "../../src/errors.ts";
import type { Logger } from "../../src/log.ts";
import {
  OPENMETRICS_CONTENT_TYPE,
  PrometheusState,
  type StateOptions,
  TEXT_CONTENT_TYPE,
  wantsOpenMetrics,
} from "./state.ts";

export { PrometheusState, type StateOptions, wantsOpenMetrics } from "./state.ts";
export { escapeLabelValue, exportedName, formatValue, labelName, promUnit, sanitizeName } from "./naming.ts";

/** The schema of `[plugins.prometheus-exporter]`, with every default: `config regen` writes them in this order. */
export const prometheusExporterConfigSchema = z.strictObject({
  host: z.string().min(1, { error: "a host name or an IP address, such as 127.0.0.1" }).default("127.0.0.1"),
  port: z.int().min(0).max(65535).default(9091),
  prefix: z.string().default(""),
  suffix: z.string().default("_alumet"),
  add_attributes_to_labels: z.boolean().default(true),
  series_ttl: duration().prefault("5m"),
  bearer_token: z.string().default(""),
  bearer_token_env: z.string().default(""),
});

/** The validated `[plugins.prometheus-exporter]` table. */
export type PrometheusExporterConfig = z.infer<typeof prometheusExporterConfigSchema>;

/** Where and how a {@linkcode PrometheusExporter} serves. */
export interface ServeOptions {
  /** The address to bind. Default `127.0.0.1`. */
  readonly host?: string;
  /** The TCP port; 0 picks a free one. Default 9091. */
  readonly port?: number;
  /** When set, a scrape must send `Authorization: Bearer <token>`. */
  readonly bearerToken?: string;
  /** Where the server logs (start, errors). */
  readonly log?: Logger;
}

const encoder = new TextEncoder();

/** Compares two strings in a time that depends on their lengths only. */
function sameSecret(a: string, b: string): boolean {
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < x.length; i++) diff |= x[i]! ^ (y[i % Math.max(1, y.length)] ?? 0);
  return diff === 0;
}

/** True for an address only this machine can reach. */
function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || /^127\./.test(host);
}

/**
 * The exporter's output: `write` folds each batch into a {@linkcode PrometheusState}, which an HTTP server
 * (`Deno.serve`, started by {@linkcode PrometheusExporter.listen}) renders on each scrape; `close` stops the
 * server. `GET /metrics` answers OpenMetrics 1.0.0 when the scraper's `Accept` asks for it, else the text
 * format 0.0.4; another path is 404, another method 405, a missing or wrong bearer token 401.
 *
 * @example
 * ```ts
 * import { PrometheusExporter, PrometheusState } from "./mod.ts";
 * import { Batch } from "../../src/model/batch.ts";
 * import { MetricRegistry } from "../../src/model/metrics.ts";
 * import { unit } from "../../src/model/units.ts";
 * import assert from "node:assert/strict";
 * const registry = new MetricRegistry();
 * const power = registry.register("test", { name: "power", unit: unit("W"), valueType: "f64" });
 * const exporter = new PrometheusExporter(new PrometheusState(), { port: 0 });
 * exporter.listen();
 * const batch = new Batch();
 * batch.push(power, 42.5);
 * exporter.write(batch, { metric: (id) => registry.get(id) });
 * const text = await (await fetch(exporter.describe())).text();
 * assert.match(text, /^power_alumet_watts\{resource_kind="local_machine",.*\} 42.5$/m);
 * await exporter.close();
 * ```
 */
export class PrometheusExporter implements Output {
  /** The series served. */
  readonly state: PrometheusState;
  readonly #host: string;
  readonly #port: number;
  readonly #token: string | undefined;
  readonly #log: Logger | undefined;
  #server: Deno.HttpServer<Deno.NetAddr> | undefined;
  #url: string;

  constructor(state: PrometheusState, options: ServeOptions = {}) {
    this.state = state;
    this.#host = options.host ?? "127.0.0.1";
    this.#port = options.port ?? 9091;
    this.#token = options.bearerToken === "" ? undefined : options.bearerToken;
    this.#log = options.log;
    this.#url = this.#urlOf(this.#port);
  }

  /**
   * Starts the HTTP server. Throws an {@linkcode AlumetError} naming the address when it cannot bind (the port
   * is taken, the address is not this machine's, no `--allow-net`).
   */
  listen(): void {
    if (this.#server !== undefined) return;
    try {
      this.#server = Deno.serve({
        hostname: this.#host,
        port: this.#port,
        onListen: () => {},
        onError: (e) => {
          this.#log?.error(`Serving a scrape failed: ${messageOf(e)}`);
          return new Response("Internal Server Error\n", { status: 500 });
        },
      }, (req) => this.#handle(req));
    } catch (e) {
      const taken = e instanceof Deno.errors.AddrInUse
        ? ": the port is taken (another exporter?); set plugins.prometheus-exporter.port to a free one"
        : `: ${messageOf(e)}`;
      throw new AlumetError(`Cannot serve Prometheus metrics on ${this.#hostPort(this.#port)}${taken}`, {
        cause: e,
      });
    }
    this.#url = this.#urlOf(this.#server.addr.port);
    this.#log?.info(
      `Serving Prometheus metrics at ${this.#url}${this.#token ? " (bearer token required)" : ""}`,
    );
    if (!isLoopback(this.#host)) {
      this.#log?.warn(
        `Listening on ${this.#host}: other machines can read the metrics` +
          (this.#token ? " (the bearer token travels in clear over HTTP)" : " without a token"),
      );
    }
  }

  /** The port the server listens on (the one picked when the port is 0); the configured one before `listen`. */
  get port(): number {
    return this.#server?.addr.port ?? this.#port;
  }

  /** Folds the batch into the served state. */
  write(batch: Batch, ctx: ElementContext): void {
    this.state.write(batch, ctx);
  }

  /** Stops the server (waits up to 2 s for scrapes in progress). Idempotent. */
  async close(): Promise<void> {
    const server = this.#server;
    if (server === undefined) return;
    this.#server = undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      server.shutdown(),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, 2000))),
    ]);
    clearTimeout(timer);
  }

  /** The URL to scrape. */
  describe(): string {
    return this.#url;
  }

  #handle(req: Request): Response {
    const url = new URL(req.url);
    if (url.pathname !== "/metrics") {
      return new Response("Not Found: the metrics are at /metrics\n", { status: 404 });
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("Method Not Allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
    }
    if (this.#token !== undefined) {
      const auth = req.headers.get("authorization") ?? "";
      const m = /^Bearer\s+(.+)$/i.exec(auth);
      if (m === null || !sameSecret(m[1]!.trim(), this.#token)) {
        return new Response("Unauthorized\n", {
          status: 401,
          headers: { "www-authenticate": 'Bearer realm="alumet"' },
        });
      }
    }
    const om = wantsOpenMetrics(req.headers.get("accept"));
    const body = this.state.render(om);
    return new Response(req.method === "HEAD" ? null : body, {
      headers: { "content-type": om ? OPENMETRICS_CONTENT_TYPE : TEXT_CONTENT_TYPE },
    });
  }

  #hostPort(port: number): string {
    return `${
      this.#host.includes(":") && !this.#host.startsWith("[") ? `[${this.#host}]` : this.#host
    }:${port}`;
  }

  #urlOf(port: number): string {
    return `http://${this.#hostPort(port)}/metrics`;
  }
}

/** The bearer token of a config: `bearer_token`, else the variable `bearer_token_env` names; undefined for none. */
function tokenOf(config: PrometheusExporterConfig): string | undefined {
  if (config.bearer_token !== "") return config.bearer_token;
  if (config.bearer_token_env === "") return undefined;
  const v = Deno.env.get(config.bearer_token_env);
  if (v === undefined || v === "") {
    throw new AlumetError(
      `plugins.prometheus-exporter.bearer_token_env names the variable ${config.bearer_token_env}, which is ` +
        `not set (or empty): set it, or remove bearer_token_env to serve without a token`,
    );
  }
  return v;
}

/**
 * The `prometheus-exporter` plugin: adds one output, `out`, served at `http://<host>:<port>/metrics`. The
 * series survive a restart of the plugin (the counters stay monotonic); the server stops with the output.
 *
 * @example
 * ```ts
 * import { prometheusExporterPlugin } from "./mod.ts";
 * import assert from "node:assert/strict";
 * assert.equal(prometheusExporterPlugin.defaultConfig().host, "127.0.0.1");
 * assert.equal(prometheusExporterPlugin.configSchema.parse({}).series_ttl, 300_000);
 * ```
 */
export const prometheusExporterPlugin = definePlugin({
  name: "prometheus-exporter",
  version: "0.1.0",
  description: "Serves the measurements at /metrics for Prometheus to scrape (OpenMetrics or text format)",
  config: prometheusExporterConfigSchema,
  init: function initPrometheusExporter(config: PrometheusExporterConfig): Plugin {
    const token = tokenOf(config);
    let state: PrometheusState | undefined;
    const stateOptions = (log: Logger): StateOptions => ({
      prefix: config.prefix,
      suffix: config.suffix,
      addAttributesToLabels: config.add_attributes_to_labels,
      seriesTtlMs: config.series_ttl,
      log,
    });
    return {
      start: function startPrometheusExporter(ctx: StartContext): void {
        state ??= new PrometheusState(stateOptions(ctx.log));
        const exporter = new PrometheusExporter(state, {
          host: config.host,
          port: config.port,
          ...(token !== undefined ? { bearerToken: token } : {}),
          log: ctx.log,
        });
        exporter.listen();
        ctx.addOutput("out", exporter);
      },
      preStart: function preStartPrometheusExporter(ctx: PreStartContext): void {
        ctx.events.on("endConsumerMeasurement", (cs) => state?.endConsumers(cs));
        ctx.events.on("startConsumerMeasurement", (cs) => state?.startConsumers(cs));
      },
    };
  },
});

export default prometheusExporterPlugin;

// A test OTLP/HTTP receiver: Deno.serve on a loopback port, POST /v1/metrics, decoding protobuf with the official
// OTLP schema (the protobufjs root of @opentelemetry/otlp-transformer, see deps.ts) and JSON. Tests only: it
// stands in for an OpenTelemetry Collector, which is not installed here.
// deno-lint-ignore-file no-explicit-any
import { otlpRoot } from "./deps.ts";

const v1 = otlpRoot.opentelemetry.proto.collector.metrics.v1;
const Req = v1.ExportMetricsServiceRequest;
const Resp = v1.ExportMetricsServiceResponse;
const OPTS = { longs: String, enums: String, defaults: false };

/** One request as received. */
export interface Received {
  readonly contentType: string;
  readonly headers: Headers;
  /** Decoded with the official schema (JSON: normalised through it), longs and enums as strings. */
  readonly request: any;
  /** The JSON body as sent (JSON requests only). */
  readonly raw?: any;
}

/** What the receiver answers to the next requests. */
export type Mode =
  | { kind: "ok" }
  | { kind: "status"; status: number; body?: string }
  | { kind: "partial"; rejected: number; message: string };

export class OtlpReceiver {
  readonly received: Received[] = [];
  mode: Mode = { kind: "ok" };
  #server: Deno.HttpServer<Deno.NetAddr> | undefined;
  port = 0;

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Starts on `port` (0: a free one; the same port again after a stop). */
  start(port = this.port): void {
    this.#server = Deno.serve({ hostname: "127.0.0.1", port, onListen: () => {} }, (req) => this.#handle(req));
    this.port = this.#server.addr.port;
  }

  async stop(): Promise<void> {
    const s = this.#server;
    this.#server = undefined;
    await s?.shutdown();
  }

  async #handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    if (req.method !== "POST" || url.pathname !== "/v1/metrics") return new Response("not found", { status: 404 });
    const ct = req.headers.get("content-type") ?? "";
    const body = new Uint8Array(await req.arrayBuffer());
    if (this.mode.kind === "status") {
      return new Response(this.mode.body ?? "refused", { status: this.mode.status });
    }
    let request: any;
    let raw: any;
    const json = ct.startsWith("application/json");
    try {
      if (ct.startsWith("application/x-protobuf")) request = Req.toObject(Req.decode(body), OPTS);
      else if (json) {
        raw = JSON.parse(new TextDecoder().decode(body));
        request = Req.toObject(Req.fromObject(raw), OPTS);
      } else return new Response("unsupported media type", { status: 415 });
    } catch (e) {
      return new Response(`cannot decode: ${e}`, { status: 400 });
    }
    this.received.push({ contentType: ct, headers: req.headers, request, raw });
    const partial = this.mode.kind === "partial"
      ? { partialSuccess: { rejectedDataPoints: this.mode.rejected, errorMessage: this.mode.message } }
      : {};
    if (json) return Response.json(partial);
    return new Response(Resp.encode(Resp.fromObject(partial)).finish(), {
      headers: { "content-type": "application/x-protobuf" },
    });
  }

  /** Every data point of metric `name`, in arrival order, with its metric. */
  points(name: string): { metric: any; point: any }[] {
    const out: { metric: any; point: any }[] = [];
    for (const r of this.received) {
      for (const rm of r.request.resourceMetrics ?? []) {
        for (const sm of rm.scopeMetrics ?? []) {
          for (const m of sm.metrics ?? []) {
            if (m.name !== name) continue;
            for (const p of (m.sum ?? m.gauge).dataPoints ?? []) out.push({ metric: m, point: p });
          }
        }
      }
    }
    return out;
  }
}

/** KeyValue list → plain object of the AnyValue's one field. */
export function attrs(list: any[] | undefined): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const kv of list ?? []) o[kv.key] = Object.values(kv.value)[0];
  return o;
}

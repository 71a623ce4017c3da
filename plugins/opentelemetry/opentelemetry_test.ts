import assert from "node:assert/strict";
import {
  OpentelemetryOutput,
  opentelemetryPlugin,
  OtlpEncoder,
  otlpName,
  otlpUnit,
  parseOtlpHeaders,
  parsePartialSuccess,
  resolveEndpoint,
} from "./mod.ts";
import { Agent } from "../../src/agent/agent.ts";
import { definePlugin } from "../../src/plugin/define.ts";
import { Batch } from "../../src/model/batch.ts";
import { MetricRegistry } from "../../src/model/metrics.ts";
import { customUnit, unit } from "../../src/model/units.ts";
import { checkConfigBlock } from "../../src/testing/readme.ts";
import { exportedName, promUnit } from "../prometheus-exporter/mod.ts";
import { ConfigError } from "../../src/errors.ts";
import { validatePluginConfig } from "../../src/plugin/config.ts";
import { type LogSink, setLogSink } from "../../src/log.ts";
import { attrs, OtlpReceiver } from "./testdata/receiver.ts";

// No OpenTelemetry Collector is packaged here: the test receiver (testdata/receiver.ts) stands in for it, and
// decodes every request with the official OTLP schema (the protobufjs root of @opentelemetry/otlp-transformer).

function captureLogs(): { lines: string[]; [Symbol.dispose](): void } {
  const lines: string[] = [];
  const prev = setLogSink((level, scope, msg) => lines.push(`${level} ${scope}: ${msg}`));
  return { lines, [Symbol.dispose]: () => void setLogSink(prev as LogSink) };
}

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const end = performance.now() + ms;
  while (!(await cond())) {
    if (performance.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("opentelemetry README: the default config, the guarantee, and gRPC 4317 vs OTLP/HTTP 4318", () => {
  const readme = Deno.readTextFileSync(new URL("./README.md", import.meta.url));
  checkConfigBlock(readme, opentelemetryPlugin);
  assert.match(readme, /Guarantee: at-least-once/);
  assert.match(readme, /gRPC/);
  assert.match(readme, /4317/);
  assert.match(readme, /4318/);
});

Deno.test("resolveEndpoint: collector_host, the OTEL_EXPORTER_OTLP_* variables, Alumet's 4317", async (t) => {
  const none = () => undefined;
  const cfg = { collector_host: "", protocol: "" as const, headers: {} };
  const envOf = (e: Record<string, string>) => (n: string) => e[n];
  await t.step("default: http://localhost:4318/v1/metrics, protobuf, no warning", () => {
    const r = resolveEndpoint(cfg, none);
    assert.equal(r.url.href, "http://localhost:4318/v1/metrics");
    assert.equal(r.protocol, "http/protobuf");
    assert.deepEqual(r.warnings, []);
  });
  await t.step("Alumet's default collector_host: port 4318 of that host, one warning", () => {
    const r = resolveEndpoint({ ...cfg, collector_host: "http://localhost:4317" }, none);
    assert.equal(r.url.href, "http://localhost:4318/v1/metrics");
    assert.equal(r.warnings.length, 1);
    assert.match(r.warnings[0]!, /OTLP\/HTTP/);
    const other = resolveEndpoint({ ...cfg, collector_host: "https://otel.example:4317/" }, none);
    assert.equal(other.url.href, "https://otel.example:4318/v1/metrics");
  });
  await t.step("collector_host: a base URL, or already …/v1/metrics", () => {
    assert.equal(
      resolveEndpoint({ ...cfg, collector_host: "http://c:9000/otlp/" }, none).url.href,
      "http://c:9000/otlp/v1/metrics",
    );
    assert.equal(
      resolveEndpoint({ ...cfg, collector_host: "http://c:4318/v1/metrics" }, none).url.href,
      "http://c:4318/v1/metrics",
    );
  });
  await t.step("environment: METRICS_ENDPOINT as is, ENDPOINT as a base; the config wins", () => {
    const env = envOf({
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://base:4318",
      OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: "http://m:1234/custom",
    });
    assert.equal(resolveEndpoint(cfg, env).url.href, "http://m:1234/custom");
    assert.equal(
      resolveEndpoint(cfg, envOf({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://base:4318" })).url.href,
      "http://base:4318/v1/metrics",
    );
    assert.equal(
      resolveEndpoint({ ...cfg, collector_host: "http://mine:4318" }, env).url.href,
      "http://mine:4318/v1/metrics",
    );
  });
  await t.step("protocol and headers from the environment", () => {
    const env = envOf({
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_EXPORTER_OTLP_HEADERS: "api-key=s%3Dcret,x-a=1",
      OTEL_EXPORTER_OTLP_METRICS_HEADERS: "x-a=2",
    });
    const r = resolveEndpoint({ ...cfg, headers: { "x-b": "3" } }, env);
    assert.equal(r.protocol, "http/json");
    assert.deepEqual(r.headers, { "api-key": "s=cret", "x-a": "2", "x-b": "3" });
    assert.equal(resolveEndpoint({ ...cfg, protocol: "http/protobuf" }, env).protocol, "http/protobuf");
    const grpc = resolveEndpoint(cfg, envOf({ OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" }));
    assert.equal(grpc.protocol, "http/protobuf");
    assert.match(grpc.warnings[0]!, /grpc/);
    assert.deepEqual(parseOtlpHeaders(""), {});
  });
  await t.step("a bad URL is a config error naming its key or variable, exit code 2", () => {
    const configError = (key: string, re: RegExp) => (e: unknown) => {
      assert.ok(e instanceof ConfigError, String(e));
      assert.equal(e.problem.key, key);
      assert.equal(e.exitCode, 2);
      assert.match(e.message, re);
      return true;
    };
    const key = "plugins.opentelemetry.collector_host";
    assert.throws(
      () => resolveEndpoint({ ...cfg, collector_host: "not a url" }, none),
      configError(key, /http/),
    );
    assert.throws(
      () => resolveEndpoint({ ...cfg, collector_host: "ftp://x" }, none),
      configError(key, /http/),
    );
    for (const name of ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"]) {
      assert.throws(
        () => resolveEndpoint(cfg, envOf({ [name]: "http://u:hunter2@c:4318" })),
        configError(
          name,
          /^Invalid config in the environment: OTEL_.*without credentials.*"http:\/\/\*\*\*@c:4318"$/,
        ),
      );
    }
  });
  await t.step("the 4317 warning shows no credentials nor query values", () => {
    const r = resolveEndpoint({ ...cfg, collector_host: "https://otel.example:4317/?api_key=s3cret" }, none);
    assert.equal(r.url.href, "https://otel.example:4318/v1/metrics?api_key=s3cret", "sent as configured");
    assert.equal(r.warnings.length, 1);
    assert.doesNotMatch(r.warnings[0]!, /s3cret/);
    assert.match(r.warnings[0]!, /https:\/\/otel\.example:4317\/\?api_key=\*\*\*/);
    assert.throws(
      () => resolveEndpoint({ ...cfg, collector_host: "http://user:hunter2@otel:4317/?k=v" }, none),
      (e: Error) => !/hunter2|user|k=v/.test(e.message) && /\*\*\*@otel:4317\/\?k=\*\*\*/.test(e.message),
    );
  });
});

Deno.test("opentelemetry config mistakes are config errors naming the key (exit code 2)", async (t) => {
  const problemOf = (table: Record<string, unknown>): ConfigError | undefined => {
    try {
      validatePluginConfig(opentelemetryPlugin, { name: "opentelemetry", table }, "a.toml");
      return undefined;
    } catch (e) {
      if (e instanceof ConfigError) return e;
      throw e;
    }
  };
  const expectProblem = (table: Record<string, unknown>, key: string, re: RegExp) => {
    const e = problemOf(table);
    assert.ok(e !== undefined, `${JSON.stringify(table)} should be refused`);
    assert.equal(e.problem.key, key, e.message);
    assert.equal(e.exitCode, 2);
    assert.match(e.message, /^Invalid config in a\.toml: /);
    assert.match(e.message, re);
    return e;
  };
  await t.step("collector_host: empty, or an http(s) URL without credentials (redacted)", () => {
    const key = "plugins.opentelemetry.collector_host";
    expectProblem(
      { collector_host: "localhost:4318" },
      key,
      /http:\/\/ or https:\/\/ URL, such as "http:\/\/localhost:4318"/,
    );
    const e = expectProblem(
      { collector_host: "http://user:hunter2@otel:4318?k=v" },
      key,
      /without credentials/,
    );
    assert.doesNotMatch(e.message, /hunter2|user|k=v/);
    assert.equal(problemOf({ collector_host: "" }), undefined);
    assert.equal(
      problemOf({ collector_host: "http://localhost:4317" }),
      undefined,
      "Alumet's default: a warning",
    );
  });
  await t.step("headers: names, one-line values, not Content-Type", () => {
    expectProblem(
      { headers: { "api key": "x" } },
      'plugins.opentelemetry.headers."api key"',
      /HTTP header name/,
    );
    expectProblem({ headers: { a: "x\r\ny: z" } }, "plugins.opentelemetry.headers.a", /one line/);
    expectProblem(
      { headers: { "Content-Type": "x" } },
      "plugins.opentelemetry.headers.Content-Type",
      /other than/,
    );
    assert.equal(problemOf({ headers: { "api-key": "x", Authorization: "Bearer t" } }), undefined);
  });
});

Deno.test("names and units: sanitised names, UCUM codes or display names", () => {
  assert.equal(otlpName("", "rapl_consumed_energy", "_alumet"), "rapl_consumed_energy_alumet");
  assert.equal(otlpName("p_", "mem_active(anon)", ""), "p_mem_active_anon");
  // meminfo's Active(anon): as the Prometheus exporter and remote write (active_anon_alumet_bytes), one `_`.
  assert.equal(otlpName("", "active(anon)", "_alumet"), "active_anon_alumet");
  assert.equal(
    exportedName("active(anon)", promUnit(unit("By")).name, "gauge", "", "_alumet").sample,
    "active_anon_alumet_bytes",
  );
  assert.equal(otlpName("", "a (b) c", "_x"), "a_b_c_x", "a run of characters becomes one _");
  assert.equal(otlpName("", "dots.and-dashes/ok", ""), "dots.and-dashes/ok");
  assert.equal(otlpName("", "_x", ""), "a_x");
  assert.equal(otlpUnit(unit("J", "milli"), false), "mJ");
  assert.equal(otlpUnit(unit("By"), false), "By");
  assert.equal(otlpUnit(unit("By"), true), "B");
  assert.equal(otlpUnit(unit("1"), false), "1");
  assert.equal(otlpUnit(customUnit("packets", "pkt"), true), "pkt");
});

Deno.test("OtlpEncoder: protobuf decoded by the official schema equals the JSON form", async () => {
  const { otlpRoot } = await import("./testdata/deps.ts");
  const Req = otlpRoot.opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest;
  const opts = { longs: String, enums: String, defaults: false };
  const registry = new MetricRegistry();
  const e = registry.register("t", { name: "energy", unit: unit("J"), valueType: "u64", kind: "delta" });
  const g = registry.register("t", { name: "big", unit: unit("By"), valueType: "u64" });
  const f = registry.register("t", { name: "nanny", unit: unit("W"), valueType: "f64" });
  const ctx = { metric: (id: number) => registry.get(id) };
  const batch = new Batch();
  const res = { kind: "cpu_package", id: "0" };
  const a = { resource_id: "dup", n: 2n ** 70n, neg: -5, f: 0.5 };
  batch.push(e, 10, { timestamp: 1_000n, resource: res, attributes: a });
  batch.push(e, 2n ** 62n, { timestamp: 2_000n, resource: res, attributes: a });
  batch.push(g, 2n ** 64n - 1n, { timestamp: 3_000n });
  batch.push(f, NaN, { timestamp: 4_000n });
  const resource = { "service.name": "alumet", "host.name": "h" };
  const pb = new OtlpEncoder({ resource }).encode(batch, ctx, "http/protobuf");
  const js = new OtlpEncoder({ resource }).encode(batch, ctx, "http/json");
  assert.equal(pb.points, 4);
  const fromPb = Req.toObject(Req.decode(pb.payload), opts);
  const raw = JSON.parse(new TextDecoder().decode(js.payload));
  const fromJs = Req.toObject(Req.fromObject({ resourceMetrics: [raw] }), opts);
  assert.deepEqual(fromJs, fromPb);
  const metrics = fromPb.resourceMetrics[0].scopeMetrics[0].metrics;
  assert.deepEqual(fromPb.resourceMetrics[0].scopeMetrics[0].scope, { name: "alumet", version: "0.1.0" });
  assert.deepEqual(attrs(fromPb.resourceMetrics[0].resource.attributes), resource);
  const energy = metrics[0];
  assert.equal(energy.name, "energy_alumet");
  assert.equal(energy.unit, "J");
  assert.equal(energy.sum.aggregationTemporality, "AGGREGATION_TEMPORALITY_CUMULATIVE");
  assert.equal(energy.sum.isMonotonic, true);
  assert.deepEqual(energy.sum.dataPoints.map((p: { asInt: string }) => p.asInt), [
    "10",
    String(2n ** 62n + 10n),
  ]);
  assert.deepEqual(attrs(energy.sum.dataPoints[0].attributes), {
    resource_kind: "cpu_package",
    resource_id: "0",
    resource_consumer_kind: "local_machine",
    alumet_attribute__resource_id: "dup",
    n: String(2n ** 70n),
    neg: "-5",
    f: 0.5,
  });
  assert.equal(energy.sum.dataPoints[1].startTimeUnixNano, "999", "a point before the start: 1 ns before it");
  assert.equal(metrics[1].unit, "By");
  assert.ok(metrics[1].gauge, "a gauge");
  assert.equal(metrics[1].gauge.dataPoints[0].asDouble, 2 ** 64);
  assert.ok(Number.isNaN(metrics[2].gauge.dataPoints[0].asDouble));
  assert.equal(raw.scopeMetrics[0].metrics[2].gauge.dataPoints[0].asDouble, "NaN");
});

Deno.test("OtlpEncoder: counters keep their values with a start time that moves at a reset", () => {
  const registry = new MetricRegistry();
  const c = registry.register("t", { name: "c", unit: unit("1"), valueType: "u64", kind: "counter" });
  const d = registry.register("t", { name: "d", unit: unit("J"), valueType: "f64", kind: "delta" });
  const ctx = { metric: (id: number) => registry.get(id) };
  const enc = new OtlpEncoder({ resource: {}, addAttributesToLabels: false });
  const batch = new Batch();
  for (const [t, v] of [[1n, 5], [2n, 7], [3n, 2], [4n, 4]] as const) batch.push(c, v, { timestamp: t });
  // Without attributes as labels, two series that differ only by attributes are one: their deltas add up.
  batch.push(d, 1.5, { timestamp: 5n, attributes: { domain: "a" } });
  batch.push(d, 2, { timestamp: 5n, attributes: { domain: "b" } });
  batch.push(d, Infinity, { timestamp: 6n });
  const out = enc.encode(batch, ctx, "http/json");
  assert.equal(out.skipped, 1);
  const raw = JSON.parse(new TextDecoder().decode(out.payload));
  const [cm, dm] = raw.scopeMetrics[0].metrics;
  assert.deepEqual(
    cm.sum.dataPoints.map((p: Record<string, string>) => [p.startTimeUnixNano, p.asInt]),
    [["1", "5"], ["1", "7"], ["2", "2"], ["2", "4"]],
  );
  assert.deepEqual(dm.sum.dataPoints.map((p: Record<string, number>) => p.asDouble), [1.5, 3.5]);
  assert.equal(enc.seriesCount, 2);
});

Deno.test("OtlpEncoder: a delta series' sum starts at the output's start, before its first point", async (t) => {
  const registry = new MetricRegistry();
  const d = registry.register("t", { name: "d", unit: unit("J"), valueType: "f64", kind: "delta" });
  const ctx = { metric: (id: number) => registry.get(id) };
  const START = 1_000_000n;
  const points = (enc: OtlpEncoder, push: (b: Batch) => void, now = 0) => {
    const batch = new Batch();
    push(batch);
    const raw = JSON.parse(new TextDecoder().decode(enc.encode(batch, ctx, "http/json", now).payload));
    return (raw.scopeMetrics[0]?.metrics[0]?.sum.dataPoints ?? []).map((p: Record<string, unknown>) => [
      p.startTimeUnixNano,
      p.timeUnixNano,
      p.asDouble,
    ]);
  };
  await t.step("the first point's window is not empty: start < time, and its value counts from 0", () => {
    const enc = new OtlpEncoder({ resource: {}, startTime: START });
    assert.deepEqual(
      points(enc, (b) => {
        b.push(d, 2, { timestamp: 1_500_000n });
        b.push(d, 3, { timestamp: 2_500_000n });
      }),
      [["1000000", "1500000", 2], ["1000000", "2500000", 5]],
    );
    // A series that appears later (a new consumer) had nothing before: its sum also began at the start.
    assert.deepEqual(
      points(enc, (b) => b.push(d, 4, { timestamp: 9_000_000n, consumer: { kind: "process", id: "7" } })),
      [["1000000", "9000000", 4]],
    );
  });
  await t.step("a point not after the start: the sum begins 1 ns before it", () => {
    const enc = new OtlpEncoder({ resource: {}, startTime: START });
    assert.deepEqual(points(enc, (b) => b.push(d, 1, { timestamp: START })), [["999999", "1000000", 1]]);
  });
  await t.step("a series forgotten after an hour idle starts again after its last point", () => {
    const enc = new OtlpEncoder({ resource: {}, startTime: START });
    const a = { kind: "process", id: "1" };
    assert.deepEqual(points(enc, (b) => b.push(d, 5, { timestamp: 2_000_000n, consumer: a }), 0), [
      ["1000000", "2000000", 5],
    ]);
    // Two hours later another series keeps the encoder busy; `a` is forgotten.
    const hours2 = 2 * 3_600_000;
    points(enc, (b) => b.push(d, 1, { timestamp: 3_000_000n }), hours2);
    assert.equal(enc.seriesCount, 1);
    assert.deepEqual(points(enc, (b) => b.push(d, 7, { timestamp: 8_000_000n, consumer: a }), hours2 + 1), [
      ["2000001", "8000000", 7],
    ]);
  });
  await t.step("by default the start is when the encoder was made (the output's start)", () => {
    const before = BigInt(Date.now()) * 1_000_000n;
    const enc = new OtlpEncoder({ resource: {} });
    const after = BigInt(Date.now()) * 1_000_000n;
    const [[start]] = points(enc, (b) => b.push(d, 1, { timestamp: after + 5_000_000_000n }));
    assert.ok(BigInt(start) >= before && BigInt(start) <= after, `${start} within [${before}, ${after}]`);
  });
});

Deno.test("parsePartialSuccess reads protobuf and JSON answers", () => {
  assert.equal(parsePartialSuccess(new Uint8Array(), "application/x-protobuf"), undefined);
  assert.deepEqual(
    parsePartialSuccess(
      new TextEncoder().encode('{"partialSuccess":{"rejectedDataPoints":"3","errorMessage":"bad"}}'),
      "application/json",
    ),
    { rejected: 3, message: "bad" },
  );
  // partial_success { rejected_data_points: 2, error_message: "x" }
  const pb = new Uint8Array([0x0a, 0x05, 0x08, 0x02, 0x12, 0x01, 0x78]);
  assert.deepEqual(parsePartialSuccess(pb, "application/x-protobuf"), { rejected: 2, message: "x" });
});

/** 2024-05-01T12:00:00Z plus n ms plus 123 ns: the nanoseconds must come through exact. */
const T0 = 1_714_564_800_000_000_000n;
const tsOf = (n: number) => String(T0 + BigInt(n) * 1_000_000n + 123n);

/** A deterministic source: energy (delta, J), a count (counter), a temperature (gauge, °C); `n` polls so far. */
function detSource(state: { n: number }) {
  return definePlugin({
    name: "det",
    start(ctx) {
      const energy = ctx.createMetric({
        name: "det_energy",
        unit: unit("J"),
        valueType: "f64",
        kind: "delta",
        description: "energy per poll",
      });
      const count = ctx.createMetric({
        name: "det_count",
        unit: unit("1"),
        valueType: "u64",
        kind: "counter",
      });
      const temp = ctx.createMetric({ name: "det_temp", unit: unit("Cel"), valueType: "f64" });
      const pkg = { kind: "cpu_package", id: "0" };
      const domain = { domain: "package" };
      const zone = { zone: "a b", core: 3, hot: true };
      ctx.addSource("s", {
        poll(batch) {
          const i = state.n++;
          const timestamp = T0 + BigInt(i) * 1_000_000n + 123n;
          batch.push(energy, i + 0.5, { timestamp, resource: pkg, attributes: domain });
          batch.push(count, i * 3, { timestamp });
          batch.push(temp, 40 + i / 4, { timestamp, attributes: zone });
        },
      }, { pollInterval: "20ms" });
    },
  });
}

/** Checks every point of the three metrics, 0 … produced-1, once each and in order. */
function checkAll(rx: OtlpReceiver, produced: number): void {
  const energy = rx.points("det_energy_alumet");
  assert.equal(energy.length, produced, "every energy point once");
  energy.forEach(({ metric, point }, i) => {
    assert.equal(metric.unit, "J");
    assert.equal(metric.description, "energy per poll");
    assert.equal(metric.sum.aggregationTemporality, "AGGREGATION_TEMPORALITY_CUMULATIVE");
    assert.equal(metric.sum.isMonotonic, true);
    assert.equal(point.timeUnixNano, tsOf(i), `energy point ${i} in order`);
    // The points are dated 2024, before the output started: the sum began 1 ns before the first one.
    assert.equal(point.startTimeUnixNano, String(BigInt(tsOf(0)) - 1n));
    assert.equal(point.asDouble, (i + 1) ** 2 / 2, "the running sum of the deltas");
  });
  assert.deepEqual(attrs(energy[0]!.point.attributes), {
    resource_kind: "cpu_package",
    resource_id: "0",
    resource_consumer_kind: "local_machine",
    domain: "package",
  });
  const count = rx.points("det_count_alumet");
  assert.equal(count.length, produced);
  count.forEach(({ metric, point }, i) => {
    assert.equal(metric.unit, "1");
    assert.equal(metric.sum.isMonotonic, true);
    assert.equal(point.timeUnixNano, tsOf(i));
    assert.equal(point.startTimeUnixNano, tsOf(0));
    assert.equal(point.asInt, String(i * 3));
  });
  const temp = rx.points("det_temp_alumet");
  assert.equal(temp.length, produced);
  temp.forEach(({ metric, point }, i) => {
    assert.equal(metric.unit, "Cel");
    assert.ok(metric.gauge && !metric.sum, "a gauge");
    assert.equal(point.timeUnixNano, tsOf(i));
    assert.equal(point.startTimeUnixNano, undefined);
    assert.equal(point.asDouble, 40 + i / 4);
  });
  assert.deepEqual(attrs(temp[0]!.point.attributes), {
    resource_kind: "local_machine",
    resource_consumer_kind: "local_machine",
    zone: "a b",
    core: "3",
    hot: true,
  });
  let hostname = "";
  try {
    hostname = Deno.hostname();
  } catch {
    // no --allow-sys
  }
  for (const r of rx.received) {
    for (const rm of r.request.resourceMetrics) {
      assert.deepEqual(attrs(rm.resource.attributes), { "host.name": hostname, "service.name": "alumet" });
      assert.equal(rm.scopeMetrics[0].scope.name, "alumet");
    }
  }
}

for (const protocol of ["http/protobuf", "http/json"] as const) {
  Deno.test(`opentelemetry output over ${protocol} to a test OTLP receiver: metrics, kinds, units, sums`, async () => {
    using logs = captureLogs();
    const dir = await Deno.makeTempDir({ prefix: "alumet-otlp-" });
    const rx = new OtlpReceiver();
    rx.start();
    try {
      const state = { n: 0 };
      const agent = new Agent({
        plugins: [detSource(state), {
          plugin: opentelemetryPlugin,
          config: {
            collector_host: rx.url,
            protocol,
            headers: { authorization: "Bearer t0k" },
            journal_path: `${dir}/journal`,
            max_backoff: "200ms",
            final_attempt: "3s",
          },
        }],
      });
      try {
        await agent.start();
        await until(() => rx.points("det_temp_alumet").length >= 10, "the first points");
      } finally {
        await agent.stop();
      }
      assert.equal(agent.losses().total, 0);
      checkAll(rx, state.n);
      const first = rx.received[0]!;
      assert.equal(
        first.contentType,
        protocol === "http/json" ? "application/json" : "application/x-protobuf",
      );
      assert.equal(first.headers.get("authorization"), "Bearer t0k");
      if (protocol === "http/json") {
        // The JSON as OTLP/JSON writes it: 64-bit integers as strings, the temporality as its number.
        const sum = first.raw.resourceMetrics[0].scopeMetrics[0].metrics[0].sum;
        assert.equal(sum.aggregationTemporality, 2);
        assert.equal(typeof sum.dataPoints[0].timeUnixNano, "string");
      }
      assert.ok(!logs.lines.some((l) => l.startsWith("warn")), logs.lines.join("\n"));
    } finally {
      await rx.stop();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("opentelemetry output: the receiver down for a while, then up: every point arrives once, in order", async () => {
  using logs = captureLogs();
  const dir = await Deno.makeTempDir({ prefix: "alumet-otlp-" });
  const rx = new OtlpReceiver();
  rx.start();
  try {
    const state = { n: 0 };
    const agent = new Agent({
      plugins: [detSource(state), {
        plugin: opentelemetryPlugin,
        config: {
          collector_host: rx.url,
          journal_path: `${dir}/journal`,
          max_backoff: "200ms",
          final_attempt: "3s",
        },
      }],
    });
    try {
      await agent.start();
      await until(() => rx.points("det_count_alumet").length >= 5, "the first points");
      await rx.stop();
      const before = state.n;
      await until(() => state.n >= before + 25, "points produced during the outage");
      rx.start();
      await until(() => rx.points("det_count_alumet").length >= before + 25, "the replay");
    } finally {
      await agent.stop();
    }
    assert.equal(agent.losses().total, 0);
    checkAll(rx, state.n);
    assert.ok(logs.lines.some((l) => l.includes("Cannot deliver to")), logs.lines.join("\n"));
    assert.ok(logs.lines.some((l) => l.includes("again after")), logs.lines.join("\n"));
    assert.ok(!logs.lines.some((l) => l.includes("Dropped")), logs.lines.join("\n"));
  } finally {
    await rx.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("opentelemetry output: a 400 and a partial success count as lost points, with one log line", async () => {
  using logs = captureLogs();
  const dir = await Deno.makeTempDir({ prefix: "alumet-otlp-" });
  const rx = new OtlpReceiver();
  rx.start();
  const registry = new MetricRegistry();
  const g = registry.register("t", { name: "g", unit: unit("W"), valueType: "f64" });
  const ctx = { metric: (id: number) => registry.get(id) };
  const batchOf = (k: number) => {
    const b = new Batch();
    for (let i = 0; i < k; i++) b.push(g, i, { timestamp: BigInt(i + 1) });
    return b;
  };
  const out = new OpentelemetryOutput({
    endpoint: { url: new URL(`${rx.url}/v1/metrics`), protocol: "http/protobuf", headers: {}, warnings: [] },
    encoder: {},
    timeoutMs: 5000,
    journalPath: `${dir}/journal`,
    maxBytes: 1 << 20,
    fsync: "none",
    maxBackoffMs: 100,
    finalAttemptMs: 3000,
  });
  try {
    out.open();
    rx.mode = { kind: "status", status: 400, body: "bad data" };
    out.write(batchOf(3), ctx);
    await until(() => out.lostPoints() === 3, "the rejected batch");
    rx.mode = { kind: "partial", rejected: 2, message: "2 too old" };
    out.write(batchOf(4), ctx);
    await until(() => out.lostPoints() === 5, "the partial success");
    rx.mode = { kind: "ok" };
    out.write(batchOf(1), ctx);
    await out.close();
    assert.equal(out.lostPoints(), 5);
    assert.equal(out.delivery.deliveredPoints, 5);
    const warns = logs.lines.filter((l) => l.startsWith("warn"));
    assert.equal(warns.length, 2, warns.join("\n"));
    assert.match(warns[0]!, /answered 400 Bad Request: bad data/);
    assert.match(warns[1]!, /rejected 2 data points: 2 too old/);
  } finally {
    await out.close();
    await rx.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

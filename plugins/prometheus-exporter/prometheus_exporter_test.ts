import assert from "node:assert/strict";
import { runOutputContract, testPlugin } from "../../src/testing/mod.ts";
import { checkConfigBlock } from "../../src/testing/readme.ts";
import { Batch } from "../../src/model/batch.ts";
import { type MetricKind, MetricRegistry, type ValueType } from "../../src/model/metrics.ts";
import { Consumer, Resource } from "../../src/model/resources.ts";
import { customUnit, type Unit, unit } from "../../src/model/units.ts";
import type { ElementContext } from "../../src/plugin/plugin.ts";
import { AlumetError } from "../../src/errors.ts";
import { Logger, setLogSink } from "../../src/log.ts";
import {
  escapeLabelValue,
  exportedName,
  PrometheusExporter,
  prometheusExporterPlugin,
  PrometheusState,
  promUnit,
  sanitizeName,
  wantsOpenMetrics,
} from "./mod.ts";

const PROM_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

function setup() {
  const registry = new MetricRegistry();
  const ctx: ElementContext = { metric: (id) => registry.get(id) };
  const metric = <T extends ValueType>(name: string, u: Unit, valueType: T, kind: MetricKind = "gauge") =>
    registry.register("test", { name, unit: u, valueType, kind });
  return { registry, ctx, metric };
}

/** The sample lines of an exposition, as `name{labels}` → value. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

Deno.test("sanitizeName makes valid Prometheus names", () => {
  for (
    const [given, want] of [
      ["active(anon)", "active_anon"],
      ["inactive(file)", "inactive_file"],
      ["cpu_percent_%", "cpu_percent"],
      ["9lives", "_9lives"],
      ["a b\tc", "a_b_c"],
      ["énergie", "_nergie"],
      ["ok_", "ok_"],
      ["x:y", "x_y"],
    ]
  ) {
    assert.equal(sanitizeName(given!), want, given);
    assert.match(sanitizeName(given!), PROM_NAME);
  }
});

Deno.test("exportedName puts the base unit after the suffix and _total last", async (t) => {
  await t.step("a delta in mJ is a counter of joules", () => {
    const u = promUnit(unit("J", "milli"));
    assert.equal(u.scale, 0.001);
    assert.deepEqual(exportedName("rapl_consumed_energy", u.name, "delta", "", "_alumet"), {
      family: "rapl_consumed_energy_alumet_joules",
      sample: "rapl_consumed_energy_alumet_joules_total",
      type: "counter",
    });
  });
  await t.step("a gauge has no _total; a prefix comes first", () => {
    assert.equal(
      exportedName("power", "watts", "gauge", "node_", "_alumet").sample,
      "node_power_alumet_watts",
    );
  });
  await t.step("a name that ends with its unit or _total does not repeat it", () => {
    assert.equal(exportedName("time_seconds", "seconds", "gauge", "", "").sample, "time_seconds");
    assert.equal(exportedName("switches_total", "", "counter", "", "").sample, "switches_total");
    assert.equal(exportedName("io_bytes_total", "bytes", "counter", "", "").family, "io_bytes");
  });
  await t.step("every unit has a base-unit name and factor", () => {
    assert.deepEqual(promUnit(unit("s", "micro")), { name: "seconds", scale: 1e-6, offset: 0 });
    assert.deepEqual(promUnit(unit("By", "kilo")), { name: "bytes", scale: 1000, offset: 0 });
    assert.deepEqual(promUnit(unit("%")), { name: "ratio", scale: 0.01, offset: 0 });
    assert.deepEqual(promUnit(unit("W.h")), { name: "joules", scale: 3600, offset: 0 });
    assert.equal(promUnit(unit("[degF]")).name, "celsius");
    assert.equal(promUnit(customUnit("Packets/s")).name, "packets_s");
  });
});

Deno.test("escapeLabelValue escapes backslash, quote and line feed", () => {
  assert.equal(escapeLabelValue("plain"), "plain");
  assert.equal(escapeLabelValue('C:\\dir "x"\nnext'), 'C:\\\\dir \\"x\\"\\nnext');
});

Deno.test("wantsOpenMetrics follows the Accept header's preferences", () => {
  assert.equal(wantsOpenMetrics("application/openmetrics-text; version=1.0.0"), true);
  assert.equal(wantsOpenMetrics("text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.5"), false);
  assert.equal(wantsOpenMetrics("application/openmetrics-text;q=0"), false);
  assert.equal(wantsOpenMetrics("*/*"), false);
});

Deno.test("PrometheusState sums deltas into a counter, in base units", () => {
  const { ctx, metric } = setup();
  const energy = metric("energy", unit("J", "milli"), "f64", "delta");
  const state = new PrometheusState({ suffix: "" });
  const pkg = Resource.cpuPackage(0);
  const deltas = [1500, 250, 0.5, 1e6];
  for (const d of deltas) {
    const b = new Batch();
    b.push(energy, d, { resource: pkg, attributes: { domain: "package" } });
    state.write(b, ctx);
  }
  // A NaN delta is ignored rather than poisoning the total.
  const bad = new Batch();
  bad.push(energy, NaN, { resource: pkg, attributes: { domain: "package" } });
  state.write(bad, ctx);
  const got = samples(state.render(false));
  const key =
    'energy_joules_total{resource_kind="cpu_package",resource_id="0",resource_consumer_kind="local_machine",' +
    'resource_consumer_id="",domain="package"}';
  assert.ok(Math.abs(got.get(key)! - deltas.reduce((a, b) => a + b, 0) / 1000) < 1e-9, [...got].join("\n"));
});

Deno.test("PrometheusState keeps a gauge's latest point and a counter's latest total", () => {
  const { ctx, metric } = setup();
  const power = metric("power", unit("W", "milli"), "f64");
  const switches = metric("switches", unit("1"), "u64", "counter");
  const state = new PrometheusState({ suffix: "" });
  const b = new Batch();
  b.push(power, 2000, { timestamp: 20n });
  b.push(power, 9000, { timestamp: 10n }); // late: older than the one above
  b.push(switches, 7, { timestamp: 10n });
  b.push(switches, 9, { timestamp: 20n });
  state.write(b, ctx);
  const text = state.render(false);
  assert.match(text, /^power_watts\{[^}]*\} 2$/m);
  assert.match(text, /^switches_total\{[^}]*\} 9$/m);
  assert.match(text, /^# TYPE power_watts gauge$/m);
  assert.match(text, /^# TYPE switches_total counter$/m);
});

Deno.test("PrometheusState labels: resource, consumer, escaped and sanitised attributes", async (t) => {
  const { ctx, metric } = setup();
  const mem = metric("active(anon)", unit("By", "kilo"), "u64");
  const batch = new Batch();
  batch.push(mem, 3, {
    consumer: Consumer.cgroup('/a"b\\c'),
    attributes: { "cpu-state": "idle", resource_kind: "x", path: "line1\nline2", "__x": true },
  });
  await t.step("with attributes", () => {
    const state = new PrometheusState();
    state.write(batch, ctx);
    const text = state.render(false);
    assert.equal(
      text.split("\n").find((l) => !l.startsWith("#") && l !== ""),
      'active_anon_alumet_bytes{resource_kind="local_machine",resource_id="",resource_consumer_kind="cgroup",' +
        'resource_consumer_id="/a\\"b\\\\c",attr___x="true",cpu_state="idle",path="line1\\nline2",' +
        'attr_resource_kind="x"} 3000',
    );
  });
  await t.step("without attributes, deltas that differ only by attributes share one series", () => {
    const energy = metric("e", unit("J"), "f64", "delta");
    const state = new PrometheusState({ addAttributesToLabels: false, suffix: "" });
    const b = new Batch();
    b.push(energy, 1, { attributes: { domain: "package" } });
    b.push(energy, 2, { attributes: { domain: "dram" } });
    state.write(b, ctx);
    assert.deepEqual([...samples(state.render(false)).values()], [3]);
  });
});

Deno.test("PrometheusState renders OpenMetrics with TYPE, UNIT, HELP and # EOF", () => {
  const { ctx, registry } = setup();
  const energy = registry.register("test", {
    name: "energy",
    unit: unit("J"),
    valueType: "f64",
    kind: "delta",
    description: 'Energy "consumed"\nper poll',
  });
  const state = new PrometheusState();
  const b = new Batch();
  b.push(energy, 4.5);
  state.write(b, ctx);
  assert.equal(
    state.render(true),
    "# TYPE energy_alumet_joules counter\n" +
      "# UNIT energy_alumet_joules joules\n" +
      '# HELP energy_alumet_joules Energy \\"consumed\\"\\nper poll; the sum of its deltas since the exporter started\n' +
      'energy_alumet_joules_total{resource_kind="local_machine",resource_id="",resource_consumer_kind="local_machine",resource_consumer_id=""} 4.5\n' +
      "# EOF\n",
  );
  assert.match(state.render(false), /^# HELP energy_alumet_joules_total Energy "consumed"\\nper poll/m);
});

Deno.test("PrometheusState leaves out a metric whose exported name is taken, with one warning", () => {
  const { ctx, metric } = setup();
  const a = metric("active(anon)", unit("By"), "u64");
  const b = metric("active_anon", unit("By"), "u64");
  const warnings: string[] = [];
  const restore = setLogSink((level, _scope, message) => void (level === "warn" && warnings.push(message)));
  try {
    const state = new PrometheusState({ suffix: "", log: new Logger("prometheus-exporter") });
    const batch = new Batch();
    batch.push(a, 1);
    batch.push(b, 2);
    batch.push(b, 3);
    state.write(batch, ctx);
    assert.deepEqual([...samples(state.render(false)).values()], [1]);
    assert.equal(warnings.length, 1, warnings.join("\n"));
    assert.match(
      warnings[0]!,
      /Metric "active_anon" .* "active_anon_bytes" is taken by metric "active\(anon\)"/,
    );
  } finally {
    setLogSink(restore);
  }
});

Deno.test("PrometheusState removes the series of an ended consumer after series_ttl", () => {
  const { ctx, metric } = setup();
  const cpu = metric("cpu_time", unit("s", "milli"), "f64", "delta");
  let clock = 0;
  const state = new PrometheusState({ seriesTtlMs: 60_000, now: () => clock });
  const write = (c: Consumer) => {
    const b = new Batch();
    b.push(cpu, 10, { consumer: c });
    state.write(b, ctx);
  };
  write(Consumer.process(1));
  write(Consumer.process(2));
  write(Consumer.localMachine());
  assert.equal(state.seriesCount, 3);
  state.endConsumers([Consumer.process(1)]);
  clock = 30_000;
  write(Consumer.process(2));
  state.prune(clock, true);
  assert.equal(state.seriesCount, 3, "within the ttl, an ended consumer's series stay");
  clock = 60_000;
  state.prune(clock, true);
  assert.equal(state.seriesCount, 2, "process 1 ended a ttl ago");
  assert.doesNotMatch(state.render(false), /resource_consumer_id="1"/);
  clock = 90_001;
  state.prune(clock, true);
  assert.equal(state.seriesCount, 1, "process 2 got no point for a ttl; the local machine stays");
  clock = 10_000_000;
  state.prune(clock, true);
  assert.equal(state.seriesCount, 1);
  // A consumer that starts again (a reused pid) is no longer ended.
  write(Consumer.process(3));
  state.endConsumers([Consumer.process(3)]);
  state.startConsumers([Consumer.process(3)]);
  clock += 60_000;
  write(Consumer.process(3));
  state.prune(clock, true);
  assert.equal(state.seriesCount, 2);
});

Deno.test("PrometheusExporter serves /metrics over HTTP", async (t) => {
  const { ctx, metric } = setup();
  const energy = metric("energy", unit("J"), "f64", "delta");
  const exporter = new PrometheusExporter(new PrometheusState(), { port: 0, bearerToken: "s3cret" });
  exporter.listen();
  try {
    const b = new Batch();
    b.push(energy, 2.5);
    exporter.write(b, ctx);
    const url = exporter.describe();
    assert.equal(url, `http://127.0.0.1:${exporter.port}/metrics`);
    const auth = { authorization: "Bearer s3cret" };
    await t.step("a missing or wrong token is 401", async () => {
      for (const headers of [{}, { authorization: "Bearer nope" }, { authorization: "Basic czNjcmV0" }]) {
        const r = await fetch(url, { headers });
        await r.body?.cancel();
        assert.equal(r.status, 401);
        assert.match(r.headers.get("www-authenticate")!, /^Bearer/);
      }
    });
    await t.step("text format 0.0.4 by default", async () => {
      const r = await fetch(url, { headers: auth });
      assert.equal(r.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
      const text = await r.text();
      assert.match(text, /^energy_alumet_joules_total\{.*\} 2.5$/m);
      assert.doesNotMatch(text, /# EOF/);
    });
    await t.step("OpenMetrics when asked", async () => {
      const r = await fetch(url, {
        headers: { ...auth, accept: "application/openmetrics-text;version=1.0.0" },
      });
      assert.equal(
        r.headers.get("content-type"),
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
      );
      assert.match(await r.text(), /\n# EOF\n$/);
    });
    await t.step("another path is 404, another method 405", async () => {
      const r1 = await fetch(url.replace("/metrics", "/"), { headers: auth });
      await r1.body?.cancel();
      assert.equal(r1.status, 404);
      const r2 = await fetch(url, { method: "POST", headers: auth, body: "x" });
      await r2.body?.cancel();
      assert.equal(r2.status, 405);
    });
    await t.step("a taken port is one clear error", () => {
      const other = new PrometheusExporter(new PrometheusState(), { port: exporter.port });
      assert.throws(() => other.listen(), (e: unknown) => {
        assert.ok(e instanceof AlumetError);
        assert.match(e.message, /Cannot serve Prometheus metrics on 127\.0\.0\.1:\d+: the port is taken/);
        return true;
      });
    });
  } finally {
    await exporter.close();
    await exporter.close();
  }
});

Deno.test("prometheus-exporter takes its token from the variable bearer_token_env names", async () => {
  Deno.env.set("ALUMET_TEST_PROM_TOKEN", "from-env");
  try {
    await using h = await testPlugin(prometheusExporterPlugin, {
      port: 0,
      bearer_token_env: "ALUMET_TEST_PROM_TOKEN",
    });
    const out = h.outputs.get("out")!.output as PrometheusExporter;
    const denied = await fetch(out.describe());
    await denied.body?.cancel();
    assert.equal(denied.status, 401);
    const ok = await fetch(out.describe(), { headers: { authorization: "Bearer from-env" } });
    await ok.body?.cancel();
    assert.equal(ok.status, 200);
    await out.close();
  } finally {
    Deno.env.delete("ALUMET_TEST_PROM_TOKEN");
  }
  await assert.rejects(
    async () =>
      await testPlugin(prometheusExporterPlugin, { port: 0, bearer_token_env: "ALUMET_TEST_UNSET" }),
    /ALUMET_TEST_UNSET, which is not set/,
  );
});

Deno.test("prometheus-exporter passes the output contract", async (t) => {
  await runOutputContract(t, { plugin: prometheusExporterPlugin, config: { port: 0 }, output: "out" });
});

Deno.test("prometheus-exporter README's config block is the default config", async () => {
  const readme = await Deno.readTextFile(new URL("./README.md", import.meta.url));
  checkConfigBlock(readme, prometheusExporterPlugin);
  assert.match(readme, /^\*\*Guarantee: best effort \(pull\)\.\*\*/m);
});

import assert from "node:assert/strict";
import { Batch, type MeasurementPoint } from "../../src/model/batch.ts";
import type { MetricRegistry } from "../../src/model/metrics.ts";
import { Consumer, Resource } from "../../src/model/resources.ts";
import { unit } from "../../src/model/units.ts";
import { ConfigError } from "../../src/errors.ts";
import { validatePluginConfig } from "../../src/plugin/config.ts";
import { definePlugin } from "../../src/plugin/define.ts";
import { Agent } from "../../src/agent/agent.ts";
import { type LogSink, setLogSink } from "../../src/log.ts";
import { testPlugin } from "../../src/testing/mod.ts";
import { checkConfigBlock, checkMetricsTable } from "../../src/testing/readme.ts";
import {
  CARBON_METRICS,
  countryCodes,
  countryIntensity,
  energyToCarbonPlugin,
  isEnergySeries,
  WORLD_AVERAGE_INTENSITY,
} from "./mod.ts";

const README = new URL("./README.md", import.meta.url);
const T0 = 1_700_000_000_000_000_000n;

function quiet(): Disposable {
  const prev = setLogSink(() => {});
  return { [Symbol.dispose]: () => void setLogSink(prev as LogSink) };
}

/** The metrics a test batch uses, registered by "sources" as the real plugins register them. */
function registerInputs(r: MetricRegistry) {
  return {
    rapl: r.register("rapl", {
      name: "rapl_consumed_energy",
      unit: unit("J"),
      valueType: "f64",
      kind: "delta",
    }),
    milli: r.register("x", { name: "energy_mj", unit: unit("J", "milli"), valueType: "u64", kind: "delta" }),
    wh: r.register("x", { name: "energy_kwh", unit: unit("W.h", "kilo"), valueType: "f64", kind: "delta" }),
    attributed: r.register("attr", {
      name: "attributed_energy",
      unit: unit("J"),
      valueType: "f64",
      kind: "delta",
    }),
    power: r.register("x", { name: "power", unit: unit("W"), valueType: "f64", kind: "gauge" }),
    counterJ: r.register("x", { name: "energy_total", unit: unit("J"), valueType: "f64", kind: "counter" }),
    cpu: r.register("x", {
      name: "cpu_time_delta",
      unit: unit("s", "nano"),
      valueType: "u64",
      kind: "delta",
    }),
  };
}

async function carbonOf(
  config: Record<string, unknown>,
  fill: (b: Batch, m: ReturnType<typeof registerInputs>) => void,
) {
  using _ = quiet();
  await using h = await testPlugin(energyToCarbonPlugin, config);
  const m = registerInputs(h.metrics);
  const b = new Batch();
  b.timestamp = T0;
  fill(b, m);
  const before = b.length;
  const out = await h.transform("transform", b);
  const points = [...out];
  const carbon = points.filter((p) => h.metrics.get(p.metric).name === "carbon_emission");
  return { before, points, carbon, metrics: h.metrics };
}

Deno.test("energy-to-carbon turns joules into grams at the configured intensity, by hand", async (t) => {
  await t.step("world_avg: 1 kWh (3.6 MJ) is 475 g", async () => {
    const { carbon } = await carbonOf({}, (b, m) => b.push(m.rapl, 3.6e6));
    assert.equal(carbon.length, 1);
    assert.equal(carbon[0]!.value, 475);
  });
  await t.step("country FRA (56.039 g/kWh, 2023): 7200 J = 2 Wh... = 0.002 kWh → 0.112078 g", async () => {
    const { carbon } = await carbonOf(
      { mode: "country", country: { code: "FRA" } },
      (b, m) => b.push(m.rapl, 7200),
    );
    assert.ok(Math.abs((carbon[0]!.value as number) - 0.112078) < 1e-12, String(carbon[0]!.value));
  });
  await t.step("intensity_override 100: 500 Wh given in kWh (0.5) → 50 g", async () => {
    const { carbon } = await carbonOf(
      { mode: "intensity_override", intensity_override: { intensity: 100 } },
      (b, m) => b.push(m.wh, 0.5),
    );
    assert.ok(Math.abs((carbon[0]!.value as number) - 50) < 1e-12);
  });
  await t.step("a u64 series in mJ: 3 600 000 000 mJ = 1 kWh → 475 g", async () => {
    const { carbon } = await carbonOf({}, (b, m) => b.push(m.milli, 3_600_000_000));
    assert.ok(Math.abs((carbon[0]!.value as number) - 475) < 1e-9);
  });
});

Deno.test("energy-to-carbon converts every energy series, attributed ones too, and nothing else", async () => {
  const pkg = Resource.cpuPackage(0);
  const domain = Object.freeze({ domain: "package" });
  const attributed = Object.freeze({
    source_metric: "rapl_consumed_energy",
    domain: "package",
    estimated: true,
  });
  const { before, points, carbon, metrics } = await carbonOf({}, (b, m) => {
    b.push(m.rapl, 36, { resource: pkg, attributes: domain });
    b.push(m.attributed, 18, { resource: pkg, consumer: Consumer.process(42), attributes: attributed });
    b.push(m.attributed, 18, {
      resource: pkg,
      consumer: Consumer.custom("unattributed", ""),
      timestamp: T0 + 5n,
    });
    b.push(m.power, 100); // a gauge in W: not energy
    b.push(m.counterJ, 1000); // a counter in J: a running total, not an interval's energy
    b.push(m.cpu, 5_000_000);
  });
  assert.equal(points.length, before + 3, "the inputs stay, one carbon point per energy point is added");
  const g = (j: number) => j * WORLD_AVERAGE_INTENSITY / 3.6e6;
  const shown = carbon.map((p: MeasurementPoint) => ({
    value: p.value,
    resource: `${p.resource.kind}:${p.resource.id}`,
    consumer: `${p.consumer.kind}:${p.consumer.id}`,
    timestamp: p.timestamp,
    attributes: { ...p.attributes },
  }));
  assert.deepEqual(shown, [
    {
      value: g(36),
      resource: "cpu_package:0",
      consumer: "local_machine:",
      timestamp: T0,
      attributes: { domain: "package", energy_metric: "rapl_consumed_energy" },
    },
    {
      value: g(18),
      resource: "cpu_package:0",
      consumer: "process:42",
      timestamp: T0,
      // the attributed energy's attributes stay, source_metric included; energy_metric names what was converted
      attributes: {
        source_metric: "rapl_consumed_energy",
        domain: "package",
        estimated: true,
        energy_metric: "attributed_energy",
      },
    },
    {
      value: g(18),
      resource: "cpu_package:0",
      consumer: "unattributed:",
      timestamp: T0 + 5n,
      attributes: { energy_metric: "attributed_energy" },
    },
  ]);
  const m = metrics.byName("carbon_emission")!;
  assert.deepEqual([m.unit.code, m.valueType, m.kind], ["g_CO2", "f64", "delta"]);
  assert.equal(isEnergySeries(m), false, "its own output is not energy: no loop");
});

Deno.test("energy-to-carbon config: Alumet's keys, one clear error for a bad country", async (t) => {
  const validate = (table: Record<string, unknown>) =>
    validatePluginConfig(energyToCarbonPlugin, { name: "energy-to-carbon", table }, "alumet-config.toml");
  await t.step("defaults to world_avg", () => assert.deepEqual(validate({}), { mode: "world_avg" }));
  await t.step("Alumet's country config, poll_interval included, is accepted; case is forgiven", () => {
    const c = validate({ poll_interval: "2s", mode: "country", country: { code: "fra" } });
    assert.equal(c.country?.code, "FRA");
  });
  await t.step("an unknown country is one ConfigError naming the key and the value", () => {
    let err: unknown;
    try {
      validate({ mode: "country", country: { code: "XYZ" } });
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof ConfigError, String(err));
    assert.match(
      err.message,
      /^Invalid config in alumet-config\.toml: plugins\.energy-to-carbon\.country\.code: expected an ISO 3166-1 alpha-3 code .*not "XYZ"/,
    );
    assert.equal(err.message.includes("\n"), false, "one line");
  });
  await t.step("mode country without a code, override without an intensity: errors naming the key", () => {
    assert.throws(
      () => validate({ mode: "country" }),
      /plugins\.energy-to-carbon\.country\.code: expected a country code/,
    );
    assert.throws(
      () => validate({ mode: "intensity_override" }),
      /plugins\.energy-to-carbon\.intensity_override\.intensity: expected an intensity/,
    );
    assert.throws(
      () => validate({ mode: "override" }),
      /mode: expected one of "world_avg", "country", "intensity_override"/,
    );
    assert.throws(
      () => validate({ mode: "intensity_override", intensity_override: { intensity: -1 } }),
      /intensity: expected an intensity in gCO2e\/kWh, 0 or more/,
    );
  });
});

Deno.test("energy-to-carbon country table: every row is a plausible figure with its year", () => {
  const codes = countryCodes();
  assert.equal(codes.length, 213);
  for (const code of codes) {
    const c = countryIntensity(code)!;
    assert.match(code, /^[A-Z]{3}$/);
    assert.ok(c.intensity >= 0 && c.intensity < 2000, `${code}: ${c.intensity}`);
    assert.ok(c.year >= 2000 && c.year <= 2024 || code === "ESH", `${code}: ${c.year}`);
  }
  assert.deepEqual(countryIntensity("DEU"), { code: "DEU", intensity: 380.95, year: 2023, name: "Germany" });
});

Deno.test("energy-to-carbon README: default config block, metrics table, the table's source", async () => {
  const text = await Deno.readTextFile(README);
  checkConfigBlock(text, energyToCarbonPlugin);
  checkMetricsTable(text, CARBON_METRICS);
  assert.match(text, /energy_mix_per_country\.json/);
  assert.match(text, /95a0f30984514c179754ec7d8f6a434a354d6446/);
  for (const code of countryCodes()) assert.ok(text.includes(`| ${code} `), `README lists ${code}`);
});

Deno.test("energy-to-carbon in an agent: RAPL joules from a fixture source come out as grams", async () => {
  using _ = quiet();
  const seen: { metric: string; value: number; attributes: Record<string, unknown> }[] = [];
  const fixture = definePlugin({
    name: "fixture",
    start(ctx) {
      const e = ctx.createMetric({
        name: "rapl_consumed_energy",
        unit: unit("J"),
        valueType: "f64",
        kind: "delta",
      });
      const batches = [10.8, 21.6].map((j, k) => {
        const b = new Batch();
        b.timestamp = T0 + BigInt(k) * 1_000_000_000n;
        b.push(e, j, { resource: Resource.cpuPackage(0), attributes: { domain: "package" } });
        return b;
      });
      ctx.addAutonomousSource("replay", () => ReadableStream.from(batches));
    },
  });
  const sink = definePlugin({
    name: "sink",
    start: (ctx) =>
      ctx.addOutput("out", {
        write(b: Batch, c) {
          for (const p of b) {
            const name = c.metric(p.metric).name;
            if (!name.startsWith("alumet_")) {
              seen.push({ metric: name, value: Number(p.value), attributes: { ...p.attributes } });
            }
          }
        },
      }),
  });
  {
    await using agent = new Agent({
      plugins: [fixture, {
        plugin: energyToCarbonPlugin,
        config: { mode: "country", country: { code: "DEU" } },
      }, sink],
      selfInterval: 3_600_000,
    });
    await agent.start();
    for (let i = 0; i < 200 && seen.length < 4; i++) await new Promise((r) => setTimeout(r, 25));
    await agent.stop();
  }
  // 10.8 J = 3e-6 kWh; × 380.95 g/kWh = 0.00114285 g. 21.6 J: twice that.
  const carbon = seen.filter((s) => s.metric === "carbon_emission");
  assert.equal(carbon.length, 2, JSON.stringify(seen));
  assert.ok(Math.abs(carbon[0]!.value - 0.00114285) < 1e-15);
  assert.ok(Math.abs(carbon[1]!.value - 0.0022857) < 1e-15);
  assert.deepEqual(carbon[0]!.attributes, { domain: "package", energy_metric: "rapl_consumed_energy" });
  assert.equal(seen.filter((s) => s.metric === "rapl_consumed_energy").length, 2, "the energy points stay");
});

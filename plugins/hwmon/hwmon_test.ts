import assert from "node:assert/strict";
import {
  discoverHwmon,
  discoverIna,
  GRACE_METRICS,
  graceHopperPlugin,
  HWMON_METRICS,
  hwmonPlugin,
  JETSON_METRICS,
  jetsonPlugin,
} from "./mod.ts";
import { type PluginHarness, testPlugin } from "../../src/testing/mod.ts";
import { type PlainPoint, pointsOf } from "../../src/testing/fixtures.ts";
import { checkConfigBlock, checkMetricsTable } from "../../src/testing/readme.ts";
import { Batch } from "../../src/model/batch.ts";
import { type LogSink, setLogSink } from "../../src/log.ts";
import { Agent } from "../../src/agent/agent.ts";
import { definePlugin } from "../../src/plugin/define.ts";

const TESTDATA = new URL("./testdata/", import.meta.url).pathname;
const S = 1_000_000_000n;

/** Copies a fixture tree (relative symlinks kept) to a temporary directory the test may rewrite. */
function copyFixture(name: string): string {
  const dst = Deno.makeTempDirSync({ prefix: `hwmon-${name}-` });
  const walk = (from: string, to: string) => {
    for (const e of Deno.readDirSync(from)) {
      const a = `${from}/${e.name}`, b = `${to}/${e.name}`;
      if (e.isSymlink) Deno.symlinkSync(Deno.readLinkSync(a), b);
      else if (e.isDirectory) {
        Deno.mkdirSync(b);
        walk(a, b);
      } else Deno.copyFileSync(a, b);
    }
  };
  walk(`${TESTDATA}${name}`, dst);
  return dst;
}

/** Polls a harness source at a chosen timestamp (so Δt is exact) and returns its points. */
async function pollAt(h: PluginHarness, source: string, t: bigint): Promise<PlainPoint[]> {
  const b = new Batch();
  b.timestamp = t;
  await h.sources.get(source)!.source.poll(b, t);
  return pointsOf(b, h.metrics);
}

/** The value of the one point that matches, failing when there is not exactly one. */
function one(
  points: PlainPoint[],
  metric: string,
  attrs: Record<string, unknown>,
  resource?: [string, string],
) {
  const found = points.filter((p) =>
    p.metric === metric && Object.entries(attrs).every(([k, v]) => p.attributes[k] === v) &&
    (resource === undefined || (p.resource[0] === resource[0] && p.resource[1] === resource[1]))
  );
  assert.equal(found.length, 1, `${metric} ${JSON.stringify(attrs)}: ${found.length} points`);
  return found[0]!.value;
}

const near = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-9, `${a} ≠ ${b}`);

function captureLogs(): { lines: string[]; [Symbol.dispose](): void } {
  const lines: string[] = [];
  const prev = setLogSink((level, scope, msg) => lines.push(`${level} ${scope}: ${msg}`));
  return { lines, [Symbol.dispose]: () => void setLogSink(prev as LogSink) };
}

/** A README section `## <name>` up to the next `## `. */
async function section(name: string): Promise<string> {
  const text = await Deno.readTextFile(new URL("./README.md", import.meta.url));
  const start = text.indexOf(`\n## ${name}\n`);
  assert.ok(start >= 0, `no section ${name}`);
  const end = text.indexOf("\n## ", start + 4);
  return text.slice(start, end < 0 ? undefined : end);
}

Deno.test("README: each plugin's metrics table and configuration block match the code", async (t) => {
  await t.step("hwmon", async () => {
    const s = await section("hwmon");
    checkMetricsTable(s, HWMON_METRICS);
    checkConfigBlock(s, hwmonPlugin);
  });
  await t.step("grace-hopper", async () => {
    const s = await section("grace-hopper");
    checkMetricsTable(s, GRACE_METRICS);
    checkConfigBlock(s, graceHopperPlugin);
  });
  await t.step("jetson", async () => {
    const s = await section("jetson");
    checkMetricsTable(s, JETSON_METRICS);
    checkConfigBlock(s, jetsonPlugin);
  });
});

Deno.test("configs: Alumet's grace-hopper and jetson keys are accepted, unknown keys are not", () => {
  assert.ok(graceHopperPlugin.configSchema.safeParse({ poll_interval: "2s", root_path: "/x" }).success);
  assert.ok(jetsonPlugin.configSchema.safeParse({ poll_interval: "1s", flush_interval: "5s" }).success);
  assert.equal(jetsonPlugin.configSchema.safeParse({ poll_intervall: "1s" }).success, false);
  assert.equal(hwmonPlugin.configSchema.safeParse({ devices: "amdgpu" }).success, false);
});

Deno.test("hwmon discovery on an AMD desktop: amdgpu's power1_average and amd_energy's counters, k10temp ignored", () => {
  const d = discoverHwmon(`${TESTDATA}amd_desktop`);
  assert.deepEqual(d.problems, []);
  assert.deepEqual(d.devices.map((x) => [x.name, x.sensors]), [["k10temp", 0], ["amdgpu", 1], [
    "amd_energy",
    3,
  ]]);
  const gpu = d.sensors.find((s) => s.device === "amdgpu")!;
  assert.equal(gpu.sensor, "PPT");
  assert.equal(gpu.powerSource, "power_average");
  assert.deepEqual(gpu.resource, ["gpu", "0000:0b:00.0"]);
  assert.equal(gpu.voltageFile, undefined); // vddgfx has no current: not a rail
  assert.deepEqual(
    d.sensors.filter((s) => s.device === "amd_energy").map((s) => [s.sensor, s.powerSource]),
    [["Ecore000", "energy_counter"], ["Ecore001", "energy_counter"], ["Esocket0", "energy_counter"]],
  );
});

Deno.test("hwmon on an AMD desktop: watts, integrated joules and counter joules computed by hand", async () => {
  const root = copyFixture("amd_desktop");
  try {
    await using h = await testPlugin(hwmonPlugin, { sysfs_root: root });
    const first = await pollAt(h, "sensors", 10n * S);
    // First poll: amdgpu's 35 W; no energy yet (baselines), no power from counters yet (no interval).
    assert.deepEqual(first.map((p) => [p.metric, p.value]), [["hwmon_power", 35]]);
    assert.deepEqual(first[0]!.resource, ["gpu", "0000:0b:00.0"]);
    const gpu = `${root}/class/hwmon/hwmon1`, en = `${root}/class/hwmon/hwmon2`;
    Deno.writeTextFileSync(`${gpu}/power1_average`, "45000000\n"); // 45 W
    Deno.writeTextFileSync(`${en}/energy1_input`, `${1_000_000_000 + 20_000_000}\n`); // +20 J
    Deno.writeTextFileSync(`${en}/energy2_input`, `${2_000_000_000 + 5_000_000}\n`); // +5 J
    Deno.writeTextFileSync(`${en}/energy17_input`, `${50_000_000_000 + 70_000_000}\n`); // +70 J
    const p = await pollAt(h, "sensors", 12n * S); // 2 s later
    near(one(p, "hwmon_power", { sensor: "PPT", source: "power_average" }), 45);
    near(one(p, "hwmon_energy", { sensor: "PPT", source: "integrated" }), (35 + 45) / 2 * 2); // 80 J
    near(one(p, "hwmon_energy", { sensor: "Ecore000", source: "counter" }), 20);
    near(one(p, "hwmon_power", { sensor: "Ecore000", source: "energy_counter" }), 10);
    near(one(p, "hwmon_energy", { sensor: "Ecore001", source: "counter" }), 5);
    near(one(p, "hwmon_energy", { sensor: "Esocket0", source: "counter", device: "amd_energy" }), 70);
    near(one(p, "hwmon_power", { sensor: "Esocket0" }), 35);
    assert.equal(p.length, 8);
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("hwmon on a Jetson Xavier NX: INA3221 rails as V×I, shunt voltages and the sum current ignored", async () => {
  const root = copyFixture("jetson_xavier_nx");
  try {
    const d = discoverHwmon(root);
    assert.deepEqual(
      d.sensors.map((s) => [s.device, s.sensor, s.powerSource]),
      [["ina3221", "VDD_IN", "voltage_current"], ["ina3221", "VDD_CPU_GPU_CV", "voltage_current"], [
        "ina3221",
        "VDD_SOC",
        "voltage_current",
      ]],
    );
    await using h = await testPlugin(hwmonPlugin, { sysfs_root: root, labels: ["VDD_IN", "VDD_SOC"] });
    const first = await pollAt(h, "sensors", 100n * S);
    near(one(first, "hwmon_power", { sensor: "VDD_IN", source: "voltage_current" }), 5000 * 1200 / 1e6); // 6 W
    near(one(first, "hwmon_power", { sensor: "VDD_SOC" }), 5000 * 280 / 1e6); // 1.4 W
    assert.equal(first.length, 2); // VDD_CPU_GPU_CV filtered out
    Deno.writeTextFileSync(`${root}/class/hwmon/hwmon6/curr1_input`, "1500\n"); // 7.5 W
    Deno.writeTextFileSync(`${root}/class/hwmon/hwmon6/in3_input`, "4900\n"); // 4.9 V × 280 mA = 1.372 W
    const p = await pollAt(h, "sensors", 102n * S);
    near(one(p, "hwmon_power", { sensor: "VDD_IN" }), 7.5);
    near(one(p, "hwmon_energy", { sensor: "VDD_IN", source: "integrated" }), (6 + 7.5) / 2 * 2); // 13.5 J
    near(one(p, "hwmon_energy", { sensor: "VDD_SOC" }), (1.4 + 1.372) / 2 * 2); // 2.772 J
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("hwmon on Grace Hopper: power meters labelled by device/power1_oem_info", () => {
  const d = discoverHwmon(`${TESTDATA}grace_hopper`, { devices: ["power_meter"] });
  assert.deepEqual(d.sensors.map((s) => [s.device, s.sensor, s.powerSource]), [
    ["power_meter", "Module Power Socket 0", "power_average"],
    ["power_meter", "Grace Power Socket 0", "power_average"],
    ["power_meter", "CPU Power Socket 0", "power_average"],
    ["power_meter", "SysIO Power Socket 0", "power_average"],
  ]);
  assert.ok(d.sensors[0]!.powerFile!.endsWith("hwmon1/device/power1_average"));
  const none = discoverHwmon(`${TESTDATA}grace_hopper`, { devices: ["amdgpu"], labels: ["VDD_IN"] });
  assert.equal(none.sensors.length, 0);
  assert.deepEqual(none.problems.length, 2); // each filter entry that matched nothing is reported
});

Deno.test("hwmon: a sensor that stops reading is warned about once, skipped, and measured again from a new baseline", async () => {
  const root = copyFixture("amd_desktop");
  try {
    using logs = captureLogs();
    await using h = await testPlugin(hwmonPlugin, { sysfs_root: root, devices: ["amdgpu"] });
    const file = `${root}/class/hwmon/hwmon1/power1_average`;
    await pollAt(h, "sensors", 1n * S);
    Deno.writeTextFileSync(file, "N/A\n");
    assert.deepEqual(await pollAt(h, "sensors", 2n * S), []);
    assert.deepEqual(await pollAt(h, "sensors", 3n * S), []);
    assert.equal(logs.lines.filter((l) => l.startsWith("warn") && l.includes("PPT")).length, 1);
    Deno.writeTextFileSync(file, "20000000\n");
    const back = await pollAt(h, "sensors", 4n * S);
    assert.deepEqual(back.map((p) => [p.metric, p.value]), [["hwmon_power", 20]]); // no energy: new baseline
    Deno.writeTextFileSync(file, "30000000\n");
    near(one(await pollAt(h, "sensors", 5n * S), "hwmon_energy", { sensor: "PPT" }), 25);
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("grace-hopper on a GH200: Alumet's metrics, dram estimate and totals, joules by hand", async () => {
  const root = copyFixture("grace_hopper");
  try {
    await using h = await testPlugin(graceHopperPlugin, { root_path: `${root}/class/hwmon` });
    const p1 = await pollAt(h, "hwmon", 50n * S);
    const pkg0: [string, string] = ["cpu_package", "0"];
    assert.equal(one(p1, "grace_instant_power", { sensor: "module" }, pkg0), 400_000_000);
    assert.equal(one(p1, "grace_instant_power", { sensor: "grace" }, pkg0), 150_000_000);
    assert.equal(one(p1, "grace_instant_power", { sensor: "dram" }, ["dram", "0"]), 25_000_000); // 150-90-35
    assert.equal(one(p1, "grace_instant_power", { sensor: "total" }, ["local_machine", ""]), 400_000_000);
    assert.equal(one(p1, "grace_instant_power", { sensor: "cpu_total" }), 90_000_000);
    assert.equal(p1.filter((p) => p.metric === "grace_energy_consumption").length, 0);
    const dev = (n: number) => `${root}/class/hwmon/hwmon${n}/device/power1_average`;
    Deno.writeTextFileSync(dev(1), "500000000\n");
    Deno.writeTextFileSync(dev(2), "170000000\n");
    Deno.writeTextFileSync(dev(3), "100000000\n");
    Deno.writeTextFileSync(dev(4), "40000000\n");
    const p2 = await pollAt(h, "hwmon", 52n * S); // Δt = 2 s; mJ = (µW + µW) / 2 × s / 1000
    const e = (s: string, r?: [string, string]) => one(p2, "grace_energy_consumption", { sensor: s }, r);
    near(e("module", pkg0), (400 + 500) / 2 * 2 * 1000); // 900 J
    near(e("grace", pkg0), (150 + 170) / 2 * 2 * 1000); // 320 J
    near(e("cpu", pkg0), (90 + 100) / 2 * 2 * 1000); // 190 J
    near(e("sysio", pkg0), (35 + 40) / 2 * 2 * 1000); // 75 J
    near(e("dram", ["dram", "0"]), (320 - 190 - 75) * 1000); // 55 J
    near(e("total"), 900_000);
    near(e("module_total"), 900_000);
    near(e("dram_total"), 55_000);
    assert.equal(one(p2, "grace_instant_power", { sensor: "dram" }), 30_000_000); // 170-100-40
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("grace-hopper on a two-socket Grace superchip: per-socket dram, and the total is the grace sum", async () => {
  await using h = await testPlugin(graceHopperPlugin, {
    root_path: `${TESTDATA}grace_superchip/class/hwmon`,
  });
  const p = await pollAt(h, "hwmon", 1n * S);
  assert.equal(one(p, "grace_instant_power", { sensor: "dram" }, ["dram", "0"]), 40_000_000); // 200-120-40
  assert.equal(one(p, "grace_instant_power", { sensor: "dram" }, ["dram", "1"]), 40_000_000); // 180-110-30
  assert.equal(one(p, "grace_instant_power", { sensor: "grace_total" }), 380_000_000);
  assert.equal(one(p, "grace_instant_power", { sensor: "total" }), 380_000_000);
  assert.equal(one(p, "grace_instant_power", { sensor: "dram_total" }), 80_000_000);
  assert.equal(p.filter((x) => x.attributes.sensor === "module_total").length, 0);
});

Deno.test("jetson on a Xavier NX (modern ina3221): Alumet's metrics and attributes, channels 1-3 only", async () => {
  const d = discoverIna(`${TESTDATA}jetson_xavier_nx`);
  assert.equal(d.layout, "modern");
  assert.deepEqual(d.channels.map((c) => [c.channel, c.label]), [[1, "VDD_IN"], [2, "VDD_CPU_GPU_CV"], [
    3,
    "VDD_SOC",
  ]]);
  await using h = await testPlugin(jetsonPlugin, { sysfs_root: `${TESTDATA}jetson_xavier_nx` });
  const p = await pollAt(h, "builtin_ina_sensor", 1n * S);
  const attrs = {
    ina_device_number: 6,
    ina_i2c_address: 0x40,
    ina_channel_id: 1,
    ina_channel_label: "VDD_IN",
  };
  assert.equal(one(p, "input_current", attrs, ["local_machine", ""]), 1200);
  assert.equal(one(p, "input_voltage", attrs), 5000);
  assert.equal(one(p, "input_power", attrs), 6000); // 5000 mV × 1200 mA = 6000 mW
  assert.equal(one(p, "input_power", { ina_channel_label: "VDD_CPU_GPU_CV" }), 1500);
  assert.equal(one(p, "input_power", { ina_channel_label: "VDD_SOC" }), 1400);
  assert.equal(p.length, 9);
});

Deno.test("jetson on a Nano (old ina3221x under iio:device0): rail_name_N and the driver's power", async () => {
  const d = discoverIna(`${TESTDATA}jetson_nano`);
  assert.equal(d.layout, "old");
  await using h = await testPlugin(jetsonPlugin, { sysfs_root: `${TESTDATA}jetson_nano` });
  const p = await pollAt(h, "builtin_ina_sensor", 1n * S);
  const attrs = {
    ina_device_number: 0,
    ina_i2c_address: 0x40,
    ina_channel_id: 0,
    ina_channel_label: "POM_5V_IN",
  };
  assert.equal(one(p, "input_power", attrs), 6248); // in_power0_input, not 5072 × 1232 / 1000
  assert.equal(one(p, "input_voltage", attrs), 5072);
  assert.equal(one(p, "input_current", attrs), 1232);
  assert.equal(one(p, "input_power", { ina_channel_label: "POM_5V_CPU", ina_channel_id: 2 }), 1620);
  assert.equal(p.length, 9);
});

Deno.test("no sensors: each plugin warns once with the fix, adds no source, and the agent runs", async (t) => {
  const empty = Deno.makeTempDirSync({ prefix: "hwmon-empty-" });
  const temps = copyFixture("amd_desktop"); // then keep only k10temp
  Deno.removeSync(`${temps}/class/hwmon/hwmon1`);
  Deno.removeSync(`${temps}/class/hwmon/hwmon2`);
  try {
    const cases = [
      ["hwmon without class/hwmon", hwmonPlugin, { sysfs_root: empty }, /class\/hwmon.*Fix: run on the host/],
      [
        "hwmon with temperatures only",
        hwmonPlugin,
        { sysfs_root: temps },
        /hwmon devices: k10temp.*Fix: load/,
      ],
      [
        "grace-hopper",
        graceHopperPlugin,
        { root_path: `${empty}/class/hwmon` },
        /modprobe acpi_power_meter.*power1_average is\s+readable/,
      ],
      ["jetson", jetsonPlugin, { sysfs_root: empty }, /ina3221x? .*Fix: run on an NVIDIA Jetson/],
    ] as const;
    for (const [name, plugin, config, fix] of cases) {
      await t.step(name, async () => {
        using logs = captureLogs();
        // deno-lint-ignore no-explicit-any
        await using h = await testPlugin(plugin as any, config);
        assert.equal(h.sources.size, 0);
        const warns = logs.lines.filter((l) => l.startsWith("warn"));
        assert.equal(warns.length, 1, warns.join("\n"));
        assert.match(warns[0]!, fix);
        const diag = await plugin.diagnose!(plugin.configSchema.parse(config) as never);
        assert.equal(diag[0]!.ok, false);
        assert.ok(diag[0]!.fix);
      });
    }
    await t.step("an agent with all three and an output starts, polls and stops", async () => {
      using _logs = captureLogs();
      const sink = definePlugin({ name: "sink", start: (ctx) => ctx.addOutput("out", { write() {} }) });
      await using agent = new Agent({
        plugins: [
          { plugin: hwmonPlugin, config: { sysfs_root: empty } },
          { plugin: graceHopperPlugin, config: { root_path: `${empty}/class/hwmon` } },
          { plugin: jetsonPlugin, config: { sysfs_root: empty } },
          sink,
        ],
      });
      await agent.start();
      await agent.control.triggerNow();
      await agent.stop();
    });
  } finally {
    Deno.removeSync(empty, { recursive: true });
    Deno.removeSync(temps, { recursive: true });
  }
});

Deno.test("hwmon in an agent: the blocking source runs in its Worker and its points reach the output", async () => {
  using _logs = captureLogs();
  const seen: string[] = [];
  const sink = definePlugin({
    name: "sink",
    start: (ctx) =>
      ctx.addOutput("out", {
        write(b: Batch, c) {
          for (const p of b) seen.push(`${c.metric(p.metric).name}=${p.value}`);
        },
      }),
  });
  {
    await using agent = new Agent({
      plugins: [{
        plugin: hwmonPlugin,
        config: { sysfs_root: `${TESTDATA}amd_desktop`, devices: ["amdgpu"] },
      }, sink],
    });
    await agent.start();
    await agent.control.triggerNow();
    await agent.stop();
  }
  assert.ok(seen.includes("hwmon_power=35"), seen.join(", "));
});

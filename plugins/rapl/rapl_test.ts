import assert from "node:assert/strict";
import { type LogSink, setLogSink } from "../../src/log.ts";
import { type PluginHarness, testPlugin } from "../../src/testing/mod.ts";
import { checkConfigBlock, checkMetricsTable } from "../../src/testing/readme.ts";
import { type PlainPoint, pointsOf } from "../../src/testing/fixtures.ts";
import { type Need, needs, testWith } from "../../src/testing/needs.ts";
import { Batch } from "../../src/model/batch.ts";
import { MetricRegistry } from "../../src/model/metrics.ts";
import { registerMetrics } from "../../src/model/metric_set.ts";
import {
  diagnoseRapl,
  planPerf,
  RAPL_METRICS,
  raplConfigSchema,
  type RaplPlugin,
  raplPlugin,
  raplShown,
  RaplSource,
  scanPowercap,
  STILL_MS,
} from "./mod.ts";

const TESTDATA = new URL("./testdata/", import.meta.url).pathname;
const ROOT_DIR = new URL("../../", import.meta.url).pathname;

/** Copies a fixture's `sys` tree into a temp dir (symlinks kept as symlinks); returns the copy's `sys`. */
function fixture(name: string): { root: string; [Symbol.dispose](): void } {
  const tmp = Deno.makeTempDirSync({ prefix: `rapl-${name}-` });
  const copy = (from: string, to: string) => {
    Deno.mkdirSync(to, { recursive: true });
    for (const e of Deno.readDirSync(from)) {
      const src = `${from}/${e.name}`;
      const dst = `${to}/${e.name}`;
      if (e.isSymlink) Deno.symlinkSync(Deno.readLinkSync(src), dst);
      else if (e.isDirectory) copy(src, dst);
      else Deno.copyFileSync(src, dst);
    }
  };
  copy(`${TESTDATA}${name}/sys`, `${tmp}/sys`);
  return { root: `${tmp}/sys`, [Symbol.dispose]: () => Deno.removeSync(tmp, { recursive: true }) };
}

/** Writes a zone's `energy_uj` (path relative to `<root>/class/powercap`). */
function setUj(root: string, zone: string, uj: number): void {
  Deno.writeTextFileSync(`${root}/class/powercap/${zone}/energy_uj`, `${uj}\n`);
}

/** Records the log lines. */
function captureLogs(): { lines: string[]; [Symbol.dispose](): void } {
  const lines: string[] = [];
  const prev = setLogSink((level, _scope, msg) => void lines.push(`${level}: ${msg}`));
  return { lines, [Symbol.dispose]: () => void setLogSink(prev as LogSink) };
}

/** Energy points as `resource|domain → joules`. */
function byKey(points: readonly PlainPoint[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of points) {
    assert.equal(p.metric, "rapl_consumed_energy");
    assert.deepEqual(p.consumer, ["local_machine", ""]);
    const key = `${p.resource[0]}/${p.resource[1]}|${p.attributes.domain}`;
    assert.equal(out[key], undefined, `two points for ${key}`);
    out[key] = p.value;
  }
  return out;
}

/** Checks each value to 1e-9 J (the µJ → J product is not exact in binary). */
function assertJoules(got: Record<string, number>, want: Record<string, number>): void {
  assert.deepEqual(Object.keys(got).sort(), Object.keys(want).sort());
  for (const [k, v] of Object.entries(want)) {
    assert.ok(Math.abs(got[k]! - v) < 1e-9, `${k}: got ${got[k]} J, want ${v} J`);
  }
}

/** Starts the plugin on a fixture, polls (baseline), runs `between`, polls again; returns the second poll. */
async function twoPolls(
  root: string,
  config: Record<string, unknown>,
  between: () => void,
): Promise<{ points: PlainPoint[]; plugin: RaplPlugin }> {
  await using h = await testPlugin(raplPlugin, { sysfs_root: root, ...config });
  const first = await h.poll("in");
  assert.equal(first.length, 0, "the first poll only sets the baselines");
  between();
  const second = await h.poll("in");
  return { points: pointsOf(second, h.metrics), plugin: h.plugin as RaplPlugin };
}

Deno.test("README metrics table and config block match the plugin", async () => {
  const readme = await Deno.readTextFile(new URL("./README.md", import.meta.url));
  checkMetricsTable(readme, RAPL_METRICS);
  checkConfigBlock(readme, raplPlugin);
});

Deno.test("config: Alumet's keys with Alumet's defaults, and sysfs_root", () => {
  assert.deepEqual(raplConfigSchema.parse({}), {
    poll_interval: 1000,
    flush_interval: 5000,
    no_perf_events: false,
    sysfs_root: "/sys",
  });
  assert.throws(() => raplConfigSchema.parse({ poll_intervall: "1s" }));
});

Deno.test("two-socket Intel server with dram: package and dram per socket, and the totals", async () => {
  using f = fixture("intel_xeon_2s_dram");
  using logs = captureLogs();
  // class/powercap/intel-rapl:N are symlinks into devices/virtual/powercap, as on a real machine.
  assert.ok(Deno.lstatSync(`${f.root}/class/powercap/intel-rapl:0`).isSymlink);
  const { points, plugin } = await twoPolls(f.root, { no_perf_events: true }, () => {
    setUj(f.root, "intel-rapl:0", 153478023511 + 12_500_000); // +12.5 J
    setUj(f.root, "intel-rapl:0:0", 40128633279 + 3_250_000); // +3.25 J
    setUj(f.root, "intel-rapl:1", 149877411026 + 11_750_000); // +11.75 J
    setUj(f.root, "intel-rapl:1:0", 38810257430 + 2_500_000); // +2.5 J
  });
  assert.equal(plugin.choice.interface, "powercap");
  assertJoules(byKey(points), {
    "cpu_package/0|package": 12.5,
    "dram/0|dram": 3.25,
    "cpu_package/1|package": 11.75,
    "dram/1|dram": 2.5,
    "local_machine/|package_total": 12.5 + 11.75,
    "local_machine/|dram_total": 3.25 + 2.5,
  });
  // Same domains in perf and powercap: no consistency warning.
  assert.deepEqual(logs.lines.filter((l) => l.startsWith("warn")), []);
});

Deno.test("perf power PMU planning: one counter per event and package, with the scale", async (t) => {
  using f = fixture("intel_xeon_2s_dram");
  const plan = planPerf(f.root);
  assert.equal(plan.present, true);
  await t.step("events × cpumask CPUs, never events × CPUs; each CPU's package from its topology", () => {
    assert.deepEqual(
      plan.counters.map((c) => [c.event, c.cpu, c.package, c.domain]),
      [
        ["power/energy-pkg/", 0, 0, "package"],
        ["power/energy-pkg/", 16, 1, "package"],
        ["power/energy-ram/", 0, 0, "dram"],
        ["power/energy-ram/", 16, 1, "dram"],
      ],
    );
  });
  await t.step("the scale is 2^-32 J per count", () => {
    for (const c of plan.counters) assert.equal(c.scale, 2 ** -32);
  });
  await t.step("without topology files, the i-th CPU of the mask is socket i (Alumet's rule)", () => {
    Deno.removeSync(`${f.root}/devices/system/cpu`, { recursive: true });
    Deno.writeTextFileSync(`${f.root}/bus/event_source/devices/power/cpumask`, "0,24\n");
    assert.deepEqual(planPerf(f.root).counters.map((c) => [c.cpu, c.package]), [[0, 0], [24, 1], [0, 0], [
      24,
      1,
    ]]);
  });
  await t.step(
    "the psys event is opened on every cpumask CPU: only the master package's reads non-zero",
    () => {
      const ev = `${f.root}/bus/event_source/devices/power/events`;
      Deno.writeTextFileSync(`${ev}/energy-psys`, "event=0x05\n");
      Deno.writeTextFileSync(`${ev}/energy-psys.scale`, "2.3283064365386962890625e-10\n");
      Deno.writeTextFileSync(`${ev}/energy-psys.unit`, "Joules\n");
      const psys = planPerf(f.root).counters.filter((c) => c.domain === "platform");
      assert.deepEqual(psys.map((c) => c.cpu), [0, 24]);
    },
  );
});

Deno.test("a power PMU that does not open falls back to powercap, with one warning", async () => {
  using f = fixture("intel_xeon_2s_dram");
  using logs = captureLogs();
  // A PMU type no kernel has, so that the open fails on any machine (the fixture's 23 could exist elsewhere).
  Deno.writeTextFileSync(`${f.root}/bus/event_source/devices/power/type`, "2147483647\n");
  const { points, plugin } = await twoPolls(
    f.root,
    {},
    () => setUj(f.root, "intel-rapl:0", 153478023511 + 1),
  );
  assert.equal(plugin.choice.interface, "powercap");
  const warns = logs.lines.filter((l) => l.startsWith("warn"));
  assert.equal(warns.length, 1, warns.join("\n"));
  assert.match(warns[0]!, /Cannot open the perf power counters .*falling back to powercap/);
  assert.equal(byKey(points)["cpu_package/0|package"]!.toFixed(6), "0.000001");
});

Deno.test("AMD EPYC, package and core in powercap, package only in perf: the safe subset", async () => {
  using f = fixture("amd_epyc_2s_pkg_core");
  using logs = captureLogs();
  assert.deepEqual(planPerf(f.root).counters.map((c) => [c.cpu, c.package]), [[0, 0], [64, 1]]);
  const { points } = await twoPolls(f.root, { no_perf_events: true }, () => {
    setUj(f.root, "intel-rapl:0", 95004421882 + 150_000_000); // +150 J
    setUj(f.root, "intel-rapl:0:0", 1093221465 + 40_000_000); // core: not in the safe subset
    setUj(f.root, "intel-rapl:1", 91327604163 + 140_500_000); // +140.5 J
    setUj(f.root, "intel-rapl:1:0", 1008814702 + 38_000_000);
  });
  assertJoules(byKey(points), {
    "cpu_package/0|package": 150,
    "cpu_package/1|package": 140.5,
    "local_machine/|package_total": 290.5,
  });
  const warns = logs.lines.filter((l) => l.startsWith("warn"));
  assert.equal(warns.length, 1, warns.join("\n"));
  assert.match(warns[0]!, /perf_events: package; powercap: package, pp0\).*only the domains both list/);
});

Deno.test("laptop with psys and an intel-rapl-mmio zone: psys on the machine, the package counted once", async () => {
  using f = fixture("intel_laptop_psys_mmio");
  using logs = captureLogs();
  const scan = scanPowercap(f.root);
  assert.deepEqual(scan.zones.map((z) => z.zone), [
    "intel-rapl:0",
    "intel-rapl:0:0",
    "intel-rapl:0:1",
    "intel-rapl:1",
  ]);
  assert.match(scan.skipped.join(), /intel-rapl-mmio:0 \("package-0" repeats a zone already measured/);
  const { points, plugin } = await twoPolls(f.root, {}, () => {
    setUj(f.root, "intel-rapl:0", 42180566132 + 5_500_000); // +5.5 J
    setUj(f.root, "intel-rapl:0:0", 18011376021 + 2_250_000); // +2.25 J
    setUj(f.root, "intel-rapl:0:1", 1243315876 + 500_000); // +0.5 J
    setUj(f.root, "intel-rapl:1", 97713280144 + 9_750_000); // +9.75 J
    setUj(f.root, "intel-rapl-mmio:0", 42180566132 + 5_600_000); // would show if counted
  });
  // No power PMU in this fixture (as on this VM): powercap, without a warning.
  assert.equal(plugin.choice.interface, "powercap");
  assert.deepEqual(logs.lines.filter((l) => l.startsWith("warn")), []);
  assertJoules(byKey(points), {
    "cpu_package/0|package": 5.5,
    "cpu_package/0|pp0": 2.25,
    "cpu_package/0|pp1": 0.5,
    "local_machine/|platform": 9.75,
    "local_machine/|package_total": 5.5,
    "local_machine/|pp0_total": 2.25,
    "local_machine/|pp1_total": 0.5,
    "local_machine/|platform_total": 9.75,
  });
});

Deno.test("zone numbers are not package numbers: the package comes from the zone's name", async () => {
  using f = fixture("zone_numbers_differ");
  const { points } = await twoPolls(f.root, {}, () => {
    setUj(f.root, "intel-rapl:0", 120031885244 + 20_000_000); // package-1: +20 J
    setUj(f.root, "intel-rapl:0:0", 31002741876 + 4_000_000); // its dram: +4 J
    setUj(f.root, "intel-rapl:1", 118454093311 + 18_000_000); // package-0: +18 J
    setUj(f.root, "intel-rapl:1:0", 29875500311 + 3_500_000); // its dram: +3.5 J
  });
  assertJoules(byKey(points), {
    "cpu_package/1|package": 20,
    "dram/1|dram": 4,
    "cpu_package/0|package": 18,
    "dram/0|dram": 3.5,
    "local_machine/|package_total": 38,
    "local_machine/|dram_total": 7.5,
  });
});

Deno.test("a counter that wraps between two polls: max_energy_range_uj - before + after", async () => {
  using f = fixture("intel_desktop_1s");
  const max = 262143328850;
  const { points } = await twoPolls(f.root, {}, () => {
    setUj(f.root, "intel-rapl:0", 1_500_000); // was 262140000000: wrapped
    setUj(f.root, "intel-rapl:0:0", 103356877201 + 1_000_000);
    setUj(f.root, "intel-rapl:0:1", 2245601187);
    setUj(f.root, "intel-rapl:0:2", 30911226034 + 250_000);
  });
  const wrapped = (max - 262140000000 + 1_500_000) / 1e6; // 4.82885 J
  assertJoules(byKey(points), {
    "cpu_package/0|package": wrapped,
    "cpu_package/0|pp0": 1,
    "cpu_package/0|pp1": 0,
    "dram/0|dram": 0.25,
    "local_machine/|package_total": wrapped,
    "local_machine/|pp0_total": 1,
    "local_machine/|pp1_total": 0,
    "local_machine/|dram_total": 0.25,
  });
});

Deno.test("pause: reset forgets the baselines, the next poll is a baseline again", async () => {
  using f = fixture("intel_desktop_1s");
  await using h = await testPlugin(raplPlugin, { sysfs_root: f.root });
  await h.poll("in");
  setUj(f.root, "intel-rapl:0", 262140000000 + 1000);
  assert.ok((await h.poll("in")).length > 0);
  h.sources.get("in")!.source.reset!();
  assert.equal((await h.poll("in")).length, 0);
});

/** Polls `in` for a little over STILL_MS, moving `moving` zones' counters before each poll. */
async function pollStill(h: PluginHarness, root: string, moving: string[]): Promise<void> {
  await h.poll("in"); // the baseline
  let uj = 262140000000;
  const t0 = performance.now();
  while (performance.now() - t0 < STILL_MS + 100) {
    uj += 1000;
    for (const zone of moving) setUj(root, zone, uj);
    await h.poll("in");
    await new Promise((r) => setTimeout(r, 50));
  }
  await h.poll("in"); // after the check: nothing more is said
}

Deno.test("no counter moving for a second of polls: one warning that RAPL does not count here", async () => {
  using f = fixture("intel_desktop_1s");
  using logs = captureLogs();
  await using h = await testPlugin(raplPlugin, { sysfs_root: f.root });
  await pollStill(h, f.root, []);
  const said = logs.lines.filter((l) => l.includes("did not move"));
  assert.equal(said.length, 1, logs.lines.join("\n"));
  assert.match(said[0]!, /^warn: No RAPL counter moves: package \(cpu_package 0\), pp0 \(cpu_package 0\), /);
  assert.match(said[0]!, / did not move in \d+\.\d s of polls\. .*reads 0, which is not a measurement/);
});

Deno.test("some domains still while the package moves: an info line naming them, no warning", async () => {
  using f = fixture("intel_desktop_1s");
  using logs = captureLogs();
  await using h = await testPlugin(raplPlugin, { sysfs_root: f.root });
  await pollStill(h, f.root, ["intel-rapl:0"]);
  assert.deepEqual(logs.lines.filter((l) => l.startsWith("warn")), []);
  const said = logs.lines.filter((l) => l.includes("did not move"));
  assert.equal(said.length, 1, logs.lines.join("\n"));
  assert.match(
    said[0]!,
    /^info: RAPL: pp0 \(cpu_package 0\), pp1 \(cpu_package 0\), dram \(dram 0\) did not move/,
  );
});

Deno.test("no RAPL at all: one warning with the fix, no source, start does not throw", async () => {
  const empty = Deno.makeTempDirSync({ prefix: "rapl-none-" });
  try {
    using logs = captureLogs();
    await using h = await testPlugin(raplPlugin, { sysfs_root: empty });
    assert.equal(h.sources.size, 0);
    assert.deepEqual(logs.lines.length, 1, logs.lines.join("\n"));
    assert.match(
      logs.lines[0]!,
      /^warn: No RAPL on this machine, the rapl source is not added: no "power" PMU/,
    );
    assert.match(logs.lines[0]!, /modprobe intel_rapl_msr/);
    const d = diagnoseRapl(raplConfigSchema.parse({ sysfs_root: empty }));
    assert.equal(d.length, 1);
    assert.equal(d[0]!.ok, false);
    assert.match(d[0]!.fix!, /modprobe intel_rapl_msr/);
  } finally {
    Deno.removeSync(empty, { recursive: true });
  }
});

Deno.test("this machine, with the defaults: where /sys shows RAPL, a source whose polls measure energy (or say that its counters do not count); elsewhere one warning and no source", async () => {
  using logs = captureLogs();
  await using h = await testPlugin(raplPlugin, {});
  if (!raplShown()) {
    assert.equal(h.sources.size, 0);
    assert.equal(logs.lines.filter((l) => l.startsWith("warn")).length, 1, logs.lines.join("\n"));
    return;
  }
  // RAPL here (root, or energy readable): the first poll is a baseline, the next measures the energy since.
  if (h.sources.size === 0) {
    assert.ok(logs.lines.some((l) => l.startsWith("warn")), "no source and no warning saying why");
    return; // not readable by this user: the warning says so (checked in the tests above, on fixtures)
  }
  const [name] = [...h.sources.keys()];
  await h.poll(name!);
  const points: PlainPoint[] = [];
  const t0 = performance.now();
  while (performance.now() - t0 < STILL_MS + 200) {
    await new Promise((r) => setTimeout(r, 100));
    points.push(...pointsOf(await h.poll(name!), h.metrics));
  }
  assert.ok(points.length > 0, "no energy point after the baseline");
  assert.ok(points.every((p) => Number.isFinite(p.value) && p.value >= 0), JSON.stringify(points));
  // The domains and their totals together (a bound, not a sum): over 1.2 s of a running machine, more than
  // nothing and less than a 10 kW machine would use; or, where the counters do not count (a VM's PMU that
  // reads 0, as perf stat reads it there), the warning that says so.
  const total = points.reduce((s, p) => s + p.value, 0);
  if (total === 0) {
    assert.equal(
      logs.lines.filter((l) => l.includes("No RAPL counter moves")).length,
      1,
      logs.lines.join("\n"),
    );
  } else assert.ok(total < 30_000, `${total} J in 1.2 s`);
});

Deno.test("doctor on fixtures: readable zones, and the safe subset", () => {
  using f = fixture("amd_epyc_2s_pkg_core");
  // The fixture's power PMU type does not exist here: the perf check fails with the open error.
  Deno.writeTextFileSync(`${f.root}/bus/event_source/devices/power/type`, "2147483647\n");
  const d = diagnoseRapl(raplConfigSchema.parse({ sysfs_root: f.root }));
  const by = Object.fromEntries(d.map((x) => [x.check, x]));
  assert.equal(by["powercap energy_uj readable"]!.ok, true);
  // powercap measures the safe subset: the perf failure is informational, its fix kept.
  assert.equal(by["perf power PMU"]!.ok, true);
  assert.match(by["perf power PMU"]!.detail, /not needed: powercap measures package/);
  assert.ok(by["perf power PMU"]!.fix !== undefined);
  assert.match(by["RAPL domains consistent"]!.detail, /only package are measured/);
  assert.deepEqual(d.filter((x) => !x.ok), []);
});

Deno.test("no powercap zone and no_perf_events = true: doctor fails, start says perf is disabled", async () => {
  using f = fixture("intel_xeon_2s_dram");
  Deno.removeSync(`${f.root}/class/powercap`, { recursive: true });
  using logs = captureLogs();
  const d = diagnoseRapl(raplConfigSchema.parse({ sysfs_root: f.root, no_perf_events: true }));
  const bad = d.filter((x) => !x.ok);
  assert.ok(bad.length > 0, JSON.stringify(d));
  assert.match(
    bad.map((x) => `${x.detail} ${x.fix ?? ""}`).join("\n"),
    /perf_events is disabled \(no_perf_events = true\): set it to false/,
  );
  assert.ok(!d.some((x) => /perf_events is used/.test(x.detail)), JSON.stringify(d));
  await using h = await testPlugin(raplPlugin, { sysfs_root: f.root, no_perf_events: true });
  assert.equal(h.sources.size, 0);
  const warns = logs.lines.filter((l) => l.startsWith("warn"));
  assert.equal(warns.length, 1, warns.join("\n"));
  assert.match(warns[0]!, /perf_events is disabled \(no_perf_events = true\): set it to false/);
  assert.doesNotMatch(warns[0]!, /did not open/);
});

Deno.test("Xeon Platinum 9200 (Cascade Lake-AP, 2 dies per package): the dies sum into their package", async (t) => {
  using f = fixture("xeon_9200_2s_multidie");
  await t.step("powercap: every die zone and its dram are measured, none repeats another", () => {
    const scan = scanPowercap(f.root);
    assert.deepEqual(scan.zones.map((z) => [z.zone, z.domain, z.package]), [
      ["intel-rapl:0", "package", 0],
      ["intel-rapl:0:0", "dram", 0],
      ["intel-rapl:1", "package", 0],
      ["intel-rapl:1:0", "dram", 0],
      ["intel-rapl:2", "package", 1],
      ["intel-rapl:2:0", "dram", 1],
      ["intel-rapl:3", "package", 1],
      ["intel-rapl:3:0", "dram", 1],
    ]);
    assert.deepEqual(scan.skipped, []);
  });
  await t.step("perf: one counter per die (cpumask), each on its package", () => {
    assert.deepEqual(
      planPerf(f.root).counters.filter((c) => c.domain === "package").map((c) => [c.cpu, c.package]),
      [[0, 0], [28, 0], [56, 1], [84, 1]],
    );
  });
  await t.step("one point per package and per dram, the sum of its dies", async () => {
    const { points, plugin } = await twoPolls(f.root, { no_perf_events: true }, () => {
      setUj(f.root, "intel-rapl:0", 71234567890 + 61_000_000); // package 0 die 0: +61 J
      setUj(f.root, "intel-rapl:0:0", 20111222333 + 7_250_000); // its dram: +7.25 J
      setUj(f.root, "intel-rapl:1", 70987654321 + 59_500_000); // package 0 die 1: +59.5 J
      setUj(f.root, "intel-rapl:1:0", 19876543210 + 6_750_000); // its dram: +6.75 J
      setUj(f.root, "intel-rapl:2", 69555444333 + 48_000_000); // package 1 die 0: +48 J
      setUj(f.root, "intel-rapl:2:0", 18765432109 + 5_000_000); // +5 J
      setUj(f.root, "intel-rapl:3", 68444333222 + 50_250_000); // package 1 die 1: +50.25 J
      setUj(f.root, "intel-rapl:3:0", 17654321098 + 5_500_000); // +5.5 J
    });
    assert.equal(plugin.choice.channels.length, 8);
    assertJoules(byKey(points), {
      "cpu_package/0|package": 61 + 59.5, // 120.5
      "dram/0|dram": 7.25 + 6.75, // 14
      "cpu_package/1|package": 48 + 50.25, // 98.25
      "dram/1|dram": 5 + 5.5, // 10.5
      "local_machine/|package_total": 120.5 + 98.25,
      "local_machine/|dram_total": 14 + 10.5,
    });
  });
});

Deno.test("zones found but not understood are said as such, not as 'no intel-rapl zone'", async () => {
  using f = fixture("intel_desktop_1s");
  Deno.writeTextFileSync(`${f.root}/class/powercap/intel-rapl:0/name`, "package-0-tile-3\n");
  for (const z of ["intel-rapl:0:0", "intel-rapl:0:1", "intel-rapl:0:2"]) {
    Deno.writeTextFileSync(`${f.root}/class/powercap/${z}/name`, "mystery\n");
  }
  using logs = captureLogs();
  await using h = await testPlugin(raplPlugin, { sysfs_root: f.root });
  assert.equal(h.sources.size, 0);
  const warns = logs.lines.filter((l) => l.startsWith("warn"));
  assert.equal(warns.length, 1, warns.join("\n"));
  assert.match(
    warns[0]!,
    /intel-rapl zones found .* but not understood: intel-rapl:0 \(name "package-0-tile-3"/,
  );
  assert.doesNotMatch(warns[0]!, /modprobe/);
  const d = diagnoseRapl(raplConfigSchema.parse({ sysfs_root: f.root }));
  assert.equal(d[0]!.ok, false);
  assert.match(d[0]!.detail, /not understood/);
});

// ---------------------------------------------------------------------------------------------------------
// energy_uj unreadable: mode 000, the plugin run as root without the capabilities that bypass file modes.

const PROBE = `
import { testPlugin } from "${ROOT_DIR}src/testing/mod.ts";
import { pointsOf } from "${ROOT_DIR}src/testing/fixtures.ts";
import { setLogSink } from "${ROOT_DIR}src/log.ts";
import { raplPlugin, diagnoseRapl, raplConfigSchema } from "${ROOT_DIR}plugins/rapl/mod.ts";
const root = Deno.args[0];
const logs = [];
setLogSink((level, _s, msg) => void logs.push(level + ": " + msg));
const h = await testPlugin(raplPlugin, { sysfs_root: root });
let points = [];
if (h.sources.has("in")) {
  await h.poll("in");
  try {
    Deno.writeTextFileSync(root + "/class/powercap/intel-rapl:0/energy_uj", String(262140000000 + 2000000));
  } catch { /* a read-only counter (mode 0400): it did not move */ }
  points = pointsOf(await h.poll("in"), h.metrics);
}
const doctor = diagnoseRapl(raplConfigSchema.parse({ sysfs_root: root }));
await h.stop();
console.log(JSON.stringify({ sources: [...h.sources.keys()], logs, points, doctor }));
`;

interface ProbeResult {
  sources: string[];
  logs: string[];
  points: PlainPoint[];
  doctor: { check: string; ok: boolean; detail: string; fix?: string }[];
}

/** Runs the probe under `setpriv` with CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped. */
async function runWithoutDacCaps(root: string): Promise<ProbeResult> {
  const script = `${root}/../probe.ts`;
  Deno.writeTextFileSync(script, PROBE);
  const out = await new Deno.Command("setpriv", {
    args: [
      "--bounding-set=-dac_override,-dac_read_search",
      "--inh-caps=-all",
      Deno.execPath(),
      "run",
      "--quiet",
      "--no-lock",
      "--allow-all",
      script,
      root,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, err);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

testWith(
  [needs.root, needs.command("setpriv")],
  "energy_uj unreadable (mode 000, root without CAP_DAC_*)",
  async (t) => {
    await t.step(
      "every zone unreadable: one warning with the fix, no source, doctor says the same",
      async () => {
        using f = fixture("intel_desktop_1s");
        for (const z of ["intel-rapl:0", "intel-rapl:0:0", "intel-rapl:0:1", "intel-rapl:0:2"]) {
          Deno.chmodSync(`${f.root}/class/powercap/${z}/energy_uj`, 0o000);
        }
        const r = await runWithoutDacCaps(f.root);
        assert.deepEqual(r.sources, []);
        const warns = r.logs.filter((l) => l.startsWith("warn"));
        assert.match(warns[0]!, /Cannot read .*intel-rapl:0\/energy_uj \(permission denied \(EACCES\)\)/);
        assert.match(warns[0]!, /root only since Linux 5\.10.*CAP_DAC_READ_SEARCH.*chmod a\+r/);
        assert.match(warns.at(-1)!, /No RAPL counter can be read here/);
        const doc = r.doctor.find((d) => d.check === "powercap energy_uj readable")!;
        assert.equal(doc.ok, false);
        assert.match(doc.fix!, /chmod a\+r/);
      },
    );
    await t.step("dram alone unreadable: the others are measured, dram is named in the warning", async () => {
      using f = fixture("intel_desktop_1s");
      Deno.chmodSync(`${f.root}/class/powercap/intel-rapl:0:2/energy_uj`, 0o000);
      const r = await runWithoutDacCaps(f.root);
      assert.deepEqual(r.sources, ["in"]);
      const warns = r.logs.filter((l) => l.startsWith("warn"));
      assert.equal(warns.length, 1, warns.join("\n"));
      assert.match(warns[0]!, /intel-rapl:0:2\/energy_uj .*those domains are not measured/);
      // The probe moved the package from 262140000000 to +2 J: 2 J; the others did not move: 0 J.
      assertJoules(byKey(r.points), {
        "cpu_package/0|package": 2,
        "cpu_package/0|pp0": 0,
        "cpu_package/0|pp1": 0,
        "local_machine/|package_total": 2,
        "local_machine/|pp0_total": 0,
        "local_machine/|pp1_total": 0,
      });
    });
    await t.step("mode 0400 stays readable to root, its owner, without those capabilities", async () => {
      using f = fixture("intel_desktop_1s");
      Deno.chmodSync(`${f.root}/class/powercap/intel-rapl:0/energy_uj`, 0o400);
      const r = await runWithoutDacCaps(f.root);
      assert.equal(r.logs.filter((l) => l.startsWith("warn")).length, 0);
      assert.deepEqual(r.sources, ["in"]);
      assert.equal(byKey(r.points)["cpu_package/0|package"], 0);
    });
  },
);

// ---------------------------------------------------------------------------------------------------------
// The perf path through the real perf layer, on the msr PMU (no cpumask file, same sysfs path as `power`).

const msrPmu: Need = {
  what: "the msr PMU",
  missing: () => {
    try {
      Deno.statSync("/sys/bus/event_source/devices/msr/events/tsc");
      return undefined;
    } catch {
      return "no /sys/bus/event_source/devices/msr/events/tsc";
    }
  },
};

testWith(
  [needs.root, msrPmu],
  "perf channel opened CPU-wide on one CPU and scaled (msr/tsc/ as a stand-in)",
  async () => {
    const metrics = new MetricRegistry();
    const { energy } = registerMetrics(metrics, "rapl", RAPL_METRICS);
    const scale = 2 ** -32;
    using src = disposable(RaplSource.open({
      metric: energy,
      channels: [{
        kind: "perf",
        event: "msr/tsc/",
        pmuRoot: "/sys/bus/event_source/devices",
        cpu: 0,
        package: 0,
        domain: "package",
        scale,
      }],
    }));
    const b1 = new Batch();
    src.value.poll(b1);
    assert.equal(b1.length, 0);
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 50));
    const dt = (performance.now() - t0) / 1000;
    const b2 = new Batch();
    src.value.poll(b2);
    const pts = pointsOf(b2, metrics);
    assert.equal(pts.length, 2); // the counter and package_total
    // The TSC ticks at GHz rates: in ~50 ms, 10^7 to 10^9 ticks, times 2^-32.
    const ticks = pts[0]!.value / scale;
    assert.ok(ticks > 1e6 * dt && ticks < 1e10 * dt, `${ticks} ticks in ${dt} s`);
    assert.ok(Number.isInteger(ticks), "a power-of-two scale loses nothing");
  },
);

function disposable(s: RaplSource): { value: RaplSource; [Symbol.dispose](): void } {
  return { value: s, [Symbol.dispose]: () => s.close() };
}

// ---------------------------------------------------------------------------------------------------------
// The perf path through the plugin (start → planPerf → perf preferred → safe subset → points and totals), on
// a fixture whose `power` PMU is the REAL msr PMU under another name: its `type` is msr's, and every energy
// event is `event=0x00`, msr's `tsc`. The tree models a two-socket Sapphire Rapids server (package and dram
// per socket, psys, as kernel commit "powercap/intel_rapl: enumerate Psys RAPL domain together with package
// RAPL domain" describes: psys listed once, valid on the master package only) whose perf PMU also lists
// `energy-cores`, which powercap does not: the core domain is outside the safe subset. The counts are TSC
// ticks, not energy: the test checks the structure and the arithmetic, never a wattage.

const SCALE_TEXT = "2.3283064365386962890625e-10\n"; // 2^-32, as arch/x86/events/rapl.c writes it

/** Builds the msr-backed fixture in a temp dir; `cpus` is the cpumask (one CPU per package). */
function msrBackedFixture(cpus: number[]): { root: string; [Symbol.dispose](): void } {
  const tmp = Deno.makeTempDirSync({ prefix: "rapl-msr-" });
  const root = `${tmp}/sys`;
  const write = (path: string, text: string) => {
    Deno.mkdirSync(`${root}/${path.slice(0, path.lastIndexOf("/"))}`, { recursive: true });
    Deno.writeTextFileSync(`${root}/${path}`, text);
  };
  const pmu = "bus/event_source/devices/power";
  write(`${pmu}/type`, Deno.readTextFileSync("/sys/bus/event_source/devices/msr/type"));
  write(`${pmu}/cpumask`, `${cpus.join(",")}\n`);
  write(`${pmu}/format/event`, "config:0-63\n");
  for (const e of ["pkg", "ram", "cores", "psys"]) {
    write(`${pmu}/events/energy-${e}`, "event=0x00\n");
    write(`${pmu}/events/energy-${e}.scale`, SCALE_TEXT);
    write(`${pmu}/events/energy-${e}.unit`, "Joules\n");
  }
  cpus.forEach((cpu, pkg) => {
    write(`devices/system/cpu/cpu${cpu}/topology/physical_package_id`, `${pkg}\n`);
    const zone = (dir: string, name: string, max: number) => {
      write(`class/powercap/${dir}/name`, `${name}\n`);
      write(`class/powercap/${dir}/energy_uj`, "1000\n");
      write(`class/powercap/${dir}/max_energy_range_uj`, `${max}\n`);
      write(`class/powercap/${dir}/enabled`, "1\n");
    };
    zone(`intel-rapl:${pkg}`, `package-${pkg}`, 262143328850);
    zone(`intel-rapl:${pkg}:0`, "dram", 65532610987);
    if (pkg === cpus.length - 1) zone(`intel-rapl:${pkg + 1}`, "psys", 262143328850);
  });
  return { root, [Symbol.dispose]: () => Deno.removeSync(tmp, { recursive: true }) };
}

/** One CPU per fake package: 0, and 1 when this VM has a second CPU online. */
function fixtureCpus(): number[] {
  const online = Deno.readTextFileSync("/sys/devices/system/cpu/online").trim();
  return /^0-[1-9]|^0,1\b/.test(online) ? [0, 1] : [0];
}

testWith(
  [needs.root, msrPmu],
  "the perf path through the plugin: perf chosen, one counter per package, safe subset, points and totals",
  async () => {
    const cpus = fixtureCpus();
    using f = msrBackedFixture(cpus);
    using logs = captureLogs();
    await using h = await testPlugin(raplPlugin, { sysfs_root: f.root });
    const plugin = h.plugin as RaplPlugin;
    assert.equal(plugin.choice.interface, "perf");
    // package and dram once per package (its cpumask CPU), psys on every cpumask CPU; cores left out.
    const want = [
      ...cpus.map((cpu, pkg) => ["package", pkg, cpu]),
      ...cpus.map((cpu, pkg) => ["dram", pkg, cpu]),
      ...cpus.map((cpu, pkg) => ["platform", pkg, cpu]),
    ];
    assert.deepEqual(
      plugin.choice.channels.map((c) => [c.domain, c.package, (c as { cpu: number }).cpu].join()).sort(),
      want.map((w) => w.join()).sort(),
    );
    const warns = logs.lines.filter((l) => l.startsWith("warn"));
    assert.equal(warns.length, 1, warns.join("\n"));
    assert.match(warns[0]!, /perf_events: package, pp0, dram, platform; powercap: package, dram, platform/);
    assert.equal((await h.poll("in")).length, 0, "the first poll only sets the baselines");
    await new Promise((r) => setTimeout(r, 20));
    const got = byKey(pointsOf(await h.poll("in"), h.metrics));
    const keys = [
      ...cpus.flatMap((_, p) => [`cpu_package/${p}|package`, `dram/${p}|dram`]),
      "local_machine/|platform",
      "local_machine/|package_total",
      "local_machine/|dram_total",
      "local_machine/|platform_total",
    ];
    assert.deepEqual(Object.keys(got).sort(), keys.sort());
    for (const [k, v] of Object.entries(got)) {
      assert.ok(v > 0, `${k}: ${v}`);
      assert.ok(Number.isInteger(v * 2 ** 32), `${k}: ${v} J is not a whole number of 2^-32 J counts`);
    }
    const sum = (d: string, res: (p: number) => string) =>
      cpus.reduce((s, _, p) => s + got[`${res(p)}|${d}`]!, 0);
    assert.equal(got["local_machine/|package_total"], sum("package", (p) => `cpu_package/${p}`));
    assert.equal(got["local_machine/|dram_total"], sum("dram", (p) => `dram/${p}`));
    assert.equal(got["local_machine/|platform_total"], got["local_machine/|platform"]);
  },
);

testWith(
  [needs.root, needs.command("setpriv"), msrPmu],
  "energy_uj unreadable but the perf counters measure every domain: perf is used, doctor passes",
  async () => {
    using f = msrBackedFixture(fixtureCpus());
    // Same domains in both: drop energy-cores so that the subset is the whole list.
    for (const s of ["", ".scale", ".unit"]) {
      Deno.removeSync(`${f.root}/bus/event_source/devices/power/events/energy-cores${s}`);
    }
    for (const e of Deno.readDirSync(`${f.root}/class/powercap`)) {
      Deno.chmodSync(`${f.root}/class/powercap/${e.name}/energy_uj`, 0o000);
    }
    const r = await runWithoutDacCaps(f.root);
    assert.deepEqual(r.sources, ["in"]);
    assert.deepEqual(r.logs.filter((l) => l.startsWith("warn")), []);
    assert.deepEqual(r.doctor.filter((d) => !d.ok), [], JSON.stringify(r.doctor));
    const pc = r.doctor.find((d) => d.check === "powercap energy_uj readable")!;
    assert.match(pc.detail, /not needed: perf_events measures package, dram, platform/);
    assert.match(pc.fix!, /chmod a\+r/);
  },
);

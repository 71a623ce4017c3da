import assert from "node:assert/strict";
import { ExecSummary, joulesPerUnit, outputLabels } from "./summary.ts";
import { Batch, type PointContext } from "../model/batch.ts";
import type { Metric, MetricId } from "../model/metrics.ts";
import { Consumer, Resource } from "../model/resources.ts";
import { customUnit, parseUnit, type Unit, unit } from "../model/units.ts";

function summaryOf(options: Partial<Parameters<ExecSummary["format"]>[0]> = {}): string {
  const s = new ExecSummary();
  s.pid = "42";
  return s.format({ elapsedMs: 1000, outputs: [], nCpus: 2, ...options });
}

Deno.test("ExecSummary prints peak memory in binary units with the exact KiB, not the unit's code", () => {
  const text = summaryOf({ peakRssBytes: 1_613_824 });
  assert.match(text, /^\s+1\.5 MiB peak memory \(1,576 KiB, max resident set size\)$/m, text);
  assert.doesNotMatch(text, /By/);
  const small = summaryOf({ peakRssBytes: 700 * 1024, peakSource: "sampled" });
  assert.match(small, /^\s+700\.0 KiB peak memory \(700 KiB, sampled\)$/m, small);
});

Deno.test("ExecSummary quotes the program's arguments as a shell would take them back", async (t) => {
  await t.step("an argument with spaces, quotes or shell characters is single-quoted", () => {
    const text = summaryOf({ command: ["sh", "-c", "i=0; echo 'it' \"$i\""] });
    assert.match(text, / Measured for sh -c 'i=0; echo '\\''it'\\'' "\$i"' \(pid 42\) by alumet:/, text);
  });
  await t.step("plain arguments stay as typed", () => {
    assert.match(summaryOf({ command: ["sleep", "1"] }), / Measured for sleep 1 \(pid 42\) by alumet:/);
  });
  await t.step("without a command line (a process being watched that has none): the pid", () => {
    assert.match(summaryOf(), / Measured for pid 42 by alumet:/);
  });
});

Deno.test("outputLabels names only the outputs that wrote points when their statistics are given", () => {
  const outputs = [
    { name: "output/csv/main", description: "out.csv" },
    { name: "output/log/main", description: "log" },
    { name: "output/exec-summary/summary", description: "exec-summary" },
  ];
  const stats = new Map([
    ["output/csv/main", { points: 0 }],
    ["output/log/main", { points: 12 }],
    ["output/exec-summary/summary", { points: 12 }],
  ]);
  assert.deepEqual(outputLabels(outputs, ["exec-summary"], stats), ["log"]);
  assert.deepEqual(outputLabels(outputs, ["exec-summary"]), ["out.csv (csv)", "log"]);
});

Deno.test("ExecSummary names no output as having the others when none wrote a point", async (t) => {
  await t.step("points lost, nothing written", () => {
    const text = summaryOf({ lost: 5, outputs: [] });
    assert.match(text, /Series incomplete: 5 points lost \(see the errors above\); no output wrote any/);
    assert.doesNotMatch(text, /went to/);
  });
  await t.step("points lost, some written", () => {
    const text = summaryOf({ lost: 1, outputs: ["out.csv (csv)"] });
    assert.match(
      text,
      /Series incomplete: 1 point lost \(see the errors above\); the others went to: out\.csv/,
    );
  });
});

// --- Energy during the run -----------------------------------------------------------------------------------

const SEC = 1_000_000_000n;
const T0 = 1_700_000_000n * SEC; // any epoch time

/** A summary fed with hand-made energy metrics: id 2 is `rapl_consumed_energy` (J), id 4 GPU mJ, 6 a gauge. */
function energySummary(): {
  s: ExecSummary;
  feed: (points: [number, bigint, number, PointContext?][]) => void;
} {
  const metrics = new Map<number, Metric>([
    [2, metricOf(2, "rapl_consumed_energy", unit("J"), "delta")],
    [4, metricOf(4, "nvml_energy_consumption", unit("J", "milli"), "delta")],
    [6, metricOf(6, "nvml_instant_power", unit("W"), "gauge")],
    [8, metricOf(8, "energy_gauge", unit("J"), "gauge")],
  ]);
  const s = new ExecSummary();
  s.pid = "42";
  const ctx = { metric: (id: MetricId) => metrics.get(id)! };
  return {
    s,
    feed(points) {
      const b = new Batch();
      for (const [id, ts, v, c] of points) b.push(id as MetricId<"f64">, v, { ...c, timestamp: ts });
      s.collect(b, ctx);
    },
  };
}

function metricOf(id: number, name: string, u: Unit, kind: Metric["kind"]): Metric {
  return { id: id as MetricId, name, unit: u, valueType: "f64", kind, description: "", plugin: "test" };
}

Deno.test("joulesPerUnit converts every unit of energy to joules, and nothing else", async (t) => {
  await t.step("joules with SI prefixes", () => {
    assert.equal(joulesPerUnit(unit("J")), 1);
    assert.equal(joulesPerUnit(unit("J", "milli")), 0.001);
    assert.equal(joulesPerUnit(unit("J", "micro")), 0.000001);
    assert.equal(joulesPerUnit(unit("J", "nano")), 1e-9);
    assert.equal(joulesPerUnit(unit("J", "kilo")), 1000);
    assert.equal(joulesPerUnit(unit("J", "mega")), 1e6);
  });
  await t.step("watt-hours", () => {
    assert.equal(joulesPerUnit(unit("W.h")), 3600);
    assert.equal(joulesPerUnit(unit("W.h", "kilo")), 3_600_000);
    assert.equal(joulesPerUnit(parseUnit("Wh")), 3600);
    assert.equal(joulesPerUnit(parseUnit("mWh")), 3.6);
  });
  await t.step("spellings that parse to custom units: the micro sign, u, words", () => {
    assert.equal(parseUnit("µJ").custom, true); // the micro sign is not the Greek mu the units display
    assert.equal(joulesPerUnit(parseUnit("µJ")), 0.000001);
    assert.equal(joulesPerUnit(customUnit("uJ")), 0.000001);
    assert.equal(joulesPerUnit(customUnit("joules")), 1);
    assert.equal(joulesPerUnit(customUnit("millijoule")), 0.001);
  });
  await t.step("not energy", () => {
    for (
      const u of [unit("W"), unit("W", "milli"), unit("s"), unit("1"), unit("By"), customUnit("packets")]
    ) {
      assert.equal(joulesPerUnit(u), undefined, u.code);
    }
  });
});

Deno.test("ExecSummary sums energy over exactly the polls after the start poll, up to the end poll", async (t) => {
  await t.step(
    "the delta of the start poll (time before the program) is left out; the interval starts there",
    () => {
      const { s, feed } = energySummary();
      // A source that polled once on its own before the start poll, then at the start poll: both deltas cover
      // time before the program.
      feed([[2, T0, 500], [2, T0 + SEC, 40]]);
      s.startPolled(T0 + SEC, T0 + SEC + 1_000_000n);
      feed([[2, T0 + 2n * SEC, 30], [2, T0 + 3n * SEC, 50]]); // during the run
      s.endPolled(T0 + 3n * SEC + 1_000_000n);
      feed([[2, T0 + 4n * SEC, 1000]]); // a poll while stopping: after the program
      const [line, ...rest] = s.energy();
      assert.deepEqual(rest, []);
      assert.equal(line!.joules, 80);
      assert.equal(line!.from, T0 + SEC);
      assert.equal(line!.to, T0 + 3n * SEC);
      assert.equal(line!.watts, 40);
      assert.equal(line!.points, 2);
    },
  );
  await t.step(
    "points that arrive before the start poll is known are before it, whatever their order",
    () => {
      const { s, feed } = energySummary();
      feed([[2, T0 + SEC, 40], [2, T0, 500]]);
      s.startPolled(T0 + SEC, T0 + SEC + 1_000_000n);
      feed([[2, T0 + 3n * SEC, 60]]);
      s.endPolled(T0 + 4n * SEC);
      assert.equal(s.energy()[0]!.joules, 60);
      assert.equal(s.energy()[0]!.watts, 30);
    },
  );
  await t.step("a series whose first read only set its baseline starts at the start poll", () => {
    const { s, feed } = energySummary();
    s.startPolled(T0, T0 + 2_000_000n);
    feed([[2, T0 + SEC / 2n, 10]]);
    s.endPolled(T0 + SEC);
    const line = s.energy()[0]!;
    assert.equal(line.from, T0);
    assert.equal(line.watts, 20);
  });
  await t.step("a point on the start poll's own end is before the program", () => {
    const { s, feed } = energySummary();
    s.startPolled(T0, T0 + SEC);
    feed([[2, T0 + SEC, 999], [2, T0 + 2n * SEC, 5]]);
    s.endPolled(T0 + 2n * SEC);
    assert.equal(s.energy()[0]!.joules, 5);
  });
  await t.step("without start and end polls, the first point of each series is its baseline", () => {
    const { s, feed } = energySummary();
    feed([[2, T0, 1000], [2, T0 + SEC, 7], [2, T0 + 2n * SEC, 9]]);
    const line = s.energy()[0]!;
    assert.equal(line.joules, 16);
    assert.equal(line.from, T0);
    assert.equal(line.watts, 8);
  });
  await t.step("a series with nothing during the run is not listed", () => {
    const { s, feed } = energySummary();
    feed([[2, T0, 1000]]);
    s.startPolled(T0, T0 + 1n);
    s.endPolled(T0 + SEC);
    assert.deepEqual(s.energy(), []);
    assert.doesNotMatch(s.format({ elapsedMs: 1000, outputs: [], nCpus: 2 }), /Energy/);
  });
});

Deno.test("ExecSummary keeps energy series apart, converts them to joules, and shows sums over sockets as totals", () => {
  const { s, feed } = energySummary();
  const pkg = (n: number, domain: string): PointContext => ({
    resource: Resource.cpuPackage(n),
    attributes: { domain },
  });
  const total: PointContext = { attributes: { domain: "package_total" } };
  const gpu: PointContext = { resource: Resource.gpu("00000000:3B:00.0") };
  const other: PointContext = { consumer: Consumer.process(7) };
  s.startPolled(T0, T0 + 1000n);
  feed([
    [2, T0 + SEC, 10, pkg(0, "package")],
    [2, T0 + SEC, 20, pkg(1, "package")],
    [2, T0 + SEC, 30, total],
    [2, T0 + SEC, 3, pkg(0, "dram")],
    [4, T0 + SEC, 150_000, gpu], // mJ
    [4, T0 + 2n * SEC, 150_000, gpu],
    [6, T0 + SEC, 150, gpu], // a power gauge: not energy
    [8, T0 + SEC, 5], // energy, but a gauge: not summed
    [2, T0 + SEC, 1, other], // a consumer other than the machine: its own series
  ]);
  s.endPolled(T0 + 2n * SEC);
  const lines = s.energy();
  assert.deepEqual(lines.map((l) => [l.label, l.joules, l.total]), [
    ["nvml_energy_consumption [gpu 00000000:3B:00.0]", 300, false],
    ["rapl_consumed_energy (domain=dram) [cpu_package 0]", 3, false],
    ["rapl_consumed_energy (domain=package) [cpu_package 0]", 10, false],
    ["rapl_consumed_energy (domain=package) [cpu_package 1]", 20, false],
    ["rapl_consumed_energy for process 7", 1, false],
    ["rapl_consumed_energy (domain=package_total)", 30, true],
  ]);
  assert.equal(lines[0]!.watts, 150);
  const text = s.format({ elapsedMs: 2000, outputs: [], nCpus: 2 });
  assert.match(text, /^ Energy \(whole machine, during the run: 2\.000 s, /m, text);
  assert.match(
    text,
    /^\s+300\.000000 J\s+150\.000 W {3}nvml_energy_consumption \[gpu 00000000:3B:00\.0\]$/m,
    text,
  );
  assert.match(
    text,
    /^\s+30\.000000 J\s+30\.000 W {3}rapl_consumed_energy \(domain=package_total\) {3}\(a total over resources: not added to the lines above; over 1\.000 s\)$/m,
    text,
  );
  // A series whose interval is not the block's says its own.
  assert.match(
    text,
    /^\s+10\.000000 J\s+10\.000 W {3}rapl_consumed_energy \(domain=package\) \[cpu_package 0\] {3}\(over 1\.000 s\)$/m,
    text,
  );
  // Energy is not one of the program's series, and the power gauge (consumer: the machine) neither.
  assert.match(text, /no series for the program/);
});

Deno.test("ExecSummary: a series whose interval starts later than the block's says its own", () => {
  // The later start is what a Worker source's start poll gives on a busy machine (its read comes a few ms after
  // the main thread's): its joules rest on its own interval, which the line must say.
  const { s, feed } = energySummary();
  const a: PointContext = { resource: Resource.cpuPackage(0), attributes: { domain: "package" } };
  const b: PointContext = { resource: Resource.cpuPackage(1), attributes: { domain: "package" } };
  s.startPolled(T0, T0 + 7_000_000n); // the trigger returned once every source, b's Worker too, had polled
  feed([
    [2, T0 + 500n, 99, a], // start poll: before the run
    [2, T0 + 6_000_000n, 99, b], // b's start poll, 6 ms later
    [2, T0 + SEC, 10, a],
    [2, T0 + SEC, 10, b],
  ]);
  s.endPolled(T0 + SEC);
  const text = s.format({ elapsedMs: 1000, outputs: [], nCpus: 2 });
  assert.match(text, /\[cpu_package 0\]$/m, text);
  assert.match(text, /\[cpu_package 1\] {3}\(over 0\.994 s\)$/m, text);
});

Deno.test("ExecSummary: a series shorter than the block by a little at each end says its own interval", () => {
  // 0.7 ms later and 0.7 ms earlier: neither end alone is past 1 ms, both together are.
  const { s, feed } = energySummary();
  const a: PointContext = { resource: Resource.cpuPackage(0), attributes: { domain: "package" } };
  const b: PointContext = { resource: Resource.cpuPackage(1), attributes: { domain: "package" } };
  s.startPolled(T0, T0 + 1_000_000n);
  feed([
    [2, T0 + 100n, 99, a],
    [2, T0 + 700_100n, 99, b],
    [2, T0 + SEC, 10, a],
    [2, T0 + SEC - 700_000n, 10, b],
  ]);
  s.endPolled(T0 + SEC);
  const text = s.format({ elapsedMs: 1000, outputs: [], nCpus: 2 });
  assert.match(text, /\[cpu_package 0\]$/m, text);
  assert.match(text, /\[cpu_package 1\] {3}\(over 0\.999 s\)$/m, text);
});

// --- The program's energy ------------------------------------------------------------------------------------

/** A summary fed with `rapl_consumed_energy` (id 2), `attributed_energy` (id 10), `estimated_consumed_energy` (12). */
function attributionSummary() {
  const metrics = new Map<number, Metric>([
    [2, metricOf(2, "rapl_consumed_energy", unit("J"), "delta")],
    [10, metricOf(10, "attributed_energy", unit("J"), "delta")],
    [12, metricOf(12, "estimated_consumed_energy", unit("J"), "delta")],
  ]);
  const s = new ExecSummary();
  s.pid = "42";
  const ctx = { metric: (id: MetricId) => metrics.get(id)! };
  const feed = (points: [number, bigint, number, PointContext?][]) => {
    const b = new Batch();
    for (const [id, ts, v, c] of points) b.push(id as MetricId<"f64">, v, { ...c, timestamp: ts });
    s.collect(b, ctx);
  };
  return { s, feed };
}

const pkg = (n: number, domain = "package"): PointContext => ({
  resource: Resource.cpuPackage(n),
  attributes: { domain },
});
const share = (n: number, consumer: Consumer, extra: Record<string, unknown> = {}): PointContext => ({
  resource: Resource.cpuPackage(n),
  consumer,
  attributes: {
    source_metric: "rapl_consumed_energy",
    domain: "package",
    method: "cpu_time_share",
    ...extra,
  },
});
const PROGRAM = Consumer.process(42);
const UNATTRIBUTED = Consumer.custom("unattributed", "");

Deno.test("ExecSummary gives the program's attributed energy next to the machine's, with the method", async (t) => {
  await t.step("the program's share over the run, per source, summed over sockets; the rest said", () => {
    const { s, feed } = attributionSummary();
    feed([[2, T0, 999, pkg(0)], [10, T0, 999, share(0, PROGRAM)]]); // the start poll's deltas: before the run
    s.startPolled(T0, T0 + 1000n);
    feed([
      [2, T0 + SEC, 30, pkg(0)],
      [2, T0 + SEC, 10, pkg(1)],
      [10, T0 + SEC, 9, share(0, PROGRAM)],
      [10, T0 + SEC, 1, share(1, PROGRAM)],
      [10, T0 + SEC, 6, share(0, Consumer.process(7))],
      [10, T0 + SEC, 24, share(1, UNATTRIBUTED)],
      [10, T0 + SEC, 0, share(0, UNATTRIBUTED)],
    ]);
    s.endPolled(T0 + SEC + 1000n);
    feed([[10, T0 + 2n * SEC, 500, share(0, PROGRAM)]]); // after the end poll
    const p = s.programEnergy({ nCpus: 2 })!;
    assert.equal(p.method, "cpu_time_share");
    assert.equal(p.description, "measured, share of CPU time, per interval (energy-attribution)");
    assert.equal(p.estimated, false);
    assert.equal(p.joules, 10);
    assert.equal(p.machineJoules, 40);
    assert.deepEqual(p.sources, [{
      metric: "rapl_consumed_energy",
      domain: "package",
      joules: 10,
      machineJoules: 40,
      unattributedJoules: 24,
      otherJoules: 6,
      estimated: false,
    }]);
    // The machine's block does not list the attributed series.
    assert.ok(s.energy().every((l) => l.metric === "rapl_consumed_energy"));
    const text = s.format({ elapsedMs: 1000, outputs: [], nCpus: 2 });
    assert.match(
      text,
      /^ Energy of the program and its children \(measured, share of CPU time, per interval \(energy-attribution\)\):$/m,
    );
    assert.match(
      text,
      /^\s+10\.000000 J {3}of\s+40\.000000 J \(25\.0 %\)\s+rapl_consumed_energy \(domain=package\) {3}\(the rest: 24\.000000 J unattributed, 6\.000000 J other consumers\)$/m,
      text,
    );
    assert.doesNotMatch(text, /attributed_energy/);
    const json = s.report({ elapsedMs: 1000, outputs: [], nCpus: 2 });
    assert.equal(json.program_energy!.joules, 10);
    assert.equal(json.program_energy!.share_percent, 25);
    assert.equal(json.energy!.series.length, 2);
  });
  await t.step("an estimate is named so, and idle time's estimate is not the machine's", () => {
    const { s, feed } = attributionSummary();
    const est = (state: string, consumer?: Consumer): PointContext => ({
      ...(consumer ? { consumer } : {}),
      attributes: consumer
        ? {
          source_metric: "estimated_consumed_energy",
          cpu_state: state,
          method: "cpu_time_share",
          estimated: true,
        }
        : { cpu_state: state, estimated: true },
    });
    s.startPolled(T0, T0 + 1000n);
    feed([
      [12, T0 + SEC, 5, est("user")],
      [12, T0 + SEC, 3, est("system")],
      [12, T0 + SEC, 90, est("idle")],
      [10, T0 + SEC, 4, est("user", PROGRAM)],
      [10, T0 + SEC, 1, est("user", UNATTRIBUTED)],
      [10, T0 + SEC, 2, est("system", PROGRAM)],
      [10, T0 + SEC, 1, est("system", UNATTRIBUTED)],
      [10, T0 + SEC, 90, est("idle", UNATTRIBUTED)],
    ]);
    s.endPolled(T0 + SEC + 1000n);
    const lines = s.energy();
    assert.deepEqual(lines.map((l) => [l.label, l.joules, l.estimated]), [
      ["estimated_consumed_energy (cpu_state=user+system, estimated=true)", 8, true],
    ]);
    const p = s.programEnergy({ nCpus: 2 })!;
    assert.equal(p.estimated, true);
    assert.equal(p.description, "TDP estimate, share of CPU time, per interval (energy-attribution)");
    assert.equal(p.joules, 6);
    assert.equal(p.machineJoules, 8);
    assert.equal(p.sources[0]!.unattributedJoules, 2);
    const text = s.format({ elapsedMs: 1000, outputs: [], nCpus: 2, estimateNote: "TDP 100 W assumed." });
    assert.match(
      text,
      /estimated_consumed_energy \(cpu_state=user\+system, estimated=true\) {3}\(an estimate, not a measurement\)$/m,
    );
    assert.match(text, /^ TDP 100 W assumed\.$/m);
  });
  await t.step("without attribution: the program's rusage share of the machine's CPU energy, said so", () => {
    const { s, feed } = attributionSummary();
    s.startPolled(T0, T0 + 1000n);
    feed([
      [2, T0 + 2n * SEC, 40, pkg(0)],
      [2, T0 + 2n * SEC, 8, pkg(0, "dram")],
      [2, T0 + 2n * SEC, 20, pkg(0, "pp0")],
    ]);
    s.endPolled(T0 + 2n * SEC + 1000n);
    // 1 s of CPU time on 2 CPUs over 2 s: a quarter of the CPU time available.
    const p = s.programEnergy({ nCpus: 2, cpu: { userNs: 0.75e9, systemNs: 0.25e9 } })!;
    assert.equal(p.method, "rusage_cpu_share");
    assert.match(
      p.description,
      /^measured, share of the machine's CPU time over the whole run \(kernel rusage/,
    );
    assert.deepEqual(p.sources.map((x) => [x.domain, x.joules, x.machineJoules]), [
      ["dram", 2, 8],
      ["package", 10, 40],
      ["pp0", 5, 20],
    ]);
    // pp0 is part of the package: not added to the total.
    assert.deepEqual(p.added, [
      "rapl_consumed_energy (domain=dram)",
      "rapl_consumed_energy (domain=package)",
    ]);
    assert.equal(p.joules, 12);
    assert.equal(p.machineJoules, 48);
    const text = s.format({
      elapsedMs: 2000,
      outputs: [],
      nCpus: 2,
      cpu: { userNs: 0.75e9, systemNs: 0.25e9 },
    });
    assert.match(
      text,
      /^\s+12\.000000 J {3}of\s+48\.000000 J \(25\.0 %\)\s+total \(rapl_consumed_energy \(domain=dram\) \+ rapl_consumed_energy \(domain=package\)\)$/m,
      text,
    );
  });
  await t.step("no energy: nothing said", () => {
    const { s } = attributionSummary();
    assert.equal(s.programEnergy({ nCpus: 2, cpu: { userNs: 1e9, systemNs: 0 } }), undefined);
  });
});

Deno.test("ExecSummary gives the energy above idle from a baseline measured before the program", () => {
  const { s: idle, feed: feedIdle } = attributionSummary();
  idle.startPolled(T0, T0 + 1000n);
  feedIdle([[2, T0 + 2n * SEC, 20, pkg(0)]]); // 10 W idle
  idle.endPolled(T0 + 2n * SEC + 1000n);
  const { s, feed } = attributionSummary();
  s.startPolled(T0 + 3n * SEC, T0 + 3n * SEC + 1000n);
  feed([[2, T0 + 3n * SEC, 999, pkg(0)], [2, T0 + 7n * SEC, 100, pkg(0)]]); // 4 s at 25 W
  s.endPolled(T0 + 7n * SEC + 1000n);
  const cpu = { userNs: 2e9, systemNs: 0 };
  const baseline = { seconds: 2, lines: idle.energy() };
  const above = s.aboveIdle(baseline, { cpu, nCpus: 2, program: s.programEnergy({ cpu, nCpus: 2 }) });
  assert.equal(above.lines[0]!.aboveJoules, 100 - 10 * 4);
  assert.equal(above.machineAboveJoules, 60);
  // The program: 2 s of CPU on 2 CPUs over 4 s is a quarter: 25 J; its share of the idle power: 10 W × 2 s ÷ 2.
  assert.deepEqual(above.program, { joules: 25, idleWatts: 10, cpuSeconds: 2, aboveJoules: 15 });
  const text = s.format({ elapsedMs: 4000, outputs: [], nCpus: 2, cpu, baseline });
  assert.match(
    text,
    /^ Energy above idle \(the machine measured idle for 2\.000 s just before the program; /m,
  );
  assert.match(
    text,
    /^\s+60\.000000 J {3}\(100\.000000 J − 10\.000 W × 4\.000 s\) {3}rapl_consumed_energy/m,
    text,
  );
  assert.match(
    text,
    /^\s+15\.000000 J {3}the program, above idle \(25\.000000 J − 10\.000 W idle × 2\.000 s CPU time ÷ CPUs\)$/m,
  );
  assert.equal(
    s.report({ elapsedMs: 4000, outputs: [], nCpus: 2, cpu, baseline }).above_idle!.program!
      .above_idle_joules,
    15,
  );
  // Measured energy: no note about estimates.
  assert.doesNotMatch(text, /the estimates have no idle power/);
  assert.equal(above.lines[0]!.estimated, false);
});

Deno.test("ExecSummary's energy above idle says a TDP estimate has no idle power (the baseline measured others' load)", () => {
  const { s, feed } = attributionSummary();
  s.startPolled(T0, T0 + 1000n);
  // An estimate is marked `estimated = true`: its "idle" power during the baseline is other processes' CPU time.
  feed([[12, T0 + 2n * SEC, 20, { attributes: { cpu_state: "user", estimated: true } }]]);
  s.endPolled(T0 + 2n * SEC + 1000n);
  const baseline = { seconds: 2, lines: s.energy() };
  const above = s.aboveIdle(baseline, { nCpus: 2 });
  assert.equal(above.lines[0]!.estimated, true);
  const text = s.format({ elapsedMs: 2000, outputs: [], nCpus: 2, baseline });
  assert.match(
    text,
    /the estimates have no idle power: their idle figure is the CPU time other processes used/,
  );
  assert.equal(
    s.report({ elapsedMs: 2000, outputs: [], nCpus: 2, baseline }).above_idle!.series[0]!.estimated,
    true,
  );
});

import assert from "node:assert/strict";
import {
  definePerfPlugin,
  onlineCpus,
  PERF_METRICS,
  perfMetricName,
  perfPlugin,
  pmuUnit,
  targetSourceName,
} from "./mod.ts";
import { runSourceContract, testPlugin } from "../../src/testing/mod.ts";
import { checkConfigBlock, checkMetricsTable } from "../../src/testing/readme.ts";
import { needs, testWith } from "../../src/testing/needs.ts";
import { type LogSink, setLogSink } from "../../src/log.ts";
import { Consumer, Resource } from "../../src/model/resources.ts";
import { AlumetError } from "../../src/errors.ts";
import { parsePerfEvent } from "../../src/ffi/perf_events_parse.ts";
import { PerfGroup, PerfGroupReading } from "../../src/ffi/perf_event.ts";
import { EventBus } from "../../src/plugin/events.ts";
import { Logger } from "../../src/log.ts";
import type { SourceHandle, SourceOptions } from "../../src/plugin/plugin.ts";
import { type MetricId, MetricRegistry } from "../../src/model/metrics.ts";
import { unit } from "../../src/model/units.ts";
import { Batch } from "../../src/model/batch.ts";
import { cpuPackageOf, planTarget, TargetSource, type Usable } from "./target.ts";
import { detectLayout } from "../../src/sys/cgroup_layout.ts";

Deno.test("perfMetricName turns perf's syntax into snake_case metric names", () => {
  assert.equal(perfMetricName("task-clock"), "perf_task_clock");
  assert.equal(perfMetricName("msr/tsc/"), "perf_msr_tsc");
  assert.equal(perfMetricName("cycles:u"), "perf_cycles_u");
  assert.equal(perfMetricName("L1-dcache-load-misses"), "perf_l1_dcache_load_misses");
  assert.equal(perfMetricName("cpu/event=0xc2,umask=0x01/"), "perf_cpu_event_0xc2_umask_0x01");
});

Deno.test("onlineCpus reads ranges and lists", () => {
  assert.deepEqual(onlineCpus("0-3,6\n"), [0, 1, 2, 3, 6]);
  assert.deepEqual(onlineCpus("0\n"), [0]);
  assert.ok(onlineCpus().length >= 1);
});

Deno.test("perf config: defaults validate, bad values do not", () => {
  const s = perfPlugin.configSchema;
  assert.ok(s.safeParse({ ...perfPlugin.defaultConfig() }).success);
  assert.equal(s.safeParse({ ...perfPlugin.defaultConfig(), events: "cycles" }).success, false);
  assert.equal(s.safeParse({ ...perfPlugin.defaultConfig(), system_wide: "yes" }).success, false);
  assert.equal(s.safeParse({ ...perfPlugin.defaultConfig(), poll_intervall: "1s" }).success, false);
});

Deno.test("the README's configuration block is exactly the schema's defaults", async () => {
  checkConfigBlock(await Deno.readTextFile(new URL("./README.md", import.meta.url)), perfPlugin);
});

Deno.test("the README's metrics table matches the declared metrics", async () => {
  checkMetricsTable(await Deno.readTextFile(new URL("./README.md", import.meta.url)), PERF_METRICS);
});

Deno.test("targets' source names never collide: cgroup paths are encoded injectively", () => {
  assert.equal(targetSourceName(Consumer.process(42)), "pid-42");
  const names = ["/a/b", "/a_b", "/a:b", "/a b", "/a-b", "/"].map((p) =>
    targetSourceName(Consumer.cgroup(p))
  );
  assert.equal(new Set(names).size, names.length, names.join(" "));
  assert.notEqual(targetSourceName(Consumer.cgroup("/a/b")), targetSourceName(Consumer.cgroup("/a_b")));
  for (const n of names) assert.match(n!, /^cgroup-[A-Za-z0-9.@:_-]+$/);
  assert.equal(targetSourceName(Consumer.localMachine()), undefined);
});

/** Runs `fn` with the log lines captured. */
async function withLog(fn: (lines: string[]) => Promise<void>): Promise<void> {
  const lines: string[] = [];
  const prev = setLogSink((level, scope, msg) => lines.push(`${level} ${scope}: ${msg}`));
  try {
    await fn(lines);
  } finally {
    setLogSink(prev as LogSink);
  }
}

Deno.test("perf refuses to start with an event no PMU and no generic list knows, with did you mean", async (t) => {
  // Before: a warning, and the run measured nothing and exited 0.
  for (
    const [events, bad, hint] of [
      [["task-clok"], "task-clok", "task-clock"],
      [["cycels", "task-clock"], "cycels", "cycles"],
      [["CONTEXT_SWITCH"], "CONTEXT_SWITCH", "CONTEXT_SWITCHES"],
      [["task-clock", "INSTRUCTIONS#z"], "INSTRUCTIONS#z", undefined],
    ] as const
  ) {
    await t.step(bad, async () => {
      await assert.rejects(
        () => testPlugin(perfPlugin, { events: [...events] }),
        (e: Error) =>
          e instanceof AlumetError && !e.message.includes("\n") && e.message.includes(`"${bad}"`) &&
          e.message.includes(`(plugins.perf.events[${events.indexOf(bad as never)}])`) &&
          (hint === undefined || e.message.includes(`did you mean "${hint}"?`)),
      );
    });
  }
});

Deno.test("perf skips, with a warning naming it, an event this machine cannot count, and counts the others", async () => {
  await withLog(async (lines) => {
    await using h = await testPlugin(perfPlugin, {
      events: [
        "RESOURCE_STALLS:ANY",
        "mem_load_retired:l3_miss",
        "cpu_core/INSTRUCTIONS",
        "task-clock",
        "page_faults",
        ...(HW ? [] : ["cycles"]),
      ],
    });
    assert.ok(h.metrics.byName("perf_task_clock"));
    assert.ok(h.metrics.byName("perf_page_faults"), "Alumet's names are case-insensitive, as in Alumet");
    const warned = (event: string) =>
      lines.some((l) => l.startsWith("warn perf") && l.includes(`Perf event "${event}" is not counted`));
    assert.ok(warned("RESOURCE_STALLS:ANY"), lines.join("\n"));
    assert.ok(
      warned("mem_load_retired:l3_miss"),
      "libpfm4 names are case-insensitive: a warning, not an error",
    );
    assert.ok(lines.some((l) => l.includes("libpfm4 event name")), "says why: a libpfm4 name");
    assert.ok(warned("cpu_core/INSTRUCTIONS"), "a PMU this machine does not have");
    if (!HW) assert.ok(warned("cycles"), "no hardware PMU here");
    assert.equal(h.metrics.byName("perf_resource_stalls_any"), undefined);
  });
});

/** Whether this machine has a hardware PMU (a VM often has none). */
const HW = (() => {
  try {
    PerfGroup.open([parsePerfEvent("cycles")], { pid: 0, cpu: -1, enable: false }).close();
    return true;
  } catch {
    return false;
  }
})();

Deno.test("add_source_in_pause_state adds the targets' sources paused, as Alumet does", async (t) => {
  for (const paused of [true, false]) {
    await t.step(`add_source_in_pause_state = ${paused}`, async () => {
      await using h = await testPlugin(perfPlugin, {
        events: ["task-clock"],
        add_source_in_pause_state: paused,
      });
      // Re-run preStart with a context that records what addSource is given.
      const added: { name: string; options: SourceOptions | undefined }[] = [];
      const events = new EventBus();
      const handles: SourceHandle[] = [];
      await h.plugin.preStart!({
        plugin: "perf",
        events,
        log: new Logger("perf"),
        metrics: h.metrics,
        addSource: (name, source, _trigger, options) => {
          added.push({ name, options });
          const handle: SourceHandle = {
            name,
            fullName: `source/perf/${name}`,
            ready: Promise.resolve(),
            state: options?.paused ? "paused" : "running",
            trigger: () => Promise.resolve(),
            flush: () => Promise.resolve(),
            pause: () => Promise.resolve(),
            resume: () => Promise.resolve(),
            stop: async () => void await (source as { close?: () => void }).close?.(),
            setPollInterval: () => {},
          };
          handles.push(handle);
          return handle;
        },
        addTask: () => {
          throw new Error("no task expected");
        },
      });
      await events.publish("startConsumerMeasurement", [Consumer.process(Deno.pid)]);
      assert.deepEqual(added, [{ name: `pid-${Deno.pid}`, options: { paused } }]);
      await events.publish("endConsumerMeasurement", [Consumer.process(Deno.pid)]);
    });
  }
});

Deno.test("multiplexing_auto_scale: scaled counts by default, raw counts when false", () => {
  const reading = new PerfGroupReading(1);
  new BigUint64Array(reading.buffer.buffer).set([1n, 1000n, 250n, 40n, 7n]); // a quarter of the time
  reading.decode();
  const group = { read: () => reading, close: () => {} } as unknown as PerfGroup;
  const metrics = new MetricRegistry();
  const metric = metrics.register("perf", { name: "perf_x", unit: unit("1"), valueType: "u64" }) as MetricId<
    "u64"
  >;
  const ratio = metrics.register("perf", { name: "perf_r", unit: unit("1"), valueType: "f64" }) as MetricId<
    "f64"
  >;
  const usable = [{ event: parsePerfEvent("task-clock"), metric }];
  const values = (scale: boolean | undefined) => {
    const source = new TargetSource(
      [{ group, resource: Resource.localMachine() }],
      Consumer.localMachine(),
      usable,
      ratio,
      scale === undefined ? {} : { scale },
    );
    const b = new Batch();
    source.poll(b);
    return [...b].map((p) => p.value);
  };
  assert.deepEqual(values(undefined), [160, 0.25], "scaled by enabled/running, as perf prints it");
  assert.deepEqual(values(true), [160, 0.25]);
  assert.deepEqual(values(false), [40, 0.25], "the raw count, as Alumet reports it with auto-scale off");
  const c = perfPlugin.configSchema.parse({ ...perfPlugin.defaultConfig(), multiplexing_auto_scale: false });
  assert.equal((c as { multiplexing_auto_scale: boolean }).multiplexing_auto_scale, false);
});

testWith([needs.root], "perf's system-wide source honours the source contract", async (t) => {
  await runSourceContract(t, {
    plugin: perfPlugin,
    config: { events: ["task-clock", "context-switches"], system_wide: true },
    source: "machine",
    minPoints: 1,
  });
});

testWith(
  [needs.root, needs.cgroupV2],
  "perf counts /x/b and /x_b with two sources, and stops each through its handle when the cgroup ends",
  async () => {
    const root = detectLayout().v2!.mountPoint;
    const x = `/alumet-perf-${crypto.randomUUID().slice(0, 8)}`;
    const paths = [`${x}/b`, `${x}_b`];
    Deno.mkdirSync(`${root}${x}`);
    try {
      for (const p of paths) Deno.mkdirSync(`${root}${p}`);
      await using h = await testPlugin(perfPlugin, { events: ["task-clock"] });
      await h.events.publish("startConsumerMeasurement", paths.map((p) => Consumer.cgroup(p)));
      const names = paths.map((p) => targetSourceName(Consumer.cgroup(p))!);
      assert.notEqual(names[0], names[1]);
      assert.deepEqual([...h.sources.keys()].sort(), [...names].sort(), "one source per cgroup");
      for (const n of names) {
        const b = await h.poll(n);
        const consumers = new Set([...b].map((p) => p.consumer.id));
        assert.deepEqual([...consumers], [paths[names.indexOf(n)]], `${n} counts its own cgroup`);
      }
      await h.events.publish("endConsumerMeasurement", [Consumer.cgroup(paths[0]!)]);
      assert.deepEqual([...h.sources.keys()], [names[1]], "the ended cgroup's source is stopped");
      await h.events.publish("endConsumerMeasurement", [Consumer.cgroup(paths[1]!)]);
      assert.deepEqual([...h.sources.keys()], []);
    } finally {
      for (const p of [...paths, x]) await Deno.remove(`${root}${p}`).catch(() => {});
    }
  },
);

// ---------------------------------------------------------------------------------------------------------
// Package PMUs (a `cpumask`) and scaled events: the perf `power` path

/** A two-socket Xeon's sysfs (see its README.md): the `power` PMU, cpumask 0,4, packages 0 (CPUs 0-3), 1. */
const XEON = new URL("../../src/ffi/testdata/sysfs_xeon_2s", import.meta.url).pathname;
const XEON_PMUS = `${XEON}/bus/event_source/devices`;
const TWO_32 = 2 ** 32;

Deno.test("planTarget opens a package PMU's events once per package, never per CPU, never for a process or cgroup", async (t) => {
  const parse = (e: string) => parsePerfEvent(e, { sysfsRoot: XEON_PMUS });
  const usable: Usable[] = ["task-clock", "power/energy-pkg/", "power/energy-ram/"].map((e, i) => ({
    event: parse(e),
    metric: i as MetricId<"u64">,
  }));
  const cpus = onlineCpus(undefined, XEON);
  await t.step("the fixture's events: type, config, 2^-32 J, the cpumask", () => {
    assert.deepEqual(cpus, [0, 1, 2, 3, 4, 5, 6, 7]);
    const pkg = usable[1]!.event;
    assert.deepEqual(pkg.attr, { type: 13, config: 2n });
    assert.equal(pkg.scale, 2 ** -32);
    assert.equal(pkg.unit, "Joules");
    assert.deepEqual(pkg.cpumask, [0, 4]);
    assert.equal(usable[0]!.event.cpumask, undefined, "a generic event counts wherever it is opened");
    assert.equal(cpuPackageOf(3, XEON), 0);
    assert.equal(cpuPackageOf(4, XEON), 1);
  });
  await t.step("the machine: task-clock per CPU, energy per package on CPUs 0 and 4", () => {
    const plan = planTarget(usable, { kind: "machine" }, { cpus, sysfsRoot: XEON });
    assert.deepEqual(plan.skipped, []);
    const core = plan.groups.filter((g) => g.resource.kind === "cpu_core");
    assert.equal(core.length, 8);
    for (const g of core) assert.deepEqual(g.events.map((u) => u.event.name), ["task-clock"]);
    const pkg = plan.groups.filter((g) => g.resource.kind === "cpu_package");
    assert.deepEqual(
      pkg.map((g) => [g.options.pid, g.options.cpu, g.resource.id, g.events.map((u) => u.event.name)]),
      [
        [-1, 0, "0", ["power/energy-pkg/", "power/energy-ram/"]],
        [-1, 4, "1", ["power/energy-pkg/", "power/energy-ram/"]],
      ],
      "one group per package (not 8), and the power PMU's events never share a group with task-clock",
    );
  });
  await t.step("a process or a cgroup: the core events only, the package events skipped", () => {
    const proc = planTarget(usable, { kind: "process", pid: 42 }, { cpus, sysfsRoot: XEON });
    assert.deepEqual(proc.groups.map((g) => [g.options.pid, g.options.cpu, g.events.length]), [[42, -1, 1]]);
    assert.deepEqual(proc.skipped.map((u) => u.event.name), ["power/energy-pkg/", "power/energy-ram/"]);
    const cg = planTarget(usable, { kind: "cgroup", fd: 7 }, { cpus, sysfsRoot: XEON });
    assert.equal(cg.groups.length, 8);
    assert.ok(cg.groups.every((g) => g.events.length === 1 && g.options.cgroupFd === 7));
    assert.equal(cg.skipped.length, 2);
    const onlyPkg = planTarget(usable.slice(1), { kind: "process", pid: 42 }, { cpus, sysfsRoot: XEON });
    assert.deepEqual(onlyPkg.groups, [], "nothing to open for a process that only has package events");
  });
  await t.step("without topology files, the i-th CPU of the cpumask is package i (Alumet's rule)", () => {
    const plan = planTarget(usable.slice(1), { kind: "machine" }, { cpus, sysfsRoot: "/nonexistent" });
    assert.deepEqual(plan.groups.map((g) => g.resource.id), ["0", "1"]);
  });
});

Deno.test("pmuUnit: Joules is J (an energy unit the exec summary sums), other units parsed or custom", () => {
  assert.deepEqual(pmuUnit("Joules"), unit("J"));
  assert.deepEqual(pmuUnit("Watts"), unit("W"));
  assert.deepEqual(pmuUnit("ns"), unit("s", "nano"));
  assert.equal(pmuUnit("MiB").custom, true);
});

/** A fake group whose next reading is set by the test: `[enabled, running, ...counts]`. */
function fakeGroup(size: number) {
  const reading = new PerfGroupReading(size);
  const words = new BigUint64Array(reading.buffer.buffer);
  return {
    group: { read: () => reading.decode(), close: () => {} } as unknown as PerfGroup,
    set(counts: readonly bigint[], enabled = 1000n, running = enabled) {
      words.set([BigInt(size), enabled, running, ...counts.flatMap((c, i) => [c, BigInt(i + 100)])]);
    },
  };
}

Deno.test("a scaled event gives joules per poll: baseline first, exact beyond 2^53, a 64-bit wrap", () => {
  const metrics = new MetricRegistry();
  const pkgMetric = metrics.register("perf", {
    name: "perf_power_energy_pkg",
    unit: unit("J"),
    valueType: "f64",
    kind: "delta",
  });
  const ramMetric = metrics.register("perf", {
    name: "perf_power_energy_ram",
    unit: unit("J"),
    valueType: "f64",
    kind: "delta",
  });
  const ratio = metrics.register("perf", { name: "perf_r", unit: unit("1"), valueType: "f64" });
  const parse = (e: string) => parsePerfEvent(e, { sysfsRoot: XEON_PMUS });
  const usable: Usable[] = [
    { event: parse("power/energy-pkg/"), metric: pkgMetric },
    { event: parse("power/energy-ram/"), metric: ramMetric },
  ];
  const [s0, s1] = [fakeGroup(2), fakeGroup(2)];
  const source = new TargetSource(
    [
      { group: s0.group, resource: Resource.cpuPackage(0) },
      { group: s1.group, resource: Resource.cpuPackage(1) },
    ],
    Consumer.localMachine(),
    usable,
    ratio,
  );
  const poll = () => {
    const b = new Batch();
    source.poll(b);
    return [...b].filter((p) => p.metric !== ratio).map((p) => [p.metric, p.resource.id, p.value]);
  };
  // Package 0: 1000 J then 1012.5 J; DRAM 50 J then 50.75 J. Package 1: beyond 2^53 counts (2^60 + …).
  s0.set([1000n * 2n ** 32n, 50n * 2n ** 32n]);
  s1.set([2n ** 60n + 7n, 2n ** 40n]);
  assert.deepEqual(poll(), [], "the first read only sets the baseline");
  s0.set([1000n * 2n ** 32n + 25n * 2n ** 31n, 50n * 2n ** 32n + 3n * 2n ** 30n]);
  s1.set([2n ** 60n + 7n + 123n * 2n ** 32n + 1n, 2n ** 40n + 2n ** 32n]);
  assert.deepEqual(poll(), [
    [pkgMetric, "0", 12.5],
    [ramMetric, "0", 0.75],
    [pkgMetric, "1", 123 + 2 ** -32],
    [ramMetric, "1", 1],
  ], "by hand: 25·2^31 counts × 2^-32 J = 12.5 J; 3·2^30 × 2^-32 = 0.75 J; exact at 2^60");
  // The 64-bit accumulated count wraps: 2 J before 2^64, 3 J after it: 5 J.
  s0.set([2n ** 64n - 2n * 2n ** 32n, 0n]);
  s1.set([2n ** 60n, 2n ** 40n + 2n ** 32n]);
  poll(); // package 1 went down by less than a wrap: its delta is taken through the wrap too (Alumet's rule)
  s0.set([3n * 2n ** 32n, 0n]);
  s1.set([2n ** 60n + 2n ** 32n, 2n ** 40n + 2n ** 32n]);
  const after = poll();
  assert.equal(after[0]![1], "0");
  assert.ok(Math.abs((after[0]![2] as number) - 5) < 1e-5, `wrap at 2^64 gives 5 J, got ${after[0]![2]}`);
  assert.deepEqual(after.slice(1), [[ramMetric, "0", 0], [pkgMetric, "1", 1], [ramMetric, "1", 0]]);
});

/**
 * A sysfs root whose `msr` PMU is this machine's real one (its type and format) with a `cpumask` of CPU 0 and
 * a `.scale`/`.unit` on `tsc`: perf_event_open opens real counters through the package path, with the scale.
 */
function msrAsPackagePmu(): string {
  const real = "/sys/bus/event_source/devices/msr";
  const root = Deno.makeTempDirSync({ prefix: "alumet-perf-pkg-" });
  const pmu = `${root}/bus/event_source/devices/msr`;
  Deno.mkdirSync(`${pmu}/format`, { recursive: true });
  Deno.mkdirSync(`${pmu}/events`);
  Deno.writeTextFileSync(`${pmu}/type`, Deno.readTextFileSync(`${real}/type`));
  Deno.writeTextFileSync(`${pmu}/format/event`, Deno.readTextFileSync(`${real}/format/event`));
  Deno.writeTextFileSync(`${pmu}/events/tsc`, Deno.readTextFileSync(`${real}/events/tsc`));
  Deno.writeTextFileSync(`${pmu}/events/tsc.scale`, "2.3283064365386962890625e-10\n");
  Deno.writeTextFileSync(`${pmu}/events/tsc.unit`, "Joules\n");
  Deno.writeTextFileSync(`${pmu}/cpumask`, "0\n");
  const cpu = `${root}/devices/system/cpu`;
  Deno.mkdirSync(`${cpu}/cpu0/topology`, { recursive: true });
  Deno.writeTextFileSync(`${cpu}/online`, Deno.readTextFileSync("/sys/devices/system/cpu/online"));
  Deno.writeTextFileSync(
    `${cpu}/cpu0/topology/physical_package_id`,
    Deno.readTextFileSync("/sys/devices/system/cpu/cpu0/topology/physical_package_id"),
  );
  return root;
}

const HAS_MSR = listPmusHere().includes("msr");
function listPmusHere(): string[] {
  try {
    return [...Deno.readDirSync("/sys/bus/event_source/devices")].map((e) => e.name);
  } catch {
    return [];
  }
}

testWith(
  [needs.root],
  "the real msr PMU takes the package path: one scaled counter per package, none per process",
  async (t) => {
    if (!HAS_MSR) return; // the msr PMU is x86-only
    await t.step("msr/tsc/ as it is (no cpumask): one u64 counter per CPU, system-wide", async () => {
      await using h = await testPlugin(perfPlugin, { events: ["msr/tsc/"], system_wide: true });
      const m = h.metrics.byName("perf_msr_tsc")!;
      assert.equal(m.valueType, "u64");
      assert.equal(m.kind, "counter");
      const b = await h.poll("machine");
      const pts = [...b].filter((p) => p.metric === m.id);
      assert.deepEqual(pts.map((p) => p.resource.id), onlineCpus().map(String));
      assert.ok(pts.every((p) => p.resource.kind === "cpu_core" && BigInt(p.value as bigint) > 0n));
    });
    const root = msrAsPackagePmu();
    try {
      await withLog(async (lines) => {
        await using h = await testPlugin(definePerfPlugin({ sysfsRoot: root }), {
          events: ["msr/tsc/", "task-clock"],
          system_wide: true,
        });
        const m = h.metrics.byName("perf_msr_tsc")!;
        assert.deepEqual(
          [m.valueType, m.kind, m.unit.code],
          ["f64", "delta", "J"],
          "scaled: f64 joules per poll",
        );
        const pkg = cpuPackageOf(0)!;
        const first = [...await h.poll("machine")];
        assert.equal(first.filter((p) => p.metric === m.id).length, 0, "the first read is the baseline");
        const t0 = performance.now();
        await new Promise((r) => setTimeout(r, 200));
        const second = [...await h.poll("machine")];
        const dt = (performance.now() - t0) / 1000;
        const energy = second.filter((p) => p.metric === m.id);
        assert.equal(energy.length, 1, "one counter for the one CPU of the cpumask, not one per CPU");
        assert.deepEqual(energy[0]!.resource, Resource.cpuPackage(pkg));
        // The TSC ticks at a fixed rate of 0.5–10 GHz: scaled by 2^-32 that is 0.1–2.4 "J" per second.
        const rate = (energy[0]!.value as number) * TWO_32 / dt;
        assert.ok(rate > 5e8 && rate < 1e10, `tsc rate ${rate.toExponential(3)} Hz from the scaled delta`);
        const clock = second.filter((p) => p.metric === h.metrics.byName("perf_task_clock")!.id);
        assert.deepEqual(
          clock.map((p) => p.resource.id),
          onlineCpus().map(String),
          "task-clock stays per CPU",
        );

        // A process cannot count a package event: its source has task-clock only, with one warning.
        await h.events.publish("startConsumerMeasurement", [Consumer.process(Deno.pid)]);
        const mine = [...await h.poll(`pid-${Deno.pid}`)];
        const names = new Set(mine.map((p) => h.metrics.get(p.metric).name));
        assert.ok(names.has("perf_task_clock") && !names.has("perf_msr_tsc"), [...names].join(" "));
        const child = new Deno.Command("sleep", { args: ["5"] }).spawn();
        try {
          await h.events.publish("startConsumerMeasurement", [Consumer.process(child.pid)]);
          const warned = lines.filter((l) =>
            l.startsWith("warn perf") && l.includes('"msr/tsc/" counts whole packages')
          );
          assert.equal(warned.length, 1, `warned once, not per target:\n${lines.join("\n")}`);
          assert.match(warned[0]!, /system_wide = true/);
        } finally {
          child.kill();
          await child.status;
        }
      });
    } finally {
      Deno.removeSync(root, { recursive: true });
    }
  },
);

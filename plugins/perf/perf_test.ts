import assert from "node:assert/strict";
import { onlineCpus, PERF_METRICS, perfMetricName, perfPlugin, targetSourceName } from "./mod.ts";
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
import { TargetSource } from "./target.ts";
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

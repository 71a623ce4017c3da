import assert from "node:assert/strict";
import { onlineCpus, PERF_METRICS, perfMetricName, perfPlugin, targetSourceName } from "./mod.ts";
import { runSourceContract, testPlugin } from "../../src/testing/mod.ts";
import { checkConfigBlock, checkMetricsTable } from "../../src/testing/readme.ts";
import { needs, testWith } from "../../src/testing/needs.ts";
import { type LogSink, setLogSink } from "../../src/log.ts";
import { Consumer } from "../../src/model/resources.ts";
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

Deno.test("perf skips an event this machine lacks, naming it, and counts the others", async () => {
  const lines: string[] = [];
  const prev = setLogSink((level, scope, msg) => lines.push(`${level} ${scope}: ${msg}`));
  try {
    await using h = await testPlugin(perfPlugin, { events: ["cycels", "task-clock"] });
    assert.ok(h.metrics.byName("perf_task_clock"));
    assert.equal(h.metrics.byName("perf_cycels"), undefined);
    assert.ok(
      lines.some((l) => l.startsWith("warn perf") && l.includes('"cycels"') && l.includes("did you mean")),
    );
  } finally {
    setLogSink(prev as LogSink);
  }
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

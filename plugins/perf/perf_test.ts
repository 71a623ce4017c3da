import assert from "node:assert/strict";
import { onlineCpus, perfMetricName, perfPlugin } from "./mod.ts";
import { runSourceContract, testPlugin } from "../../src/testing/mod.ts";
import { needs, testWith } from "../../src/testing/needs.ts";
import { type LogSink, setLogSink } from "../../src/log.ts";

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

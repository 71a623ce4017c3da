/**
 * Alumet's own perf configurations (0.9's `hardware_events`… and the main branch's `events`), from
 * `testdata/alumet/*.toml` (each file cites where it comes from): validated as the agent validates them and
 * started, with Alumet's metric names.
 */
import assert from "node:assert/strict";
import { perfConfigSchema, perfEventSpecs, perfPlugin } from "./mod.ts";
import { parseConfigText } from "../../src/agent/config.ts";
import { validatePluginConfig } from "../../src/plugin/config.ts";
import { testPlugin } from "../../src/testing/mod.ts";
import { type LogSink, setLogSink } from "../../src/log.ts";
import { parsePerfEvent } from "../../src/ffi/perf_events_parse.ts";
import { PerfGroup } from "../../src/ffi/perf_event.ts";

const DIR = new URL("./testdata/alumet/", import.meta.url);

/** What each fixture gives: every metric Alumet would create (in order), or the error. */
const EXPECTED: Record<string, { metrics: string[] } | { error: RegExp }> = {
  "0.9_readme.toml": {
    error:
      /Invalid config in 0\.9_readme\.toml: plugins\.perf\.software_events\[1\]: expected one of Alumet 0\.9's software events \(PAGE_FAULTS, .*\); did you mean "CONTEXT_SWITCHES"\?/,
  },
  "0.9_readme_later.toml": {
    metrics: [
      "perf_hardware_REF_CPU_CYCLES",
      "perf_hardware_CACHE_MISSES",
      "perf_hardware_BRANCH_MISSES",
      "perf_software_PAGE_FAULTS",
      "perf_software_CONTEXT_SWITCHES",
      "perf_cache_LL_READ_MISS",
    ],
  },
  "0.9.5_config_regen.toml": {
    metrics: [
      "perf_hardware_REF_CPU_CYCLES",
      "perf_hardware_CACHE_MISSES",
      "perf_hardware_BRANCH_MISSES",
      "perf_cache_LL_READ_MISS",
    ],
  },
  "packaging_0.8.toml": {
    metrics: [
      "perf_hardware_REF_CPU_CYCLES",
      "perf_hardware_CACHE_MISSES",
      "perf_hardware_BRANCH_MISSES",
      "perf_cache_LL_READ_MISS",
    ],
  },
  "main_readme.toml": {
    metrics: [
      "perf_ref_cpu_cycles",
      "perf_cache_misses",
      "perf_branch_misses",
      "perf_instructions",
      "perf_resource_stalls_any",
      "perf_ctxsw",
      "perf_ll_read_miss_hypervisor",
    ],
  },
  "main_config_regen.toml": {
    metrics: ["perf_ref_cpu_cycles", "perf_cache_misses", "perf_branch_misses", "perf_ll_read_miss"],
  },
};

/** Whether this machine can count `event` for this process (a VM without a hardware PMU counts none). */
function countsHere(event: string): boolean {
  try {
    PerfGroup.open([parsePerfEvent(event)], { pid: 0, cpu: -1, enable: false }).close();
    return true;
  } catch {
    return false;
  }
}

Deno.test("every fixture of testdata/alumet has its expectation, and cites its source", async () => {
  const files = [...Deno.readDirSync(DIR)].map((e) => e.name).filter((n) => n.endsWith(".toml")).sort();
  assert.deepEqual(files, Object.keys(EXPECTED).sort());
  for (const f of files) {
    const text = await Deno.readTextFile(new URL(f, DIR));
    const header = text.split("\n").filter((l) => l.startsWith("#")).join(" ").replace(/\s*#\s*/g, " ");
    assert.match(header, /Source: alumet-dev\/(alumet|packaging), /, f);
    assert.match(header, /[0-9a-f]{40}|0\.9 series/, `${f} names a commit, or the version it comes from`);
  }
});

for (const [file, expected] of Object.entries(EXPECTED)) {
  Deno.test(`Alumet's ${file} is accepted with Alumet's meaning and metric names`, async () => {
    const text = await Deno.readTextFile(new URL(file, DIR));
    const raw = parseConfigText(text, file);
    const section = raw.sections.find((s) => s.name === "perf");
    assert.ok(section, "a [plugins.perf] section");
    if ("error" in expected) {
      assert.throws(() => validatePluginConfig(perfPlugin, section, file), expected.error);
      return;
    }
    const config = validatePluginConfig(perfPlugin, section, file);
    const specs = perfEventSpecs(config);
    assert.deepEqual(specs.map((s) => s.metric), expected.metrics, "Alumet's names, in order");

    // Started: the events this machine counts get their metric; each other one is named in a warning and
    // the plugin starts anyway (Alumet's configs name hardware events a VM lacks, and libpfm4 events).
    const lines: string[] = [];
    const prev = setLogSink((level, scope, msg) => lines.push(`${level} ${scope}: ${msg}`));
    try {
      await using h = await testPlugin(perfPlugin, section.table);
      const created = h.metrics.all.map((m) => m.name).filter((n) => n !== "perf_running_ratio");
      const here = specs.filter((s) => countsHere(s.event)).map((s) => s.metric);
      assert.deepEqual(created, here);
      for (const s of specs.filter((s) => !here.includes(s.metric))) {
        assert.ok(
          lines.some((l) =>
            l.startsWith("warn perf") && l.includes(`Perf event "${s.event}" is not counted`)
          ),
          `a warning names ${s.event}:\n${lines.join("\n")}`,
        );
      }
    } finally {
      setLogSink(prev as LogSink);
    }
  });
}

Deno.test("the software events of Alumet's configs are counted here, under Alumet's names", async () => {
  // Software events exist on every Linux machine: these two are counted even in a VM.
  await using h = await testPlugin(perfPlugin, {
    software_events: ["page_faults", "CONTEXT_SWITCHES"],
    events: [{ event: "PAGE_FAULTS#u:k", rename: "faults_uk" }, "CONTEXT_SWITCHES#k"],
  });
  const names = h.metrics.all.map((m) => m.name).sort();
  assert.deepEqual(names, [
    "perf_context_switches",
    "perf_faults_uk",
    "perf_running_ratio",
    "perf_software_CONTEXT_SWITCHES",
    "perf_software_PAGE_FAULTS",
  ]);
});

Deno.test("Alumet 0.9's lists replace the default events; events written too are counted too", () => {
  const only = perfConfigSchema.parse({ cache_events: ["ll_read_miss"] });
  assert.deepEqual(perfEventSpecs(only).map((s) => s.metric), ["perf_cache_LL_READ_MISS"]);
  const both = perfConfigSchema.parse({ events: ["task-clock"], hardware_events: ["INSTRUCTIONS"] });
  assert.deepEqual(perfEventSpecs(both).map((s) => s.metric), [
    "perf_task_clock",
    "perf_hardware_INSTRUCTIONS",
  ]);
  const pfm = perfConfigSchema.parse({ pfm_events: ["RESOURCE_STALLS:ANY"] });
  assert.deepEqual(perfEventSpecs(pfm).map((s) => s.metric), ["perf_pfm_RESOURCE_STALLS_ANY"]);
});

Deno.test("Alumet's keys are validated as Alumet validates them, each error naming the key", async (t) => {
  const check = (table: Record<string, unknown>, re: RegExp) =>
    assert.throws(() => validatePluginConfig(perfPlugin, { name: "perf", table }, "a.toml"), re);
  await t.step("0.9's names are a closed list, case-insensitive", () => {
    check(
      { hardware_events: ["CPU_CYCLE"] },
      /plugins\.perf\.hardware_events\[0\]: .*did you mean "CPU_CYCLES"\?/,
    );
    check(
      { cache_events: ["LL_READ_MIS"] },
      /plugins\.perf\.cache_events\[0\]: .*did you mean "LL_READ_MISS"\?/,
    );
    check({ software_events: "PAGE_FAULTS" }, /plugins\.perf\.software_events: expected an array/);
    assert.ok(
      validatePluginConfig(perfPlugin, { name: "perf", table: { hardware_events: ["cpu_cycles"] } }, "a"),
    );
  });
  await t.step("an events entry is a string or { event, rename }", () => {
    check(
      { events: [{ event: "INSTRUCTIONS", renam: "x" }] },
      /events\[0\]\.renam: .*did you mean "rename"\?/,
    );
    check({ events: [{ rename: "x" }] }, /events\[0\]\.event: expected a perf event/);
    check(
      { events: [{ event: "INSTRUCTIONS", rename: "!!" }] },
      /events\[0\]\.rename: expected a metric name/,
    );
    check({ events: [42] }, /events\[0\]: expected a perf event such as "cycles"/);
  });
  await t.step("add_source_in_pause_state and multiplexing_auto_scale are booleans", () => {
    check({ add_source_in_pause_state: "yes" }, /add_source_in_pause_state: expected a boolean/);
    check({ multiplexing_auto_scale: 1 }, /multiplexing_auto_scale: expected a boolean/);
  });
  await t.step("two events giving one metric name are refused: Alumet says to rename one", () => {
    const c = perfConfigSchema.parse({ events: ["INSTRUCTIONS", "INSTRUCTIONS#u"] });
    assert.throws(
      () => perfEventSpecs(c),
      /Perf events "INSTRUCTIONS" \(plugins\.perf\.events\[0\]\) and "INSTRUCTIONS#u" \(plugins\.perf\.events\[1\]\) both give the metric perf_instructions: give one of them a rename/,
    );
  });
});

/**
 * Alumet's own procfs configurations (its README examples, what its `config regen` writes, the packaged
 * `/etc/alumet/alumet-config.toml`), from `testdata/alumet/*.toml` (each file cites where it comes from):
 * parsed and validated as the agent does it, started, and checked for what Alumet would do with them — the
 * sources and their intervals, the metric names, the process groups, the `exec`/`watch` program's source.
 */
import assert from "node:assert/strict";
import { parseConfigText, renderDefaultConfig } from "../../src/agent/config.ts";
import { validatePluginConfig } from "../../src/plugin/config.ts";
import { testPlugin } from "../../src/testing/mod.ts";
import { Consumer } from "../../src/model/resources.ts";
import type { Trigger } from "../../src/plugin/plugin.ts";
import { followProgramOnly, type ProcessGroupSource, procfsPlugin } from "./mod.ts";

const DIR = new URL("./testdata/alumet/", import.meta.url);

const KERNEL = [
  "kernel_cpu_time",
  "kernel_context_switches",
  "kernel_new_forks",
  "kernel_n_procs_running",
  "kernel_n_procs_blocked",
];
/** Alumet's default meminfo keys, named by its convert_to_snake_case. */
const MEMORY = [
  "mem_total",
  "mem_free",
  "mem_available",
  "cached",
  "swap_cached",
  "active",
  "inactive",
  "mapped",
];
const NETWORK = ["network_bytes", "network_packets", "network_packet_drops", "network_errors"];
const PROCESS = ["cpu_time_delta", "cpu_percent", "memory_usage"];

interface Expected {
  /** Every source `start` adds, with its trigger. */
  readonly sources: Readonly<Record<string, Trigger>>;
  /** The metrics created, in order. */
  readonly metrics: readonly string[];
  /** Whether `exec` and `watch` keep the groups (the file writes groups other than Alumet's default). */
  readonly execKeepsGroups: boolean;
}

const FIVE_S = { pollInterval: 5000 };
const GROUP = { pollInterval: 2000, flushInterval: 4000 };

/** What each fixture gives. The 0.8 packages and the early 0.9 sources had no network probe: its default runs. */
const EXPECTED: Record<string, Expected> = {
  "readme_main.toml": {
    sources: { kernel: FIVE_S, memory: FIVE_S, network: FIVE_S, "group-0": GROUP },
    metrics: [...KERNEL, ...MEMORY, ...NETWORK, ...PROCESS],
    execKeepsGroups: true, // exe_regex = "" is a filter the user wrote (it matches every process)
  },
  "readme_early.toml": {
    sources: { kernel: FIVE_S, memory: FIVE_S, network: FIVE_S, "group-0": GROUP },
    metrics: [...KERNEL, ...MEMORY, ...NETWORK, ...PROCESS],
    execKeepsGroups: true,
  },
  "config_regen_0.9.5.toml": {
    sources: { kernel: FIVE_S, memory: FIVE_S, network: FIVE_S, "group-0": GROUP },
    metrics: [...KERNEL, ...MEMORY, ...NETWORK, ...PROCESS],
    execKeepsGroups: false, // the group regen writes is the default: exec follows its program only
  },
  "config_regen_early.toml": {
    sources: { kernel: FIVE_S, memory: FIVE_S, network: FIVE_S, "group-0": GROUP },
    metrics: [...KERNEL, ...MEMORY, ...NETWORK, ...PROCESS],
    execKeepsGroups: false,
  },
  "packaging_0.8.toml": {
    sources: { kernel: FIVE_S, memory: FIVE_S, network: FIVE_S, "group-0": GROUP },
    metrics: [...KERNEL, ...MEMORY, ...NETWORK, ...PROCESS],
    execKeepsGroups: true,
  },
};

async function sectionOf(file: string) {
  const text = await Deno.readTextFile(new URL(file, DIR));
  const raw = parseConfigText(text, file);
  const section = raw.sections.find((s) => s.name === "procfs");
  assert.ok(section, `${file}: a [plugins.procfs] section`);
  assert.ok(section.enabled, `${file}: procfs enabled`);
  return section;
}

Deno.test("every fixture of testdata/alumet has its expectation, and cites its source", async () => {
  const files = [...Deno.readDirSync(DIR)].map((e) => e.name).filter((n) => n.endsWith(".toml")).sort();
  assert.deepEqual(files, Object.keys(EXPECTED).sort());
  for (const f of files) {
    const text = await Deno.readTextFile(new URL(f, DIR));
    const header = text.split("\n").filter((l) => l.startsWith("#")).join(" ").replace(/\s*#\s*/g, " ");
    assert.match(header, /Source: alumet-dev\/(alumet|packaging), \S+ at commit [0-9a-f]{40}/, f);
  }
});

for (const [file, expected] of Object.entries(EXPECTED)) {
  Deno.test(`Alumet's ${file} starts with Alumet's sources, intervals, metrics and groups`, async () => {
    const section = await sectionOf(file);
    // Validated as the agent validates it: every key is known, with Alumet's meaning.
    const config = validatePluginConfig(procfsPlugin, section, file);
    assert.equal(config.processes.strategy, "watcher");
    assert.equal(config.processes.refresh_interval, 2000);
    assert.deepEqual(config.processes.events, {
      poll_interval: 1000,
      flush_interval: 4000,
      memory_mode: "quick",
    });

    await using h = await testPlugin(procfsPlugin, structuredClone(section.table));
    const sources = Object.fromEntries([...h.sources].map(([name, s]) => [name, s.trigger]));
    assert.deepEqual(sources, expected.sources);
    assert.deepEqual(h.metrics.all.map((m) => m.name), expected.metrics);
    assert.deepEqual(h.tasks.get("process-watcher")?.options, { interval: 2000 }, "the watcher, every 2 s");

    const child = new Deno.Command("sleep", { args: ["30"] }).spawn();
    try {
      // The one group follows every process: this test's own, and a child started after the plugin.
      await h.runTask("process-watcher");
      const group = h.sources.get("group-0")!.source as ProcessGroupSource;
      assert.ok(group.pids.includes(Deno.pid) && group.pids.includes(child.pid), "every process is followed");
      // The exec/watch program gets its own source, with the [processes.events] intervals, and leaves the group.
      await h.events.publish("startConsumerMeasurement", [Consumer.process(child.pid)]);
      assert.deepEqual(h.sources.get(`pid-${child.pid}`)?.trigger, {
        pollInterval: 1000,
        flushInterval: 4000,
      });
      assert.ok(!group.pids.includes(child.pid));
      await h.events.publish("endConsumerMeasurement", [Consumer.process(child.pid)]);
    } finally {
      child.kill("SIGKILL");
      await child.status;
    }
  });

  Deno.test(
    `exec and watch with Alumet's ${file}: ${
      expected.execKeepsGroups ? "its groups run beside the program" : "the program only"
    }`,
    async () => {
      const section = await sectionOf(file);
      const table = structuredClone(section.table);
      assert.equal(followProgramOnly([{ name: "procfs", table }]), !expected.execKeepsGroups);
      await using h = await testPlugin(procfsPlugin, table);
      assert.equal(h.sources.has("group-0"), expected.execKeepsGroups);
      assert.equal(h.tasks.has("process-watcher"), expected.execKeepsGroups);
      // The process metrics exist either way: the program is followed on its event.
      for (const m of PROCESS) assert.ok(h.metrics.all.some((x) => x.name === m), m);
    },
  );
}

Deno.test("exec and watch: no procfs section, or one without groups, follows the program only", () => {
  const none = { name: "procfs", table: {} as Record<string, unknown> };
  assert.ok(followProgramOnly([none]));
  assert.deepEqual(none.table, { processes: { groups: [] } });
  const strategy = { name: "procfs", table: { processes: { strategy: "watcher", refresh_interval: "5s" } } };
  assert.ok(followProgramOnly([strategy]));
  assert.deepEqual(strategy.table.processes, { strategy: "watcher", refresh_interval: "5s", groups: [] });
  const empty = { name: "procfs", table: { processes: { groups: [] } } };
  assert.ok(!followProgramOnly([empty]), "groups = [] is already the program only");
  const mine = { name: "procfs", module: "./my_procfs.ts", table: {} };
  assert.ok(!followProgramOnly([mine]), "a plugin module named procfs is not this one");
  assert.deepEqual(mine.table, {});
  const other = { name: "csv", table: {} };
  assert.ok(!followProgramOnly([other]));
  const python = {
    name: "procfs",
    table: { processes: { groups: [{ exe_regex: "python", poll_interval: "1s" }] } },
  };
  assert.ok(!followProgramOnly([python]));
});

Deno.test("config regen writes Alumet 0.9.5's procfs defaults, key for key", async () => {
  const ours = parseConfigText(renderDefaultConfig([procfsPlugin]), "regen").sections[0]!;
  const alumet = await sectionOf("config_regen_0.9.5.toml");
  assert.equal(ours.name, "procfs");
  assert.deepEqual(ours.table, alumet.table);
});

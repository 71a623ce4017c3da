import assert from "node:assert/strict";
import { checkConfigBlock } from "../../src/testing/readme.ts";
import { Batch } from "../../src/model/batch.ts";
import { MetricRegistry } from "../../src/model/metrics.ts";
import { now } from "../../src/model/timestamp.ts";
import type { Source } from "../../src/plugin/plugin.ts";
import { NormalStop } from "../../src/errors.ts";
import { validatePluginConfig } from "../../src/plugin/config.ts";
import { checkBatch, runSourceContract, testPlugin } from "../../src/testing/mod.ts";
import {
  createKernelMetrics,
  type CreateMetric,
  createNetworkMetrics,
  createProcessMetrics,
  isAlumetDefaultGroups,
  KernelSource,
  meminfoMetric,
  meminfoMetricName,
  MemorySource,
  NetworkSource,
  ProcessSource,
  procfsPlugin,
  type SystemInfo,
} from "./mod.ts";
import { filesUnder, pointsOf, type ScenarioPoint, sumOf } from "../../src/testing/fixtures.ts";
import { unit } from "../../src/model/units.ts";
import { getrusage, RUSAGE_SELF } from "../../src/ffi/libc.ts";

const TESTDATA = new URL("./testdata/", import.meta.url).pathname;

// ---------------------------------------------------------------------------------------------------------
// Fixture scenarios: testdata/<scenario>/{poll1,poll2,expected.json}

interface SourceSpec {
  readonly kind: "kernel" | "memory" | "network" | "process";
  readonly metrics?: string[];
  readonly pid?: number;
  readonly baseline?: "zero" | "current";
  readonly memory_mode?: "quick" | "slow_but_accurate";
  readonly await_exit?: boolean;
  readonly expect_stop?: boolean;
}

interface Scenario {
  readonly description: string;
  readonly system: { user_hz: number; page_size: number; n_cpus: number };
  readonly elapsed_ms: number;
  readonly sources: SourceSpec[];
  readonly points: ScenarioPoint[];
}

function createSource(spec: SourceSpec, root: string, system: SystemInfo, create: CreateMetric): Source {
  switch (spec.kind) {
    case "kernel":
      return new KernelSource(createKernelMetrics(create), { root, userHz: system.userHz });
    case "network":
      return new NetworkSource(createNetworkMetrics(create), { root });
    case "memory":
      return new MemorySource(
        (spec.metrics ?? procfsPlugin.configSchema.parse({}).memory.metrics).map((key) => ({
          key,
          metric: create({
            name: meminfoMetricName(key),
            unit: unit("By"),
            valueType: "u64",
            kind: "gauge",
          }),
        })),
        { root },
      );
    case "process":
      return new ProcessSource(spec.pid!, createProcessMetrics(create), {
        root,
        system,
        baseline: spec.baseline ?? "current",
        memoryMode: spec.memory_mode ?? "quick",
        awaitExit: spec.await_exit ?? false,
      });
  }
}

/** Folders of testdata/ that are not scenarios: Alumet's configs (alumet_configs_test.ts), test scripts. */
const NOT_SCENARIOS = new Set(["alumet", "scripts"]);

Deno.test("procfs sources push the expected points in every fixture scenario", async (t) => {
  const names = [...Deno.readDirSync(TESTDATA)].filter((e) => e.isDirectory && !NOT_SCENARIOS.has(e.name))
    .map((e) => e.name).sort();
  assert.ok(names.length >= 5, `only ${names.length} scenarios found in ${TESTDATA}`);
  for (const name of names) {
    await t.step(name, async () => {
      const dir = `${TESTDATA}${name}`;
      const scenario: Scenario = JSON.parse(await Deno.readTextFile(`${dir}/expected.json`));
      const root = await Deno.makeTempDir({ prefix: `procfs_${name}_` });
      const sources: Source[] = [];
      try {
        const first = filesUnder(`${dir}/poll1`);
        for (const rel of first) {
          await Deno.mkdir(`${root}/${rel}`.replace(/\/[^/]+$/, ""), { recursive: true });
          await Deno.copyFile(`${dir}/poll1/${rel}`, `${root}/${rel}`);
        }
        const registry = new MetricRegistry();
        const create: CreateMetric = (spec) => registry.register("procfs", spec);
        const sys = scenario.system;
        const system: SystemInfo = { userHz: sys.user_hz, pageSize: sys.page_size, nCpus: sys.n_cpus };
        for (const spec of scenario.sources) sources.push(createSource(spec, root, system, create));

        const t1 = 1_700_000_000_000_000_000n;
        const b1 = new Batch();
        b1.timestamp = t1;
        for (const s of sources) await s.poll(b1, t1);
        checkBatch(b1, registry);

        // Rewrite in place (the sources keep their files open), and empty what poll2 no longer has.
        const second = new Set(filesUnder(`${dir}/poll2`));
        for (const rel of first) {
          if (!second.has(rel)) await Deno.writeFile(`${root}/${rel}`, new Uint8Array());
        }
        for (const rel of second) {
          await Deno.mkdir(`${root}/${rel}`.replace(/\/[^/]+$/, ""), { recursive: true });
          await Deno.writeFile(`${root}/${rel}`, await Deno.readFile(`${dir}/poll2/${rel}`));
        }

        const t2 = t1 + BigInt(scenario.elapsed_ms) * 1_000_000n;
        const b2 = new Batch();
        b2.timestamp = t2;
        for (const [i, s] of sources.entries()) {
          const spec = scenario.sources[i]!;
          if (spec.expect_stop) {
            assert.throws(() => s.poll(b2, t2), NormalStop, `${spec.kind} ${spec.pid ?? ""} should stop`);
          } else await s.poll(b2, t2);
        }
        checkBatch(b2, registry);
        const got = pointsOf(b2, registry);
        const want = scenario.points.map((p) => ({
          metric: p.metric,
          value: p.value,
          resource: p.resource ?? ["local_machine", ""],
          consumer: p.consumer ?? ["local_machine", ""],
          attributes: p.attributes ?? {},
        }));
        const key = (p: ScenarioPoint) =>
          JSON.stringify([p.metric, p.resource, p.consumer, Object.entries(p.attributes ?? {}).sort()]);
        const gotByKey = new Map(got.map((p) => [key(p), p.value]));
        assert.equal(gotByKey.size, got.length, "two points of the same series in one poll");
        assert.deepEqual(got.map(key).sort(), want.map(key).sort(), scenario.description);
        for (const p of want) {
          const v = gotByKey.get(key(p))!;
          const tolerance = 1e-9 * Math.max(1, Math.abs(p.value));
          assert.ok(Math.abs(v - p.value) <= tolerance, `${key(p)}: got ${v}, expected ${p.value}`);
        }
      } finally {
        for (const s of sources) await s.close?.();
        await Deno.remove(root, { recursive: true });
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------------------
// Live /proc

for (const source of ["kernel", "memory", "network"]) {
  Deno.test(`procfs ${source} source honours the source contract on the live /proc`, async (t) => {
    await runSourceContract(t, {
      plugin: procfsPlugin,
      source,
      polls: 3,
      minPoints: source === "kernel" ? 4 : 8,
    });
  });
}

Deno.test("KernelSource reports plausible CPU time on the live /proc", () => {
  const registry = new MetricRegistry();
  const metrics = createKernelMetrics((spec) => registry.register("procfs", spec));
  const source = new KernelSource(metrics);
  try {
    const first = new Batch();
    source.poll(first);
    assert.deepEqual(
      new Set(pointsOf(first, registry).map((p) => p.metric)),
      new Set(["kernel_n_procs_running", "kernel_n_procs_blocked"]),
      "the first poll only sets the baseline and pushes the gauges",
    );
    const start = performance.now();
    while (performance.now() - start < 300) { /* burn CPU */ }
    const b = new Batch();
    source.poll(b);
    const points = pointsOf(b, registry).filter((p) => p.metric === "kernel_cpu_time");
    const machine = sumOf(points, (p) => p.resource[0] === "local_machine");
    const wall = performance.now() - start;
    assert.ok(machine >= 200 && machine <= (wall + 100) * navigator.hardwareConcurrency, `${machine} ms`);
  } finally {
    source.close();
  }
});

function spawnSleep(seconds: number): Deno.ChildProcess {
  return new Deno.Command("sleep", { args: [String(seconds)], stdout: "null", stderr: "null" }).spawn();
}

Deno.test("ProcessSource measures a live process and ends quietly when it exits", async () => {
  const registry = new MetricRegistry();
  const metrics = createProcessMetrics((spec) => registry.register("procfs", spec));
  const child = spawnSleep(30);
  const source = new ProcessSource(child.pid, metrics);
  try {
    const b = new Batch();
    source.poll(b, now());
    const mem = pointsOf(b, registry).filter((p) => p.metric === "memory_usage");
    const of = (kind: string) => mem.find((p) => p.attributes.kind === kind)?.value ?? -1;
    assert.ok(of("resident") > 0, `resident ${of("resident")}`);
    assert.ok(of("virtual") >= of("resident"), `virtual ${of("virtual")} < resident ${of("resident")}`);
    assert.ok(of("shared") >= 0);
    assert.ok(mem.every((p) => p.consumer[0] === "process" && p.consumer[1] === String(child.pid)));
    child.kill("SIGKILL");
    await child.status; // reaped: /proc/<pid> is gone
    assert.throws(() => source.poll(new Batch(), now()), NormalStop);
    assert.throws(() => source.poll(new Batch(), now()), NormalStop);
  } finally {
    source.close();
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }
});

Deno.test("ProcessSource on this process: cpu_time_delta sums grow with the CPU time used, as getrusage counts it", () => {
  const registry = new MetricRegistry();
  const metrics = createProcessMetrics((spec) => registry.register("procfs", spec));
  const source = new ProcessSource(Deno.pid, metrics);
  /** This process's CPU time (all threads, as /proc/<pid>/stat counts it), µs. */
  const cpuUs = () => {
    const r = getrusage(RUSAGE_SELF);
    return r.userUs + r.systemUs;
  };
  try {
    let sum = 0;
    let t = now();
    const ru0 = cpuUs();
    source.poll(new Batch(), t);
    const start = performance.now();
    const sums: number[] = [];
    for (let i = 0; i < 4; i++) {
      // Burn until this process has used 60 ms more CPU time, however busy the machine is (a fixed wall time
      // gives a loaded machine's share of it, which can be anything).
      const target = cpuUs() + 60_000;
      const deadline = performance.now() + 30_000;
      while (cpuUs() < target) {
        if (performance.now() > deadline) throw new Error("the busy loop got less than 60 ms of CPU in 30 s");
      }
      const b = new Batch();
      t = now();
      source.poll(b, t);
      const points = pointsOf(b, registry);
      sum += sumOf(points, (p) => p.metric === "cpu_time_delta" && p.attributes.kind !== "guest");
      sums.push(sum);
      const total = points.find((p) => p.metric === "cpu_percent" && p.attributes.kind === "total");
      // A share of one CPU: up to 100 × the CPUs for a process with busy threads, and /proc counts in 10 ms
      // ticks, each rounded down, so over an interval of ≥ 60 ms user and system may each be off by a tick
      // (one run under load saw 102.95 % for this mostly single-threaded test).
      const bound = 100 * navigator.hardwareConcurrency + 40;
      assert.ok(
        total !== undefined && total.value >= 0 && total.value <= bound,
        `cpu_percent ${total?.value} (at most ${bound})`,
      );
    }
    const ruNs = (cpuUs() - ru0) * 1000;
    const wallNs = (performance.now() - start) * 1e6;
    for (let i = 1; i < sums.length; i++) assert.ok(sums[i]! >= sums[i - 1]!);
    // /proc/<pid>/stat counts user and system time in USER_HZ ticks (10 ms), each rounded down: the sum of
    // the deltas is the kernel's own count (getrusage, read just around the polls) within 20 ms, plus a few
    // ms for the other threads between the readings.
    assert.ok(ruNs >= 0.24e9, `getrusage counted ${ruNs} ns for 4 × 60 ms of busy loop`);
    assert.ok(
      Math.abs(sum - ruNs) <= 2.5e7 + 0.05 * ruNs,
      `cpu_time_delta sums to ${sum} ns, getrusage counted ${ruNs} ns`,
    );
    assert.ok(sum <= (wallNs + 2e7) * navigator.hardwareConcurrency, `${sum} ns in ${wallNs} ns`);
  } finally {
    source.close();
  }
});

// ---------------------------------------------------------------------------------------------------------
// Config

Deno.test("procfs config", async (t) => {
  await t.step("the defaults validate, with durations in ms and Alumet's default group", () => {
    const c = validatePluginConfig(procfsPlugin, { name: "procfs", table: {} }, "test");
    assert.equal(c.kernel.poll_interval, 5000);
    assert.equal(c.memory.poll_interval, 5000);
    assert.equal(c.network.poll_interval, 5000);
    assert.equal(c.processes.refresh_interval, 2000);
    assert.equal(c.processes.strategy, "watcher");
    // Alumet's ProcessMonitoring::default(): one group with no filter (every process), 2 s, 4 s, quick.
    assert.deepEqual(c.processes.groups, [{
      poll_interval: 2000,
      flush_interval: 4000,
      memory_mode: "quick",
    }]);
    assert.ok(isAlumetDefaultGroups(c.processes.groups));
    assert.deepEqual(c.processes.events, { poll_interval: 1000, flush_interval: 4000, memory_mode: "quick" });
    assert.deepEqual(procfsPlugin.configSchema.parse({}), c);
  });
  await t.step("a group takes Alumet's keys, with Alumet's default group settings", () => {
    const c = procfsPlugin.configSchema.parse({
      processes: { groups: [{ exe_regex: "python[0-9.]*$" }, { ppid: 1, poll_interval: "500ms" }] },
    });
    assert.ok(c.processes.groups[0]!.exe_regex!.test("/usr/bin/python3.11"));
    assert.equal(c.processes.groups[0]!.poll_interval, 2000);
    assert.equal(c.processes.groups[0]!.flush_interval, 4000);
    assert.equal(c.processes.groups[1]!.ppid, 1);
    assert.equal(c.processes.groups[1]!.poll_interval, 500);
  });
  await t.step("unknown keys and bad values are rejected", () => {
    const bad: Record<string, unknown>[] = [
      { kernal: {} },
      { kernel: { poll_intervall: "1s" } },
      { kernel: { poll_interval: 5 } },
      { memory: { metrics: ["Mem Total"] } },
      { network: { enabled: "yes" } },
      { processes: { strategy: "everything" } },
      { processes: { groups: [{ exe_regex: "(" }] } },
      { processes: { groups: [{ pid: -3 }] } },
      { processes: { groups: [{ command: "x" }] } },
      { processes: { events: { memory_mode: "fast" } } },
    ];
    for (const table of bad) {
      assert.equal(procfsPlugin.configSchema.safeParse(table).success, false, JSON.stringify(table));
      assert.throws(() => validatePluginConfig(procfsPlugin, { name: "procfs", table }, "t.toml"));
    }
  });
  await t.step("the README's configuration block is exactly defaultConfig()", async () => {
    checkConfigBlock(await Deno.readTextFile(new URL("./README.md", import.meta.url)), procfsPlugin);
  });
});

Deno.test("MemorySource names the keys the live /proc/meminfo does not have", () => {
  const registry = new MetricRegistry();
  const metric = registry.register("procfs", { name: "mem_total", unit: unit("By"), valueType: "u64" });
  const other = registry.register("procfs", { name: "no_such_key", unit: unit("By"), valueType: "u64" });
  const source = new MemorySource([{ key: "MemTotal", metric }, { key: "NoSuchKey", metric: other }]);
  try {
    const b = new Batch();
    source.poll(b);
    assert.equal(b.length, 1);
    assert.ok(Number(b.valueAt(0)) > 0 && Number(b.valueAt(0)) % 1024 === 0);
    assert.deepEqual(source.missingKeys(), ["NoSuchKey"]);
  } finally {
    source.close();
  }
});

/**
 * Alumet's `convert_to_snake_case` (plugins/procfs/src/lib.rs, alumet-dev/alumet at
 * e95352fc2d4d2b4d136dd365fd6323868de24b55 and 205fb2b0d5d26d11561410f23be32c8f69c3f475), its rules written
 * out: a key of one character or less is kept as it is; a key with `_` is lowercased; otherwise each character
 * is lowercased and an upper-case letter that follows a letter gets a `_` before it. The names of every key of
 * a Linux 6.x /proc/meminfo, worked out by hand from these rules.
 */
const ALUMET_MEMINFO_NAMES: Record<string, string> = {
  MemTotal: "mem_total",
  MemFree: "mem_free",
  MemAvailable: "mem_available",
  Buffers: "buffers",
  Cached: "cached",
  SwapCached: "swap_cached",
  Active: "active",
  Inactive: "inactive",
  "Active(anon)": "active(anon)",
  "Inactive(anon)": "inactive(anon)",
  "Active(file)": "active(file)",
  "Inactive(file)": "inactive(file)",
  Unevictable: "unevictable",
  Mlocked: "mlocked",
  SwapTotal: "swap_total",
  SwapFree: "swap_free",
  Zswap: "zswap",
  Zswapped: "zswapped",
  Dirty: "dirty",
  Writeback: "writeback",
  AnonPages: "anon_pages",
  Mapped: "mapped",
  Shmem: "shmem",
  KReclaimable: "k_reclaimable",
  Slab: "slab",
  SReclaimable: "s_reclaimable",
  SUnreclaim: "s_unreclaim",
  KernelStack: "kernel_stack",
  PageTables: "page_tables",
  SecPageTables: "sec_page_tables",
  NFS_Unstable: "nfs_unstable",
  Bounce: "bounce",
  WritebackTmp: "writeback_tmp",
  CommitLimit: "commit_limit",
  Committed_AS: "committed_as",
  VmallocTotal: "vmalloc_total",
  VmallocUsed: "vmalloc_used",
  VmallocChunk: "vmalloc_chunk",
  Percpu: "percpu",
  HardwareCorrupted: "hardware_corrupted",
  AnonHugePages: "anon_huge_pages",
  ShmemHugePages: "shmem_huge_pages",
  ShmemPmdMapped: "shmem_pmd_mapped",
  FileHugePages: "file_huge_pages",
  FilePmdMapped: "file_pmd_mapped",
  CmaTotal: "cma_total",
  CmaFree: "cma_free",
  Balloon: "balloon",
  Unaccepted: "unaccepted",
  HugePages_Total: "hugepages_total",
  HugePages_Free: "hugepages_free",
  HugePages_Rsvd: "hugepages_rsvd",
  HugePages_Surp: "hugepages_surp",
  Hugepagesize: "hugepagesize",
  Hugetlb: "hugetlb",
  DirectMap4k: "direct_map4k",
  DirectMap2M: "direct_map2m",
  DirectMap4M: "direct_map4m",
  DirectMap1G: "direct_map1g",
};

Deno.test("meminfoMetricName converts keys exactly as Alumet's convert_to_snake_case", () => {
  // The cases of Alumet's own test (test_case_conversion), then every meminfo key above.
  const alumetTest: [string, string][] = [
    ["", ""],
    ["_", "_"],
    ["a", "a"],
    ["aa", "aa"],
    ["aaa", "aaa"],
    ["A", "A"],
    ["snake_case", "snake_case"],
    ["camelCase", "camel_case"],
    ["PascalCase", "pascal_case"],
    ["SReclaimable", "s_reclaimable"],
    ["NFS_Unstable", "nfs_unstable"],
    ["Committed_AS", "committed_as"],
  ];
  for (const [key, name] of alumetTest) assert.equal(meminfoMetricName(key), name, key);
  for (const [key, name] of Object.entries(ALUMET_MEMINFO_NAMES)) {
    assert.equal(meminfoMetricName(key), name, key);
  }
});

Deno.test("every key of this machine's /proc/meminfo is a metric the plugin can create", async () => {
  const keys = (await Deno.readTextFile("/proc/meminfo")).split("\n").filter((l) => l.includes(":"))
    .map((l) => l.slice(0, l.indexOf(":")));
  assert.ok(keys.includes("MemTotal"), "a /proc/meminfo");
  const known = keys.filter((k) => k in ALUMET_MEMINFO_NAMES);
  assert.ok(
    known.length >= keys.length - 3,
    `keys not in the table: ${keys.filter((k) => !known.includes(k))}`,
  );
  const registry = new MetricRegistry();
  for (const key of keys) {
    const name = meminfoMetricName(key);
    if (key in ALUMET_MEMINFO_NAMES) assert.equal(name, ALUMET_MEMINFO_NAMES[key], key);
    registry.register("procfs", meminfoMetric(key)); // throws for a name the registry refuses
  }
  // And the plugin starts with all of them, each key validated by the config schema.
  await using h = await testPlugin(procfsPlugin, {
    kernel: { enabled: false },
    network: { enabled: false },
    processes: { enabled: false },
    memory: { metrics: keys },
  });
  const names = h.metrics.all.map((m) => m.name);
  assert.deepEqual(names, keys.map(meminfoMetricName));
});

Deno.test("the plugin adds kernel, memory, network and Alumet's default group, each can be disabled", async () => {
  await using all = await testPlugin(procfsPlugin, {});
  assert.deepEqual([...all.sources.keys()].sort(), ["group-0", "kernel", "memory", "network"]);
  assert.deepEqual(all.sources.get("kernel")!.trigger, { pollInterval: 5000 });
  assert.deepEqual(all.sources.get("group-0")!.trigger, { pollInterval: 2000, flushInterval: 4000 });
  assert.deepEqual([...all.tasks.keys()], ["process-watcher"]);
  assert.deepEqual(all.tasks.get("process-watcher")!.options, { interval: 2000 });
  const names = all.metrics.all.map((m) => m.name);
  for (const n of ["kernel_cpu_time", "mem_total", "network_bytes", "cpu_time_delta", "cpu_percent"]) {
    assert.ok(names.includes(n), n);
  }
  const kinds = Object.fromEntries(
    all.metrics.all.map((m) => [m.name, `${m.valueType} ${m.kind} ${m.unit.code}`]),
  );
  assert.equal(kinds.kernel_cpu_time, "u64 delta ms");
  assert.equal(kinds.kernel_n_procs_running, "u64 gauge 1");
  assert.equal(kinds.mem_total, "u64 gauge By");
  assert.equal(kinds.network_bytes, "u64 delta By");
  assert.equal(kinds.network_errors, "u64 delta 1");
  assert.equal(kinds.cpu_time_delta, "u64 delta ns");
  assert.equal(kinds.cpu_percent, "f64 gauge %");
  assert.equal(kinds.memory_usage, "u64 gauge By");
  await using none = await testPlugin(procfsPlugin, {
    kernel: { enabled: false },
    memory: { enabled: false },
    network: { enabled: false },
    processes: { enabled: false },
  });
  assert.equal(none.sources.size, 0);
  assert.equal(none.metrics.all.length, 0);
  assert.equal(none.events.hasListeners("startConsumerMeasurement"), false);
});

Deno.test("procfs polls /proc/stat at 1 ms in the sampling Worker", async () => {
  const { Agent, definePlugin } = await import("../../src/agent/agent.ts");
  const { setLogSink } = await import("../../src/log.ts");
  const lines: string[] = [];
  const previous = setLogSink((_level, scope, message) => lines.push(`${scope}: ${message}`));
  let points = 0;
  const count = definePlugin({
    name: "count",
    start(ctx) {
      ctx.addOutput("o", {
        write(b: Batch, c) {
          for (let i = 0; i < b.length; i++) {
            if (c.metric(b.metricAt(i)).name === "kernel_n_procs_running") points++;
          }
        },
      });
    },
  });
  await using agent = new Agent({
    plugins: [
      {
        plugin: procfsPlugin,
        config: {
          kernel: { poll_interval: "1ms" },
          memory: { enabled: false },
          network: { enabled: false },
          processes: { enabled: false },
        },
      },
      count,
    ],
    selfInterval: 3_600_000,
  });
  try {
    await agent.start();
    await new Promise((r) => setTimeout(r, 400));
    await agent.stop();
  } finally {
    setLogSink(previous);
  }
  // How many ticks the Worker polls depends on the CPU it gets (a benchmark's matter: `deno task bench
  // sampling`); here: it polled, and the source was not left on the main thread, which would say so.
  assert.ok(points > 0, "no kernel_n_procs_running point");
  assert.ok(!lines.some((l) => /on the main thread/.test(l)), lines.join("\n"));
});

import assert from "node:assert/strict";
import { Batch } from "../../src/model/batch.ts";
import type { Consumer } from "../../src/model/resources.ts";
import { MetricRegistry } from "../../src/model/metrics.ts";
import type { PluginMetadata } from "../../src/plugin/plugin.ts";
import { validatePluginConfig } from "../../src/plugin/config.ts";
import { checkBatch, type PluginHarness, runSourceContract, testPlugin } from "../../src/testing/mod.ts";
import { checkConfigBlock, checkMetricsTable } from "../../src/testing/readme.ts";
import { registerMetrics } from "../../src/model/metric_set.ts";
import { needs, testWith } from "../../src/testing/needs.ts";
import { filesUnder, pointsOf, type ScenarioPoint } from "../../src/testing/fixtures.ts";
import { CPU_PERCENT, CPU_TIME_DELTA, MEMORY_USAGE } from "../../src/model/common_metrics.ts";
import {
  CGROUP_METRICS,
  type CgroupsConfig,
  type CgroupSource,
  CgroupsPlugin,
  cgroupsPlugin,
  type CgroupsPluginOptions,
  detectLayout,
} from "./mod.ts";

const TESTDATA = new URL("./testdata/", import.meta.url).pathname;

/** The plugin with options that are not configuration (fixture mounts, CPU count, USER_HZ). */
function pluginWith(options: CgroupsPluginOptions): PluginMetadata<CgroupsConfig> {
  return { ...cgroupsPlugin, init: (config: CgroupsConfig) => new CgroupsPlugin(config, options) };
}

/** Records the cgroup paths announced on the harness's event bus. */
function recordEvents(h: PluginHarness): { start: string[]; end: string[]; clear(): void } {
  const log = {
    start: [] as string[],
    end: [] as string[],
    clear() {
      log.start = [];
      log.end = [];
    },
  };
  const paths = (cs: readonly Consumer[]) => cs.map((c) => (assert.equal(c.kind, "cgroup"), c.id));
  h.events.on("startConsumerMeasurement", (cs) => void log.start.push(...paths(cs)));
  h.events.on("endConsumerMeasurement", (cs) => void log.end.push(...paths(cs)));
  return log;
}

// ---------------------------------------------------------------------------------------------------------
// Fixture scenarios: testdata/<scenario>/{mounts,poll1,poll2,expected.json}

interface Scenario {
  readonly description: string;
  readonly paths: string[];
  readonly system: { n_cpus: number; user_hz: number };
  readonly elapsed_ms: number;
  readonly rescan_before_poll2?: boolean;
  readonly events: Record<"poll1" | "poll2", { start: string[]; end: string[] }>;
  readonly followed_after: string[];
  readonly points: ScenarioPoint[];
}

/** Relative paths of the directories under `dir`. */
function dirsUnder(dir: string, prefix = ""): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(`${dir}/${prefix}`)) {
    if (!e.isDirectory) continue;
    const rel = prefix === "" ? e.name : `${prefix}/${e.name}`;
    out.push(rel, ...dirsUnder(dir, rel));
  }
  return out;
}

const parentOf = (path: string) => path.replace(/\/[^/]+$/, "");

Deno.test("cgroups sources push the expected points and events in every fixture scenario", async (t) => {
  const names = [...Deno.readDirSync(TESTDATA)]
    .filter((e) => e.isDirectory && e.name !== "mounts")
    .map((e) => e.name)
    .sort();
  assert.ok(names.length >= 4, `only ${names.length} scenarios found in ${TESTDATA}`);
  for (const name of names) {
    await t.step(name, async () => {
      const dir = `${TESTDATA}${name}`;
      const scenario: Scenario = JSON.parse(await Deno.readTextFile(`${dir}/expected.json`));
      const root = await Deno.makeTempDir({ prefix: `cgroups_${name}_` });
      try {
        const first = filesUnder(`${dir}/poll1`);
        for (const rel of first) {
          await Deno.mkdir(parentOf(`${root}/${rel}`), { recursive: true });
          await Deno.copyFile(`${dir}/poll1/${rel}`, `${root}/${rel}`);
        }
        const mounts = `${root}/mounts`;
        await Deno.writeTextFile(
          mounts,
          (await Deno.readTextFile(`${dir}/mounts`)).replaceAll("$ROOT", root),
        );
        const meta = pluginWith({ mounts, nCpus: scenario.system.n_cpus, userHz: scenario.system.user_hz });
        await using h = await testPlugin(meta, { paths: scenario.paths });
        const plugin = h.plugin as CgroupsPlugin;
        const events = recordEvents(h);
        const probes = h.sources.get("probes")!.source as CgroupSource;

        const t1 = 1_700_000_000_000_000_000n;
        const b1 = new Batch();
        b1.timestamp = t1;
        await h.runTask("discovery");
        await probes.poll(b1, t1);
        checkBatch(b1, h.metrics);
        assert.deepEqual(events.start.sort(), [...scenario.events.poll1.start].sort(), "poll1: started");
        assert.deepEqual(events.end.sort(), [...scenario.events.poll1.end].sort(), "poll1: ended");
        events.clear();

        // Rewrite in place (the probes keep their files open); empty the files poll2 no longer has, then
        // remove the directories it no longer has (an emptied file reads as a removed cgroup).
        const second = new Set(filesUnder(`${dir}/poll2`));
        for (const rel of first) {
          if (!second.has(rel)) await Deno.writeFile(`${root}/${rel}`, new Uint8Array());
        }
        const dirs2 = new Set(dirsUnder(`${dir}/poll2`));
        for (const rel of dirsUnder(`${dir}/poll1`).sort().reverse()) {
          if (!dirs2.has(rel)) await Deno.remove(`${root}/${rel}`, { recursive: true }).catch(() => {});
        }
        for (const rel of second) {
          await Deno.mkdir(parentOf(`${root}/${rel}`), { recursive: true });
          await Deno.writeFile(`${root}/${rel}`, await Deno.readFile(`${dir}/poll2/${rel}`));
        }

        const t2 = t1 + BigInt(scenario.elapsed_ms) * 1_000_000n;
        const b2 = new Batch();
        b2.timestamp = t2;
        if (scenario.rescan_before_poll2 ?? true) await h.runTask("discovery");
        await probes.poll(b2, t2);
        checkBatch(b2, h.metrics);
        assert.deepEqual(events.start.sort(), [...scenario.events.poll2.start].sort(), "poll2: started");
        assert.deepEqual(events.end.sort(), [...scenario.events.poll2.end].sort(), "poll2: ended");
        assert.deepEqual(plugin.source!.paths.sort(), [...scenario.followed_after].sort(), "followed after");

        const got = pointsOf(b2, h.metrics);
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
        const types = new Map(h.metrics.all.map((m) => [m.name, m.valueType]));
        for (const p of want) {
          const v = gotByKey.get(key(p))!;
          // u64 values are exact (counters beyond 2^53 are subtracted in two exact parts); f64 to 1e-9.
          const tolerance = types.get(p.metric) === "u64" ? 0 : 1e-9 * Math.max(1, Math.abs(p.value));
          assert.ok(Math.abs(v - p.value) <= tolerance, `${key(p)}: got ${v}, expected ${p.value}`);
        }
      } finally {
        await Deno.remove(root, { recursive: true });
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------------------
// Config

Deno.test("cgroups config", async (t) => {
  await t.step("the defaults validate, with durations in ms and compiled patterns", () => {
    const c = validatePluginConfig(cgroupsPlugin, { name: "cgroups", table: {} }, "test");
    assert.equal(c.poll_interval, 5000);
    assert.equal(c.refresh_interval, 5000);
    assert.equal(c.disable_sources, false);
    assert.deepEqual(c.paths.map((p) => p.source), ["/*"]);
    assert.ok(c.paths[0]!.matches("/system.slice") && !c.paths[0]!.matches("/system.slice/a.service"));
  });
  await t.step("patterns of each kind are accepted", () => {
    const c = cgroupsPlugin.configSchema.parse({
      paths: ["system.slice/*", "kubepods*/**", "/user.slice/user-1000.slice", "/", "/a?c/*.scope/"],
      poll_interval: "1s",
      refresh_interval: "500ms",
      disable_sources: true,
    });
    assert.equal(c.paths.length, 5);
    assert.equal(c.poll_interval, 1000);
    assert.equal(c.refresh_interval, 500);
    assert.equal(c.disable_sources, true);
  });
  await t.step("unknown keys and bad values are rejected", () => {
    const bad: Record<string, unknown>[] = [
      { pathz: ["/"] },
      { paths: "/system.slice/*" },
      { paths: [""] },
      { paths: ["a//b"] },
      { paths: ["kube**/x"] },
      { paths: ["../etc"] },
      { paths: [3] },
      { poll_interval: 5 },
      { poll_interval: "0s" },
      { refresh_interval: "soon" },
      { disable_sources: "no" },
      { v1_refresh_interval: "30s" },
    ];
    for (const table of bad) {
      assert.equal(cgroupsPlugin.configSchema.safeParse(table).success, false, JSON.stringify(table));
      assert.throws(() => validatePluginConfig(cgroupsPlugin, { name: "cgroups", table }, "t.toml"));
    }
  });
  await t.step("a bad pattern is one error naming the key and the pattern", () => {
    assert.throws(
      () =>
        validatePluginConfig(
          cgroupsPlugin,
          { name: "cgroups", table: { paths: ["ok/*", "a**"] } },
          "t.toml",
        ),
      /plugins\.cgroups\.paths\[1\]: expected a cgroup path pattern .*"a\*\*"/,
    );
  });
  await t.step("the README's configuration block is exactly the schema's defaults", async () => {
    checkConfigBlock(await Deno.readTextFile(new URL("./README.md", import.meta.url)), cgroupsPlugin);
  });
});

// ---------------------------------------------------------------------------------------------------------
// The plugin on this machine

Deno.test("the plugin adds the probes source and the discovery task, and only the task with disable_sources", async () => {
  await using all = await testPlugin(cgroupsPlugin, { paths: ["/"], poll_interval: "2s" });
  assert.deepEqual([...all.sources.keys()], ["probes"]);
  assert.deepEqual([...all.tasks.keys()], ["discovery"]);
  assert.deepEqual(all.sources.get("probes")!.trigger, { pollInterval: 2000 });
  // With inotify (Linux), discovery looks every 100 ms (one non-blocking read) and walks only on a change.
  assert.deepEqual(all.tasks.get("discovery")!.options, { interval: 100 });
  const kinds = Object.fromEntries(
    all.metrics.all.map((m) => [m.name, `${m.valueType} ${m.kind} ${m.unit.code}`]),
  );
  assert.equal(kinds.cpu_time_delta, "u64 delta ns");
  assert.equal(kinds.cpu_percent, "f64 gauge %");
  assert.equal(kinds.memory_usage, "u64 gauge By");
  assert.equal(kinds.memory_max, "f64 gauge By");
  assert.equal(kinds.cgroup_memory_anonymous, "u64 gauge By");
  assert.equal(kinds.cgroup_memory_swap_max, "f64 gauge By");
  assert.equal(kinds.cgroup_pswpin, "u64 counter 1");
  assert.equal(kinds.io_pressure_some_total, "u64 delta us");
  assert.equal(kinds.cpu_pressure_full_total, "u64 delta us");
  assert.equal(kinds.memory_pressure_some_total, "u64 delta us");

  await using observer = await testPlugin(cgroupsPlugin, { paths: ["/"], disable_sources: true });
  assert.deepEqual([...observer.sources.keys()], []);
  assert.deepEqual([...observer.tasks.keys()], ["discovery"]);
  assert.equal(observer.metrics.all.length, 0);
  const events = recordEvents(observer);
  await observer.runTask("discovery");
  assert.deepEqual(events.start, ["/"], "the root cgroup is announced even without measuring it");
});

Deno.test("cgroups metrics share the generic ones (one id in the registry with any plugin registering them)", () => {
  const registry = new MetricRegistry();
  const generic = [CPU_TIME_DELTA, CPU_PERCENT, MEMORY_USAGE].map((spec) =>
    registry.register("procfs", spec)
  );
  const c = registerMetrics(registry, "cgroups", CGROUP_METRICS);
  assert.deepEqual([c.cpuTimeDelta, c.cpuPercent, c.memoryUsage], generic);
});

Deno.test("cgroups probes source honours the source contract on this machine's root cgroup", async (t) => {
  await runSourceContract(t, { plugin: cgroupsPlugin, config: { paths: ["/"] }, source: "probes", polls: 3 });
});

Deno.test("the discovery task runs repeatedly, announces each cgroup once, and pushes no point", async () => {
  await using h = await testPlugin(cgroupsPlugin, { paths: ["/"] });
  const events = recordEvents(h);
  for (let i = 0; i < 3; i++) await h.runTask("discovery");
  assert.deepEqual(events.start, ["/"]);
  assert.deepEqual(events.end, []);
  assert.deepEqual([...h.sources.keys()], ["probes"], "the task is not a source");
});

Deno.test("the README's metrics table matches the declared metrics", async () => {
  checkMetricsTable(await Deno.readTextFile(new URL("./README.md", import.meta.url)), CGROUP_METRICS);
});

// ---------------------------------------------------------------------------------------------------------
// Live: a real cgroup under the v2 hierarchy found in /proc/mounts

/** `usage_usec` of a v2 `cpu.stat`, read the plain way. */
function usageUsec(dir: string): number {
  const m = Deno.readTextFileSync(`${dir}/cpu.stat`).match(/^usage_usec (\d+)$/m);
  assert.ok(m !== null, `no usage_usec in ${dir}/cpu.stat`);
  return Number(m[1]);
}

async function removeCgroup(dir: string): Promise<void> {
  for (let i = 0; i < 40; i++) {
    try {
      await Deno.remove(dir);
      return;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      await new Promise((r) => setTimeout(r, 25)); // EBUSY until the killed process has left it
    }
  }
  await Deno.remove(dir);
}

testWith(
  [needs.root, needs.cgroupV2],
  "cgroups measures a live v2 cgroup: its cumulative CPU time agrees with the cgroup's own cpu.stat",
  async () => {
    const v2 = detectLayout().v2!;
    const name = `alumet-test-${crypto.randomUUID().slice(0, 8)}`;
    const dir = `${v2.mountPoint}/${name}`;
    const path = `/${name}`;
    await using h = await testPlugin(cgroupsPlugin, {
      paths: [path],
      poll_interval: "1s",
      refresh_interval: "1s",
    });
    const events = recordEvents(h);
    await h.runTask("discovery");
    assert.deepEqual(events.start, [], "the cgroup does not exist yet");
    const probes = h.sources.get("probes")!.source as CgroupSource;
    let child: Deno.ChildProcess | undefined;
    try {
      await Deno.mkdir(dir);
      child = new Deno.Command("sh", { args: ["-c", "while :; do :; done"], stdout: "null", stderr: "null" })
        .spawn();
      await Deno.writeTextFile(`${dir}/cgroup.procs`, `${child.pid}\n`);
      await h.runTask("discovery");
      assert.deepEqual(events.start, [path], "the new cgroup is announced");
      assert.deepEqual(probes.paths, [path]);

      // The cgroup appeared while measured, so its counters start from zero: the sum of cpu_time_delta
      // (kind=total) is its whole usage_usec (× 1000). usage_usec only grows, and the plugin reads it
      // between our two reads: the plugin's value must lie within [before, after], with no other tolerance.
      let sum = 0;
      const sums: number[] = [];
      for (let i = 0; i < 2; i++) {
        if (i > 0) await new Promise((r) => setTimeout(r, 300));
        const before = usageUsec(dir) * 1000;
        const b = await h.poll("probes");
        const after = usageUsec(dir) * 1000;
        checkBatch(b, h.metrics);
        const points = pointsOf(b, h.metrics).filter((p) =>
          p.consumer[0] === "cgroup" && p.consumer[1] === path
        );
        const total = points.filter((p) => p.metric === "cpu_time_delta" && p.attributes.kind === "total");
        assert.equal(total.length, 1, JSON.stringify(points));
        sum += total[0]!.value;
        sums.push(sum);
        assert.ok(
          before <= sum && sum <= after,
          `poll ${i + 1}: plugin ${sum} ns, cpu.stat ${before}..${after} ns`,
        );
        assert.ok(after - before < 50e6, `the two reads of cpu.stat are ${after - before} ns of CPU apart`);
        const percent = points.find((p) => p.metric === "cpu_percent" && p.attributes.kind === "total");
        if (i === 0) assert.equal(percent, undefined, "no cpu_percent before an interval is known");
        else {assert.ok(
            percent !== undefined && percent.value > 0 && percent.value <= 100,
            `${percent?.value}`,
          );}
      }
      assert.ok(sums[1]! > sums[0]!, `the busy child used no CPU time in 300 ms: ${sums}`);
    } finally {
      try {
        child?.kill("SIGKILL");
      } catch { /* already gone */ }
      await child?.status;
      await removeCgroup(dir);
    }
    // Removed before the rescan: its open files read as ENODEV, and it ends quietly at the next poll.
    assert.deepEqual(probes.paths, [path]);
    assert.equal((await h.poll("probes")).length, 0);
    assert.deepEqual(probes.paths, []);
    await h.runTask("discovery");
    assert.deepEqual(events.end, [path], "the removed cgroup is announced");
  },
);

import assert from "node:assert/strict";
import type { Batch } from "../../src/model/batch.ts";
import { EventBus } from "../../src/plugin/events.ts";
import type { PluginMetadata } from "../../src/plugin/plugin.ts";
import { testPlugin } from "../../src/testing/mod.ts";
import { Agent, definePlugin } from "../../src/agent/agent.ts";
import { pointsOf } from "../../src/testing/fixtures.ts";
import { DirWatcher } from "../../src/ffi/inotify.ts";
import {
  type Baseline,
  CgroupDiscovery,
  type CgroupLayout,
  type CgroupsConfig,
  type CgroupSource,
  CgroupsPlugin,
  cgroupsPlugin,
  PathPattern,
} from "./mod.ts";

/** A fake v2 hierarchy in a temporary directory, and what a discovery on it reported. */
async function fakeHierarchy() {
  const root = await Deno.makeTempDir({ prefix: "cgroups_discovery_" });
  const layout: CgroupLayout = {
    v2: { version: 2, mountPoint: root, controllers: ["cpu", "memory"] },
    v1: new Map(),
  };
  const calls: string[] = [];
  const published: string[] = [];
  const events = new EventBus();
  events.on(
    "startConsumerMeasurement",
    (cs) => void published.push(...cs.map((c) => `start ${c.kind} ${c.id}`)),
  );
  events.on("endConsumerMeasurement", (cs) => void published.push(...cs.map((c) => `end ${c.kind} ${c.id}`)));
  const discovery = (patterns: string[], withEvents = true) =>
    new CgroupDiscovery({
      layout,
      patterns: patterns.map((p) => new PathPattern(p)),
      ...(withEvents ? { events } : {}),
      onAdded: (path: string, baseline: Baseline) => void calls.push(`added ${path} ${baseline}`),
      onRemoved: (path: string) => void calls.push(`removed ${path}`),
    });
  const mk = (path: string) => Deno.mkdir(`${root}${path}`, { recursive: true });
  const rm = (path: string) => Deno.remove(`${root}${path}`, { recursive: true });
  const take = () => {
    const out = { calls: [...calls], published: [...published] };
    calls.length = 0;
    published.length = 0;
    return out;
  };
  return {
    root,
    layout,
    discovery,
    mk,
    rm,
    take,
    [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }),
  };
}

Deno.test("CgroupDiscovery follows cgroups as they come and go, and announces them", async (t) => {
  await using f = await fakeHierarchy();
  await f.mk("/system.slice/a.service");
  await f.mk("/system.slice/b.service");
  await f.mk("/user.slice/user-1000.slice");
  const d = f.discovery(["system.slice/*"]);

  await t.step("the initial scan adds what exists, measured from its current values", () => {
    assert.deepEqual(d.initialScan().sort(), ["/system.slice/a.service", "/system.slice/b.service"]);
    assert.deepEqual(f.take().calls.sort(), [
      "added /system.slice/a.service current",
      "added /system.slice/b.service current",
    ]);
  });
  await t.step("the first run announces them (every plugin has subscribed by then)", async () => {
    const changes = await d.rescan();
    assert.deepEqual([...changes.started].sort(), ["/system.slice/a.service", "/system.slice/b.service"]);
    const { calls, published } = f.take();
    assert.deepEqual(calls, []);
    assert.deepEqual(published.sort(), [
      "start cgroup /system.slice/a.service",
      "start cgroup /system.slice/b.service",
    ]);
  });
  await t.step("a run with no change announces nothing", async () => {
    await d.run();
    assert.deepEqual(f.take(), { calls: [], published: [] });
  });
  await t.step("a removed cgroup is ended, a new one started from zero, in that order", async () => {
    await f.rm("/system.slice/b.service");
    await f.mk("/system.slice/c.service");
    await f.mk("/system.slice/c.service/child"); // one level only: not followed
    await d.run();
    const { calls, published } = f.take();
    assert.deepEqual(calls, ["removed /system.slice/b.service", "added /system.slice/c.service zero"]);
    assert.deepEqual(published, [
      "end cgroup /system.slice/b.service",
      "start cgroup /system.slice/c.service",
    ]);
    assert.deepEqual([...d.known].sort(), ["/system.slice/a.service", "/system.slice/c.service"]);
  });
  await t.step("a cgroup found gone by a measurement and present at the rescan was re-created", async () => {
    d.markGone("/system.slice/a.service");
    await d.run();
    const { calls, published } = f.take();
    assert.deepEqual(calls, ["removed /system.slice/a.service", "added /system.slice/a.service zero"]);
    assert.deepEqual(published, [
      "end cgroup /system.slice/a.service",
      "start cgroup /system.slice/a.service",
    ]);
  });
  await t.step("a cgroup found gone and absent at the rescan is simply ended", async () => {
    d.markGone("/system.slice/c.service");
    await f.rm("/system.slice/c.service");
    await d.run();
    assert.deepEqual(f.take(), {
      calls: ["removed /system.slice/c.service"],
      published: ["end cgroup /system.slice/c.service"],
    });
  });
});

Deno.test("CgroupDiscovery never announces the end of a cgroup it did not announce", async () => {
  await using f = await fakeHierarchy();
  await f.mk("/a");
  await f.mk("/b");
  const d = f.discovery(["*"]);
  d.initialScan();
  await f.rm("/b"); // gone before the first run
  await d.run();
  assert.deepEqual(f.take(), {
    calls: ["added /a current", "added /b current", "removed /b"],
    published: ["start cgroup /a"],
  });
});

Deno.test("CgroupDiscovery works without an event bus, and finds nothing in a missing hierarchy", async () => {
  await using f = await fakeHierarchy();
  await f.mk("/a");
  const d = f.discovery(["*"], false);
  assert.deepEqual(await d.rescan(), { started: ["/a"], ended: [] });
  const missing = new CgroupDiscovery({
    layout: { v2: { version: 2, mountPoint: `${f.root}/nope`, controllers: [] }, v1: new Map() },
    patterns: [new PathPattern("**")],
  });
  assert.deepEqual(await missing.rescan(), { started: [], ended: [] });
});

Deno.test("the plugin gives a hybrid cgroup its v1 memory files at the rescan after it appeared", async () => {
  const root = await Deno.makeTempDir({ prefix: "cgroups_settle_" });
  try {
    await Deno.mkdir(`${root}/unified`, { recursive: true });
    await Deno.mkdir(`${root}/memory`, { recursive: true });
    await Deno.writeTextFile(`${root}/unified/cgroup.controllers`, "hugetlb\n");
    await Deno.writeTextFile(
      `${root}/mounts`,
      `cgroup ${root}/memory cgroup rw,memory 0 0\ncgroup2 ${root}/unified cgroup2 rw 0 0\n`,
    );
    const meta: PluginMetadata<CgroupsConfig> = {
      ...cgroupsPlugin,
      init: (c: CgroupsConfig) => new CgroupsPlugin(c, { mounts: `${root}/mounts`, nCpus: 1, userHz: 100 }),
    };
    await using h = await testPlugin(meta, { paths: ["/job*"] });
    const probes = h.sources.get("probes")!.source as CgroupSource;
    const metricsOf = (b: Batch) => [...new Set(pointsOf(b, h.metrics).map((p) => p.metric))].sort();

    // The job's v2 directory appears and a rescan finds it; its v1 memory directory comes a moment later.
    await Deno.mkdir(`${root}/unified/job1`);
    await Deno.writeTextFile(`${root}/unified/job1/cpu.stat`, "usage_usec 10\nuser_usec 6\nsystem_usec 4\n");
    await h.runTask("discovery");
    assert.deepEqual(probes.paths, ["/job1"]);
    assert.equal(probes.probe("/job1")?.openFiles, 1);
    await Deno.mkdir(`${root}/memory/job1`);
    await Deno.writeTextFile(`${root}/memory/job1/memory.usage_in_bytes`, "4096\n");
    assert.deepEqual(metricsOf(await h.poll("probes")), ["cpu_time_delta"]);

    // The next rescan opens the files that were missing.
    await h.runTask("discovery");
    assert.equal(probes.probe("/job1")?.openFiles, 2);
    const b = await h.poll("probes");
    assert.deepEqual(metricsOf(b), ["cpu_percent", "cpu_time_delta", "memory_usage"]);
    assert.equal(pointsOf(b, h.metrics).find((p) => p.metric === "memory_usage")?.value, 4096);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("CgroupDiscovery with inotify announces a new cgroup at the next run and walks only on changes", async () => {
  const root = await Deno.makeTempDir({ prefix: "alumet-inotify-" });
  using watcher = DirWatcher.open();
  try {
    Deno.mkdirSync(`${root}/a`);
    const events = new EventBus();
    const started: string[] = [];
    const ended: string[] = [];
    events.on("startConsumerMeasurement", (cs) => void started.push(...cs.map((c) => c.id)));
    events.on("endConsumerMeasurement", (cs) => void ended.push(...cs.map((c) => c.id)));
    let walks = 0;
    const d = new CgroupDiscovery({
      layout: { v2: { version: 2, mountPoint: root, controllers: [] }, v1: new Map() },
      patterns: [new PathPattern("/*")],
      events,
      watcher,
      fullRescanMs: 3_600_000,
      readDir: (dir) => {
        walks++;
        return [...Deno.readDirSync(dir)].filter((e) => e.isDirectory).map((e) => e.name);
      },
    });
    d.initialScan();
    await d.run(); // the first run announces what the initial scan found
    assert.deepEqual(started, ["/a"]);
    const after = walks;
    await d.run();
    assert.equal(walks, after, "nothing changed, yet it walked the hierarchy");
    Deno.mkdirSync(`${root}/b`);
    await d.run();
    assert.deepEqual(started, ["/a", "/b"]);
    Deno.removeSync(`${root}/a`);
    await d.run();
    assert.deepEqual(ended, ["/a"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("in an agent, the discovery task's first run announces the cgroups found at start to a plugin that subscribed after cgroups started", async () => {
  const root = await Deno.makeTempDir({ prefix: "cgroups_first_run_" });
  try {
    Deno.mkdirSync(`${root}/a`);
    const layout: CgroupLayout = { v2: { version: 2, mountPoint: root, controllers: [] }, v1: new Map() };
    const cgroups: PluginMetadata<CgroupsConfig> = {
      ...cgroupsPlugin,
      init: (c: CgroupsConfig) => new CgroupsPlugin(c, { layout, nCpus: 1, userHz: 100 }),
    };
    const started: string[] = [];
    const announced = Promise.withResolvers<void>();
    // Subscribes in preStart, after cgroups' start has found /a: the announcement must wait for it.
    const listener = definePlugin({
      name: "listener",
      start() {},
      preStart(ctx) {
        ctx.events.on("startConsumerMeasurement", (cs) => {
          started.push(...cs.map((c) => c.id));
          announced.resolve();
        });
      },
    });
    await using agent = new Agent({
      plugins: [{ plugin: cgroups, config: { paths: ["/*"], refresh_interval: "1h" } }, listener],
      selfInterval: 3_600_000,
    });
    await agent.start();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), 10_000)));
    try {
      assert.notEqual(await Promise.race([announced.promise, late]), "late", "nothing announced in 10 s");
    } finally {
      clearTimeout(timer);
    }
    assert.deepEqual(started, ["/a"]);
    await agent.stop();
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

import assert from "node:assert/strict";
import { Batch } from "../../src/model/batch.ts";
import { MetricRegistry } from "../../src/model/metrics.ts";
import { Consumer } from "../../src/model/resources.ts";
import { now } from "../../src/model/timestamp.ts";
import { NormalStop } from "../../src/errors.ts";
import { getrusage, RUSAGE_CHILDREN } from "../../src/ffi/libc.ts";
import type { ProcessGroupSource } from "./group.ts";
import { testPlugin } from "../../src/testing/mod.ts";
import {
  createProcessMetrics,
  followProgramOnly,
  type ProcessInfo,
  ProcessSource,
  ProcessTreeSource,
  ProcessWatcher,
  type ProcfsPlugin,
  procfsPlugin,
  readProcessInfo,
  type SystemInfo,
  type WatchGroup,
} from "./mod.ts";
import { pointsOf, sumOf } from "../../src/testing/fixtures.ts";

const SYSTEM: SystemInfo = { userHz: 100, pageSize: 4096, nCpus: 2 };

/** A `/proc/<pid>/stat` line with the given fields (the others are plausible constants). */
function statLine(
  o: { pid: number; comm?: string; ppid?: number; utime?: number; stime?: number; start?: number },
): string {
  const f = [
    "S",
    o.ppid ?? 1,
    o.pid,
    o.pid,
    0,
    -1,
    4194560,
    100,
    0,
    0,
    0,
    o.utime ?? 0,
    o.stime ?? 0,
    0,
    0,
    20,
    0,
    1,
    0,
    o.start ?? 1000,
    10_000_000,
    100,
    "18446744073709551615",
    ...Array(17).fill(0),
    0,
    ...Array(9).fill(0),
  ];
  return `${o.pid} (${o.comm ?? "prog"}) ${f.join(" ")}\n`;
}

async function withTempRoot(fn: (root: string) => Promise<void> | void): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "procfs_process_" });
  try {
    await fn(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

function writeProcess(root: string, o: Parameters<typeof statLine>[0]): void {
  Deno.mkdirSync(`${root}/${o.pid}`, { recursive: true });
  Deno.writeTextFileSync(`${root}/${o.pid}/stat`, statLine(o));
  Deno.writeTextFileSync(`${root}/${o.pid}/statm`, "2000 300 100 10 0 500 0\n");
}

function cpuOf(b: Batch, registry: MetricRegistry, kind: string): number[] {
  return pointsOf(b, registry)
    .filter((p) => p.metric === "cpu_time_delta" && p.attributes.kind === kind)
    .map((p) => p.value);
}

Deno.test("ProcessTreeSource pushes the exit remainder exactly, without a cpu_percent, then ends", async () => {
  await withTempRoot((root) => {
    const registry = new MetricRegistry();
    const metrics = createProcessMetrics((spec) => registry.register("procfs", spec));
    writeProcess(root, { pid: 90, utime: 0, stime: 0 });
    writeProcess(root, { pid: 91, ppid: 90, utime: 30, stime: 2 });
    const source = new ProcessTreeSource(90, metrics, { root, system: SYSTEM, baseline: "zero" });
    const t1 = now() + 1_000_000_000n;
    const b1 = new Batch();
    source.poll(b1, t1);
    assert.deepEqual(source.members, [90, 91]);
    assert.deepEqual(cpuOf(b1, registry, "user"), [300_000_000], "the child's ticks, seen live");
    assert.equal(pointsOf(b1, registry).filter((p) => p.metric === "cpu_percent").length, 3);
    // The program exits 10 ms after that poll (a `sleep` ending just after a poll): the kernel's total holds
    // what /proc had not shown yet.
    Deno.writeTextFileSync(`${root}/90/stat`, "");
    Deno.writeTextFileSync(`${root}/91/stat`, "");
    const userNs = 309_000_000;
    source.exited({ userNs, systemNs: 24_000_000, timestamp: t1 + 10_000_000n });
    const b2 = new Batch();
    source.poll(b2, t1 + 20_000_000n);
    assert.deepEqual(cpuOf(b2, registry, "user"), [9_000_000]);
    assert.deepEqual(cpuOf(b2, registry, "system"), [4_000_000]);
    // No cpu_percent for the remainder: 9 ms of /proc's truncated ticks over a 10 ms interval would read as a
    // 45 % share of this 2-CPU machine when nothing ran then.
    assert.deepEqual(pointsOf(b2, registry).filter((p) => p.metric === "cpu_percent"), []);
    assert.throws(() => source.poll(new Batch(), t1 + 30_000_000n), NormalStop);
    source.close();
  });
});

Deno.test("ProcessSource pushes the exit remainder exactly, then ends", async (t) => {
  await t.step("a process measured from zero: final − already reported, then NormalStop", async () => {
    await withTempRoot((root) => {
      const registry = new MetricRegistry();
      const metrics = createProcessMetrics((spec) => registry.register("procfs", spec));
      writeProcess(root, { pid: 77, utime: 42, stime: 7 });
      const source = new ProcessSource(77, metrics, {
        root,
        system: SYSTEM,
        baseline: "zero",
        awaitExit: true,
      });
      const t1 = 1_000_000_000_000n;
      const b1 = new Batch();
      source.poll(b1, t1);
      assert.deepEqual(cpuOf(b1, registry, "user"), [420_000_000], "X = 42 ticks reported at the first poll");
      assert.deepEqual(cpuOf(b1, registry, "system"), [70_000_000]);
      // The process exits: its files read as nothing, and the kernel's total is larger than what we saw.
      Deno.writeTextFileSync(`${root}/77/stat`, "");
      const userNs = 437_123_000;
      const systemNs = 71_000_000;
      source.exited({ userNs, systemNs, timestamp: t1 + 500_000_000n });
      const b2 = new Batch();
      source.poll(b2, t1 + 1_000_000_000n);
      assert.deepEqual(cpuOf(b2, registry, "user"), [userNs - 420_000_000]);
      assert.deepEqual(cpuOf(b2, registry, "system"), [systemNs - 70_000_000]);
      // No cpu_percent for the remainder: /proc's 10 ms ticks say nothing of when it was spent.
      assert.equal(pointsOf(b2, registry).filter((p) => p.metric === "cpu_percent").length, 0);
      assert.equal(
        sumOf(pointsOf(b1, registry), (p) => p.metric === "cpu_time_delta" && p.attributes.kind === "user") +
          cpuOf(b2, registry, "user")[0]!,
        userNs,
      );
      assert.throws(() => source.poll(new Batch(), t1 + 2_000_000_000n), NormalStop);
      source.close();
    });
  });
  await t.step("a process gone before its first poll reports its whole accounting", async () => {
    await withTempRoot((root) => {
      const registry = new MetricRegistry();
      const metrics = createProcessMetrics((spec) => registry.register("procfs", spec));
      const source = new ProcessSource(78, metrics, {
        root,
        system: SYSTEM,
        baseline: "zero",
        awaitExit: true,
      });
      const b1 = new Batch();
      source.poll(b1, 1n); // gone, but an exit accounting may still come: wait
      assert.equal(b1.length, 0);
      source.exited({ userNs: 1_000, systemNs: 2_000, timestamp: 2n });
      const b2 = new Batch();
      source.poll(b2, 3n);
      assert.deepEqual(cpuOf(b2, registry, "user"), [1_000]);
      assert.deepEqual(cpuOf(b2, registry, "system"), [2_000]);
      assert.throws(() => source.poll(new Batch(), 4n), NormalStop);
      source.close();
    });
  });
  await t.step("without an exit accounting, a followed process ends after a second of grace", async () => {
    await withTempRoot((root) => {
      const registry = new MetricRegistry();
      const metrics = createProcessMetrics((spec) => registry.register("procfs", spec));
      const source = new ProcessSource(79, metrics, { root, system: SYSTEM, awaitExit: true });
      source.poll(new Batch(), 1n);
      source.poll(new Batch(), 500_000_000n); // gone for half a second: still waiting
      assert.throws(() => source.poll(new Batch(), 1_000_000_001n), NormalStop);
      source.close();
    });
  });
  await t.step("a reset leaves the skipped time out of the remainder", async () => {
    await withTempRoot((root) => {
      const registry = new MetricRegistry();
      const metrics = createProcessMetrics((spec) => registry.register("procfs", spec));
      writeProcess(root, { pid: 80, utime: 10, stime: 0 });
      const source = new ProcessSource(80, metrics, { root, system: SYSTEM, baseline: "zero" });
      source.poll(new Batch(), 1n); // 10 ticks reported
      source.reset(); // paused while the process used 5 ticks
      writeProcess(root, { pid: 80, utime: 15, stime: 0 });
      const b = new Batch();
      source.poll(b, 2n); // new baseline: nothing
      assert.deepEqual(cpuOf(b, registry, "user"), []);
      source.exited({ userNs: 200_000_000, systemNs: 0, timestamp: 3n });
      const last = new Batch();
      source.poll(last, 4n);
      assert.deepEqual(cpuOf(last, registry, "user"), [50_000_000]); // 200 ms − 150 ms counted or skipped
      source.close();
    });
  });
});

Deno.test("procfs follows the exec program on events: the CPU time sums to the kernel's total", async () => {
  // As `exec` configures it: the program only (followProgramOnly drops Alumet's default group).
  const section = {
    name: "procfs",
    table: {
      kernel: { enabled: false },
      memory: { enabled: false },
      network: { enabled: false },
      processes: { events: { poll_interval: "100ms", flush_interval: "200ms" } },
    },
  };
  assert.ok(followProgramOnly([section]));
  await using h = await testPlugin(procfsPlugin, section.table);
  assert.equal(h.sources.size, 0, "no group source without groups");
  assert.equal(h.tasks.size, 0, "no watcher without groups");

  const before = getrusage(RUSAGE_CHILDREN);
  const child = new Deno.Command("sh", {
    args: ["-c", "i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done"],
    stdout: "null",
  }).spawn();
  await h.events.publish("startConsumerMeasurement", [Consumer.process(child.pid), Consumer.cgroup("/x")]);
  const name = `pid-${child.pid}`;
  const entry = h.sources.get(name);
  assert.ok(entry !== undefined, `no source ${name}: ${[...h.sources.keys()]}`);
  assert.deepEqual(entry.trigger, { pollInterval: 100, flushInterval: 200 });
  const followed = (h.plugin as ProcfsPlugin).followed.get(child.pid);
  assert.equal(followed?.handle?.fullName, `source/procfs/${name}`, "a source of procfs, kept by its handle");

  const batches: Batch[] = [];
  const poll = async () => {
    const b = new Batch();
    b.timestamp = now();
    await entry.source.poll(b, b.timestamp);
    batches.push(b);
  };
  let running = true;
  child.status.then(() => (running = false));
  while (running) {
    await poll();
    await new Promise((r) => setTimeout(r, 50));
  }
  const status = await child.status;
  assert.equal(status.code, 0);
  const after = getrusage(RUSAGE_CHILDREN);
  const userNs = Math.round(after.userUs - before.userUs) * 1000;
  const systemNs = Math.round(after.systemUs - before.systemUs) * 1000;
  await h.events.publish("processExit", {
    pid: child.pid,
    userNs,
    systemNs,
    maxRssBytes: after.maxRssKiB * 1024,
    exitCode: 0,
    timestamp: now(),
  });
  await poll(); // what exec's triggerNow does: the remainder
  await h.events.publish("endConsumerMeasurement", [Consumer.process(child.pid)]);
  assert.ok(!h.sources.has(name), `${name} is not stopped through its handle`);

  const points = batches.flatMap((b) => pointsOf(b, h.metrics));
  const sum = (kind: string) =>
    sumOf(points, (p) => p.metric === "cpu_time_delta" && p.attributes.kind === kind);
  assert.ok(userNs + systemNs > 0, "the child used no CPU time");
  assert.equal(sum("user"), userNs, "user time: the sum of cpu_time_delta is the kernel's total");
  assert.equal(sum("system"), systemNs, "system time: the sum of cpu_time_delta is the kernel's total");
  assert.ok(points.every((p) => p.consumer[0] === "process" && p.consumer[1] === String(child.pid)));
  assert.ok(
    points.some((p) => p.metric === "memory_usage" && p.attributes.kind === "resident" && p.value > 0),
  );
  assert.equal((h.plugin as ProcfsPlugin).followed.size, 0);
  assert.throws(() => entry.source.poll(new Batch(), now()), NormalStop);
});

Deno.test("procfs measures a process that was running before it started from its current CPU time", async () => {
  // `watch PID`: the process predates the plugin, so its past CPU time is not reported as one delta.
  const child = new Deno.Command("sh", {
    args: ["-c", "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; sleep 30"],
    stdout: "null",
  }).spawn();
  try {
    let info: ProcessInfo | undefined;
    // Wait until the loop has used some CPU and ended (the shell sleeps, state S): on a busy machine the loop
    // may take seconds, and CPU it still used after the baseline would be a (right) non-zero delta.
    for (let i = 0; i < 3000; i++) {
      await new Promise((r) => setTimeout(r, 20));
      info = readProcessInfo("/proc", child.pid);
      const stat = Deno.readTextFileSync(`/proc/${child.pid}/stat`);
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[11]) > 0 && fields[0] === "S") break;
    }
    assert.ok(info !== undefined);
    await new Promise((r) => setTimeout(r, 30)); // let the uptime clock pass the start time
    await using h = await testPlugin(procfsPlugin, {
      kernel: { enabled: false },
      memory: { enabled: false },
      network: { enabled: false },
    });
    await h.events.publish("startConsumerMeasurement", [Consumer.process(child.pid)]);
    // The source polled once when it was added: that first poll was the baseline, so the next one reports
    // only what the process used since (nothing: it sleeps), not its past.
    const source = h.sources.get(`pid-${child.pid}`)!.source;
    const b = new Batch();
    await source.poll(b, now());
    assert.deepEqual(cpuOf(b, h.metrics, "user"), [0], "the first poll is a baseline");
    assert.ok(pointsOf(b, h.metrics).some((p) => p.metric === "memory_usage"));
    await h.events.publish("endConsumerMeasurement", [Consumer.process(child.pid)]);
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
});

Deno.test("ProcessWatcher matches new processes against the groups, once each", async () => {
  await withTempRoot(async (root) => {
    writeProcess(root, { pid: 100, ppid: 1, comm: "nginx" });
    writeProcess(root, { pid: 101, ppid: 100, comm: "worker" });
    writeProcess(root, { pid: 102, ppid: 1, comm: "bash" });
    writeProcess(root, { pid: 103, ppid: 1, comm: "x" });
    Deno.symlinkSync("/usr/sbin/nginx", `${root}/100/exe`);
    Deno.symlinkSync("/usr/bin/bash", `${root}/102/exe`);
    Deno.symlinkSync("/opt/nginx-helper", `${root}/103/exe`); // the path matches, not the comm
    Deno.mkdirSync(`${root}/sys`); // not a pid
    const settings = { pollInterval: 1000, flushInterval: 2000, memoryMode: "quick" as const };
    const groups: WatchGroup[] = [{ exeRegex: /nginx/, ...settings }, { ppid: 100, ...settings }];
    const seen: [number, number][] = [];
    let accept = true;
    const watcher = new ProcessWatcher({
      root,
      groups,
      onMatch: (info, group) => {
        seen.push([info.pid, groups.indexOf(group)]);
        return accept;
      },
    });
    await watcher.scan();
    assert.deepEqual(seen.sort(), [[100, 0], [101, 1], [103, 0]]);
    seen.length = 0;
    await watcher.scan();
    assert.deepEqual(seen, [], "each process is matched once");

    // A new process without a readable exe: its comm is matched.
    writeProcess(root, { pid: 104, ppid: 1, comm: "nginx: master" });
    accept = false; // the plugin could not follow it: asked again at the next scan
    await watcher.scan();
    assert.deepEqual(seen, [[104, 0]]);
    accept = true;
    await watcher.scan();
    assert.deepEqual(seen, [[104, 0], [104, 0]]);
    seen.length = 0;

    // A pid that disappears is forgotten, so a process that reuses it is matched again.
    Deno.removeSync(`${root}/101`, { recursive: true });
    await watcher.scan();
    writeProcess(root, { pid: 101, ppid: 100, comm: "worker", start: 5000 });
    await watcher.scan();
    assert.deepEqual(seen, [[101, 1]]);
  });
});

Deno.test("procfs watches the configured groups with a task and one source per group", async () => {
  await using h = await testPlugin(procfsPlugin, {
    kernel: { enabled: false },
    memory: { enabled: false },
    network: { enabled: false },
    processes: { refresh_interval: "1s", groups: [{ ppid: Deno.pid, poll_interval: "250ms" }] },
  });
  const watcher = h.tasks.get("process-watcher");
  assert.ok(watcher !== undefined, "no process-watcher task");
  assert.deepEqual(watcher.options, { interval: 1000 });
  assert.ok(!h.sources.has("process-watcher"), "the watcher is a task, not a source");
  const group = h.sources.get("group-0");
  assert.ok(group !== undefined, `no group source: ${[...h.sources.keys()]}`);
  assert.deepEqual(group.trigger, { pollInterval: 250, flushInterval: 4000 });
  const child = new Deno.Command("sleep", { args: ["30"] }).spawn();
  try {
    await h.runTask("process-watcher");
    assert.ok((group.source as ProcessGroupSource).pids.includes(child.pid), "the child is not in its group");
    const b = new Batch();
    await group.source.poll(b, now());
    // Started after the plugin: measured from zero, so the first poll already has its CPU time.
    assert.ok(cpuOf(b, h.metrics, "user").length >= 1);
    // The exec/watch event for a process the watcher follows: its tree is followed by a source of its own,
    // and the group lets it go (one series per consumer, not two with different meanings).
    await h.events.publish("startConsumerMeasurement", [Consumer.process(child.pid)]);
    assert.equal([...h.sources.keys()].filter((k) => k.startsWith(`pid-${child.pid}`)).length, 1);
    assert.ok(!(group.source as ProcessGroupSource).pids.includes(child.pid), "still in its group");
    await h.events.publish("endConsumerMeasurement", [Consumer.process(child.pid)]);
    // Not `followed.size === 0`: another child of this test process (an earlier test's, not reaped yet on a
    // loaded machine) may match the group too.
    assert.ok(!(h.plugin as ProcfsPlugin).followed.has(child.pid), "the ended program is still followed");
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await child.status;
  }
});

Deno.test("the default group under a low file limit: one warning per cause, not one per process", async () => {
  const script = new URL("./testdata/scripts/watch_all.ts", import.meta.url).pathname;
  const run = (limit: number, env: Record<string, string> = {}) =>
    new Deno.Command("sh", {
      args: ["-c", `ulimit -n ${limit} && exec "${Deno.execPath()}" run --quiet -A "${script}"`],
      env: { ALUMET_LOG: "warn", NO_COLOR: "1", ...env },
    }).output();
  // The limit is set 12 above what the script holds before it scans (measured, as Deno's own use varies with
  // its cache and the machine): room to follow a few processes, not the 30 the script starts.
  const calibration = await run(1024, { WATCH_ALL_COUNT_FDS: "1" });
  const base = Number(/fds (\d+)/.exec(new TextDecoder().decode(calibration.stdout))?.[1]);
  assert.ok(base > 0, new TextDecoder().decode(calibration.stderr));
  // Several limits a little above that: whether the descriptors run out while a process is being opened (a
  // warning) or while /proc is listed (the scan fails, which the agent's task runner logs once) depends on the
  // exact count. Either says what to do, and never once per process.
  let warned = 0;
  for (const extra of [5, 7, 9, 12]) {
    const out = await run(base + extra);
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    // The script's 30 children alone need 60 descriptors: some processes could not be opened.
    const followed = Number(/followed (-?\d+)/.exec(stdout)?.[1]);
    assert.ok(followed >= 0 && followed < 30, stdout);
    const warnings = stderr.split("\n").filter((l) => l.includes("Cannot measure process"));
    const failedScans = stdout.split("\n").filter((l) => l.startsWith("scan failed"));
    assert.ok(warnings.length <= 1, `one warning per cause, not one per process:\n${stderr}`);
    assert.ok(warnings.length + failedScans.length >= 1, `the shortage is reported:\n${stdout}\n${stderr}`);
    for (const line of warnings) assert.match(line, /ulimit -n/);
    for (const line of failedScans) assert.match(line, /too many open files.*ulimit -n/, stdout);
    warned += warnings.length;
  }
  assert.ok(warned > 0, "at some limit, a process could not be opened: its one warning was seen");
});

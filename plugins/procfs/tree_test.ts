import assert from "node:assert/strict";
import { Batch } from "../../src/model/batch.ts";
import { MetricRegistry } from "../../src/model/metrics.ts";
import { now } from "../../src/model/timestamp.ts";
import { pointsOf } from "../../src/testing/fixtures.ts";
import { createProcessMetrics, ProcessTreeSource, type SystemInfo } from "./mod.ts";

const SYSTEM: SystemInfo = { userHz: 100, pageSize: 4096, nCpus: 2 };

/** Writes a fake `<root>/<pid>` with a stat line (`threads` in field 20) and, per thread, a `children` file. */
function writeProcess(
  root: string,
  o: { pid: number; ppid: number; utime: number; children?: Record<number, number[]> },
): void {
  const fields = ["S", o.ppid, o.pid, o.pid, 0, -1, 4194560, 100, 0, 0, 0, o.utime, 0, 0, 0, 20, 0];
  const tasks = o.children ?? { [o.pid]: [] };
  const rest = [Object.keys(tasks).length, 0, 1000, 10_000_000, 100, ...Array(26).fill(0)];
  Deno.mkdirSync(`${root}/${o.pid}`, { recursive: true });
  Deno.writeTextFileSync(`${root}/${o.pid}/stat`, `${o.pid} (prog) ${[...fields, ...rest].join(" ")}\n`);
  Deno.writeTextFileSync(`${root}/${o.pid}/statm`, "2000 300 100 10 0 500 0\n");
  for (const [tid, children] of Object.entries(tasks)) {
    Deno.mkdirSync(`${root}/${o.pid}/task/${tid}`, { recursive: true });
    Deno.writeTextFileSync(`${root}/${o.pid}/task/${tid}/children`, children.map((c) => `${c} `).join(""));
  }
}

function userTicksOf(b: Batch, registry: MetricRegistry): number {
  return pointsOf(b, registry)
    .filter((p) => p.metric === "cpu_time_delta" && p.attributes.kind === "user")
    .reduce((sum, p) => sum + p.value, 0) / 10_000_000;
}

Deno.test("ProcessTreeSource finds the tree from the kernel's children lists, every thread's", async () => {
  const root = await Deno.makeTempDir({ prefix: "procfs_tree_" });
  try {
    const registry = new MetricRegistry();
    const metrics = createProcessMetrics((spec) => registry.register("procfs", spec));
    // 90 → 91 (two threads: its child 94 was started by thread 95) and 92; 93 names 90 as its parent but
    // is in no children list (a scan of the root would take it): the children lists are what is read.
    writeProcess(root, { pid: 90, ppid: 1, utime: 1, children: { 90: [91, 92] } });
    writeProcess(root, { pid: 91, ppid: 90, utime: 2, children: { 91: [], 95: [94] } });
    writeProcess(root, { pid: 92, ppid: 90, utime: 4 });
    writeProcess(root, { pid: 93, ppid: 90, utime: 100 });
    writeProcess(root, { pid: 94, ppid: 91, utime: 8 });
    const joined: number[] = [];
    using source = new ProcessTreeSource(90, metrics, {
      root,
      system: SYSTEM,
      baseline: "zero",
      onJoin: (pid) => joined.push(pid),
    });
    const b = new Batch();
    source.poll(b, now() + 1_000_000_000n);
    assert.deepEqual(source.members, [90, 91, 92, 94]);
    assert.deepEqual(joined, [91, 92, 94]);
    assert.equal(userTicksOf(b, registry), 1 + 2 + 4 + 8, "every member read in the poll that found it");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("ProcessTreeSource follows a real process tree, and a stopped program alone", async () => {
  const registry = new MetricRegistry();
  const metrics = createProcessMetrics((spec) => registry.register("procfs", spec));
  // Stopped before it starts anything: the tree is the program alone.
  const child = new Deno.Command("sh", {
    args: ["-c", "kill -STOP $$; sleep 30 & sleep 30 & wait"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  let members: number[] = [];
  try {
    let state = "";
    for (let i = 0; i < 2000 && state !== "T"; i++) {
      await new Promise((r) => setTimeout(r, 5));
      const stat = Deno.readTextFileSync(`/proc/${child.pid}/stat`);
      state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0]!;
    }
    assert.equal(state, "T", "the shell never stopped");
    using source = new ProcessTreeSource(child.pid, metrics, { system: SYSTEM });
    source.poll(new Batch(), now());
    assert.deepEqual(source.members, [child.pid]);
    Deno.kill(child.pid, "SIGCONT");
    for (let i = 0; i < 2000 && members.length < 3; i++) {
      await new Promise((r) => setTimeout(r, 5));
      source.poll(new Batch(), now());
      members = source.members;
    }
    assert.equal(members.length, 3, `the two sleeps never joined: ${members}`);
    for (const pid of members.slice(1)) {
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      assert.equal(Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]), child.pid);
    }
  } finally {
    // The sleeps first (once the shell is gone they would be init's), then the shell.
    for (const pid of [...members.slice(1), child.pid]) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    await child.status;
  }
});

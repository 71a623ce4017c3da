/**
 * `alumet exec` measures the whole program: its process tree while it runs, and the kernel's accounting of
 * it at the end, as `/usr/bin/time` reports it.
 */
import assert from "node:assert/strict";
import { needs, testWith } from "../src/testing/needs.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const TESTDATA = `${ROOT}/tests/testdata/exec`;

interface Row {
  metric: string;
  value: number;
  consumerKind: string;
  consumerId: string;
  kind: string;
}

async function alumet(dir: string, args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "-A", `${ROOT}/src/agent/main.ts`, ...args],
    cwd: dir,
    env: { ALUMET_LOG: "warn", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

async function csvRows(path: string): Promise<Row[]> {
  const lines = (await Deno.readTextFile(path)).trim().split("\n").map((l) => l.split(";"));
  const h = lines[0]!;
  const col = (name: string) => h.indexOf(name);
  return lines.slice(1).map((r) => ({
    metric: r[0]!,
    value: Number(r[col("value")]),
    consumerKind: r[col("consumer_kind")]!,
    consumerId: r[col("consumer_id")]!,
    kind: col("kind") >= 0 ? r[col("kind")]! : /kind=(\w+)/.exec(r.at(-1)!)?.[1] ?? "",
  }));
}

/** `/usr/bin/time -v`'s figures. */
function parseTimeV(text: string) {
  const get = (label: string) => Number(new RegExp(`${label}: ([\\d.]+)`).exec(text)?.[1]);
  return {
    userS: get("User time \\(seconds\\)"),
    systemS: get("System time \\(seconds\\)"),
    maxRssKiB: get("Maximum resident set size \\(kbytes\\)"),
  };
}

async function tempDir<T>(f: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "alumet-exec-tree-" });
  try {
    return await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

testWith(
  [needs.command("time"), needs.command("make")],
  "exec of a build that works in children measures them while they run, and agrees with /usr/bin/time -v",
  () =>
    tempDir(async (dir) => {
      const r = await alumet(dir, [
        "--plugins",
        "procfs,csv",
        "--config-override",
        "plugins.procfs.processes.events.poll_interval='200ms'",
        "exec",
        "--",
        "/usr/bin/time",
        "-v",
        "-o",
        "time.txt",
        "make",
        "-s",
        "-j2",
        "-f",
        `${TESTDATA}/Makefile`,
      ]);
      assert.equal(r.code, 0, r.stderr);
      const time = parseTimeV(await Deno.readTextFile(`${dir}/time.txt`));
      const timeMs = (time.userS + time.systemS) * 1000;
      assert.ok(timeMs > 300, `the build was too short to compare (${timeMs} ms)`);
      const pidLine = /\(pid (\d+)\)/.exec(r.stderr);
      assert.ok(pidLine, r.stderr);
      const rows = (await csvRows(`${dir}/alumet-output.csv`)).filter((x) =>
        x.consumerKind === "process" && x.consumerId === pidLine[1]
      );
      const cpu = rows.filter((x) =>
        x.metric === "cpu_time_delta_ns" && (x.kind === "user" || x.kind === "system")
      );
      const csvMs = cpu.reduce((a, x) => a + x.value, 0) / 1e6;
      // /usr/bin/time rounds each figure to 10 ms; we also count /usr/bin/time itself (a few ms).
      assert.ok(
        csvMs >= timeMs - 25 && csvMs <= timeMs + 30,
        `csv total ${csvMs.toFixed(1)} ms vs /usr/bin/time ${timeMs.toFixed(0)} ms`,
      );
      // The work was seen while it ran, not all at the exit: most of the CPU time came from live polls (the
      // last row of each kind is the exit remainder).
      const user = cpu.filter((x) => x.kind === "user");
      const live = user.slice(0, -1).reduce((a, x) => a + x.value, 0) / 1e6;
      assert.ok(
        live > 0.5 * timeMs * (time.userS / (time.userS + time.systemS)),
        `only ${live} ms seen live`,
      );
      // Every cpu_percent row is a live poll's (the exit remainder has none), and the last one too is left out:
      // the share was seen while the build ran.
      const share = rows.filter((x) => x.metric === "cpu_percent_%" && x.kind === "total");
      assert.equal(share.length, user.length - 1, "the exit remainder has no cpu_percent");
      assert.ok(
        share.slice(0, -1).some((x) => x.value > 10),
        `no CPU share while the build ran: ${share.map((x) => x.value)}`,
      );
      // The tree's memory: the children's 40 MB buffers were seen while they ran.
      const resident = rows.filter((x) => x.metric === "memory_usage_B" && x.kind === "resident");
      assert.ok(
        resident.some((x) => x.value > 30e6),
        `max resident ${Math.max(...resident.map((x) => x.value))}`,
      );
      // The summary: CPU time and peak memory agree with /usr/bin/time.
      const summaryCpu = Number(/([\d.]+) s\s+CPU time/.exec(r.stderr)?.[1]) * 1000;
      assert.ok(
        Math.abs(summaryCpu - timeMs) <= 30,
        `summary ${summaryCpu} ms vs time ${timeMs} ms\n${r.stderr}`,
      );
      const peak = Number(/peak memory \(([\d,]+) KiB/.exec(r.stderr)?.[1]?.replaceAll(",", "")) * 1024;
      const timePeak = time.maxRssKiB * 1024;
      assert.ok(
        peak >= timePeak * 0.9 && peak <= timePeak * 1.15 + 2e6,
        `summary peak ${peak} vs /usr/bin/time ${timePeak}\n${r.stderr}`,
      );
      assert.match(r.stderr, /CPU share of the machine/);
      assert.match(r.stderr, /elapsed/);
    }),
);

Deno.test("exec -- sleep 1 gives the same series every time, memory included", async () => {
  await tempDir(async (dir) => {
    const sets: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await alumet(dir, ["--plugins", "procfs,csv", "exec", "--", "sleep", "1"]);
      assert.equal(r.code, 0, r.stderr);
      const pid = /\(pid (\d+)\)/.exec(r.stderr)?.[1];
      const rows = (await csvRows(`${dir}/alumet-output.csv`)).filter((x) =>
        x.consumerKind === "process" && x.consumerId === pid
      );
      sets.push([...new Set(rows.map((x) => `${x.metric}/${x.kind}`))].sort().join(","));
      // One cpu_percent per live poll; the exit remainder (the last cpu_time_delta) has none: over the few ms
      // since the last poll, /proc's truncated ticks would read as a spike of share.
      const count = (metric: string) => rows.filter((x) => x.metric === metric && x.kind === "user").length;
      assert.equal(count("cpu_percent_%"), count("cpu_time_delta_ns") - 1, `run ${i}`);
    }
    assert.ok(sets[0]!.includes("memory_usage_B/resident"), sets[0]);
    assert.ok(sets[0]!.includes("cpu_percent_%/total"), sets[0]);
    assert.deepEqual(sets, Array(5).fill(sets[0]));
  });
});

testWith([needs.command("gcc")], "watch of a zombie ends at once, with the summary exec prints", async () => {
  await tempDir(async (dir) => {
    // A parent that never reaps its child: the child stays a zombie (state Z) until the parent ends.
    await Deno.writeTextFile(
      `${dir}/z.c`,
      `#include <stdio.h>
#include <unistd.h>
int main(void) { pid_t c = fork(); if (c == 0) return 0; printf("%d\\n", c); fflush(stdout); sleep(60); return 0; }
`,
    );
    const cc = await new Deno.Command("gcc", { args: ["-o", `${dir}/z`, `${dir}/z.c`] }).output();
    assert.equal(cc.code, 0, new TextDecoder().decode(cc.stderr));
    const parent = new Deno.Command(`${dir}/z`, { stdout: "piped" }).spawn();
    try {
      const reader = parent.stdout.getReader();
      const { value } = await reader.read();
      reader.releaseLock();
      const zombie = Number(new TextDecoder().decode(value).trim());
      for (let i = 0; i < 100; i++) {
        if (/\) Z /.test(Deno.readTextFileSync(`/proc/${zombie}/stat`))) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const started = performance.now();
      const r = await alumet(dir, ["--plugins", "procfs,csv", "watch", String(zombie)], {
        ALUMET_LOG: "info",
      });
      const seconds = (performance.now() - started) / 1000;
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /has already exited/);
      assert.match(r.stderr, new RegExp(`Measured for pid ${zombie} by alumet:`));
      assert.match(r.stderr, /elapsed/);
      // Ends at once: long before the parent's 60 s (the agent's own start-up is most of this).
      assert.ok(seconds < 30, `watch took ${seconds} s`);
    } finally {
      try {
        parent.kill("SIGKILL");
      } catch {
        // already gone
      }
      await parent.status;
      await parent.stdout.cancel().catch(() => {});
    }
  });
});

Deno.test("exec passes the program's argv[0] as typed", async () => {
  await tempDir(async (dir) => {
    // Deno.Command would pass the resolved path (/usr/bin/cat): the kernel's argv of the program says.
    const r2 = await alumet(dir, ["--plugins", "csv", "exec", "--", "cat", "/proc/self/cmdline"]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(r2.stdout.split("\0")[0], "cat", JSON.stringify(r2.stdout));
  });
});

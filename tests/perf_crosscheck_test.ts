/**
 * The perf plugin against the real `perf` (linux-perf), the reference for counter values.
 */
import assert from "node:assert/strict";
import { needs, testWith } from "../src/testing/needs.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const WORKLOAD = ["sh", "-c", "i=0; while [ $i -lt 150000 ]; do i=$((i+1)); done"];

async function run(cmd: string, args: string[], cwd: string): Promise<{ code: number; out: string }> {
  const o = await new Deno.Command(cmd, {
    args,
    cwd,
    env: { ALUMET_LOG: "warn" },
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const d = new TextDecoder();
  return { code: o.code, out: d.decode(o.stdout) + d.decode(o.stderr) };
}

function alumetArgs(events: string[], program: string[]): string[] {
  return [
    "run",
    "--quiet",
    "-A",
    `${ROOT}/src/agent/main.ts`,
    "--plugins",
    "perf,csv",
    "--config-override",
    `plugins.perf.events=${JSON.stringify(events)}`,
    "exec",
    "--",
    ...program,
  ];
}

/** The last (cumulative) value of each perf metric for the process in the csv. */
function lastValues(csv: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of csv.trim().split("\n").slice(1)) {
    const c = line.split(";");
    if (c[5] !== "process" || !c[0]!.startsWith("perf_") || c[0]!.startsWith("perf_running")) continue;
    out.set(c[0]!, Number(c[2]));
  }
  return out;
}

/** `perf stat -x,` lines: value,unit,event,… */
function perfValues(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const f = line.split(",");
    if (f.length > 3 && f[0] !== "" && !Number.isNaN(Number(f[0]))) out.set(f[2]!, Number(f[0]));
  }
  return out;
}

testWith(
  [needs.root, needs.command("perf")],
  "alumet exec -- perf stat -e task-clock -- WORKLOAD counts at least what perf stat counts, and little more",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "alumet-perf-" });
    try {
      const r = await run(
        Deno.execPath(),
        alumetArgs(["task-clock"], [
          "perf",
          "stat",
          "-x,",
          "-o",
          "ps.txt",
          "-e",
          "task-clock",
          "--",
          ...WORKLOAD,
        ]),
        dir,
      );
      assert.equal(r.code, 0, r.out);
      const ours =
        lastValues(await Deno.readTextFile(`${dir}/alumet-output.csv`)).get("perf_task_clock_ns")! / 1e6;
      const theirs = perfValues(await Deno.readTextFile(`${dir}/ps.txt`)).get("task-clock")!;
      // perf stat's own CPU time around the workload (parsing, fork, waiting, printing): measured here with
      // `perf stat -e task-clock -- perf stat -e task-clock -- true` at 5–15 ms; allow 60 ms for a noisy VM.
      const margin = 60;
      assert.ok(ours >= theirs, `alumet counted ${ours.toFixed(2)} ms, less than perf stat's ${theirs} ms`);
      assert.ok(
        ours <= theirs + margin,
        `alumet counted ${ours.toFixed(2)} ms, perf stat ${theirs} ms (+${margin})`,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

testWith(
  [needs.root, needs.command("perf")],
  "alumet exec and perf stat agree on task-clock, page-faults and context-switches of the same workload",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "alumet-perf-" });
    try {
      const events = ["task-clock", "page-faults", "context-switches"];
      // Three runs each, medians: one run of a shell loop on a shared VM can be far off.
      const oursRuns: Map<string, number>[] = [];
      const theirRuns: Map<string, number>[] = [];
      for (let i = 0; i < 3; i++) {
        const r = await run(Deno.execPath(), alumetArgs(events, WORKLOAD), dir);
        assert.equal(r.code, 0, r.out);
        oursRuns.push(lastValues(await Deno.readTextFile(`${dir}/alumet-output.csv`)));
        const p = await run("perf", ["stat", "-x,", "-e", events.join(","), "--", ...WORKLOAD], dir);
        theirRuns.push(perfValues(p.out));
      }
      const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[1]!;
      const ours = new Map([...oursRuns[0]!.keys()].map((k) => [k, med(oursRuns.map((m) => m.get(k)!))]));
      const theirs = new Map([...theirRuns[0]!.keys()].map((k) => [k, med(theirRuns.map((m) => m.get(k)!))]));
      // Two runs of a CPU-bound shell loop: CPU time varies with the VM's noise (measured here within 20 %);
      // page faults are the same program's (±10 % + 10); context switches are few (a handful), ±20.
      const t0 = ours.get("perf_task_clock_ns")! / 1e6;
      const t1 = theirs.get("task-clock")!;
      assert.ok(Math.abs(t0 - t1) <= 0.35 * t1 + 10, `task-clock: alumet ${t0.toFixed(1)} ms, perf ${t1} ms`);
      const f0 = ours.get("perf_page_faults")!;
      const f1 = theirs.get("page-faults")!;
      assert.ok(Math.abs(f0 - f1) <= 0.1 * f1 + 10, `page-faults: alumet ${f0}, perf ${f1}`);
      const c0 = ours.get("perf_context_switches")!;
      const c1 = theirs.get("context-switches")!;
      assert.ok(Math.abs(c0 - c1) <= 20, `context-switches: alumet ${c0}, perf ${c1}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

testWith(
  [needs.root, needs.command("perf")],
  "msr/tsc/ counted system-wide by the perf plugin agrees with perf stat -a over a window of the same length",
  async () => {
    const { testPlugin } = await import("../src/testing/mod.ts");
    const { perfPlugin } = await import("../plugins/perf/mod.ts");
    await using h = await testPlugin(perfPlugin, { events: ["msr/tsc/"], system_wide: true });
    const sum = (b: import("../src/model/batch.ts").Batch) => {
      let s = 0;
      for (let i = 0; i < b.length; i++) {
        if (h.metrics.get(b.metricAt(i)).name === "perf_msr_tsc") s += Number(b.valueAt(i));
      }
      return s;
    };
    const t0 = performance.now();
    const a = sum(await h.poll("machine"));
    await new Promise((r) => setTimeout(r, 1000));
    const b = sum(await h.poll("machine"));
    const oursPerSec = (b - a) / ((performance.now() - t0) / 1000);
    const p = await run("perf", ["stat", "-a", "-x,", "-e", "msr/tsc/", "--", "sleep", "1"], "/tmp");
    const theirs = perfValues(p.out).get("msr/tsc/")!;
    // perf's window is `sleep 1` from fork to exit (1.00–1.01 s); ours is measured: compare rates, within 5 %.
    assert.ok(theirs > 0, p.out);
    assert.ok(
      Math.abs(oursPerSec - theirs) <= 0.05 * theirs,
      `alumet ${oursPerSec.toExponential(4)}/s, perf stat -a ${theirs.toExponential(4)} in 1 s`,
    );
  },
);

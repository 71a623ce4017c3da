/**
 * `alumet exec` with Alumet's packaged kind of procfs config (a group that follows every process, polled and
 * flushed every second, the kernel every second): the program's own source (processes.events, flushed every
 * 4 s) is waited for, and its children are counted once, so the program gets its CPU time × the watts per CPU
 * of the TDP estimate.
 */
import assert from "node:assert/strict";
import type { RunReport } from "../../src/agent/summary.ts";

const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");

const CONFIG = `[plugins.procfs.kernel]
enabled = true
poll_interval = "1s"

[plugins.procfs.processes]
enabled = true
refresh_interval = "1s"
strategy = "watcher"

[[plugins.procfs.processes.groups]]
exe_regex = ""
poll_interval = "1s"
flush_interval = "1s"
`;

async function exec(command: string[]): Promise<{ j: RunReport; stderr: string; wattsPerCpu: number }> {
  const dir = await Deno.makeTempDir({ prefix: "alumet-attribution-exec-" });
  try {
    await Deno.writeTextFile(`${dir}/alumet.toml`, CONFIG);
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "-A",
        `${ROOT}/src/agent/main.ts`,
        "--config",
        "alumet.toml",
        "exec",
        "--json",
        "r.json",
        "--",
        ...command,
      ],
      cwd: dir,
      env: { ALUMET_LOG: "warn", NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    const j = JSON.parse(await Deno.readTextFile(`${dir}/r.json`)) as RunReport;
    const w = stderr.match(/CPU time × ([\d.]+) W per busy CPU/);
    assert.ok(w !== null, stderr);
    return { j, stderr, wattsPerCpu: Number(w[1]) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * The program's joules are its CPU time (the kernel's rusage) × watts per CPU, within 5 % and 0.1 CPU-second (the
 * run's edges: CPU time after the last energy point is in no interval).
 */
function assertProgramEnergy(j: RunReport, wattsPerCpu: number): void {
  const p = j.program_energy!;
  assert.ok(p !== null && p.estimated, JSON.stringify(j.program_energy));
  const expected = j.cpu!.total_s * wattsPerCpu;
  assert.ok(
    Math.abs(p.joules - expected) <= 0.05 * expected + 0.1 * wattsPerCpu,
    `program ${p.joules} J, expected its CPU time ${j.cpu!.total_s} s × ${wattsPerCpu} W = ${expected} J`,
  );
  for (const x of p.sources) {
    const sum = x.joules + (x.unattributed_joules ?? 0) + (x.other_consumers_joules ?? 0);
    assert.ok(Math.abs(sum - x.machine_joules!) <= 0.01 * x.machine_joules!, JSON.stringify(x));
    assert.ok((x.unattributed_joules ?? 0) >= 0, JSON.stringify(x));
  }
}

const LOOP = "i=0; while [ $i -lt 2500000 ]; do i=$((i+1)); done";

Deno.test("exec with a group following every process at 1 s: the program's source, flushed every 4 s, is waited for", async () => {
  const { j, wattsPerCpu } = await exec(["sh", "-c", LOOP]);
  assertProgramEnergy(j, wattsPerCpu);
});

Deno.test("exec with a group following every process: the program's children are counted once, in the program", async () => {
  const { j, wattsPerCpu } = await exec(["sh", "-c", `(${LOOP}) & (${LOOP}) & ${LOOP}; wait`]);
  assertProgramEnergy(j, wattsPerCpu);
});

/**
 * Resident memory of an agent process (procfs + csv) following N sleeping processes spawned by the
 * benchmark, polled every second; against the same agent following none. The agent runs as `deno run`, on
 * its own, so its RSS is its own; it is read from /proc/<pid>/status after `settleMs`.
 */
const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
  return m ? Number(m[1]) : NaN;
}

async function agentRss(ppid: number | undefined, dir: string, settleMs: number): Promise<number> {
  const group = ppid === undefined
    ? "[]"
    : `[{ ppid = ${ppid}, poll_interval = "1s", flush_interval = "1s" }]`;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "-A",
      ...(Deno.env.get("BENCH_V8_FLAGS") ? [`--v8-flags=${Deno.env.get("BENCH_V8_FLAGS")}`] : []),
      `${ROOT}/src/agent/main.ts`,
      "--plugins",
      "procfs,csv",
      "--output-file",
      `${dir}/m.csv`,
      "--config-override",
      `plugins.procfs.processes.groups=${group}`,
      "--config-override",
      `plugins.procfs.processes.refresh_interval="1s"`,
      "run",
    ],
    env: { ALUMET_LOG: "warn" },
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  await new Promise((r) => setTimeout(r, settleMs));
  const rss = rssKiB(child.pid);
  child.kill("SIGTERM");
  await child.status;
  return rss;
}

/** Returns [RSS following `n` processes, RSS following none], MiB, and the rows written. */
export async function runMemory(
  n: number,
  settleMs = 8000,
): Promise<{ withMiB: number; withoutMiB: number; rows: number }> {
  const dir = await Deno.makeTempDir({ prefix: "alumet-mem-" });
  const sleepers: Deno.ChildProcess[] = [];
  try {
    for (let i = 0; i < n; i++) {
      sleepers.push(
        new Deno.Command("sleep", { args: ["600"], stdin: "null", stdout: "null", stderr: "null" }).spawn(),
      );
    }
    const withKiB = await agentRss(Deno.pid, dir, settleMs);
    const rows = (await Deno.readTextFile(`${dir}/m.csv`)).split("\n").length - 2;
    const withoutKiB = await agentRss(undefined, dir, settleMs);
    return { withMiB: withKiB / 1024, withoutMiB: withoutKiB / 1024, rows };
  } finally {
    for (const s of sleepers) {
      try {
        s.kill("SIGKILL");
      } catch { /* gone */ }
    }
    await Promise.all(sleepers.map((s) => s.status));
    await Deno.remove(dir, { recursive: true });
  }
}

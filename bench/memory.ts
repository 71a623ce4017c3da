/**
 * Resident memory of an agent process (procfs + csv) following N sleeping processes spawned by the
 * benchmark, polled every second; against the same agent following none. The agent runs exactly as the
 * `alumet` task runs it (same `deno run` flags, read from deno.json), on its own, so its RSS is its own; it is
 * read from /proc/<pid>/status after `settleMs`.
 */
const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** The `deno run` arguments of the `alumet` task, with the entry point made absolute. */
export function alumetTaskArgs(): string[] {
  const task = JSON.parse(Deno.readTextFileSync(`${ROOT}/deno.json`)).tasks.alumet as string;
  const words = task.split(/\s+/).filter((w) => w !== "");
  if (words[0] !== "deno") throw new Error(`Unexpected alumet task: ${task}`);
  return words.slice(1).map((w) => (w.endsWith(".ts") && !w.startsWith("/") ? `${ROOT}/${w}` : w));
}

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
      ...alumetTaskArgs(),
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

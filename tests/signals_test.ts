/**
 * End-to-end tests of how `deno task alumet run` stops: the signals go to its whole process group, as a
 * terminal's Ctrl-C, a closed terminal (SIGHUP) or a service manager (`timeout`, systemd's default
 * `KillMode=control-group`) send them, so the agent receives each one twice (once from the kernel, once
 * forwarded by `deno task`). Every point the probe plugin (tests/testdata/signals/probe.ts) measured must be in
 * the csv: its sources count what they pushed, and the test compares those counts with the csv's rows.
 */
import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const PROBE = `${ROOT}/tests/testdata/signals/probe.ts`;
const SOURCES = ["main", "hot"] as const;

/** Waits until `ready()` resolves true, up to 60 s however loaded the machine is. */
async function until(ready: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = performance.now() + 60_000;
  while (!(await ready())) {
    if (performance.now() > deadline) throw new Error(`after 60 s: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** A started `deno task alumet run` in a process group of its own, with the probe and csv plugins. */
class AgentRun {
  readonly dir: string;
  readonly child: Deno.ChildProcess;
  #stderr = "";
  #stderrDone: Promise<void>;
  #stderrReader: ReadableStreamDefaultReader<string>;

  private constructor(dir: string, child: Deno.ChildProcess) {
    this.dir = dir;
    this.child = child;
    const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    this.#stderrReader = reader;
    this.#stderrDone = (async () => {
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          this.#stderr += value;
        }
      } catch {
        // cancelled: stderr closed on purpose
      }
    })();
    void child.stdout.cancel();
  }

  /** Starts the agent; `probe` adds keys to the probe's config section. */
  static async start(probe: Record<string, number> = {}): Promise<AgentRun> {
    const dir = await Deno.makeTempDir({ prefix: "alumet-signals-" });
    const extra = Object.entries(probe).map(([k, v]) => `${k} = ${v}\n`).join("");
    await Deno.writeTextFile(
      `${dir}/alumet-config.toml`,
      `[plugins.probe]\nmodule = "${PROBE}"\ncount_dir = "${dir}"\n${extra}\n` +
        `[plugins.csv]\noutput_path = "${dir}/out.csv"\n`,
    );
    // `setsid` makes the task the leader of a new session and process group (pgid = its pid), with no
    // controlling terminal: the group receives what a terminal's foreground group would.
    const child = new Deno.Command("setsid", {
      args: [Deno.execPath(), "task", "--quiet", "alumet", "--config", `${dir}/alumet-config.toml`, "run"],
      cwd: ROOT,
      env: { ALUMET_LOG: "info", NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    return new AgentRun(dir, child);
  }

  /** Waits until both probe sources have polled a few times. */
  async ready(): Promise<void> {
    await until(
      async () => (await exists(`${this.dir}/main.ready`)) && (await exists(`${this.dir}/hot.ready`)),
      `the probe did not start; stderr:\n${this.#stderr}`,
    );
  }

  /** Sends `sig` to the whole process group. */
  signalGroup(sig: Deno.Signal): void {
    Deno.kill(-this.child.pid, sig);
  }

  /** Stops reading stderr and closes its pipe: writes to it now fail (EPIPE), as after a closed terminal. */
  async closeStderr(): Promise<void> {
    await this.#stderrReader.cancel();
  }

  /** Waits until `text` is on stderr. */
  async stderrHas(text: string): Promise<void> {
    await until(() => this.#stderr.includes(text), `"${text}" not on stderr:\n${this.#stderr}`);
  }

  /** The exit code, waiting up to 60 s; then the group is killed and the wait fails. */
  async exitCode(): Promise<number> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        try {
          Deno.kill(-this.child.pid, "SIGKILL");
        } catch { /* gone */ }
        reject(new Error(`the agent did not stop within 60 s; stderr:\n${this.#stderr}`));
      }, 60_000);
    });
    try {
      const status = await Promise.race([this.child.status, timeout]);
      return status.code;
    } finally {
      clearTimeout(timer);
      await this.#stderrDone;
    }
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** What each source counted, and the values of its csv rows. */
  async points(): Promise<Record<(typeof SOURCES)[number], { counted: number; written: number[] }>> {
    const csv = (await Deno.readTextFile(`${this.dir}/out.csv`)).split("\n");
    const header = csv[0]!.split(";");
    const [metric, value, source] = ["metric", "value", "source"].map((c) => header.indexOf(c));
    const written = { main: [] as number[], hot: [] as number[] };
    for (const line of csv.slice(1)) {
      const cells = line.split(";");
      if (cells[metric!] !== "probe_points") continue;
      written[cells[source!] as "main" | "hot"].push(Number(cells[value!]));
    }
    const counted = async (s: string) => Number(await Deno.readTextFile(`${this.dir}/${s}.count`));
    return {
      main: { counted: await counted("main"), written: written.main },
      hot: { counted: await counted("hot"), written: written.hot },
    };
  }

  async remove(): Promise<void> {
    await Deno.remove(this.dir, { recursive: true });
  }
}

/** Runs `jobs` with at most `limit` at a time; the results in order. */
async function pool<T>(jobs: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const results: T[] = new Array(jobs.length);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await jobs[i]!();
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
  return results;
}

/** One run: start, signal the group, check the exit code and that the csv holds every point counted. */
async function stopWith(sig: Deno.Signal, options: { closeStderr?: boolean } = {}): Promise<string[]> {
  const run = await AgentRun.start();
  const problems: string[] = [];
  const what = `${sig}${options.closeStderr ? " (stderr closed)" : ""}`;
  try {
    await run.ready();
    if (options.closeStderr) await run.closeStderr();
    run.signalGroup(sig);
    const code = await run.exitCode();
    if (code !== 0) problems.push(`${what}: exit code ${code}`);
    const points = await run.points();
    for (const s of SOURCES) {
      const { counted, written } = points[s];
      const expected = Array.from({ length: counted }, (_, i) => i + 1);
      if (written.length !== counted || written.some((v, i) => v !== expected[i])) {
        problems.push(`${what}: source ${s} measured ${counted} points, the csv has ${written.length}`);
      }
    }
    if (problems.length > 0 && !options.closeStderr) problems.push(`stderr:\n${run.stderr}`);
    return problems;
  } finally {
    await run.remove();
  }
}

Deno.test("alumet run drains every point on SIGINT, SIGTERM and SIGHUP sent to the process group of deno task (20 runs)", async () => {
  const runs: (() => Promise<string[]>)[] = [];
  for (let i = 0; i < 7; i++) runs.push(() => stopWith("SIGINT"), () => stopWith("SIGTERM"));
  for (let i = 0; i < 3; i++) {
    runs.push(() => stopWith("SIGHUP"), () => stopWith("SIGHUP", { closeStderr: true }));
  }
  assert.equal(runs.length, 20);
  const problems = (await pool(runs, 4)).flat();
  assert.deepEqual(problems, [], problems.join("\n"));
});

Deno.test("alumet run exits 130 at once on a second, deliberate Ctrl-C during the drain", async () => {
  // The probe's main source takes 10 minutes to close: the drain is still going when the second Ctrl-C comes.
  const run = await AgentRun.start({ close_delay_ms: 600_000 });
  try {
    await run.ready();
    run.signalGroup("SIGINT");
    await run.stderrHas("Stopping (SIGINT)");
    // The first Ctrl-C and its copy from deno task count once; one sent after the 1 s window is deliberate.
    await new Promise((r) => setTimeout(r, 1500));
    run.signalGroup("SIGINT");
    assert.equal(await run.exitCode(), 130, run.stderr);
    assert.match(run.stderr, /WARN +alumet: Second Ctrl-C \(SIGINT\): exiting at once/);
    assert.equal(run.stderr.match(/Second/g)?.length, 1, run.stderr);
  } finally {
    await run.remove();
  }
});

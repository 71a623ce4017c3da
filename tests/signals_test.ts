/**
 * End-to-end tests of how `deno task alumet run` stops: the signals go to its whole process group, as a
 * terminal's Ctrl-C, a closed terminal (SIGHUP) or a service manager (`timeout`, systemd's default
 * `KillMode=control-group`) send them, so the agent receives each one twice (once from the kernel, once
 * forwarded by `deno task`). Every point the probe plugin (tests/testdata/signals/probe.ts) measured must be in
 * the csv: its sources count what they pushed, and the test compares those counts with the csv's rows.
 */
import assert from "node:assert/strict";
import { alumetRunLine } from "./testdata/exec/cli.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** The `alumet` task's command line from deno.json, with this Deno: `deno run <flags> src/agent/main.ts`. */
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

  /**
   * Starts the agent; `probe` adds keys to the probe's config section, `args` options before `run`. With
   * `direct`, the agent is run as the `alumet` task runs it (its `deno run` line from deno.json) but without
   * `deno task` in between: the exit code is the agent's own, not the task runner's (`deno task` exits 143 when
   * a SIGTERM sent to the group reaches it after its child has already ended, which an agent with nothing to
   * drain can do on a loaded machine).
   */
  static async start(
    options: { probe?: Record<string, number>; args?: string[]; direct?: boolean } = {},
  ): Promise<AgentRun> {
    const { probe = {}, args = [], direct = false } = options;
    const dir = await Deno.makeTempDir({ prefix: "alumet-signals-" });
    const extra = Object.entries(probe).map(([k, v]) => `${k} = ${v}\n`).join("");
    await Deno.writeTextFile(
      `${dir}/alumet-config.toml`,
      `[plugins.probe]\nmodule = "${PROBE}"\ncount_dir = "${dir}"\n${extra}\n` +
        `[plugins.csv]\noutput_path = "${dir}/out.csv"\n`,
    );
    // `setsid` makes the task the leader of a new session and process group (pgid = its pid), with no
    // controlling terminal: the group receives what a terminal's foreground group would.
    const runner = direct ? alumetRunLine() : [Deno.execPath(), "task", "--quiet", "alumet"];
    const child = new Deno.Command("setsid", {
      args: [
        ...runner,
        "--config",
        `${dir}/alumet-config.toml`,
        ...args,
        "run",
      ],
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
    try {
      await until(
        async () => (await exists(`${this.dir}/main.ready`)) && (await exists(`${this.dir}/hot.ready`)),
        "the probe did not start",
      );
    } catch (e) {
      throw new Error(`${(e as Error).message}; stderr:\n${this.#stderr}\n${await this.processes()}`);
    }
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
    try {
      await until(() => this.#stderr.includes(text), `"${text}" not on stderr`);
    } catch (e) {
      throw new Error(`${(e as Error).message}:\n${this.#stderr}\n${await this.processes()}`);
    }
  }

  /** The processes of the group, for a failure's message. */
  async processes(): Promise<string> {
    const ps = await new Deno.Command("ps", {
      args: ["-o", "pid,stat,wchan:20,args", "-g", String(this.child.pid)],
    })
      .output();
    return new TextDecoder().decode(ps.stdout);
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

  /** Kills what is left of the group (a failed test) and removes the files. */
  async remove(): Promise<void> {
    try {
      Deno.kill(-this.child.pid, "SIGKILL");
    } catch {
      // the group is gone: the usual case
    }
    await this.child.status;
    await Deno.remove(this.dir, { recursive: true });
  }
}

const upTo = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

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
      const expected = upTo(counted);
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
  const run = await AgentRun.start({ probe: { close_delay_ms: 600_000 } });
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

Deno.test("alumet run exits 3 and says how many points were lost when an output lost some", async () => {
  const run = await AgentRun.start({ probe: { broken_output: 1 } });
  try {
    await run.ready();
    run.signalGroup("SIGTERM");
    assert.equal(await run.exitCode(), 3, run.stderr);
    const points = await run.points(); // the csv still has every point
    for (const s of SOURCES) assert.equal(points[s].written.length, points[s].counted, s);
    const lost = /ERROR +alumet: output\/probe\/broken lost (\d+) points?/.exec(run.stderr);
    assert.ok(lost, run.stderr);
    assert.ok(Number(lost[1]) > 0, lost[0]);
  } finally {
    await run.remove();
  }
});

Deno.test("alumet run with no plugin says so, and stops with 0 on SIGTERM", async () => {
  const run = await AgentRun.start({ args: ["--plugins", ""], direct: true });
  try {
    await run.stderrHas("press Ctrl-C to stop");
    run.signalGroup("SIGTERM");
    assert.equal(await run.exitCode(), 0, run.stderr);
    assert.match(run.stderr, /INFO +alumet: Running with no plugin; press Ctrl-C to stop/);
  } finally {
    await run.remove();
  }
});

Deno.test("alumet run whose hot source throws outside its poll reports it in one line, drains everything and exits 0", async () => {
  const run = await AgentRun.start({ probe: { stray_error_at: 3 } });
  try {
    await run.ready();
    run.signalGroup("SIGTERM");
    assert.equal(await run.exitCode(), 0, run.stderr);
    const points = await run.points();
    for (const s of SOURCES) assert.deepEqual(points[s].written, upTo(points[s].counted), s);
    const errors = run.stderr.split("\n").filter((l) => / ERROR /.test(l));
    assert.equal(errors.length, 1, run.stderr);
    assert.match(errors[0]!, /source\/probe\/hot: .*the probe's stray error after poll 3/);
  } finally {
    await run.remove();
  }
});

Deno.test("alumet run whose hot source's poll never returns stops, exits 3 and says how many points its Worker lost", async () => {
  // Poll 30 of the hot source never returns: the 29 points before it are still in the Worker (a flush is due
  // every 200 polls), which is terminated after the stop's grace period.
  const run = await AgentRun.start({ probe: { hot_stuck_at: 30, flush_interval_ms: 1000 } });
  try {
    await run.ready();
    await until(() => exists(`${run.dir}/hot.stuck`), "the hot source did not get stuck");
    run.signalGroup("SIGTERM");
    assert.equal(await run.exitCode(), 3, run.stderr);
    const points = await run.points();
    assert.deepEqual(points.main.written, upTo(points.main.counted), "main");
    assert.equal(points.hot.counted, 29);
    const lost = /ERROR +alumet: source\/probe\/hot lost at least (\d+) points?/.exec(run.stderr);
    assert.ok(lost, run.stderr);
    assert.equal(Number(lost[1]), points.hot.counted - points.hot.written.length, lost[0]);
    assert.doesNotMatch(run.stderr, /output\/.* lost/);
  } finally {
    await run.remove();
  }
});

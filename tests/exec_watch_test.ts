/**
 * `alumet watch PID`: a stop signal that comes while the plugins start still ends the watch with a drain and
 * the summary; the summary's peak memory is the watched tree's, not its first process's.
 */
import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const SLOW_START = `${ROOT}/tests/testdata/exec/slow_start.ts`;

/** `alumet ARGS` started in `dir`, its stderr collected as it comes. */
class Agent {
  readonly child: Deno.ChildProcess;
  stderr = "";
  readonly #done: Promise<void>;

  constructor(dir: string, args: string[]) {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", "-A", `${ROOT}/src/agent/main.ts`, ...args],
      cwd: dir,
      env: { ALUMET_LOG: "info", NO_COLOR: "1" },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    this.child = child;
    this.#done = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of child.stderr) this.stderr += decoder.decode(chunk, { stream: true });
    })();
  }

  /** Waits (up to 60 s: the machine may be busy) until `test` holds. */
  async until(test: () => boolean | Promise<boolean>, what: string): Promise<void> {
    for (let i = 0; i < 1200; i++) {
      if (await test()) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`${what}; stderr:\n${this.stderr}`);
  }

  async status(): Promise<Deno.CommandStatus> {
    const status = await this.child.status;
    await this.#done;
    return status;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

async function tempDir<T>(f: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "alumet-exec-watch-" });
  try {
    return await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("watch ends with a drain and its summary on a Ctrl-C that comes while plugins start", async () => {
  await tempDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/alumet-config.toml`,
      `[plugins.slow-start]\nmodule = "${SLOW_START}"\ndir = "${dir}"\ndelay_ms = 2000\n\n` +
        `[plugins.procfs]\n\n[plugins.csv]\noutput_path = "${dir}/out.csv"\n`,
    );
    const target = new Deno.Command("sleep", { args: ["60"], stdout: "null" }).spawn();
    try {
      const agent = new Agent(dir, ["watch", String(target.pid)]);
      await agent.until(() => exists(`${dir}/starting`), "the slow plugin did not start");
      agent.child.kill("SIGINT");
      const status = await agent.status();
      assert.equal(status.signal, null, `killed by ${status.signal}:\n${agent.stderr}`);
      assert.equal(status.code, 0, agent.stderr);
      // Its command line, as its argv has it (Deno.Command passes the resolved path).
      assert.match(
        agent.stderr,
        new RegExp(`Measured for (/usr)?(/bin/)?sleep 60 \\(pid ${target.pid}\\) by alumet:`),
      );
      assert.match(agent.stderr, /Series written to: .*out\.csv \(csv\)/);
      // The watched process was left alone.
      assert.ok(await exists(`/proc/${target.pid}`), "the watched process is gone");
    } finally {
      target.kill("SIGKILL");
      await target.status;
    }
  });
});

Deno.test("watch's peak memory is its tree's, not its first process's", async () => {
  await tempDir(async (dir) => {
    // The watched shell stays small; the child it starts once the watch has begun holds about 40 MB for 1 s
    // (3 polls at least at 200 ms, whatever the machine's load: its memory is held until it ends).
    await Deno.writeTextFile(
      `${dir}/prog.sh`,
      `while [ ! -e go ]; do sleep 0.05; done
sh -c 'x=$(head -c 40000000 /dev/zero | tr "\\0" x); sleep 1; echo \${#x} > held'
exit 0
`,
    );
    const target = new Deno.Command("sh", { args: ["prog.sh"], cwd: dir, stdout: "null" }).spawn();
    try {
      const agent = new Agent(dir, [
        "--plugins",
        "procfs,csv",
        "--config-override",
        "plugins.procfs.processes.events.poll_interval='200ms'",
        "watch",
        String(target.pid),
      ]);
      await agent.until(() => agent.stderr.includes(`Watching pid ${target.pid}`), "the watch did not begin");
      await Deno.writeTextFile(`${dir}/go`, "");
      const status = await agent.status();
      assert.equal(status.code, 0, agent.stderr);
      assert.equal((await Deno.readTextFile(`${dir}/held`)).trim(), "40000000");
      assert.match(
        agent.stderr,
        new RegExp(`Measured for (/usr)?(/bin/)?sh prog\\.sh \\(pid ${target.pid}\\) by alumet:`),
      );
      const kib = Number(
        /peak memory \(([\d,]+) KiB, ([^)]*)\)/.exec(agent.stderr)?.[1]?.replaceAll(",", ""),
      );
      assert.ok(kib * 1024 > 30e6, `peak ${kib} KiB: the child's 40 MB were not counted\n${agent.stderr}`);
      assert.match(
        agent.stderr,
        /MiB peak memory \([\d,]+ KiB, the tree's resident memory, sampled at each poll\)/,
      );
    } finally {
      try {
        target.kill("SIGKILL");
      } catch {
        // ended
      }
      await target.status;
    }
  });
});

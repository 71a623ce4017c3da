/**
 * End-to-end tests of the `alumet` CLI, in real subprocesses.
 */
import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const MAIN = `${ROOT}/src/agent/main.ts`;
const PERMS = [
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-run",
  "--allow-sys",
  "--allow-net",
  "--allow-ffi",
  "--allow-import",
];

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function alumet(
  args: string[],
  options: { cwd: string; env?: Record<string, string> },
): Promise<Result> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...PERMS, MAIN, ...args],
    cwd: options.cwd,
    env: { ALUMET_LOG: "warn", ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/**
 * The environment of this test run without `remove` and with `set`, for a child spawned with `clearEnv: true`.
 * Everything else passes through: Deno needs `DENO_DIR`, `HOME`, its certificate variables
 * (`NODE_EXTRA_CA_CERTS`, `DENO_CERT`, `SSL_CERT_FILE`) and the proxy variables to fetch packages.
 */
function envWithout(remove: string[], set: Record<string, string>): Record<string, string> {
  const env = Deno.env.toObject();
  for (const key of remove) delete env[key];
  return { ...env, ...set };
}

/** A test plugin module: one source pushing the poll number; it records the pids it is told about. */
const PLUGIN_MODULE = `
import { Consumer, unit } from "${ROOT}/mod.ts";
let polls = 0;
export default {
  name: "probe",
  version: "1.0.0",
  defaultConfig: () => ({}),
  init: () => ({
    start(ctx) {
      const m = ctx.createMetric({ name: "probe_polls", unit: unit("1"), valueType: "u64", kind: "counter" });
      const pids = [];
      ctx.events.on("startConsumerMeasurement", (cs) => { for (const c of cs) pids.push(c); });
      ctx.addSource("in", {
        poll(b) {
          polls++;
          b.push(m, polls);
          for (const c of pids) b.push(m, polls, { consumer: c });
          const ready = Deno.env.get("PROBE_READY_FILE");
          if (ready && polls === 10) Deno.writeTextFileSync(ready, "10");
        },
      }, { pollInterval: Deno.env.get("PROBE_PERIOD") ?? "1h" });
    },
    stop() {
      const f = Deno.env.get("PROBE_COUNT_FILE");
      if (f) Deno.writeTextFileSync(f, String(polls));
    },
  }),
};
`;

/** Waits until `path` exists (the probe writes it after 10 polls): 30 s at most, however loaded the machine is. */
/** A child's stderr as text: `until(text)` reads until `text` has appeared (or the end), `all()` to the end. */
function stderrOf(
  child: Deno.ChildProcess,
): { until(text: string): Promise<string>; all(): Promise<string> } {
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const readWhile = async (more: () => boolean) => {
    while (more()) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    return text;
  };
  return { until: (wanted) => readWhile(() => !text.includes(wanted)), all: () => readWhile(() => true) };
}

async function waitForFile(path: string, what: string): Promise<void> {
  const deadline = performance.now() + 30_000;
  for (;;) {
    try {
      await Deno.stat(path);
      return;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    if (performance.now() > deadline) throw new Error(`after 30 s: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "alumet-cli-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function assertOneLineError(r: Result, pattern: RegExp): void {
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `expected one line on stderr, got:\n${r.stderr}`);
  assert.match(lines[0]!, pattern);
  assert.ok(!/\n\s+at /.test(r.stderr), "a stack trace was printed");
}

Deno.test("alumet exec exits with the program's exit code", async (t) => {
  await withDir(async (dir) => {
    await t.step("0", async () => {
      const r = await alumet(["exec", "--", "true"], { cwd: dir });
      assert.equal(r.code, 0, r.stderr);
    });
    await t.step("3", async () => {
      const r = await alumet(["exec", "--", "sh", "-c", "exit 3"], { cwd: dir });
      assert.equal(r.code, 3, r.stderr);
    });
    await t.step("3 ignored with --ignore-exit-code", async () => {
      const r = await alumet(["exec", "--ignore-exit-code", "--", "sh", "-c", "exit 3"], { cwd: dir });
      assert.equal(r.code, 0, r.stderr);
    });
    await t.step("127 for a program not on PATH, with one clear line", async () => {
      const r = await alumet(["exec", "--", "no-such-program-xyz"], { cwd: dir });
      assert.equal(r.code, 127);
      assertOneLineError(r, /Command not found: "no-such-program-xyz" is not in PATH/);
    });
    await t.step("127 with a did-you-mean for a near miss", async () => {
      const r = await alumet(["exec", "--", "slep", "0"], { cwd: dir });
      assert.equal(r.code, 127);
      assertOneLineError(r, /did you mean "sleep"\?/);
    });
    await t.step("126 for a file that is not executable", async () => {
      await Deno.writeTextFile(`${dir}/script.sh`, "#!/bin/sh\nexit 0\n");
      const r = await alumet(["exec", "--", "./script.sh"], { cwd: dir });
      assert.equal(r.code, 126);
      assertOneLineError(r, /permission denied/);
    });
    await t.step("128+N when signal N kills the program", async () => {
      const kill = await alumet(["exec", "--", "sh", "-c", "kill -KILL $$"], { cwd: dir });
      assert.equal(kill.code, 137, kill.stderr);
      const term = await alumet(["exec", "--", "sh", "-c", "kill -TERM $$"], { cwd: dir });
      assert.equal(term.code, 143, term.stderr);
    });
    await t.step("exec without `--` takes the first non-option as the program", async () => {
      const r = await alumet(["exec", "sh", "-c", "exit 4"], { cwd: dir });
      assert.equal(r.code, 4, r.stderr);
    });
  });
});

Deno.test("alumet exec polls before and after the program, tells plugins its pid, and writes csv", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/probe.ts`, PLUGIN_MODULE);
    await Deno.writeTextFile(
      `${dir}/alumet-config.toml`,
      `[plugins.probe]\nmodule = "./probe.ts"\n\n[plugins.csv]\noutput_path = "out.csv"\n`,
    );
    const r = await alumet(["exec", "--", "sh", "-c", "echo $$ > pid.txt"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    const pid = (await Deno.readTextFile(`${dir}/pid.txt`)).trim();
    const lines = (await Deno.readTextFile(`${dir}/out.csv`)).trim().split("\n");
    assert.equal(
      lines[0],
      "metric;timestamp;value;resource_kind;resource_id;consumer_kind;consumer_id;__late_attributes",
    );
    const rows = lines.slice(1).map((l) => l.split(";"));
    // Poll 1 before the program (machine only), poll 2 after it (machine and the process).
    assert.deepEqual(rows.map((r) => [r[0], r[2], r[5], r[6]]), [
      ["probe_polls", "1", "local_machine", ""],
      ["probe_polls", "2", "local_machine", ""],
      ["probe_polls", "2", "process", pid],
    ]);
    assert.match(rows[0]![1]!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$/); // trailing zeros trimmed, as Alumet
    // The summary on stderr, in the spirit of perf stat: the program's series, the elapsed time, the outputs.
    assert.match(
      r.stderr,
      new RegExp(`Measured for sh -c 'echo \\$\\$ > pid\\.txt' \\(pid ${pid}\\) by alumet:`),
    );
    assert.match(r.stderr, /^\s+2\s+probe_polls$/m);
    assert.match(r.stderr, /s\s+elapsed/);
    assert.match(r.stderr, /Series written to: out\.csv \(csv\)/);
  });
});

Deno.test("alumet exec starts the program stopped when a plugin arms before exec", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/armer.ts`,
      `export default {
  name: "armer",
  version: "1.0.0",
  defaultConfig: () => ({}),
  init: () => ({
    armsBeforeExec: true,
    start() {},
    preStart(ctx) {
      ctx.events.on("startConsumerMeasurement", (cs) => {
        const stat = Deno.readTextFileSync(\`/proc/\${cs[0].id}/stat\`);
        Deno.writeTextFileSync("state.txt", stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3));
      });
    },
  }),
};
`,
    );
    await Deno.writeTextFile(`${dir}/alumet-config.toml`, `[plugins.armer]\nmodule = "./armer.ts"\n`);
    const r = await alumet(["exec", "--", "sh", "-c", "echo ran > ran.txt; exit 7"], { cwd: dir });
    assert.equal(r.code, 7, r.stderr);
    assert.equal(await Deno.readTextFile(`${dir}/state.txt`), "T", "the program was not stopped when armed");
    assert.equal((await Deno.readTextFile(`${dir}/ran.txt`)).trim(), "ran");
  });
});

Deno.test("alumet run drains on SIGTERM: every poll reaches the csv", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/probe.ts`, PLUGIN_MODULE);
    await Deno.writeTextFile(
      `${dir}/alumet-config.toml`,
      `[plugins.probe]\nmodule = "./probe.ts"\n[plugins.csv]\n`,
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", ...PERMS, MAIN, "run"],
      cwd: dir,
      env: {
        ALUMET_LOG: "info",
        PROBE_PERIOD: "10ms",
        PROBE_COUNT_FILE: `${dir}/count.txt`,
        PROBE_READY_FILE: `${dir}/ready.txt`,
      },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const stderr = stderrOf(child);
    let err = await stderr.until("press Ctrl-C to stop");
    // Ten polls, however long they take on a loaded machine (a fixed 300 ms gets a loaded machine's share).
    await waitForFile(`${dir}/ready.txt`, `the agent did not poll 10 times: ${err}`);
    child.kill("SIGTERM");
    err = await stderr.all();
    const status = await child.status;
    assert.equal(status.code, 0, err);
    const polls = Number(await Deno.readTextFile(`${dir}/count.txt`));
    const rows = (await Deno.readTextFile(`${dir}/alumet-output.csv`)).trim().split("\n").slice(1);
    assert.ok(polls >= 10, `only ${polls} polls counted at the stop, after 10 were seen`);
    assert.equal(rows.length, polls, "points lost or duplicated in the drain");
    assert.deepEqual(
      rows.map((r) => Number(r.split(";")[2])),
      Array.from({ length: polls }, (_, i) => i + 1),
    );
  });
});

Deno.test("deno task alumet run drains on SIGTERM sent to the task (as a service manager does)", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/probe.ts`, PLUGIN_MODULE);
    await Deno.writeTextFile(
      `${dir}/alumet-config.toml`,
      `[plugins.probe]\nmodule = "./probe.ts"\n[plugins.csv]\n`,
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: ["task", "--quiet", "--config", `${ROOT}/deno.json`, "alumet", "run"],
      cwd: dir,
      // As from a service manager: no INIT_CWD or ALUMET_CONFIG inherited from an outer `deno task` or shell.
      clearEnv: true,
      env: envWithout(["INIT_CWD", "ALUMET_CONFIG"], {
        ALUMET_LOG: "info",
        PROBE_PERIOD: "10ms",
        PROBE_COUNT_FILE: `${dir}/count.txt`,
        PROBE_READY_FILE: `${dir}/ready.txt`,
      }),
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const stderr = stderrOf(child);
    let err = await stderr.until("press Ctrl-C to stop");
    await waitForFile(`${dir}/ready.txt`, `the agent did not poll 10 times: ${err}`);
    child.kill("SIGTERM"); // to `deno task`, which passes it on to the agent
    err = await stderr.all();
    const status = await child.status;
    assert.equal(status.code, 0, err);
    const polls = Number(await Deno.readTextFile(`${dir}/count.txt`));
    const rows = (await Deno.readTextFile(`${dir}/alumet-output.csv`)).trim().split("\n").slice(1);
    assert.ok(polls >= 10, `only ${polls} polls counted at the stop, after 10 were seen`);
    assert.equal(rows.length, polls, "points lost in the drain");
  });
});

Deno.test("alumet config regen writes the defaults, which load back", async () => {
  await withDir(async (dir) => {
    const r = await alumet(["config", "regen"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    const text = await Deno.readTextFile(`${dir}/alumet-config.toml`);
    assert.match(text, /\[plugins\.csv\]/);
    assert.match(text, /output_path = "alumet-output\.csv"/);
    const list = await alumet(["plugins", "list"], { cwd: dir });
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^csv\s+\S+\s+enabled/m);
    assert.match(list.stdout, /^log\s+\S+\s+disabled/m);
    const r2 = await alumet(["config", "regen", "--plugins", "csv,log", "--config", "two.toml"], {
      cwd: dir,
    });
    assert.equal(r2.code, 0, r2.stderr);
    assert.match(await Deno.readTextFile(`${dir}/two.toml`), /\[plugins\.log\]/);
  });
});

Deno.test("alumet reports bad input in one line with a non-zero exit and no stack trace", async (t) => {
  await withDir(async (dir) => {
    const cases: [string, string, RegExp][] = [
      [
        "unknown key",
        `[plugins.csv]\noutput_pth = "x.csv"\n`,
        /plugins\.csv\.output_pth.*did you mean "output_path"/,
      ],
      [
        "unknown plugin",
        `[plugins.cvs]\n`,
        /plugins\.cvs: expected a known plugin \(one of: [^)]*\bcsv\b[^)]*\); did you mean "csv"/,
      ],
      ["wrong type", `[plugins.csv]\nforce_flush = "yes"\n`, /plugins\.csv\.force_flush/],
      ["TOML syntax", `[plugins.csv\n`, /alumet-config\.toml.*line 1/],
    ];
    for (const [name, text, pattern] of cases) {
      await t.step(name, async () => {
        await Deno.writeTextFile(`${dir}/alumet-config.toml`, text);
        const r = await alumet(["exec", "--", "true"], { cwd: dir });
        assert.equal(r.code, 2, r.stderr);
        assertOneLineError(r, pattern);
      });
    }
    await t.step("a bad plugin value set by --config-override names it, not the file", async () => {
      await Deno.writeTextFile(`${dir}/procfs.toml`, "[plugins.procfs]\n");
      const r = await alumet(
        ["--config", "procfs.toml", "--config-override", "plugins.csv.force_flush=yes", "exec", "--", "true"],
        { cwd: dir },
      );
      assert.equal(r.code, 2, r.stderr);
      assertOneLineError(r, /Invalid config in --config-override: plugins\.csv\.force_flush/);
    });
    await t.step("an explicit --config that does not exist", async () => {
      const r = await alumet(["--config", "nope.toml", "run"], { cwd: dir });
      assert.notEqual(r.code, 0);
      assertOneLineError(r, /nope\.toml/);
    });
    await t.step("--no-default-config without a config file", async () => {
      const r = await alumet(["--no-default-config", "exec", "--", "true"], { cwd: dir });
      assert.equal(r.code, 2);
      assertOneLineError(r, /alumet-config\.toml/);
    });
    await t.step("an unknown option, with did-you-mean", async () => {
      const r = await alumet(["exec", "--ignore-exit-cod", "--", "true"], { cwd: dir });
      assert.equal(r.code, 2);
      assertOneLineError(r, /Unknown option --ignore-exit-cod.*did you mean --ignore-exit-code\?/);
    });
    await t.step("an unknown command", async () => {
      const r = await alumet(["exce"], { cwd: dir });
      assert.equal(r.code, 2);
      assertOneLineError(r, /Unknown command "exce"; did you mean "exec"\?/);
    });
    await t.step("a program after a command other than exec", async () => {
      const r = await alumet(["run", "--", "ls"], { cwd: dir });
      assert.equal(r.code, 2);
      assertOneLineError(r, /`alumet run` runs no program \(got "ls"\): use alumet exec/);
    });
    await t.step("a command named like an Object method", async () => {
      const r = await alumet(["toString"], { cwd: dir });
      assert.equal(r.code, 2);
      assertOneLineError(r, /Unknown command "toString"/);
    });
    await t.step("an unwritable csv path", async () => {
      await Deno.remove(`${dir}/alumet-config.toml`);
      const r = await alumet(["--output-file", "/nonexistent-dir/x.csv", "exec", "--", "true"], { cwd: dir });
      assert.notEqual(r.code, 0);
      assertOneLineError(r, /\/nonexistent-dir\/x\.csv/);
    });
    await t.step("--output-file when no enabled plugin writes a file", async () => {
      const r = await alumet(["--plugins", "log", "--output-file", "x.csv", "exec", "--", "true"], {
        cwd: dir,
      });
      assert.equal(r.code, 2);
      assertOneLineError(r, /--output-file: no enabled plugin writes a file \(enabled: log\)/);
    });
    await t.step("a bad log level", async () => {
      const r = await alumet(["--log-level", "loud", "run"], { cwd: dir });
      assert.equal(r.code, 2);
      assertOneLineError(r, /Unknown log level "loud"/);
    });
  });
});

Deno.test("--output-file enables the default file output when the config enables none", async (t) => {
  await withDir(async (dir) => {
    await t.step("a config with procfs only: csv is enabled and writes the file", async () => {
      await Deno.writeTextFile(`${dir}/alumet-config.toml`, "[plugins.procfs]\n");
      const r = await alumet(["--output-file", 'out "1".csv', "exec", "--", "true"], { cwd: dir });
      assert.equal(r.code, 0, r.stderr);
      const header = (await Deno.readTextFile(`${dir}/out "1".csv`)).split("\n")[0];
      assert.match(header!, /^metric;timestamp;value;/);
      assert.match(r.stderr, /Series written to: out "1"\.csv \(csv\)/);
    });
    await t.step("a config that disables csv keeps it disabled: a usage error", async () => {
      await Deno.writeTextFile(
        `${dir}/alumet-config.toml`,
        "[plugins.procfs]\n[plugins.csv]\nenable = false\n",
      );
      const r = await alumet(["--output-file", "x.csv", "exec", "--", "true"], { cwd: dir });
      assert.equal(r.code, 2);
      assertOneLineError(r, /no enabled plugin writes a file \(enabled: procfs; the config disables csv\)/);
    });
    await t.step("--plugins with none writing a file: a usage error, no plugin added", async () => {
      await Deno.writeTextFile(`${dir}/alumet-config.toml`, "[plugins.procfs]\n");
      const r = await alumet(["--plugins", "procfs", "--output-file", "x.csv", "exec", "--", "true"], {
        cwd: dir,
      });
      assert.equal(r.code, 2);
      assertOneLineError(r, /--output-file: no enabled plugin writes a file \(enabled: procfs\)/);
    });
  });
});

Deno.test("alumet doctor says what can run here and exits 1 when an enabled plugin cannot", async () => {
  await withDir(async (dir) => {
    const ok = await alumet(["doctor"], { cwd: dir });
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /^✓ procfs\s+kernel: \/proc\/stat reads$/m);
    assert.match(ok.stdout, /^✓ csv\s+output file/m);
    assert.match(ok.stdout, /^✓ machine\s+native calls \(FFI\): libc is loaded$/m);
    // The machine checks are the core's and name no plugin; energy findings come from the plugins' diagnose.
    assert.doesNotMatch(
      ok.stdout.split("\n").filter((l) => /^. machine/.test(l)).join("\n"),
      /RAPL|NVML/,
      "the core's machine checks name no plugin",
    );
    // Found or not (this test runs on machines with and without RAPL), rapl's own diagnose says what it found.
    assert.match(ok.stdout, /^[✓·✗] rapl\s+\S.*\(not enabled\)/m);
    assert.match(ok.stdout, /Everything enabled can run here \(procfs, csv\)/);
    const bad = await alumet(["--output-file", "/nonexistent-dir/x.csv", "doctor"], { cwd: dir });
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /^✗ csv\s+output file: cannot write in \/nonexistent-dir/m);
    assert.match(bad.stdout, /fix: set plugins\.csv\.output_path/);
  });
});

Deno.test("alumet --help works on every command", async () => {
  await withDir(async (dir) => {
    for (
      const args of [
        ["--help"],
        ["run", "--help"],
        ["exec", "--help"],
        ["watch", "--help"],
        [
          "config",
          "--help",
        ],
        ["plugins", "--help"],
        ["doctor", "--help"],
      ]
    ) {
      const r = await alumet(args, { cwd: dir });
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stdout, /Usage: alumet/, args.join(" "));
      if (args.length === 1) {
        const readme = await Deno.readTextFile(`${ROOT}/README.md`);
        const block = /## The `alumet` command\n\n```text\n([\s\S]*?\n)```/.exec(readme)?.[1];
        assert.equal(r.stdout, block, "README.md's help block is not what `alumet --help` prints");
      }
    }
  });
});

Deno.test("alumet watch measures a running process until it ends", async () => {
  await withDir(async (dir) => {
    // The process ends once alumet watches it, however long alumet takes to start (a fixed sleep may end
    // first on a loaded machine or under --coverage).
    const sleeper = new Deno.Command("sleep", { args: ["600"] }).spawn();
    try {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "--quiet", ...PERMS, MAIN, "watch", String(sleeper.pid)],
        cwd: dir,
        env: { ALUMET_LOG: "info" },
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      const stderr = stderrOf(child);
      await stderr.until(`Watching pid ${sleeper.pid}`);
      sleeper.kill("SIGTERM");
      await sleeper.status; // reaped: /proc/<pid> is gone, and alumet sees the end
      const err = await stderr.all();
      assert.equal((await child.status).code, 0, err);
      assert.match(err, new RegExp(`Watching pid ${sleeper.pid}`));
    } finally {
      try {
        sleeper.kill("SIGKILL");
      } catch { /* gone */ }
      await sleeper.status;
    }
    const none = await alumet(["watch", "999999999"], { cwd: dir });
    assert.equal(none.code, 1);
    assertOneLineError(none, /No process with pid 999999999/);
  });
});

Deno.test("alumet watch stops on SIGHUP, counting a copy of it once, and drains", async () => {
  await withDir(async (dir) => {
    const sleeper = new Deno.Command("sleep", { args: ["600"] }).spawn();
    try {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "--quiet", ...PERMS, MAIN, "watch", String(sleeper.pid)],
        cwd: dir,
        env: { ALUMET_LOG: "info" },
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      const stderr = stderrOf(child);
      await stderr.until(`Watching pid ${sleeper.pid}`);
      // A closed terminal: the hang-up twice, as when it reaches the agent both directly and forwarded.
      child.kill("SIGHUP");
      child.kill("SIGHUP");
      const err = await stderr.all();
      const status = await child.status;
      assert.equal(status.signal, null, `watch was killed by ${status.signal}, not drained:\n${err}`);
      assert.equal(status.code, 0, err);
      assert.match(err, /elapsed/, `the summary is printed:\n${err}`);
      const csv = await Deno.readTextFile(`${dir}/alumet-output.csv`);
      assert.ok(csv.includes(`;process;${sleeper.pid};`), "the watched process's points were written");
    } finally {
      try {
        sleeper.kill("SIGKILL");
      } catch { /* gone */ }
      await sleeper.status;
    }
  });
});

Deno.test("deno task alumet resolves paths from the caller's directory (INIT_CWD)", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/prog.sh`, "#!/bin/sh\npwd > where.txt\nexit 5\n");
    await Deno.chmod(`${dir}/prog.sh`, 0o755);
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "task",
        "--quiet",
        "--config",
        `${ROOT}/deno.json`,
        "alumet",
        "--output-file",
        "m.csv",
        "exec",
        "--",
        "./prog.sh",
      ],
      cwd: dir,
      // As from a fresh shell: an INIT_CWD inherited from an outer `deno task` would win over the new one.
      clearEnv: true,
      env: envWithout(["INIT_CWD", "ALUMET_CONFIG"], { ALUMET_LOG: "warn" }),
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 5, new TextDecoder().decode(out.stderr));
    assert.equal((await Deno.readTextFile(`${dir}/where.txt`)).trim(), await Deno.realPath(dir));
    await Deno.stat(`${dir}/m.csv`); // the csv went to the caller's directory
  });
});

Deno.test("alumet config regen never overwrites an existing file without --force", async () => {
  await withDir(async (dir) => {
    const mine = `[plugins.mine]\nmodule = "./mine.ts"\n`;
    await Deno.writeTextFile(`${dir}/alumet-config.toml`, mine);
    const r = await alumet(["config", "regen"], { cwd: dir });
    assert.notEqual(r.code, 0);
    assertOneLineError(r, /alumet-config\.toml exists.*--force/);
    assert.equal(await Deno.readTextFile(`${dir}/alumet-config.toml`), mine, "the user's file was changed");
    const forced = await alumet(["config", "regen", "--force"], { cwd: dir });
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(await Deno.readTextFile(`${dir}/alumet-config.toml`), /\[plugins\.csv\]/);
  });
});

Deno.test("alumet config regen's comments give the defaults the agent really uses", async () => {
  await withDir(async (dir) => {
    const r = await alumet(["config", "regen", "--plugins", "csv,log"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    const text = await Deno.readTextFile(`${dir}/alumet-config.toml`);
    // The pipeline's channel between the sources and the transforms holds 64 batches unless configured.
    assert.match(text, /^# source_channel_size = 64$/m);
    assert.match(text, /max_update_interval.*\n.*no effect/);
    assert.ok(text.endsWith("\n"), "the file ends with a line break");
  });
});

Deno.test("a malformed --config-override value is an error naming the override, and no file is written", async () => {
  await withDir(async (dir) => {
    const r = await alumet(["--config-override", 'plugins.csv.output_path="a', "exec", "--", "true"], {
      cwd: dir,
    });
    assert.equal(r.code, 2, r.stderr);
    assertOneLineError(r, /--config-override: plugins\.csv\.output_path="a: expected a TOML value/);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), [], "a file was created");
  });
});

Deno.test("alumet help and alumet help COMMAND print the help", async () => {
  await withDir(async (dir) => {
    const main = await alumet(["--help"], { cwd: dir });
    const help = await alumet(["help"], { cwd: dir });
    assert.equal(help.code, 0, help.stderr);
    assert.equal(help.stdout, main.stdout);
    assert.match(main.stdout, /^ {2}help \[COMMAND\]/m);
    const exec = await alumet(["help", "exec"], { cwd: dir });
    assert.equal(exec.code, 0, exec.stderr);
    assert.equal(exec.stdout, (await alumet(["exec", "--help"], { cwd: dir })).stdout);
    const bad = await alumet(["help", "exce"], { cwd: dir });
    assert.equal(bad.code, 2);
    assertOneLineError(bad, /Unknown command "exce"; did you mean "exec"/);
  });
});

Deno.test("alumet plugins list shows an external plugin's version, and accepts --status", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/probe.ts`, PLUGIN_MODULE);
    await Deno.writeTextFile(`${dir}/alumet-config.toml`, `[plugins.probe]\nmodule = "./probe.ts"\n`);
    for (const args of [["plugins", "list"], ["plugins", "list", "--status"]]) {
      const r = await alumet(args, { cwd: dir });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^probe\s+1\.0\.0\s+enabled\s+external: \S+probe\.ts$/m, args.join(" "));
    }
  });
});

Deno.test("Alumet's CLI options are accepted, with a note where they have no effect", async () => {
  await withDir(async (dir) => {
    const r = await alumet([
      "--plugins",
      "log",
      "--max-update-interval",
      "500ms",
      "--source-channel-size",
      "16",
      "--normal-worker-threads",
      "2",
      "--priority-worker-threads",
      "1",
      "plugins",
      "list",
    ], { cwd: dir, env: { ALUMET_LOG: "info" } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /--max-update-interval.*no effect/);
    assert.match(r.stderr, /--normal-worker-threads.*no effect/);
    assert.match(r.stderr, /--priority-worker-threads.*no effect/);
    assert.doesNotMatch(r.stderr, /--source-channel-size.*no effect/);
    for (
      const [args, pattern] of [
        [["--source-channel-size", "0"], /--source-channel-size.*positive integer/],
        [["--max-update-interval", "1ns"], /--max-update-interval.*from 100us to 24d/],
        [["--normal-worker-threads", "x"], /--normal-worker-threads.*positive integer/],
      ] as const
    ) {
      const bad = await alumet([...args, "--plugins", "log", "plugins", "list"], { cwd: dir });
      assert.equal(bad.code, 2, bad.stderr);
      assertOneLineError(bad, pattern);
    }
  });
});

Deno.test("a plugin given by URL: deno.lock is not rewritten, --reload-plugins picks up a change, content types", async (t) => {
  // The version lives in a module the plugin imports (with a `type` import, as a real plugin's `type Batch`):
  // a reload must fetch the plugin's own imports again, not only the plugin.
  let version = "1.0.0";
  const plugin = () =>
    `import { type Meta, version } from "./helper.ts";\nconst meta: Meta = { name: "remote", version };\n` +
    `export default { ...meta, defaultConfig: () => ({}), init: () => ({ start() {} }) };\n`;
  const helper = () =>
    `export interface Meta { name: string; version: string }\nexport const version: string = "${version}";\n`;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    // /<content type>/<id>/plugin.ts (and its helper.ts): the test picks the content type the server gives.
    const [, type, , file] = new URL(req.url).pathname.split("/");
    const body = file === "helper.ts" ? helper() : plugin();
    return new Response(body, { headers: { "content-type": decodeURIComponent(type!) } });
  });
  const id = crypto.randomUUID(); // a URL Deno's cache has never seen
  const url = (type: string) =>
    `http://127.0.0.1:${server.addr.port}/${encodeURIComponent(type)}/${id}/plugin.ts`;
  const lock = await Deno.readFile(`${ROOT}/deno.lock`);
  try {
    await withDir(async (dir) => {
      const list = async (type: string, ...extra: string[]) => {
        await Deno.writeTextFile(`${dir}/c.toml`, `[plugins.remote]\nmodule = "${url(type)}"\n`);
        return await new Deno.Command(Deno.execPath(), {
          args: [
            "task",
            "--quiet",
            "--config",
            `${ROOT}/deno.json`,
            "alumet",
            "--config",
            "c.toml",
            ...extra,
            "plugins",
            "list",
          ],
          cwd: dir,
          env: { ALUMET_LOG: "warn", INIT_CWD: dir }, // not the outer `deno task test`'s
          stdout: "piped",
          stderr: "piped",
        }).output();
      };
      const dec = (b: Uint8Array) => new TextDecoder().decode(b);
      await t.step("served as application/typescript, it loads; deno.lock is left as it was", async () => {
        const r = await list("application/typescript");
        assert.equal(r.code, 0, dec(r.stderr));
        assert.match(dec(r.stdout), /^remote\s+1\.0\.0\s+enabled/m);
        assert.deepEqual(await Deno.readFile(`${ROOT}/deno.lock`), lock, "deno.lock was rewritten");
      });
      await t.step(
        "a changed plugin (here its helper module) comes from Deno's cache until --reload-plugins fetches it again",
        async () => {
          version = "2.0.0";
          const cached = await list("application/typescript");
          assert.match(dec(cached.stdout), /^remote\s+1\.0\.0\s+enabled/m);
          const reloaded = await list("application/typescript", "--reload-plugins");
          assert.equal(reloaded.code, 0, dec(reloaded.stderr));
          assert.match(dec(reloaded.stdout), /^remote\s+2\.0\.0\s+enabled/m);
          assert.deepEqual(await Deno.readFile(`${ROOT}/deno.lock`), lock, "deno.lock was rewritten");
        },
      );
      await t.step(
        "text/typescript works; text/javascript is one error naming the content type to use",
        async () => {
          const ts = await list("text/typescript");
          assert.equal(ts.code, 0, dec(ts.stderr));
          const js = await list("text/javascript");
          assert.equal(js.code, 1);
          assertOneLineError(
            { code: js.code, stdout: dec(js.stdout), stderr: dec(js.stderr) },
            /Cannot load plugin "remote".*SyntaxError.*\(line 1, column \d+\).*application\/typescript or text\/typescript/,
          );
        },
      );
    });
  } finally {
    await server.shutdown();
  }
});

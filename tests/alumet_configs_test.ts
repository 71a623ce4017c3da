/**
 * Alumet's own configuration files, fed to `deno task alumet` as they are (fixtures in
 * `testdata/alumet_configs/`, each citing its source at its top): the agent knows the name of every Alumet
 * plugin, skips a section of one it does not implement with one warning naming it, starts, and drains on
 * SIGTERM. The cgroups sections are accepted with Alumet's keys and meaning.
 */
import assert from "node:assert/strict";
import { type Need, testWith } from "../src/testing/needs.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const FIXTURES = `${ROOT}/tests/testdata/alumet_configs`;
const SKIPPED = /WARN {2}alumet: Plugin "([^"]+)" is an Alumet plugin that this agent does not implement/g;

/** `deno task alumet ARGS` from `cwd` (the task resolves paths from the caller's directory). */
function task(args: string[], cwd: string, env: Record<string, string> = {}): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["task", "--quiet", "--config", `${ROOT}/deno.json`, "alumet", ...args],
    cwd,
    // INIT_CWD as a shell's `deno task` sets it: one inherited from the outer `deno task test` would win.
    env: { ALUMET_LOG: "info", INIT_CWD: cwd, ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/** The names of the plugins the agent said it skipped, in order, each time it said so. */
function skippedIn(stderr: string): string[] {
  return [...stderr.matchAll(SKIPPED)].map((m) => m[1]!);
}

/**
 * Runs `alumet --config FIXTURE run` until it says it is running (and `ready` holds, checked every 50 ms), then
 * sends SIGTERM; resolves with the exit code and the whole stderr. Fails if the agent exits by itself first.
 */
async function runUntilReady(
  fixture: string,
  cwd: string,
  options: { env?: Record<string, string>; args?: string[]; ready?: () => Promise<boolean> } = {},
): Promise<{ code: number; stderr: string }> {
  const args = ["--config", `${FIXTURES}/${fixture}`, ...options.args ?? [], "run"];
  const child = task(args, cwd, options.env).spawn();
  child.stdout.cancel();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let stderr = "";
  let ended = false;
  const pump = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      stderr += value;
    }
    ended = true;
  })();
  // Counted in polls, not timed against the machine's speed: 1200 × 50 ms at most, however loaded it is.
  for (let i = 0; i < 1200 && !ended; i++) {
    if (stderr.includes("Running with") && (options.ready === undefined || await options.ready())) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(!ended, `the agent exited before running:\n${stderr}`);
  assert.ok(stderr.includes("Running with"), `the agent did not start:\n${stderr}`);
  child.kill("SIGTERM");
  const status = await child.status;
  await pump;
  return { code: status.code, stderr };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "alumet-configs-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("Alumet's packaged config (/etc/alumet/alumet-config.toml) starts: socket-control is skipped with one warning", async (t) => {
  await withDir(async (dir) => {
    await t.step(
      "every plugin name is known; the enabled one not implemented here is named once",
      async () => {
        const r = await task(
          ["--config", `${FIXTURES}/packaged_0.8.toml`, "plugins", "list", "--status"],
          dir,
        )
          .output();
        const stderr = new TextDecoder().decode(r.stderr);
        assert.equal(r.code, 0, stderr);
        assert.deepEqual(skippedIn(stderr), ["socket-control"]);
        const stdout = new TextDecoder().decode(r.stdout);
        for (const name of ["csv", "perf", "procfs"]) {
          assert.match(stdout, new RegExp(`^${name}\\s+\\S+\\s+enabled`, "m"));
        }
        assert.match(stdout, /^log\s+\S+\s+disabled/m);
      },
    );
    // Depends on the procfs (H3) and perf (H4) sections being accepted with Alumet 0.8/0.9.5's keys.
    await t.step("it runs, and drains on SIGTERM with exit code 0", async () => {
      const r = await runUntilReady("packaged_0.8.toml", dir);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(skippedIn(r.stderr), ["socket-control"]);
      assert.match(r.stderr, /Running with csv, perf, procfs/);
      assert.ok((await Deno.stat(`${dir}/alumet-output.csv`)).isFile);
    });
  });
});

Deno.test("The Helm chart's agent config starts: k8s and relay-client are skipped with one warning each", async (t) => {
  await withDir(async (dir) => {
    const env = { NODE_NAME: "node-1" }; // the chart's DaemonSet sets it; the config uses ${NODE_NAME}
    await t.step("every plugin name is known", async () => {
      const r = await task(["--config", `${FIXTURES}/helm_relay_client.toml`, "plugins", "list"], dir, env)
        .output();
      const stderr = new TextDecoder().decode(r.stderr);
      assert.equal(r.code, 0, stderr);
      assert.deepEqual(skippedIn(stderr), ["k8s", "relay-client"]);
    });
    // Depends on the procfs (H3) and perf (H4) sections being accepted with Alumet's keys.
    await t.step("it runs, and drains on SIGTERM with exit code 0", async () => {
      const r = await runUntilReady("helm_relay_client.toml", dir, { env });
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(skippedIn(r.stderr), ["k8s", "relay-client"]);
      assert.match(r.stderr, /Running with csv, perf, procfs/);
    });
  });
});

Deno.test("A name that is no Alumet plugin and no module is still an error, with did you mean", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/a.toml`, "[plugins.socket-contrl]\n");
    const r = await task(["--config", "a.toml", "plugins", "list"], dir).output();
    const stderr = new TextDecoder().decode(r.stderr);
    assert.equal(r.code, 2, stderr);
    assert.match(stderr, /plugins\.socket-contrl: expected a known plugin .*did you mean "socket-control"\?/);
    assert.deepEqual(skippedIn(stderr), []);
  });
});

/** A cgroup hierarchy, v1 or v2, in /proc/mounts (the cgroups plugin finds them there). */
const cgroupMounted: Need = {
  what: "cgroups",
  missing: () => {
    try {
      const mounted = Deno.readTextFileSync("/proc/mounts").split("\n").some((l) => / cgroup2? /.test(l));
      return mounted ? undefined : "no cgroup or cgroup2 mount in /proc/mounts";
    } catch (e) {
      return `cannot read /proc/mounts: ${(e as Error).message}`;
    }
  },
};

testWith(
  [cgroupMounted],
  "The cgroups plugin's README config (Alumet's) measures the cgroups, with Alumet's poll_interval",
  async () => {
    await withDir(async (dir) => {
      const csv = `${dir}/alumet-output.csv`;
      // Ready once a poll has written a cgroup's point (the first poll: memory gauges at least).
      const ready = async () => {
        try {
          return /;cgroup;/.test(await Deno.readTextFile(csv));
        } catch {
          return false;
        }
      };
      const r = await runUntilReady("cgroups_raw_readme.toml", dir, { ready });
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(skippedIn(r.stderr), []);
      assert.doesNotMatch(r.stderr, /WARN|ERROR/, r.stderr);
      assert.match(await Deno.readTextFile(csv), /^memory_usage_B;.*;local_machine;;cgroup;\//m);
    });
  },
);

testWith(
  [cgroupMounted],
  "Every key of Alumet's cgroups config is accepted: disable_sources = true measures nothing",
  async () => {
    await withDir(async (dir) => {
      // Polled every 100 ms if it measured: 20 checks of 50 ms at least (longer on a loaded machine) see polls.
      let checks = 0;
      const r = await runUntilReady("cgroups_common_config.toml", dir, {
        args: ["--config-override", 'plugins.cgroups.poll_interval="100ms"'],
        ready: () => Promise.resolve(++checks >= 20),
      });
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stderr, /WARN|ERROR/, r.stderr);
      assert.doesNotMatch(await Deno.readTextFile(`${dir}/alumet-output.csv`), /;cgroup;/);
    });
  },
);

/**
 * A full disk pauses the csv output, it does not kill it: `alumet run` writes its csv into a small tmpfs that
 * fills up, then is enlarged again. Every point the probe source measured must be in the file, as whole lines,
 * once space is back; a run whose disk never gets space back exits non-zero and says how many points it lost.
 * The same for the log output, its stdout redirected into the tmpfs (`alumet run > /mnt/log.txt`): no line is
 * written twice (it used to write again what it had written of a batch before ENOSPC), none is missing.
 *
 * Needs root (to mount a tmpfs): ignored with a printed reason elsewhere, failed under CI=true.
 */
import assert from "node:assert/strict";
import { type Need, testWith } from "../src/testing/needs.ts";
import { EXIT_POINTS_LOST } from "../src/agent/losses.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const MAIN = `${ROOT}/src/agent/main.ts`;
const LIMIT_MS = 60_000;

/** A source pushing 1, 2, 3… one point per poll, with an attribute that makes each line about 120 bytes. */
const PROBE = `
import { unit } from "${ROOT}/mod.ts";
let polls = 0;
export default {
  name: "probe",
  version: "1.0.0",
  defaultConfig: () => ({}),
  init: () => ({
    start(ctx) {
      const m = ctx.createMetric({ name: "probe_seq", unit: unit("1"), valueType: "u64", kind: "counter" });
      ctx.addSource("seq", {
        poll(b) {
          polls++;
          b.push(m, polls, { attributes: { pad: "x".repeat(48) } });
          if (polls === 10) Deno.writeTextFileSync(Deno.env.get("PROBE_READY_FILE"), "10");
        },
      }, { pollInterval: "10ms", flushInterval: "50ms" });
    },
    stop() {
      Deno.writeTextFileSync(Deno.env.get("PROBE_COUNT_FILE"), String(polls));
    },
  }),
};
`;

/** Mounting a tmpfs: root, and a kernel and container that allow it. */
const canMount: Need = {
  what: "mount -t tmpfs",
  missing: () => {
    if (Deno.uid() !== 0) return "the test must run as root to mount a tmpfs";
    const dir = Deno.makeTempDirSync({ prefix: "alumet-mount-probe-" });
    try {
      const r = new Deno.Command("mount", { args: ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir] })
        .outputSync();
      if (!r.success) return `mount -t tmpfs failed: ${new TextDecoder().decode(r.stderr).trim()}`;
      new Deno.Command("umount", { args: [dir] }).outputSync();
      return undefined;
    } catch (e) {
      return `cannot run mount: ${(e as Error).message}`;
    } finally {
      Deno.removeSync(dir);
    }
  },
};

function run(cmd: string, ...args: string[]): void {
  const r = new Deno.Command(cmd, { args }).outputSync();
  if (!r.success) throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
}

/** Runs `fn` with a work directory holding `mnt/`, a tmpfs of `size`; always unmounted and removed after. */
async function withTmpfs(size: string, fn: (dir: string, mnt: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "alumet-disk-full-" });
  const mnt = `${dir}/mnt`;
  await Deno.mkdir(mnt);
  run("mount", "-t", "tmpfs", "-o", `size=${size}`, "tmpfs", mnt);
  try {
    await fn(dir, mnt);
  } finally {
    try {
      run("umount", "-l", mnt);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
}

/** Fills the file system holding `path` with a filler file, until a write fails with ENOSPC. */
async function fill(path: string): Promise<void> {
  const f = await Deno.open(path, { write: true, create: true });
  const chunk = new Uint8Array(4096);
  try {
    for (;;) await f.write(chunk);
  } catch (e) {
    assert.equal((e as { code?: string }).code, "ENOSPC", String(e));
  } finally {
    f.close();
  }
}

/** The agent's stderr, read in the background: `until(re)` waits for a line matching `re`. */
function stderrOf(child: Deno.ChildProcess) {
  let text = "";
  const done = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) text += chunk;
  })();
  return {
    get text() {
      return text;
    },
    async until(re: RegExp, what: string): Promise<void> {
      const deadline = performance.now() + LIMIT_MS;
      while (!re.test(text)) {
        if (performance.now() > deadline) throw new Error(`after ${LIMIT_MS} ms, no ${what} in:\n${text}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    all: () => done.then(() => text),
  };
}

async function waitForFile(path: string): Promise<void> {
  const deadline = performance.now() + LIMIT_MS;
  for (;;) {
    try {
      await Deno.stat(path);
      return;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    if (performance.now() > deadline) throw new Error(`${path} never appeared`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Starts `alumet run` in `dir`, writing its csv to `csvPath`; or, with `{ log }`, the log plugin instead, its
 * stdout redirected into the file `log` (`exec` in a shell: the signal goes to the agent itself).
 */
async function startAgent(dir: string, csvPath: string | { log: string }) {
  await Deno.writeTextFile(`${dir}/probe.ts`, PROBE);
  await Deno.writeTextFile(
    `${dir}/alumet-config.toml`,
    `[plugins.probe]\nmodule = "./probe.ts"\n\n` +
      (typeof csvPath === "string"
        ? `[plugins.csv]\noutput_path = ${JSON.stringify(csvPath)}\n`
        : `[plugins.log]\n`),
  );
  const args = ["run", "--quiet", "--allow-all", MAIN, "run"];
  const child = new Deno.Command(typeof csvPath === "string" ? Deno.execPath() : "sh", {
    args: typeof csvPath === "string"
      ? args
      : ["-c", `exec "$0" "$@" > "$LOG_FILE"`, Deno.execPath(), ...args],
    cwd: dir,
    env: {
      ALUMET_LOG: "info",
      PROBE_COUNT_FILE: `${dir}/count.txt`,
      PROBE_READY_FILE: `${dir}/ready.txt`,
      LOG_FILE: typeof csvPath === "string" ? "" : csvPath.log,
    },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  return { child, stderr: stderrOf(child) };
}

/** The csv's data lines; asserts that every line is whole (same cell count as the header, a final line break). */
function wholeLines(text: string): string[] {
  assert.ok(text.endsWith("\n"), `the file ends with a whole line: ${JSON.stringify(text.slice(-80))}`);
  const [header, ...rows] = text.slice(0, -1).split("\n");
  const cells = header!.split(";").length;
  for (const r of rows) assert.equal(r.split(";").length, cells, `a partial line: ${JSON.stringify(r)}`);
  return rows;
}

testWith(
  [canMount],
  "a full disk pauses the csv output, which resumes once space is back and loses nothing",
  async () => {
    await withTmpfs("128k", async (dir, mnt) => {
      const { child, stderr } = await startAgent(dir, `${mnt}/out.csv`);
      try {
        await waitForFile(`${dir}/ready.txt`);
        await fill(`${mnt}/filler`);
        await stderr.until(/Paused \(ENOSPC\)/, "pause line naming ENOSPC");
        const partial = await Deno.readTextFile(`${mnt}/out.csv`);
        wholeLines(partial); // while paused, the file already holds whole lines only
        await new Promise((r) => setTimeout(r, 500)); // paused a while: the queue fills, the source waits
        run("mount", "-o", "remount,size=4m", mnt);
        await stderr.until(/Resumed after/, "resume line");
        await new Promise((r) => setTimeout(r, 300));
      } finally {
        child.kill("SIGTERM");
      }
      const status = await child.status;
      const err = await stderr.all();
      assert.equal(status.code, 0, err);
      const polls = Number(await Deno.readTextFile(`${dir}/count.txt`));
      const rows = wholeLines(await Deno.readTextFile(`${mnt}/out.csv`));
      assert.deepEqual(
        rows.map((r) => Number(r.split(";")[2])),
        Array.from({ length: polls }, (_, i) => i + 1),
        "every point measured is in the file once, in order",
      );
      assert.match(err, /WARN .*output\/csv\/out.*Paused \(ENOSPC\): .*No space left on device/);
      assert.match(err, /INFO .*output\/csv\/out.*Resumed after [\d.]+ s paused \(ENOSPC\)/);
      assert.doesNotMatch(err, /lost/);
    });
  },
);

testWith(
  [canMount],
  "a disk that stays full: the run exits non-zero and reports the points lost",
  async () => {
    await withTmpfs("128k", async (dir, mnt) => {
      const { child, stderr } = await startAgent(dir, `${mnt}/out.csv`);
      try {
        await waitForFile(`${dir}/ready.txt`);
        await fill(`${mnt}/filler`);
        await stderr.until(/Paused \(ENOSPC\)/, "pause line naming ENOSPC");
      } finally {
        child.kill("SIGTERM");
      }
      const status = await child.status;
      const err = await stderr.all();
      assert.equal(status.code, EXIT_POINTS_LOST, err);
      const polls = Number(await Deno.readTextFile(`${dir}/count.txt`));
      const rows = wholeLines(await Deno.readTextFile(`${mnt}/out.csv`));
      const lost = Number(/output\/csv\/out lost (\d+) points?/.exec(err)?.[1]);
      assert.ok(lost > 0, err);
      assert.equal(
        rows.length + lost,
        polls,
        `written (${rows.length}) + lost (${lost}) = measured (${polls})`,
      );
      assert.deepEqual(
        rows.map((r) => Number(r.split(";")[2])),
        Array.from({ length: rows.length }, (_, i) => i + 1),
      );
      assert.match(err, /Gave up: still ENOSPC/);
      assert.match(err, /Stopping: waiting up to 5 s for output\/csv\/out \(ENOSPC\) to write what it holds/);
      assert.doesNotMatch(err, /Dropped a batch/, "the Gave-up line tells the loss, once");
    });
  },
);

testWith(
  [canMount],
  "a full disk pauses the log output (stdout into a file): once space is back, no line twice, none missing",
  async () => {
    await withTmpfs("128k", async (dir, mnt) => {
      const logPath = `${mnt}/log.txt`;
      const { child, stderr } = await startAgent(dir, { log: logPath });
      try {
        await waitForFile(`${dir}/ready.txt`);
        await fill(`${mnt}/filler`);
        await stderr.until(/Paused \(ENOSPC\)/, "pause line naming ENOSPC");
        await new Promise((r) => setTimeout(r, 500)); // paused a while: the queue fills, the source waits
        run("mount", "-o", "remount,size=4m", mnt);
        await stderr.until(/Resumed after/, "resume line");
        await new Promise((r) => setTimeout(r, 300));
      } finally {
        child.kill("SIGTERM");
      }
      const status = await child.status;
      const err = await stderr.all();
      assert.equal(status.code, 0, err);
      const polls = Number(await Deno.readTextFile(`${dir}/count.txt`));
      const text = await Deno.readTextFile(logPath);
      assert.ok(text.endsWith("\n"), `the file ends with a whole line: ${JSON.stringify(text.slice(-80))}`);
      const lines = text.slice(0, -1).split("\n");
      for (const l of lines) {
        assert.match(l, /^\S+Z probe_seq = \d+ \[local_machine \/ local_machine\] pad=x{48}$/);
      }
      assert.deepEqual(
        lines.map((l) => Number(/ = (\d+) /.exec(l)![1])),
        Array.from({ length: polls }, (_, i) => i + 1),
        "every point measured is in the file once, in order",
      );
      assert.match(err, /WARN .*output\/log\/out.*Paused \(ENOSPC\): .*No space left on device/);
      assert.match(
        err,
        /holding \d+ batch(es)? and retrying the same batch/,
        "the log output is retried, not dropped",
      );
      assert.match(err, /INFO .*output\/log\/out.*Resumed after [\d.]+ s paused \(ENOSPC\)/);
      assert.doesNotMatch(err, /lost/);
    });
  },
);

/**
 * `exec` and `watch` follow their program only: under the default configuration (Alumet's, whose procfs group
 * follows every process every 2 s, as `run` keeps it), no other process is measured beside the program.
 */
import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

async function alumet(dir: string, args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "-A", `${ROOT}/src/agent/main.ts`, ...args],
    cwd: dir,
    env: { ALUMET_LOG: "warn" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

/** The consumer ids of the csv's process rows. */
async function processConsumers(path: string): Promise<Set<string>> {
  const lines = (await Deno.readTextFile(path)).trim().split("\n").map((l) => l.split(";"));
  const h = lines[0]!;
  const kind = h.indexOf("consumer_kind"), id = h.indexOf("consumer_id");
  return new Set(lines.slice(1).filter((r) => r[kind] === "process").map((r) => r[id]!));
}

async function tempDir<T>(f: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "alumet-exec-follow-" });
  try {
    return await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("exec with the default config measures the program, no other process", async () => {
  await tempDir(async (dir) => {
    // Longer than the default group's 2 s: it would have measured every process at least once.
    const r = await alumet(dir, ["--plugins", "procfs,csv", "exec", "--", "sleep", "2.5"]);
    assert.equal(r.code, 0, r.stderr);
    const pid = /\(pid (\d+)\)/.exec(r.stderr)?.[1];
    assert.deepEqual([...await processConsumers(`${dir}/alumet-output.csv`)], [pid]);
  });
});

Deno.test("watch with the default config measures the process, no other", async () => {
  await tempDir(async (dir) => {
    const sleeper = new Deno.Command("sleep", { args: ["2.5"] }).spawn();
    try {
      const r = await alumet(dir, ["--plugins", "procfs,csv", "watch", String(sleeper.pid)]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual([...await processConsumers(`${dir}/alumet-output.csv`)], [String(sleeper.pid)]);
    } finally {
      await sleeper.status;
    }
  });
});

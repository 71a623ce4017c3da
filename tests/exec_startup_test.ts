/**
 * What `alumet exec -- true` loads: with the defaults (managed sources, `Transform` and `Output` objects only)
 * no Web Stream is created and no process is started through Deno, so Deno's streams, process and fetch code,
 * which it loads on first use beyond its start-up snapshot, stays unloaded (issue 12: no Web Stream on the path
 * of a program that ends at once). V8's function-event log names every script it compiles or deserializes,
 * Deno's own included; it is written in the working directory.
 */
import assert from "node:assert/strict";
import { alumetRunLine, inTempDir } from "./testdata/exec/cli.ts";

/** The scripts named by the one V8 log in `dir`. */
function readLog(dir: string): string[] {
  const logs = [...Deno.readDirSync(dir)].filter((e) => e.name.endsWith("-v8.log"));
  assert.equal(logs.length, 1, `one V8 log, found ${logs.map((e) => e.name)}`);
  const scripts: string[] = [];
  for (const l of Deno.readTextFileSync(`${dir}/${logs[0]!.name}`).split("\n")) {
    if (l.startsWith("script-details,")) scripts.push(l.split(",")[2]!);
  }
  return scripts;
}

/** Runs `deno ARGS…` in `dir` with V8's function-event log added to its V8 flags; the scripts it loaded. */
async function scriptsLoaded(dir: string, deno: string, args: string[]): Promise<string[]> {
  const [run, ...rest] = args;
  const flags = rest.some((w) => w.startsWith("--v8-flags="))
    ? rest.map((w) => (w.startsWith("--v8-flags=") ? `${w},--log-function-events` : w))
    : ["--v8-flags=--log-function-events", ...rest];
  const out = await new Deno.Command(deno, {
    args: [run!, ...flags],
    cwd: dir,
    env: { ALUMET_LOG: "warn", NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return readLog(dir);
}

Deno.test("exec -- true with the defaults loads no Web Streams, no process and no fetch code of Deno's", async () => {
  // What Deno loads for any script (its snapshot), from a bare run of an empty module.
  const bare = new Set(
    await inTempDir("startup-bare", async (dir) => {
      Deno.writeTextFileSync(`${dir}/empty.js`, "");
      return await scriptsLoaded(dir, Deno.execPath(), ["run", "--quiet", `${dir}/empty.js`]);
    }),
  );
  assert.ok(
    [...bare].some((s) => s.startsWith("ext:deno_web/")),
    "the bare run's log names Deno's own scripts",
  );
  await inTempDir("startup", async (dir) => {
    const [deno, ...line] = alumetRunLine();
    // A stale bundle is made again first (with `deno bundle`, through Deno.Command): not what is looked at.
    const warm = await new Deno.Command(deno!, {
      args: [...line, "--log-level", "debug", "plugins", "list"],
      cwd: dir,
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.match(new TextDecoder().decode(warm.stderr), /Running from the bundle/);
    const scripts = await scriptsLoaded(dir, deno!, [
      ...line,
      "exec",
      "--output-file",
      `${dir}/out.csv`,
      "--",
      "true",
    ]);
    assert.ok(
      scripts.some((s) => s.includes("/src/agent/") || s.includes("/.build/")),
      "the log names our modules",
    );
    assert.ok(Deno.readTextFileSync(`${dir}/out.csv`).includes("attributed_energy"), "the run measured");
    const lazy = scripts.filter((s) => s.startsWith("ext:") && !bare.has(s));
    const heavy = lazy.filter((s) => /^ext:deno_(web\/06_streams|process\/|fetch\/)/.test(s));
    assert.deepEqual(heavy, [], `Deno loaded, beyond its snapshot: ${lazy.join(", ")}`);
  });
});

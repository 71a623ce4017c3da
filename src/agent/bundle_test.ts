import assert from "node:assert/strict";
import { type BundleRecord, isFresh, removeOld, sourcesWanted, stampOf } from "./bundle.ts";
import { testWith } from "../testing/needs.ts";
import { alumet } from "../../tests/testdata/exec/cli.ts";

const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");

Deno.test("sourcesWanted: the sources run when asked, or when an external plugin module is named", async (t) => {
  const noEnv = () => undefined;
  const noFile = () => undefined;
  await t.step("nothing named: the bundle", () => {
    assert.equal(sourcesWanted(["exec", "--", "true"], noEnv, noFile), undefined);
  });
  await t.step("ALUMET_NO_BUNDLE=1 (not 0, not empty)", () => {
    const env = (v: string) => (n: string) => n === "ALUMET_NO_BUNDLE" ? v : undefined;
    assert.match(sourcesWanted([], env("1"), noFile)!, /ALUMET_NO_BUNDLE/);
    assert.equal(sourcesWanted([], env("0"), noFile), undefined);
    assert.equal(sourcesWanted([], env(""), noFile), undefined);
  });
  await t.step("a module in a --config-override", () => {
    const args = ["--config-override", 'plugins.mine.module="./p.ts"', "run"];
    assert.match(sourcesWanted(args, noEnv, noFile)!, /command line/);
  });
  await t.step(
    "a module in the config file: --config, ALUMET_CONFIG, the default, relative to INIT_CWD",
    () => {
      const files: Record<string, string> = {
        "/etc/a.toml": '[plugins.mine]\nmodule = "/opt/p.ts"\n',
        "/home/u/alumet-config.toml": '[plugins.mine]\n  module="./p.ts"\n',
        "/home/u/plain.toml": "[plugins.csv]\noutput_path = 'modules.csv'\n",
      };
      const read = (p: string) => files[p];
      assert.match(sourcesWanted(["--config", "/etc/a.toml", "run"], noEnv, read)!, /config/);
      assert.match(sourcesWanted(["--config=/etc/a.toml"], noEnv, read)!, /config/);
      const env = (vars: Record<string, string>) => (n: string) => vars[n];
      assert.match(sourcesWanted([], env({ ALUMET_CONFIG: "/etc/a.toml" }), read)!, /config/);
      assert.match(sourcesWanted([], env({ INIT_CWD: "/home/u" }), read)!, /config/);
      assert.equal(sourcesWanted(["--config", "plain.toml"], env({ INIT_CWD: "/home/u" }), read), undefined);
      // Any TOML form of the key: dotted, quoted, in an inline table.
      for (const text of ['[plugins]\nmine.module = "/p.ts"\n', 'plugins.mine = { "module" = "/p.ts" }\n']) {
        assert.match(sourcesWanted(["--config", "/x.toml"], noEnv, () => text)!, /config/, text);
      }
      const inline = ["--config-override", 'plugins.mine={ module = "./p.ts" }', "run"];
      assert.match(sourcesWanted(inline, noEnv, noFile)!, /command line/);
      // after --, the program's own arguments
      assert.equal(sourcesWanted(["exec", "--", "x", "--config", "/etc/a.toml"], noEnv, read), undefined);
    },
  );
});

Deno.test("isFresh: the same size, mtime and ctime of every source, and the same Deno", async () => {
  const dir = await Deno.makeTempDir({ prefix: "alumet-bundle-fresh-" });
  try {
    await Deno.mkdir(`${dir}/src`);
    await Deno.writeTextFile(`${dir}/src/a.ts`, "export const a = 1;\n");
    await Deno.writeTextFile(`${dir}/deno.json`, "{}\n");
    const entry = (path: string) => stampOf(dir, path);
    const record: BundleRecord = {
      deno: Deno.version.deno,
      dir: "cli-x",
      files: [entry("src/a.ts"), entry("deno.json")],
    };
    assert.equal(isFresh(record, dir), true);
    assert.equal(isFresh({ ...record, deno: "0.0.0" }, dir), false, "another Deno");
    assert.equal(
      isFresh({ ...record, files: [...record.files, ["src/gone.ts", 1, 1, 1]] }, dir),
      false,
      "removed",
    );
    await Deno.utime(`${dir}/src/a.ts`, new Date(), new Date(Date.now() + 5000));
    assert.equal(isFresh(record, dir), false, "touched");
    await Deno.writeTextFile(`${dir}/src/a.ts`, "export const a = 2;\n");
    const same = { ...record, files: [entry("src/a.ts"), entry("deno.json")] };
    assert.equal(isFresh(same, dir), true);
    await Deno.writeTextFile(`${dir}/src/a.ts`, "export const a = 22;\n");
    await Deno.utime(`${dir}/src/a.ts`, new Date(), new Date(same.files[0]![2]));
    assert.equal(isFresh(same, dir), false, "same mtime, another size");
    // Same size, the old mtime put back (as cp -p or rsync -a do): the ctime tells.
    const before = entry("src/a.ts");
    await new Promise((r) => setTimeout(r, 1100)); // a later ctime: Deno gives it to the second
    await Deno.writeTextFile(`${dir}/src/a.ts`, "export const a = 33;\n");
    await Deno.utime(`${dir}/src/a.ts`, new Date(), new Date(before[2]));
    const now = entry("src/a.ts");
    assert.deepEqual([now[1], now[2]], [before[1], before[2]], "size and mtime as recorded");
    assert.equal(isFresh({ ...record, files: [before] }, dir), false, "another ctime");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Runs the CLI of the project's copy at `root` (as the alumet task does, through main.ts) in `cwd`. */
const cli = (root: string, cwd: string, args: string[], env: Record<string, string> = {}) =>
  alumet(cwd, args, { root, env });

const recordOf = (root: string) =>
  JSON.parse(Deno.readTextFileSync(`${root}/.build/cli.json`)) as BundleRecord;

/** Whether `deno bundle` works here: `deno task test` bundles this checkout first, and records a failure. */
function bundlingMissing(): string | undefined {
  try {
    if (isFresh(recordOf(ROOT), ROOT)) return undefined;
  } catch {
    // no bundle
  }
  try {
    return JSON.parse(Deno.readTextFileSync(`${ROOT}/.build/cli-failed.json`)).message;
  } catch {
    return "this checkout has no up-to-date bundle (deno task bundle makes one)";
  }
}

testWith(
  [{ what: "deno bundle", missing: bundlingMissing }],
  "the CLI is bundled on its first run, runs from the bundle (Workers included), and is rebundled after a change",
  async () => {
    const copy = await Deno.makeTempDir({ prefix: "alumet-bundle-copy-" });
    const work = await Deno.makeTempDir({ prefix: "alumet-bundle-run-" });
    try {
      for (const path of ["src", "plugins", "deno.json"]) {
        const out = await new Deno.Command("cp", { args: ["-r", `${ROOT}/${path}`, `${copy}/`] }).output();
        assert.ok(out.success, `cp ${path}`);
      }
      // First run: bundles, then runs from the bundle. The kernel source at 5 ms runs in the sampling Worker,
      // which imports its module from the sources (projectModule).
      const first = await cli(copy, work, [
        "--log-level",
        "debug",
        "--config-override",
        'plugins.procfs.kernel.poll_interval="5ms"',
        "exec",
        "--no-estimate",
        "--",
        "sleep",
        "0.3",
      ]);
      assert.equal(first.code, 0, first.stderr);
      const record = recordOf(copy);
      assert.match(
        first.stderr,
        new RegExp(`Running from the bundle: file://.*/\\.build/${record.dir}/cli\\.js`),
      );
      assert.ok(record.files.some(([p]) => p === "plugins/procfs/kernel.ts"), "the record lists the sources");
      assert.ok(Deno.statSync(`${copy}/.build/${record.dir}/users.lock`).isFile, "its users can mark it");
      const csv = await Deno.readTextFile(`${work}/alumet-output.csv`);
      assert.ok(
        csv.split("\n").some((l) => l.includes("kernel_cpu_time")),
        "no kernel_cpu_time row from the Worker",
      );
      const chunks = [...Deno.readDirSync(`${copy}/.build/${record.dir}`)].filter((e) =>
        e.name.endsWith(".js")
      );
      for (const c of chunks) {
        const text = Deno.readTextFileSync(`${copy}/.build/${record.dir}/${c.name}`);
        assert.doesNotMatch(text, /\bimport\("\.\//, `${c.name} imports a chunk by a literal specifier`);
      }
      // Unchanged sources: the same bundle.
      const again = await cli(copy, work, ["--log-level", "debug", "--version"]);
      assert.equal(again.code, 0);
      assert.equal(recordOf(copy).dir, record.dir);
      // A changed source while another process holds the build lock: the sources run, and say why.
      const cliTs = `${copy}/src/agent/cli.ts`;
      await Deno.writeTextFile(cliTs, (await Deno.readTextFile(cliTs)) + "\n");
      {
        using lock = Deno.openSync(`${copy}/.build/cli.lock`, { write: true });
        assert.ok(lock.tryLockSync(true));
        const meanwhile = await cli(copy, work, ["--log-level", "debug", "plugins", "list"]);
        assert.match(meanwhile.stderr, /Running from the sources \(another process is bundling\)/);
        assert.equal(recordOf(copy).dir, record.dir);
      }
      // Once it is free: a new bundle, with the change in it.
      await Deno.writeTextFile(
        cliTs,
        (await Deno.readTextFile(cliTs)).replace('const VERSION = "', 'const VERSION = "9.'),
      );
      const changed = await cli(copy, work, ["--version"]);
      assert.match(changed.stdout, /alumet 9\./);
      assert.notEqual(recordOf(copy).dir, record.dir);
      // Asked for the sources: they run, and say why.
      const sources = await cli(copy, work, ["--log-level", "debug", "plugins", "list"], {
        ALUMET_NO_BUNDLE: "1",
      });
      assert.equal(sources.code, 0, sources.stderr);
      assert.match(sources.stderr, /Running from the sources \(ALUMET_NO_BUNDLE is set\)/);
    } finally {
      await Deno.remove(copy, { recursive: true });
      await Deno.remove(work, { recursive: true });
    }
  },
);

Deno.test("removeOld: an hour-old bundle goes, unless it is the current one or a live process runs from it", async () => {
  const build = await Deno.makeTempDir({ prefix: "alumet-bundle-old-" });
  const held: Deno.FsFile[] = [];
  try {
    const make = async (name: string, hoursAgo: number, users: "none" | "idle" | "running") => {
      await Deno.mkdir(`${build}/${name}`);
      if (users !== "none") await Deno.writeFile(`${build}/${name}/users.lock`, new Uint8Array());
      if (users === "running") {
        // What a run from that bundle holds for its lifetime: a shared lock (another open file: flock tells them
        // apart even in one process).
        const f = await Deno.open(`${build}/${name}/users.lock`, { read: true });
        assert.ok(f.tryLockSync(false));
        held.push(f);
      }
      const t = new Date(Date.now() - hoursAgo * 3_600_000);
      await Deno.utime(`${build}/${name}`, t, t);
    };
    await make("cli-old-idle", 2, "idle");
    await make("cli-old-running", 2, "running");
    await make("cli-old-unmarked", 2, "none");
    await make("cli-recent", 0, "idle");
    await make("cli-current", 3, "idle");
    removeOld(build, "cli-current");
    const left = [...Deno.readDirSync(build)].map((e) => e.name).sort();
    assert.deepEqual(left, ["cli-current", "cli-old-running", "cli-recent"]);
  } finally {
    for (const f of held) f.close();
    await Deno.remove(build, { recursive: true });
  }
});

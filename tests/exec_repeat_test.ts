/**
 * `alumet exec --repeat N` runs the program N times in one agent and reports mean ± standard deviation and the
 * range of every figure, as `perf stat -r`; it stops at the first failure and exits with its code.
 */
import assert from "node:assert/strict";
import { alumet, inTempDir } from "./testdata/exec/cli.ts";
import type { RepeatReport } from "../src/agent/summary.ts";

const tempDir = <T>(f: (dir: string) => Promise<T>) => inTempDir("exec-repeat", f);

const lines = async (path: string) => (await Deno.readTextFile(path)).trim().split("\n");

Deno.test("exec --repeat 3 runs the program 3 times and gives each figure's mean, standard deviation and range", async () => {
  await tempDir(async (dir) => {
    const r = await alumet(dir, [
      "--plugins",
      "procfs",
      "exec",
      "--repeat",
      "3",
      "--json",
      "r.json",
      "--",
      "sh",
      "-c",
      "echo $$ >> runs.txt; i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const pids = await lines(`${dir}/runs.txt`);
    assert.equal(pids.length, 3);
    assert.equal(new Set(pids).size, 3, "three processes");
    assert.match(r.stderr, /by alumet, 3 runs \(mean ± standard deviation, \[min … max\]\):/);
    assert.match(r.stderr, /Exit code 0: that of run 3 \(last run\)\./);
    const j = JSON.parse(await Deno.readTextFile(`${dir}/r.json`)) as RepeatReport;
    assert.equal(j.runs, 3);
    assert.equal(j.results.length, 3);
    // Each run is its own process, measured with its own figures (the pids of the runs are those the program wrote).
    assert.deepEqual(j.results.map((x) => String(x.pid)), pids);
    // The statistics are those of the runs' figures: recomputed here from each run's report.
    for (
      const [label, get] of [
        ["elapsed", (x: RepeatReport["results"][number]) => x.elapsed_s],
        ["CPU time", (x: RepeatReport["results"][number]) => x.cpu!.total_s],
      ] as const
    ) {
      const values = j.results.map(get);
      const mean = values.reduce((a, v) => a + v, 0) / 3;
      const sd = Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / 2);
      const s = j.statistics.find((x) => x.label === label)!;
      assert.equal(s.n, 3);
      assert.ok(
        Math.abs(s.mean - mean) < 1e-12 && Math.abs(s.stddev - sd) < 1e-12,
        `${label}: ${JSON.stringify(s)}`,
      );
      assert.equal(s.min, Math.min(...values));
      assert.equal(s.max, Math.max(...values));
      // The text gives the same mean and range.
      const line = new RegExp(`^\\s+([\\d.]+) ± ([\\d.]+) .*\\s${label}   \\[([\\d.]+) … ([\\d.]+)\\]$`, "m")
        .exec(
          r.stderr,
        );
      assert.ok(line, `${label} in:\n${r.stderr}`);
      assert.equal(line[1], mean.toFixed(6));
      assert.equal(line[2], sd.toFixed(6));
      assert.equal(line[3], Math.min(...values).toFixed(6));
    }
  });
});

Deno.test("exec --repeat stops at the first failing run and exits with its code; --ignore-exit-code runs them all", async (t) => {
  const script = 'echo x >> runs.txt; test "$(wc -l < runs.txt)" -lt 2 || exit 7';
  await t.step("stops after run 2, exit code 7", async () => {
    await tempDir(async (dir) => {
      const r = await alumet(dir, ["--plugins", "procfs", "exec", "--repeat", "4", "--", "sh", "-c", script]);
      assert.equal(r.code, 7, r.stderr);
      assert.equal((await lines(`${dir}/runs.txt`)).length, 2);
      assert.match(r.stderr, /2 runs of 4/);
      assert.match(r.stderr, /Stopped after run 2 of 4: it exited with 7\./);
      assert.match(r.stderr, /Exit code 7: that of run 2 \(first failure\)\./);
    });
  });
  await t.step("--ignore-exit-code: 4 runs, exit 0", async () => {
    await tempDir(async (dir) => {
      const r = await alumet(dir, [
        "--plugins",
        "procfs",
        "exec",
        "--repeat",
        "4",
        "--ignore-exit-code",
        "--",
        "sh",
        "-c",
        script,
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal((await lines(`${dir}/runs.txt`)).length, 4);
      assert.match(r.stderr, /by alumet, 4 runs /);
    });
  });
  await t.step("a number of runs that is not one is refused before anything runs", async () => {
    await tempDir(async (dir) => {
      for (const n of ["0", "-1", "two", "1.5"]) {
        const r = await alumet(dir, ["--plugins", "procfs", "exec", `--repeat=${n}`, "--", "touch", "ran"]);
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, /^alumet: Option --repeat needs a number of runs from 1 to 100000, not "/m);
      }
      await assert.rejects(Deno.stat(`${dir}/ran`));
    });
  });
});

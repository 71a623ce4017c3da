/**
 * `alumet exec --json PATH` writes the summary as one JSON document (units in the keys), to a file or, with
 * `-`, to stdout; a path that cannot be written is refused before the program runs.
 */
import assert from "node:assert/strict";
import { alumet, inTempDir } from "./testdata/exec/cli.ts";
import type { RunReport } from "../src/agent/summary.ts";

const tempDir = <T>(f: (dir: string) => Promise<T>) => inTempDir("exec-json", f);

/** A figure of the text summary: the number before `s   <label>`. */
function textFigure(stderr: string, label: string): number {
  const m = new RegExp(`^\\s+([\\d.,]+) \\S*\\s+${label}`, "m").exec(stderr);
  assert.ok(m, `no "${label}" in:\n${stderr}`);
  return Number(m[1]!.replaceAll(",", ""));
}

Deno.test("exec --json PATH writes every figure of the text summary, with the exit code", async () => {
  await tempDir(async (dir) => {
    const r = await alumet(dir, [
      "--plugins",
      "procfs",
      "exec",
      "--json",
      "summary.json",
      "--",
      "sh",
      "-c",
      "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; exit 3",
    ]);
    assert.equal(r.code, 3, r.stderr);
    const report = JSON.parse(await Deno.readTextFile(`${dir}/summary.json`)) as RunReport;
    assert.deepEqual(report.command, ["sh", "-c", "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; exit 3"]);
    assert.equal(report.exit_code, 3);
    assert.equal(report.signal, null);
    assert.equal(typeof report.pid, "number");
    // The text (stderr) and the JSON give the same figures: the text rounds to the µs.
    assert.equal(report.cpu!.source, "rusage");
    assert.equal(report.cpu!.total_s.toFixed(6), textFigure(r.stderr, "CPU time").toFixed(6));
    assert.equal(report.elapsed_s.toFixed(6), textFigure(r.stderr, "elapsed").toFixed(6));
    assert.ok(
      Math.abs(report.cpu!.total_s - report.cpu!.user_s - report.cpu!.system_s) < 1e-9,
      JSON.stringify(report.cpu),
    );
    assert.equal(report.cpu!.share_percent!.toFixed(2), textFigure(r.stderr, "CPU share").toFixed(2));
    assert.equal(
      report.peak_memory_bytes! / 1024,
      Number(/\(([\d,]+) KiB/.exec(r.stderr)![1]!.replaceAll(",", "")),
    );
    // The program's series (procfs follows its process tree): each with its unit, as the text lists them.
    const user = report.series.find((s) => s.label === "cpu_time_delta (kind=user)");
    assert.ok(
      user !== undefined && user.unit === "ns" && user.kind === "delta",
      JSON.stringify(report.series),
    );
    for (const s of report.series) assert.match(r.stderr, new RegExp(` ${s.label.replace(/[()]/g, "\\$&")}`));
    assert.equal(report.lost_points, 0);
  });
});

Deno.test("exec --json - writes the JSON to stdout after the program's own output", async () => {
  await tempDir(async (dir) => {
    const r = await alumet(dir, ["--plugins", "procfs", "exec", "--json", "-", "--", "echo", "hello"]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.startsWith("hello\n"), r.stdout);
    const report = JSON.parse(r.stdout.slice("hello\n".length)) as RunReport;
    assert.equal(report.exit_code, 0);
    assert.deepEqual(report.command, ["echo", "hello"]);
    assert.match(r.stderr, /Measured for echo hello/);
  });
});

Deno.test("exec --json with a path that cannot be written fails before the program runs", async () => {
  await tempDir(async (dir) => {
    const r = await alumet(dir, [
      "--plugins",
      "procfs",
      "exec",
      "--json",
      `${dir}/no/such/dir/s.json`,
      "--",
      "touch",
      "ran",
    ]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^alumet: Cannot write the JSON summary to .*no\/such\/dir\/s\.json: /m);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    await assert.rejects(Deno.stat(`${dir}/ran`));
  });
});

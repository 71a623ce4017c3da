import assert from "node:assert/strict";
import { ExecSummary, outputLabels } from "./summary.ts";

function summaryOf(options: Partial<Parameters<ExecSummary["format"]>[0]> = {}): string {
  const s = new ExecSummary();
  s.pid = "42";
  return s.format({ elapsedMs: 1000, outputs: [], nCpus: 2, ...options });
}

Deno.test("ExecSummary prints peak memory in binary units with the exact KiB, not the unit's code", () => {
  const text = summaryOf({ peakRssBytes: 1_613_824 });
  assert.match(text, /^\s+1\.5 MiB peak memory \(1,576 KiB, max resident set size\)$/m, text);
  assert.doesNotMatch(text, /By/);
  const small = summaryOf({ peakRssBytes: 700 * 1024, peakSource: "sampled" });
  assert.match(small, /^\s+700\.0 KiB peak memory \(700 KiB, sampled\)$/m, small);
});

Deno.test("ExecSummary quotes the program's arguments as a shell would take them back", async (t) => {
  await t.step("an argument with spaces, quotes or shell characters is single-quoted", () => {
    const text = summaryOf({ command: ["sh", "-c", "i=0; echo 'it' \"$i\""] });
    assert.match(text, / Measured for sh -c 'i=0; echo '\\''it'\\'' "\$i"' \(pid 42\) by alumet:/, text);
  });
  await t.step("plain arguments stay as typed", () => {
    assert.match(summaryOf({ command: ["sleep", "1"] }), / Measured for sleep 1 \(pid 42\) by alumet:/);
  });
  await t.step("without a command line (a process being watched that has none): the pid", () => {
    assert.match(summaryOf(), / Measured for pid 42 by alumet:/);
  });
});

Deno.test("outputLabels names only the outputs that wrote points when their statistics are given", () => {
  const outputs = [
    { name: "output/csv/main", description: "out.csv" },
    { name: "output/log/main", description: "log" },
    { name: "output/exec-summary/summary", description: "exec-summary" },
  ];
  const stats = new Map([
    ["output/csv/main", { points: 0 }],
    ["output/log/main", { points: 12 }],
    ["output/exec-summary/summary", { points: 12 }],
  ]);
  assert.deepEqual(outputLabels(outputs, ["exec-summary"], stats), ["log"]);
  assert.deepEqual(outputLabels(outputs, ["exec-summary"]), ["out.csv (csv)", "log"]);
});

Deno.test("ExecSummary names no output as having the others when none wrote a point", async (t) => {
  await t.step("points lost, nothing written", () => {
    const text = summaryOf({ lost: 5, outputs: [] });
    assert.match(text, /Series incomplete: 5 points lost \(see the errors above\); no output wrote any/);
    assert.doesNotMatch(text, /went to/);
  });
  await t.step("points lost, some written", () => {
    const text = summaryOf({ lost: 1, outputs: ["out.csv (csv)"] });
    assert.match(
      text,
      /Series incomplete: 1 point lost \(see the errors above\); the others went to: out\.csv/,
    );
  });
});

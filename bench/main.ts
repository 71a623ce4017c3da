/**
 * `deno task bench`: runs every benchmark 5 times, prints medians (with min and max, since these machines
 * are shared and noisy) and checks each target. Exits 1 when a target is missed.
 */
import { runThroughput } from "./pipeline.ts";

interface Row {
  name: string;
  unit: string;
  runs: number[];
  target?: { op: ">=" | "<="; value: number };
}

const RUNS = 5;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (x: number) => x >= 100 ? Math.round(x).toLocaleString("en-US") : x.toFixed(2);

const dir = await Deno.makeTempDir({ prefix: "alumet-bench-" });
const rows: Row[] = [];
try {
  for (const [output, target] of [["null", 2_000_000], ["csv", 1_000_000]] as const) {
    await runThroughput(output, dir); // warm-up (JIT)
    const runs: number[] = [];
    for (let i = 0; i < RUNS; i++) runs.push((await runThroughput(output, dir)).pps);
    rows.push({
      name: `pipeline: source → transform → ${output} (1000-point batches, 2 attributes)`,
      unit: "points/s",
      runs,
      target: { op: ">=", value: target },
    });
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}

let failed = 0;
const lines = [
  `${"benchmark".padEnd(72)} ${"median".padStart(12)} ${"min".padStart(12)} ${"max".padStart(12)}  target`,
];
for (const r of rows) {
  const m = median(r.runs);
  let verdict = "";
  if (r.target) {
    const ok = r.target.op === ">=" ? m >= r.target.value : m <= r.target.value;
    if (!ok) failed++;
    verdict = `${r.target.op} ${fmt(r.target.value)} ${r.unit}: ${ok ? "PASS" : "FAIL"}`;
  }
  lines.push(
    `${r.name.padEnd(72)} ${fmt(m).padStart(12)} ${fmt(Math.min(...r.runs)).padStart(12)} ${
      fmt(Math.max(...r.runs)).padStart(12)
    }  ${verdict}`,
  );
}
// deno-lint-ignore no-console
console.log(lines.join("\n"));
// deno-lint-ignore no-console
console.log(
  `\nmedians of ${RUNS} runs after one warm-up; ${Deno.build.target}, ${navigator.hardwareConcurrency} CPUs`,
);
Deno.exit(failed > 0 ? 1 : 0);

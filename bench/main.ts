/**
 * `deno task bench`: every benchmark, 5 runs each (medians, with min and max: these machines are shared and
 * noisy), each checked against its target. Exits 1 when a target is missed.
 *
 * `BENCH_QUICK=1` runs each once, shorter, to check that the benchmarks work (figures not comparable).
 */
import { runThroughput } from "./pipeline.ts";
import { runCLoop, runSampling } from "./sampling.ts";
import { runMemory } from "./memory.ts";
import { runExec, runExecRss } from "./exec.ts";
import { runPerfBench } from "./perf.ts";
import { runSyscalls } from "./syscalls.ts";
import { nvmlCost, raplPerfCost, raplPowercapCost } from "./energy.ts";
import { runReportBench } from "./report.ts";
import { attributionCost } from "./attribution.ts";
import { runOutputsBench } from "./outputs.ts";
import { runCsvFormat, runTickCost } from "./csv_format.ts";
import { runOverhead } from "./overhead.ts";

interface Row {
  name: string;
  unit: string;
  runs: number[];
  target?: { op: ">=" | "<="; value: number };
}

const QUICK = Deno.env.get("BENCH_QUICK") === "1";
const RUNS = QUICK ? 1 : 5;
const SAMPLING_SECONDS = QUICK ? 2 : 10;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (x: number) =>
  x >= 1000 ? Math.round(x).toLocaleString("en-US") : x >= 100 ? x.toFixed(0) : x.toFixed(2);
const rows: Row[] = [];
const only = Deno.args[0];
const want = (name: string) => only === undefined || name.startsWith(only);

async function repeat<T>(n: number, fn: () => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < n; i++) out.push(await fn());
  return out;
}

// deno-lint-ignore no-console
const say = (s: string) => console.error(s);

if (want("throughput")) {
  const dir = await Deno.makeTempDir({ prefix: "alumet-bench-" });
  try {
    for (const [output, target] of [["null", 2_000_000], ["csv", 1_000_000]] as const) {
      say(`throughput → ${output}…`);
      await runThroughput(output, dir); // warm-up (JIT)
      const runs = (await repeat(RUNS, () => runThroughput(output, dir))).map((r) => r.pps);
      rows.push({
        name: `throughput: source → transform → ${output}, 1000-point batches, 2 attributes`,
        unit: "points/s",
        runs,
        target: { op: ">=", value: target },
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (want("sampling")) {
  const cases = [
    ["procStat", "1ms", "reads /proc/stat", 99.5, undefined],
    ["nothing", "1ms", "polls nothing", undefined, 2.5],
    ["procStat", "100us", "reads /proc/stat", 95, undefined],
  ] as const;
  for (const [exp, period, what, onTimeTarget, cpuTarget] of cases) {
    // At 1 ms, each round also runs the reference C loop right after the Worker: what a normal-priority thread
    // gets from this machine at the same moment (its ticks on time are the floor of the agent's).
    const paired = exp === "procStat" && period === "1ms";
    say(`sampling ${exp} at ${period}${paired ? ", each round with the C loop" : ""}…`);
    const rs = await repeat(RUNS, async () => ({
      agent: await runSampling(exp, period, SAMPLING_SECONDS),
      c: paired ? await runCLoop(1000, SAMPLING_SECONDS) : undefined,
    }));
    const label = `sampling Worker, ${period}, ${what}, ${SAMPLING_SECONDS} s`;
    rows.push({
      name: `${label}: ticks on time`,
      unit: "%",
      runs: rs.map((r) => r.agent.onTimePct),
      ...(onTimeTarget !== undefined ? { target: { op: ">=" as const, value: onTimeTarget } } : {}),
    });
    rows.push({
      name: `${label}: CPU`,
      unit: "% of a core",
      runs: rs.map((r) => r.agent.cpuPct),
      ...(cpuTarget !== undefined ? { target: { op: "<=" as const, value: cpuTarget } } : {}),
    });
    rows.push({ name: `${label}: lateness p50`, unit: "µs", runs: rs.map((r) => r.agent.p50Us) });
    rows.push({ name: `${label}: lateness p99`, unit: "µs", runs: rs.map((r) => r.agent.p99Us) });
    if (paired && rs.every((r) => r.c !== undefined)) {
      const c = `reference: C loop, clock_nanosleep at 1ms, ${SAMPLING_SECONDS} s, same rounds`;
      rows.push({ name: `${c}: ticks on time`, unit: "%", runs: rs.map((r) => r.c!.onTimePct) });
      rows.push({ name: `${c}: CPU`, unit: "% of a core", runs: rs.map((r) => r.c!.cpuPct) });
      rows.push({
        name: "ticks on time: the Worker reading /proc/stat − the C loop, per round",
        unit: "points",
        runs: rs.map((r) => r.agent.onTimePct - r.c!.onTimePct),
      });
    }
  }
}

if (want("memory")) {
  say("memory: procfs following 1000 sleeping processes…");
  const rs = await repeat(QUICK ? 1 : 3, () => runMemory(1000, QUICK ? 4000 : 8000));
  rows.push({
    name: "RSS, procfs + csv following 1000 processes at 1 s",
    unit: "MiB",
    runs: rs.map((r) => r.withMiB),
    target: { op: "<=", value: 80 },
  });
  rows.push({ name: "RSS, the same agent following none", unit: "MiB", runs: rs.map((r) => r.withoutMiB) });
  rows.push({
    name: "RSS cost per followed process",
    unit: "KiB",
    runs: rs.map((r) => (r.withMiB - r.withoutMiB) * 1024 / 1000),
  });
}

if (want("exec")) {
  say("exec -- true…");
  const rs = await repeat(RUNS, () => runExec(QUICK ? 3 : 7));
  rows.push({
    name: "exec -- true, over a bare `deno run` of an empty script",
    unit: "ms",
    runs: rs.map((r) => r.execMs - r.bareMs),
    target: { op: "<=", value: 25 },
  });
  rows.push({ name: "exec -- true, end to end", unit: "ms", runs: rs.map((r) => r.execMs) });
  rows.push({ name: "bare `deno run` of an empty script", unit: "ms", runs: rs.map((r) => r.bareMs) });
  rows.push({
    name: "exec -- true from the sources (ALUMET_NO_BUNDLE=1), over bare",
    unit: "ms",
    runs: rs.map((r) => r.sourcesMs - r.bareMs),
  });
  rows.push({
    name: "exec -- true, a copy of the bundle with the task's V8 flags, over bare",
    unit: "ms",
    runs: rs.map((r) => r.eagerCopyMs - r.bareMs),
  });
  rows.push({
    name: "  another copy without --no-lazy (V8's lazy compilation), over bare",
    unit: "ms",
    runs: rs.map((r) => r.lazyCopyMs - r.bareMs),
  });
  if (rs.every((r) => r.perfMs !== undefined)) {
    rows.push({ name: "perf stat -- true", unit: "ms", runs: rs.map((r) => r.perfMs!) });
    rows.push({
      name: "exec -- true ÷ perf stat -- true",
      unit: "×",
      runs: rs.map((r) => r.execMs / r.perfMs!),
    });
  }
  say("exec -- sleep 3: resident memory…");
  const mem = await repeat(QUICK ? 1 : 3, () => runExecRss());
  rows.push({
    name: "RSS of exec -- sleep (defaults), over a bare `deno run` waiting as long",
    unit: "MiB",
    runs: mem.map((r) => r.execMiB - r.bareMiB),
    target: { op: "<=", value: 12 },
  });
  rows.push({ name: "RSS of exec -- sleep (defaults)", unit: "MiB", runs: mem.map((r) => r.execMiB) });
  rows.push({ name: "RSS of the same from the sources", unit: "MiB", runs: mem.map((r) => r.sourcesMiB) });
  rows.push({ name: "RSS of a bare `deno run` waiting", unit: "MiB", runs: mem.map((r) => r.bareMiB) });
  rows.push({
    name: "  of which pages of the deno executable: exec, over bare",
    unit: "MiB",
    runs: mem.map((r) => r.execBinaryMiB - r.bareBinaryMiB),
  });
  rows.push({
    name: "  the rest (heaps, stacks, libraries): exec, over bare",
    unit: "MiB",
    runs: mem.map((r) => (r.execMiB - r.execBinaryMiB) - (r.bareMiB - r.bareBinaryMiB)),
  });
}

if (want("syscalls")) {
  say("syscalls: perf group read and /proc/stat pread, FFI against C…");
  const rs = (await repeat(RUNS, () => runSyscalls(QUICK ? 20_000 : 200_000))).filter((r) => r !== undefined);
  if (rs.length > 0) {
    rows.push({
      name: "perf group read (3 counters), C loop",
      unit: "ns",
      runs: rs.map((r) => r.cPerfReadNs),
    });
    rows.push({
      name: "perf group read, Deno FFI, raw call + error check",
      unit: "ns",
      runs: rs.map((r) => r.ffiPerfReadNs),
    });
    rows.push({
      name: "perf group read: FFI raw ÷ C",
      unit: "×",
      runs: rs.map((r) => r.ffiPerfReadNs / r.cPerfReadNs),
      target: { op: "<=", value: 1.3 },
    });
    rows.push({
      name: "perf group read + decode (PerfGroup.read)",
      unit: "ns",
      runs: rs.map((r) => r.ffiPerfReadDecodeNs),
    });
    rows.push({ name: "/proc/stat pread, C loop", unit: "ns", runs: rs.map((r) => r.cProcPreadNs) });
    rows.push({
      name: "/proc/stat pread, Deno FFI (ProcFile.read)",
      unit: "ns",
      runs: rs.map((r) => r.ffiProcPreadNs),
    });
    rows.push({
      name: "/proc/stat pread: FFI ÷ C",
      unit: "×",
      runs: rs.map((r) => r.ffiProcPreadNs / r.cProcPreadNs),
      target: { op: "<=", value: 1.3 },
    });
  }
}

if (want("energy")) {
  // Code-path costs: these machines have no RAPL and no GPU (see energy.ts for what each figure covers).
  say("energy: rapl (powercap fixture, msr PMU) at 1 kHz, nvml stand-in…");
  const n = QUICK ? 500 : 2000;
  rows.push({
    name: "rapl powercap path, 4 fixture zones, 1 kHz: cost per poll (code path)",
    unit: "µs",
    runs: await repeat(RUNS, () => Promise.resolve(raplPowercapCost(n))),
  });
  const perf = (await repeat(RUNS, () => Promise.resolve(raplPerfCost(n)))).filter((x) => x !== undefined);
  if (perf.length > 0) {
    rows.push({
      name: "rapl perf path, 1 CPU-wide counter on the msr PMU, 1 kHz: cost per poll",
      unit: "µs",
      runs: perf,
    });
  } else say("energy: rapl perf path skipped (no msr PMU, or not allowed to open a CPU-wide counter)");
  const nv = (await repeat(RUNS, () => nvmlCost(QUICK ? 2000 : 20_000))).filter((x) => x !== undefined);
  if (nv.length > 0) {
    rows.push({
      name: "nvml source, H100 stand-in, full mode: cost per poll (code path)",
      unit: "µs",
      runs: nv,
    });
  } else say("energy: nvml skipped (no gcc to build the stand-in library)");
}

if (want("perf")) {
  if (Deno.uid() !== 0) {
    say("perf: skipped (system-wide counters need root)");
  } else {
    say("perf: 4 events system-wide at 1 ms to csv, against perf stat -I 1 -a…");
    const rs = await repeat(RUNS, () => runPerfBench(SAMPLING_SECONDS));
    rows.push({
      name: "perf plugin, 4 events system-wide, 1 ms, to csv: agent CPU per tick (after 5 s of warm-up)",
      unit: "µs",
      runs: rs.map((r) => r.agentUsPerTick),
    });
    rows.push({
      name: "perf stat -I 1 -a -x, (same events): CPU per printed interval",
      unit: "µs",
      runs: rs.map((r) => r.perfUsPerInterval),
    });
    const withC = rs.filter((r) => r.cUsPerTick !== undefined && r.agentOverC !== undefined);
    if (withC.length > 0) {
      rows.push({
        name: "C, the same design (bench/programs/tick.c, same lines): CPU per tick",
        unit: "µs",
        runs: withC.map((r) => r.cUsPerTick!),
      });
      rows.push({
        name: "agent CPU per tick ÷ the same design in C",
        unit: "×",
        runs: withC.map((r) => r.agentOverC!),
        target: { op: "<=", value: 1.2 },
      });
    }
    rows.push({
      name: "agent CPU per tick ÷ perf's per interval",
      unit: "×",
      runs: rs.map((r) => r.agentUsPerTick / r.perfUsPerInterval),
      target: { op: "<=", value: 0.5 },
    });
    rows.push({
      name: "perf plugin at 1 ms: ticks on time",
      unit: "%",
      runs: rs.map((r) => r.onTimePct),
      target: { op: ">=", value: 99.5 },
    });
    rows.push({
      name: "perf stat -I 1: intervals printed per second",
      unit: "/s",
      runs: rs.map((r) => r.perfIntervals / SAMPLING_SECONDS),
    });
    say("perf + procfs kernel, both at 1 ms…");
    const both = await repeat(RUNS, () => runPerfBench(SAMPLING_SECONDS, true));
    rows.push({
      name: "perf plugin + procfs kernel, both at 1 ms, to csv: agent CPU per tick",
      unit: "µs",
      runs: both.map((r) => r.agentUsPerTick),
    });
  }
}

if (want("overhead")) {
  say(
    "overhead: a CPU-bound C program alone, under alumet exec and under perf stat -I 1 -a, rotated rounds…",
  );
  const r = await runOverhead({ quick: QUICK, rounds: QUICK ? 1 : 7, log: say });
  // deno-lint-ignore no-console
  console.log(`${r.markdown}\n`);
  rows.push(...r.rows);
}

if (want("csv_format")) {
  say("csv format: the csv output against a plain TypeScript formatter…");
  rows.push(...await runCsvFormat({ rounds: QUICK ? 1 : 7, batches: QUICK ? 20 : 200 }));
  say("1 ms tick: agent CPU per tick, and a C loop doing the same sleeps, perf reads and fprintf…");
  rows.push(...await runTickCost({ rounds: QUICK ? 1 : 5, seconds: QUICK ? 1 : 5 }));
}

if (want("outputs")) {
  say("outputs: each output to its real server on loopback, the journal, import costs…");
  rows.push(...await runOutputsBench({ runs: RUNS, quick: QUICK, say }));
}

if (want("attribution")) {
  say("attribution: 1 000 processes at 1 s, RAPL package + dram…");
  const rs = await repeat(RUNS, () => Promise.resolve(attributionCost(1000, QUICK ? 10 : 60)));
  rows.push({
    name: "energy-attribution, 1 000 processes at 1 s: CPU per interval",
    unit: "ms",
    runs: rs.map((r) => r.cpuMsPerInterval),
  });
  rows.push({
    name: "energy-attribution: largest conservation error over the run",
    unit: "%",
    runs: rs.map((r) => r.maxConservationError * 100),
    target: { op: "<=", value: 1 },
  });
}

if (want("report")) {
  const dir = await Deno.makeTempDir({ prefix: "alumet-bench-" });
  try {
    const n = QUICK ? 50_000 : 500_000;
    say(`report: alumet report on a ${n.toLocaleString("en-US")}-row csv…`);
    const rs = await repeat(RUNS, () => runReportBench(dir, n));
    const what = `alumet report, ${n.toLocaleString("en-US")}-row csv`;
    rows.push({ name: `${what}, end to end (Deno start included)`, unit: "ms", runs: rs.map((r) => r.ms) });
    rows.push({ name: `${what}: page size`, unit: "KiB", runs: rs.map((r) => r.pageBytes / 1024) });
    rows.push({ name: `${what}: peak RSS`, unit: "MiB", runs: rs.map((r) => r.peakMiB) });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

let failed = 0;
const W = 78;
const lines = [
  `${"benchmark".padEnd(W)} ${"median".padStart(11)} ${"min".padStart(11)} ${
    "max".padStart(11)
  }  unit, target`,
];
for (const r of rows) {
  const m = median(r.runs);
  let verdict = r.unit;
  if (r.target) {
    const ok = r.target.op === ">=" ? m >= r.target.value : m <= r.target.value;
    if (!ok) failed++;
    verdict = `${r.unit}, ${r.target.op} ${fmt(r.target.value)}: ${ok ? "PASS" : "FAIL"}`;
  }
  lines.push(
    `${r.name.padEnd(W)} ${fmt(m).padStart(11)} ${fmt(Math.min(...r.runs)).padStart(11)} ${
      fmt(Math.max(...r.runs)).padStart(11)
    }  ${verdict}`,
  );
}
// deno-lint-ignore no-console
console.log(lines.join("\n"));
// deno-lint-ignore no-console
console.log(
  `\nmedians of ${RUNS} runs (memory: ${
    QUICK ? 1 : 3
  }); ${Deno.build.target}, ${navigator.hardwareConcurrency} CPUs` +
    (QUICK ? "; QUICK mode: figures not comparable" : ""),
);
Deno.exit(failed > 0 ? 1 : 0);

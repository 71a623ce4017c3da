/**
 * The 1 kHz path (issue 12, item 3), for `deno task bench csv_format`:
 *
 * 1. **The csv output against a plain TypeScript formatter** writing byte-identical lines from the same
 *    batches to a file (one `writeSync` per batch, as `force_flush` does): batches of 1000 points shaped like
 *    the perf plugin's at 1 ms flushed every 100 ms (100 timestamps, 2 CPUs × 4 u64 counters and 1 f64 ratio
 *    with an attribute). The plain formatter is what one writes without thinking of speed: a template string
 *    per line, the timestamp formatted once per distinct value, the metric's name looked up once per id, then
 *    `TextEncoder.encode` and `writeSync`. Both outputs' files are compared byte for byte once per run. With
 *    `baseline` (the path of another `plugins/csv/mod.ts`, e.g. a `git worktree` of the previous commit), that
 *    output is measured in the same rounds. Rounds rotate the order; figures are points per second of CPU-bound
 *    wall time (the machine is shared: medians and ranges).
 * 2. **The agent's CPU per 1 ms tick** (getrusage of the whole process over `seconds`) of a source in the
 *    sampling Worker that pushes what the perf plugin pushes per tick (10 points) into a null output, into the
 *    csv output, and of one that polls nothing (the wake-up alone); next to **a C program doing the same**:
 *    `clock_nanosleep` to each 1 ms deadline, one `read` of a perf group of 4 software events per CPU
 *    (system-wide; `bench/programs/tick.c`, skipped when not allowed), and the 10 csv lines `fprintf`ed to a
 *    buffered file flushed every 100 ms. The perf plugin itself, against that C loop in the same rounds (the
 *    like-for-like figure of the target), is measured by `bench/perf.ts`.
 *
 * Run alone: `deno run -A bench/csv_format.ts [--baseline=/path/to/old/plugins/csv/mod.ts]`
 * (`BENCH_QUICK=1` for one short run of each).
 *
 * @module
 */
import { Agent, type Batch as BatchType, definePlugin, type MetricId, type Source, unit } from "../mod.ts";
import { Batch } from "../src/model/batch.ts";
import { MetricRegistry } from "../src/model/metrics.ts";
import { Resource } from "../src/model/resources.ts";
import type { ElementContext, Output } from "../src/plugin/plugin.ts";
import { CsvOutput, formatNumber, formatTimestamp } from "../plugins/csv/mod.ts";
import { getrusage, RUSAGE_SELF } from "../src/ffi/libc.ts";
import { parsePerfEvent } from "../src/ffi/perf_events_parse.ts";
import { runCTickLoop } from "./perf.ts";

/** One benchmark figure (what `bench/main.ts` prints: median, min, max of `runs`). */
export interface CsvBenchRow {
  name: string;
  unit: string;
  runs: number[];
  target?: { op: ">=" | "<="; value: number };
}

/** Ticks per batch (a 100 ms flush at 1 ms) and CPUs of the perf-like batches. */
const TICKS = 100;
const CPUS = 2;
const EVENTS = ["task-clock", "page-faults", "context-switches", "msr/tsc/"];
const T0 = 1_764_400_000_000_000_000n;

/** The metrics of the perf-like batches, registered in `registry`. */
function perfLikeMetrics(registry: MetricRegistry): { counters: MetricId<"u64">[]; ratio: MetricId<"f64"> } {
  const counters = EVENTS.map((e) =>
    registry.register("perf", {
      name: `perf_${e.replaceAll(/[^a-z]/g, "_")}`,
      unit: unit("1"),
      valueType: "u64",
    })
  );
  const ratio = registry.register("perf", { name: "perf_running_ratio", unit: unit("1"), valueType: "f64" });
  return { counters, ratio };
}

/** Pushes one tick of the perf plugin's points (per CPU: 4 counters, then the running ratio) into `b`. */
function pushTick(
  b: BatchType,
  m: { counters: MetricId<"u64">[]; ratio: MetricId<"f64"> },
  cpus: readonly { point: { resource: Resource }; ratio: { resource: Resource; attributes: object } }[],
  values: Float64Array,
): void {
  for (let c = 0; c < cpus.length; c++) {
    const cpu = cpus[c]!;
    for (let e = 0; e < m.counters.length; e++) {
      const k = c * 8 + e;
      values[k] = values[k]! + 1000 + ((k * 7919 + values[k]!) % 997);
      b.push(m.counters[e]!, values[k]!, cpu.point);
    }
    b.push(m.ratio, 1 - (values[c]! % 3) * 0.125, cpu.ratio as never);
  }
}

function cpuContexts() {
  const events = Object.freeze({ events: EVENTS.join(",") });
  return Array.from({ length: CPUS }, (_, i) => ({
    point: { resource: Resource.cpuCore(i) },
    ratio: { resource: Resource.cpuCore(i), attributes: events },
  }));
}

/** `n` batches of `TICKS` ticks each, timestamps 1 ms apart (with some nanoseconds of jitter). */
function perfLikeBatches(registry: MetricRegistry, n: number): Batch[] {
  const m = perfLikeMetrics(registry);
  const cpus = cpuContexts();
  const values = new Float64Array(CPUS * 8).fill(1e12);
  const out: Batch[] = [];
  let tick = 0;
  for (let i = 0; i < n; i++) {
    const b = new Batch(TICKS * CPUS * 5);
    for (let t = 0; t < TICKS; t++, tick++) {
      b.timestamp = T0 + BigInt(tick) * 1_000_000n + BigInt((tick * 104_729) % 90_000);
      pushTick(b, m, cpus, values);
    }
    out.push(b);
  }
  return out;
}

/**
 * The plain formatter: one template string per line, then `TextEncoder.encode` and one `writeSync` per batch.
 * Its columns are fixed by the first batch, as the csv output does (attribute keys sorted, then the late ones).
 */
class PlainCsv implements Output {
  #file: Deno.FsFile;
  #columns: string[] | undefined;
  #names: string[] = [];
  #cells = new WeakMap<object, string>();
  #encoder = new TextEncoder();
  constructor(path: string) {
    this.#file = Deno.openSync(path, { write: true, create: true, truncate: true });
  }
  write(batch: BatchType, ctx: ElementContext): void {
    let out = "";
    if (this.#columns === undefined) {
      const keys = new Set<string>();
      for (let i = 0; i < batch.length; i++) for (const k in batch.attributesAt(i)) keys.add(k);
      this.#columns = [...keys].sort();
      out = [
        "metric",
        "timestamp",
        "value",
        "resource_kind",
        "resource_id",
        "consumer_kind",
        "consumer_id",
        ...this.#columns,
        "__late_attributes",
      ].join(";") + "\n";
    }
    const columns = this.#columns;
    let lastTs: bigint | undefined;
    let tsCell = "";
    for (let i = 0; i < batch.length; i++) {
      const id = batch.metricAt(i);
      let name = this.#names[id];
      if (name === undefined) {
        const m = ctx.metric(id);
        name = this.#names[id] = m.unit.display === "" ? m.name : `${m.name}_${m.unit.display}`;
      }
      const ts = batch.timestampAt(i);
      if (ts !== lastTs) {
        lastTs = ts;
        tsCell = formatTimestamp(ts);
      }
      const v = batch.valueAt(i);
      const r = batch.resourceAt(i);
      const c = batch.consumerAt(i);
      const a = batch.attributesAt(i);
      let cells = this.#cells.get(a);
      if (cells === undefined) {
        cells = "";
        for (const k of columns) cells += `;${a[k] === undefined ? "" : String(a[k])}`;
        let late = "";
        for (const k in a) if (!columns.includes(k)) late += `${late === "" ? "" : ","}${k}=${String(a[k])}`;
        cells += `;${late}`;
        this.#cells.set(a, cells);
      }
      out += `${name};${tsCell};${
        typeof v === "number" ? formatNumber(v) : String(v)
      };${r.kind};${r.id};${c.kind};${c.id}${cells}\n`;
    }
    const bytes = this.#encoder.encode(out);
    for (let done = 0; done < bytes.length;) done += this.#file.writeSync(bytes.subarray(done));
  }
  close(): void {
    this.#file.close();
  }
}

interface Formatter {
  readonly name: string;
  make(path: string): Output & { open?(): void; close(): void };
}

/** Points per second through each formatter, rounds rotated; checks the files are byte-identical. */
export async function runCsvFormat(
  options: { rounds?: number; batches?: number; baseline?: string } = {},
): Promise<CsvBenchRow[]> {
  const rounds = options.rounds ?? 7;
  const n = options.batches ?? 200;
  const registry = new MetricRegistry();
  const batches = perfLikeBatches(registry, n);
  const ctx: ElementContext = { metric: (id) => registry.get(id) };
  const formatters: Formatter[] = [
    { name: "csv", make: (p) => new CsvOutput(p) },
    { name: "plain", make: (p) => new PlainCsv(p) },
  ];
  if (options.baseline !== undefined) {
    const mod = await import(options.baseline);
    const Old = mod.CsvOutput as typeof CsvOutput;
    formatters.push({ name: "baseline", make: (p) => new Old(p) });
  }
  const dir = await Deno.makeTempDir({ prefix: "alumet-csv-format-" });
  const pps = new Map<string, number[]>(formatters.map((f) => [f.name, []]));
  try {
    const points = batches.reduce((s, b) => s + b.length, 0);
    const once = (f: Formatter) => {
      const out = f.make(`${dir}/${f.name}.csv`);
      out.open?.();
      const t = performance.now();
      for (const b of batches) out.write(b, ctx);
      out.close();
      return points / ((performance.now() - t) / 1000);
    };
    for (const f of formatters) once(f); // warm-up (JIT)
    const files = formatters.map((f) => Deno.readFileSync(`${dir}/${f.name}.csv`));
    for (let i = 1; i < files.length; i++) {
      if (!sameBytes(files[0]!, files[i]!)) {
        throw new Error(`${formatters[i]!.name} does not write the same bytes as ${formatters[0]!.name}`);
      }
    }
    for (let r = 0; r < rounds; r++) {
      for (let k = 0; k < formatters.length; k++) {
        const f = formatters[(r + k) % formatters.length]!;
        pps.get(f.name)!.push(once(f));
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const csv = pps.get("csv")!;
  const plain = pps.get("plain")!;
  const rows: CsvBenchRow[] = [
    { name: "csv output, perf-like 1000-point batches, to a file", unit: "points/s", runs: csv },
    { name: "plain TypeScript formatter, the same lines", unit: "points/s", runs: plain },
    {
      name: "csv output ÷ plain TypeScript formatter",
      unit: "×",
      runs: csv.map((x, i) => x / plain[i]!),
      target: { op: ">=", value: 0.8 },
    },
  ];
  const base = pps.get("baseline");
  if (base !== undefined) {
    rows.push({ name: "baseline csv output (--baseline)", unit: "points/s", runs: base });
    rows.push({ name: "csv output ÷ baseline", unit: "×", runs: csv.map((x, i) => x / base[i]!) });
  }
  return rows;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * A sampling-Worker source (created from this module's URL) that pushes what the perf plugin pushes at each
 * tick for `cpus` CPUs: 4 u64 counters and one f64 ratio each. `points: 0` polls nothing.
 */
export function perfLikeSource(config: { counters: number[]; ratio: number; points: boolean }): Source {
  if (!config.points) return { poll() {} };
  const m = { counters: config.counters as MetricId<"u64">[], ratio: config.ratio as MetricId<"f64"> };
  const cpus = cpuContexts();
  const values = new Float64Array(CPUS * 8).fill(1e12);
  return { poll: (b: BatchType) => pushTick(b, m, cpus, values) };
}

/** The agent's CPU (µs) per 1 ms tick of a perf-like source in the sampling Worker, into `output`. */
export async function runAgentTick(
  output: "none" | "null" | "csv",
  seconds: number,
): Promise<{ usPerTick: number; ticks: number }> {
  const dir = await Deno.makeTempDir({ prefix: "alumet-tick-" });
  try {
    const plugin = definePlugin({
      name: "bench",
      start(ctx) {
        const counters = EVENTS.map((e) =>
          ctx.createMetric({
            name: `perf_${e.replaceAll(/[^a-z]/g, "_")}`,
            unit: unit("1"),
            valueType: "u64",
            kind: "counter",
          })
        );
        const ratio = ctx.createMetric({ name: "perf_running_ratio", unit: unit("1"), valueType: "f64" });
        ctx.addSource("hot", {
          module: new URL(import.meta.url),
          export: "perfLikeSource",
          config: { counters, ratio, points: output !== "none" },
        }, { pollInterval: "1ms", flushInterval: "100ms" });
        if (output !== "csv") ctx.addOutput("null", { write(_b: BatchType) {} });
      },
    });
    const csv = (await import("../plugins/csv/mod.ts")).default;
    const agent = new Agent({
      plugins: output === "csv"
        ? [plugin, { plugin: csv, config: { output_path: `${dir}/out.csv` } }]
        : [plugin],
      selfInterval: 3_600_000,
    });
    await agent.start();
    await new Promise((r) => setTimeout(r, 500)); // let the Worker and the JIT settle
    const s0 = { ...agent.stats()!.sources.get("source/bench/hot")! };
    const r0 = getrusage(RUSAGE_SELF);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    await agent.control.flushNow("source/bench/hot");
    await new Promise((r) => setTimeout(r, 20));
    const r1 = getrusage(RUSAGE_SELF);
    const s1 = agent.stats()!.sources.get("source/bench/hot")!;
    await agent.stop();
    await agent[Symbol.asyncDispose]();
    const ticks = s1.polls - s0.polls;
    return { usPerTick: (r1.userUs + r1.systemUs - r0.userUs - r0.systemUs) / ticks, ticks };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * The C program's CPU (µs) per tick: `bench/programs/tick.c` (the reference of `bench/perf.ts`) with the events
 * this machine has, system-wide on the online CPUs; undefined without gcc or without the right to count
 * system-wide (not root).
 */
export async function runCTick(seconds: number): Promise<number | undefined> {
  const events = EVENTS.filter((e) => {
    try {
      parsePerfEvent(e);
      return true;
    } catch {
      return false; // no msr PMU here: 3 events
    }
  });
  const dir = await Deno.makeTempDir({ prefix: "alumet-ctick-" });
  try {
    return await runCTickLoop({ events, seconds, out: `${dir}/out.csv` }).catch((e) => {
      if (String(e).includes("perf_event_open")) return undefined; // not allowed system-wide
      throw e;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The agent's CPU per tick with no points, null and csv outputs, and the C program's, rounds rotated. */
export async function runTickCost(
  options: { rounds?: number; seconds?: number } = {},
): Promise<CsvBenchRow[]> {
  const rounds = options.rounds ?? 5;
  const seconds = options.seconds ?? 5;
  const kinds = ["none", "null", "csv", "c"] as const;
  const runs = new Map<string, number[]>(kinds.map((k) => [k, []]));
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < kinds.length; k++) {
      const kind = kinds[(r + k) % kinds.length]!;
      const us = kind === "c" ? await runCTick(seconds) : (await runAgentTick(kind, seconds)).usPerTick;
      if (us !== undefined) runs.get(kind)!.push(us);
    }
  }
  const csv = runs.get("csv")!;
  const c = runs.get("c")!;
  const rows: CsvBenchRow[] = [
    { name: "agent, Worker source polling nothing, 1 ms: CPU per tick", unit: "µs", runs: runs.get("none")! },
    {
      name: "agent, perf-like source (10 points/tick) → null, 1 ms: CPU per tick",
      unit: "µs",
      runs: runs.get("null")!,
    },
    { name: "agent, perf-like source (10 points/tick) → csv, 1 ms: CPU per tick", unit: "µs", runs: csv },
  ];
  if (c.length === csv.length) {
    rows.push({
      name: "C: sleep, perf group reads, fprintf the csv lines: CPU per tick",
      unit: "µs",
      runs: c,
    });
    // Not like for like: the agent's source pushes synthetic points, the C loop also reads perf counters
    // (system-wide on 2 CPUs, which costs IPIs in a VM). The real perf plugin's figure is bench/perf.ts's.
    rows.push({
      name: "agent → csv (no perf read) ÷ C (with perf reads), CPU per tick: a bound, not the target's ratio",
      unit: "×",
      runs: csv.map((x, i) => x / c[i]!),
    });
  }
  return rows;
}

if (import.meta.main) {
  const quick = Deno.env.get("BENCH_QUICK") === "1";
  const baseline = Deno.args.find((a) => a.startsWith("--baseline="))?.slice("--baseline=".length);
  const which = Deno.args.find((a) => !a.startsWith("--"));
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const rows: CsvBenchRow[] = [];
  if (which === undefined || which === "format") {
    rows.push(
      ...await runCsvFormat({
        rounds: quick ? 1 : 7,
        batches: quick ? 20 : 200,
        ...(baseline ? { baseline } : {}),
      }),
    );
  }
  if (which === undefined || which === "tick") {
    const rounds = Number(Deno.env.get("BENCH_ROUNDS") ?? (quick ? 1 : 5));
    rows.push(
      ...await runTickCost({ rounds, seconds: Number(Deno.env.get("BENCH_SECONDS") ?? (quick ? 1 : 5)) }),
    );
  }
  for (const r of rows) {
    const xs = r.runs;
    // deno-lint-ignore no-console
    console.log(
      `${r.name}: ${median(xs).toPrecision(4)} ${r.unit} (${Math.min(...xs).toPrecision(4)}–${
        Math.max(...xs).toPrecision(4)
      }, ${xs.length} runs)${r.target ? ` target ${r.target.op} ${r.target.value}` : ""}`,
    );
  }
}

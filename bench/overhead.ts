/**
 * `deno task bench overhead`: how much measuring slows the measured program down.
 *
 * The measured program is `programs/spin.c` (CPU-bound, one thread, a 256 KiB working set), built here with
 * gcc and calibrated to about 2.5 s alone; it times itself (wall and CPU time around its loop, and its context
 * switches). It runs alone, under `alumet exec` in each configuration below (the agent started exactly as the
 * `alumet` task starts it), and under `perf stat -I 1 -a` with the same 4 software events as the perf plugin's
 * configurations. Every configuration runs once per round, in an order rotated each round, each run after a
 * quiet moment (up to 5 s waiting for the machine to be idle: these machines are shared); the slowdown of a
 * run is its wall time over the median of the runs alone. Reported per configuration: the median slowdown and its
 * range over the rounds, the same for the program's CPU time, its involuntary context switches, the measuring
 * tool's CPU (user + system of the agent or perf process, its start-up included, the program's own CPU taken
 * out) and its peak RSS (both from wait4 through `programs/rusage.c`), and whether a `SCHED_FIFO` thread was
 * seen in the agent (polled from `/proc`).
 *
 * Targets (issue 12): under `exec` at 1 ms with perf or procfs (realtime off, the default), the slowdown is at
 * most `perf stat -I 1 -a`'s in the same rounds (median of the per-round differences ≤ 0); with the defaults
 * (1 s), the program's wall times over the rounds overlap its wall times alone.
 *
 * `deno run -A bench/overhead.ts [ROUNDS]` runs it (5 rounds by default) and prints the table (markdown, ready
 * for the README) and the checks; `BENCH_QUICK=1` runs one round of a 0.3 s program, to check that it works
 * (figures not comparable). Needs gcc; the perf configurations need root (skipped otherwise), and the
 * `perf stat` one the `perf` command.
 *
 * @module
 */
import { alumetTaskArgs } from "./memory.ts";
import { raplShown } from "../plugins/rapl/discovery.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const PROGRAMS = new URL("./programs/", import.meta.url).pathname;

/** The perf plugin's events here, and `perf stat`'s: the 4 software events of bench/perf.ts. */
export const OVERHEAD_EVENTS = ["task-clock", "page-faults", "context-switches", "msr/tsc/"];

/** One row as `bench/main.ts` prints them: median, min and max of `runs`, checked against `target`. */
export interface OverheadRow {
  name: string;
  unit: string;
  runs: number[];
  target?: { op: ">=" | "<="; value: number };
}

/** A target of the benchmark, checked on one run's figures. */
export interface OverheadCheck {
  name: string;
  ok: boolean;
  detail: string;
}

export interface OverheadOptions {
  /** Rounds (every configuration once per round). Default 5, or 1 when `quick`. */
  rounds?: number;
  /** The program's target wall time alone, seconds. Default 2.5, or 0.3 when `quick`. */
  programSeconds?: number;
  /** One short round, to check that the benchmark works. Default: `BENCH_QUICK=1` in the environment. */
  quick?: boolean;
  /** Progress lines. Default: stderr. */
  log?: (line: string) => void;
}

export interface OverheadResult {
  /** The table, with the date and the machine, ready for the README. */
  markdown: string;
  /** Rows for `bench/main.ts` (figures and the two targets). */
  rows: OverheadRow[];
  checks: OverheadCheck[];
}

type Kind = "alone" | "alumet" | "perf-stat";

interface Config {
  name: string;
  /** For `bench/main.ts`'s rows. */
  short: string;
  kind: Kind;
  /** Agent options before `exec` (alumet only). */
  args?: string[];
  /** Realtime asked for (true), refused (false), or the agent's default (undefined). */
  realtime?: boolean;
  /** Part of the targets: the 1 ms configurations compared with perf stat, the defaults with alone. */
  role?: "at-1ms" | "defaults";
}

interface Run {
  wallNs: number;
  cpuNs: number;
  involuntary: number;
  /** CPU of the measuring process (agent or perf) without the program's, µs; 0 alone. */
  toolCpuUs: number;
  /** Peak RSS of the measuring process (the program's alone), KiB. */
  maxRssKiB: number;
  /** A thread of the agent was seen in SCHED_FIFO. */
  fifoSeen: boolean;
  /** CPU time the machine spent on everything else during the run (steal included), in cores. */
  othersCores: number;
}

/** The machine's busy time so far (all CPUs; user, nice, system, irq, softirq, steal), µs, from /proc/stat. */
function machineBusyUs(): number {
  const f = Deno.readTextFileSync("/proc/stat").split("\n", 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = f;
  return (user! + nice! + system! + irq! + softirq! + (steal ?? 0)) * 1e6 / 100; // USER_HZ: 100
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

// deno-lint-ignore no-console
const stderrLog = (line: string) => console.error(line);

/**
 * How the agent is told to use realtime scheduling for its sampling Worker, or not. On: the config key when the
 * agent's config module has one (realtime opt-in, issue 12 item 1) and `ALUMET_REALTIME=1`; agents without
 * the key use realtime by default for periods up to 3 ms. Off: `ALUMET_NO_REALTIME=1`, which every version
 * honours. Whether it worked is checked from `/proc` (see {@linkcode childHasFifoThread}).
 */
function realtimeSetting(on: boolean | undefined): { args: string[]; env: Record<string, string> } {
  if (on === undefined) return { args: [], env: {} };
  // Each variable set for one side and emptied for the other, whatever the caller's environment says.
  if (!on) return { args: [], env: { ALUMET_NO_REALTIME: "1", ALUMET_REALTIME: "" } };
  const key = realtimeKey();
  return {
    args: key === undefined ? [] : ["--config-override", `${key}=true`],
    env: { ALUMET_REALTIME: "1", ALUMET_NO_REALTIME: "" },
  };
}

let realtimeKeyCache: string | undefined | null = null;

/** The agent's config key for realtime sampling, when its config module defines one. */
function realtimeKey(): string | undefined {
  if (realtimeKeyCache !== null) return realtimeKeyCache;
  let text = "";
  try {
    text = Deno.readTextFileSync(`${ROOT}/src/agent/config.ts`);
  } catch { /* no such module: the environment variable */ }
  // A top-level key of the config file: `realtime` (or `sampling_realtime`…), as it appears in the schema.
  const m = /\b([a-z_]*realtime[a-z_]*)\s*:\s*z\./.exec(text);
  realtimeKeyCache = m ? m[1]! : undefined;
  return realtimeKeyCache;
}

function configs(canPerf: boolean, hasPerf: boolean, hasRapl: boolean): Config[] {
  const procfs = (period: string) => [
    "--plugins",
    "procfs,csv",
    "--config-override",
    `plugins.procfs.kernel.poll_interval="${period}"`,
  ];
  const perf = (period: string) => [
    "--plugins",
    "perf,csv",
    "--config-override",
    `plugins.perf.events=${JSON.stringify(OVERHEAD_EVENTS)}`,
    "--config-override",
    "plugins.perf.system_wide=true",
    "--config-override",
    `plugins.perf.poll_interval="${period}"`,
    "--config-override",
    `plugins.perf.flush_interval="${period === "1ms" || period === "10ms" ? "100ms" : period}"`,
  ];
  const out: Config[] = [
    { name: "program alone", short: "alone", kind: "alone" },
    {
      name: "`alumet exec`, defaults (procfs + csv, the program polled every 1 s)",
      short: "exec, defaults",
      kind: "alumet",
      args: [],
      role: "defaults",
    },
    {
      name: "`alumet exec`, procfs `kernel` at 100 ms",
      short: "exec, procfs 100 ms",
      kind: "alumet",
      args: procfs("100ms"),
    },
    {
      name: "`alumet exec`, procfs `kernel` at 10 ms",
      short: "exec, procfs 10 ms",
      kind: "alumet",
      args: procfs("10ms"),
    },
    {
      name: "`alumet exec`, procfs `kernel` at 1 ms, realtime off",
      short: "exec, procfs 1 ms",
      kind: "alumet",
      args: procfs("1ms"),
      realtime: false,
      role: "at-1ms",
    },
    {
      name: "`alumet exec`, procfs `kernel` at 1 ms, realtime on",
      short: "exec, procfs 1 ms, realtime",
      kind: "alumet",
      args: procfs("1ms"),
      realtime: true,
    },
  ];
  if (canPerf) {
    out.push(
      {
        name: "`alumet exec`, perf system-wide at 100 ms",
        short: "exec, perf 100 ms",
        kind: "alumet",
        args: perf("100ms"),
      },
      {
        name: "`alumet exec`, perf system-wide at 10 ms",
        short: "exec, perf 10 ms",
        kind: "alumet",
        args: perf("10ms"),
      },
      {
        name: "`alumet exec`, perf system-wide at 1 ms, realtime off",
        short: "exec, perf 1 ms",
        kind: "alumet",
        args: perf("1ms"),
        realtime: false,
        role: "at-1ms",
      },
      {
        name: "`alumet exec`, perf system-wide at 1 ms, realtime on",
        short: "exec, perf 1 ms, realtime",
        kind: "alumet",
        args: perf("1ms"),
        realtime: true,
      },
    );
    if (hasPerf) {
      out.push({ name: "`perf stat -I 1 -a`, same 4 events", short: "perf stat -I 1 -a", kind: "perf-stat" });
    }
  }
  if (hasRapl) {
    // The figure papers compare measuring tools on (issue 12: best of seven tools, +0.25 %).
    out.push({
      name: "`alumet exec`, rapl at 1 ms (1 kHz)",
      short: "exec, rapl 1 ms",
      kind: "alumet",
      args: [
        "--plugins",
        "rapl,csv",
        "--config-override",
        'plugins.rapl.poll_interval="1ms"',
        "--config-override",
        'plugins.rapl.flush_interval="100ms"',
      ],
    });
  }
  return out;
}

async function build(dir: string, name: string): Promise<string> {
  const bin = `${dir}/${name}`;
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("gcc", {
      args: ["-O2", "-o", bin, `${PROGRAMS}${name}.c`],
      stdout: "null",
      stderr: "piped",
    }).output();
  } catch (e) {
    throw new Error(
      `Cannot build bench/programs/${name}.c: gcc cannot be run (${(e as Error).message}); install gcc`,
    );
  }
  if (out.code !== 0) {
    throw new Error(`Cannot build bench/programs/${name}.c: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return bin;
}

async function has(cmd: string, args: string[]): Promise<boolean> {
  try {
    const o = await new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).output();
    return o.code === 0;
  } catch {
    return false;
  }
}

/** The scheduling policy of every thread of the children of `pid` (SCHED_FIFO is 1): whether one is FIFO. */
function childHasFifoThread(pid: number): boolean {
  let children: string[];
  try {
    children = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`).trim().split(/\s+/).filter((s) =>
      s
    );
  } catch {
    return false;
  }
  for (const child of children) {
    try {
      for (const t of Deno.readDirSync(`/proc/${child}/task`)) {
        const stat = Deno.readTextFileSync(`/proc/${child}/task/${t.name}/stat`);
        // Fields after the command name start at field 3 (state); policy is field 41.
        const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        if (rest[41 - 3] === "1") return true;
      }
    } catch { /* the process or thread ended meanwhile */ }
  }
  return false;
}

interface Tools {
  dir: string;
  spin: string;
  rusage: string;
}

async function runOnce(tools: Tools, config: Config, iterations: number): Promise<Run> {
  const progOut = `${tools.dir}/spin.out`;
  const rusOut = `${tools.dir}/rusage.out`;
  const program = [tools.spin, String(iterations), progOut];
  let cmd: string[];
  let env: Record<string, string> = {};
  if (config.kind === "alone") cmd = program;
  else if (config.kind === "perf-stat") {
    cmd = [
      "perf",
      "stat",
      "-I",
      "1",
      "-a",
      "-x,",
      "-e",
      OVERHEAD_EVENTS.join(","),
      "-o",
      "/dev/null",
      "--",
      ...program,
    ];
  } else {
    const rt = realtimeSetting(config.realtime);
    env = { ALUMET_LOG: "warn", ...rt.env };
    cmd = [
      Deno.execPath(),
      ...alumetTaskArgs(),
      "--output-file",
      `${tools.dir}/out.csv`,
      ...config.args!,
      ...rt.args,
      "exec",
      "--",
      ...program,
    ];
  }
  const child = new Deno.Command(tools.rusage, {
    args: [rusOut, ...cmd],
    cwd: tools.dir,
    env,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const output = child.output();
  const busy0 = machineBusyUs();
  const t0 = performance.now();
  let fifoSeen = false;
  let done = false;
  void output.finally(() => done = true);
  if (config.kind === "alumet") {
    while (!done) {
      await new Promise((r) => setTimeout(r, 150));
      if (!done && !fifoSeen) fifoSeen = childHasFifoThread(child.pid);
    }
  }
  const o = await output;
  const busyUs = machineBusyUs() - busy0;
  const wallUs = (performance.now() - t0) * 1000;
  if (o.code !== 0) {
    const err = new TextDecoder().decode(o.stderr).trim().split("\n").slice(-8).join("\n");
    throw new Error(`${config.name}: exited with ${o.code}\n${err}`);
  }
  const [wallNs, cpuNs, , involuntary, programCpuUs] = (await Deno.readTextFile(progOut)).trim().split(" ")
    .map(Number);
  const [userUs, sysUs, maxRssKiB] = (await Deno.readTextFile(rusOut)).trim().split(" ").map(Number);
  await Deno.remove(progOut);
  await Deno.remove(`${tools.dir}/out.csv`).catch(() => {});
  return {
    wallNs: wallNs!,
    cpuNs: cpuNs!,
    involuntary: involuntary!,
    toolCpuUs: config.kind === "alone" ? 0 : Math.max(0, userUs! + sysUs! - programCpuUs!),
    maxRssKiB: maxRssKiB!,
    fifoSeen,
    othersCores: Math.max(0, busyUs - (userUs! + sysUs!)) / wallUs,
  };
}

/** Waits, up to 5 s, for 250 ms in which the machine is busy less than a quarter of a core (a shared machine). */
async function quietMoment(): Promise<void> {
  const until = performance.now() + 5000;
  while (performance.now() < until) {
    const b0 = machineBusyUs();
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 250));
    if ((machineBusyUs() - b0) / ((performance.now() - t0) * 1000) < 0.25) return;
  }
}

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(Deno.readTextFileSync("/proc/cpuinfo"));
    return m ? m[1]!.trim() : "unknown CPU";
  } catch {
    return "unknown CPU";
  }
}

function loadAverage(): string {
  try {
    return Deno.readTextFileSync("/proc/loadavg").split(" ")[0]!;
  } catch {
    return "?";
  }
}

const pct = (x: number) => `${x >= 0 ? "+" : "−"}${Math.abs(x).toFixed(1)} %`;
const range = (xs: number[], f: (x: number) => string) =>
  xs.length === 1 ? f(xs[0]!) : `${f(Math.min(...xs))} … ${f(Math.max(...xs))}`;

/** Runs the benchmark (see the module's documentation) and returns the table, the rows and the checks. */
export async function runOverhead(options: OverheadOptions = {}): Promise<OverheadResult> {
  const quick = options.quick ?? Deno.env.get("BENCH_QUICK") === "1";
  const rounds = options.rounds ?? (quick ? 1 : 5);
  const seconds = options.programSeconds ?? (quick ? 0.3 : 2.5);
  const log = options.log ?? stderrLog;
  const dir = await Deno.makeTempDir({ prefix: "alumet-overhead-" });
  try {
    const tools: Tools = { dir, spin: await build(dir, "spin"), rusage: await build(dir, "rusage") };
    const root = Deno.uid() === 0;
    const hasPerf = await has("perf", ["--version"]);
    if (!root) log("overhead: perf configurations skipped (system-wide counters need root)");
    else if (!hasPerf) log("overhead: perf stat skipped (perf is not installed)");
    const hasRapl = raplShown();
    if (!hasRapl) log("overhead: rapl at 1 kHz skipped (no RAPL on this machine)");
    const list = configs(root, hasPerf, hasRapl);

    // Calibration on the program's CPU time (its wall time depends on what else runs): the least of 3 short
    // runs gives the CPU time per iteration; the program then needs `seconds` of CPU.
    let nsPerIter = Infinity;
    for (let i = 0; i < 3; i++) {
      const n = quick ? 20_000_000 : 100_000_000;
      const r = await runOnce(tools, { name: "calibration", short: "calibration", kind: "alone" }, n);
      nsPerIter = Math.min(nsPerIter, r.cpuNs / n);
    }
    const iterations = Math.round(seconds * 1e9 / nsPerIter);
    log(`overhead: spin × ${iterations.toLocaleString("en-US")} iterations (${seconds} s of CPU)`);

    // Warm-up: Deno's caches and the agent's modules.
    await runOnce(tools, list.find((c) => c.kind === "alumet")!, Math.round(iterations / 50));

    const load0 = loadAverage();
    const t0 = performance.now();
    const runs = new Map<Config, Run[]>(list.map((c) => [c, []]));
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < list.length; i++) {
        const c = list[(i + round) % list.length]!;
        await quietMoment();
        runs.get(c)!.push(await runOnce(tools, c, iterations));
      }
      const alone = runs.get(list[0]!)!.at(-1)!;
      log(`overhead: round ${round + 1}/${rounds} done (alone ${(alone.wallNs / 1e9).toFixed(3)} s)`);
    }
    const minutes = (performance.now() - t0) / 60_000;
    const load1 = loadAverage();

    const alone = runs.get(list[0]!)!;
    // Against the median of the runs alone: one noisy run alone would otherwise skew its whole round.
    const aloneWall = median(alone.map((r) => r.wallNs));
    const aloneCpu = median(alone.map((r) => r.cpuNs));
    const slowdowns = (c: Config) => runs.get(c)!.map((r) => 100 * (r.wallNs / aloneWall - 1));
    const cpuSlowdowns = (c: Config) => runs.get(c)!.map((r) => 100 * (r.cpuNs / aloneCpu - 1));

    const date = new Date().toISOString().slice(0, 10);
    const lines = [
      `Program slowdown under measurement (\`deno task bench overhead\`), ${date}: Linux ${Deno.osRelease()}, ` +
      `${cpuModel()}, ${navigator.hardwareConcurrency} CPUs; a CPU-bound C program (bench/programs/spin.c) of ` +
      `${(median(alone.map((r) => r.wallNs)) / 1e9).toFixed(2)} s alone (median), ${rounds} round${
        rounds === 1 ? "" : "s"
      } in rotated order (${
        minutes.toFixed(1)
      } min, load average ${load0} at the start, ${load1} at the end)` +
      (quick ? "; QUICK mode: figures not comparable" : "") + ".",
      "",
      "| configuration | program wall time: slowdown (median) | range | program CPU time: change (median) | " +
      "involuntary switches (median) | tool CPU (median, range) | tool peak RSS (median, range) | SCHED_FIFO seen | " +
      "others' CPU (cores, median) |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ];
    const rows: OverheadRow[] = [];
    for (const c of list) {
      const rs = runs.get(c)!;
      const sd = slowdowns(c);
      const cpu = rs.map((r) => r.toolCpuUs / 1000);
      const rss = rs.map((r) => r.maxRssKiB / 1024);
      const isAlone = c.kind === "alone";
      const fifo = rs.filter((r) => r.fifoSeen).length;
      lines.push(
        `| ${c.name} | ${
          isAlone ? `${(median(rs.map((r) => r.wallNs)) / 1e9).toFixed(3)} s` : pct(median(sd))
        } | ${
          isAlone ? range(rs.map((r) => r.wallNs / 1e9), (x) => `${x.toFixed(3)} s`) : range(sd, pct)
        } | ${
          isAlone ? `${(median(rs.map((r) => r.cpuNs)) / 1e9).toFixed(3)} s` : pct(median(cpuSlowdowns(c)))
        } | ${Math.round(median(rs.map((r) => r.involuntary)))} | ${
          isAlone ? "—" : `${median(cpu).toFixed(0)} ms (${range(cpu, (x) => x.toFixed(0))})`
        } | ${`${median(rss).toFixed(1)} MiB (${range(rss, (x) => x.toFixed(1))})`} | ${
          c.kind === "alumet" ? `${fifo}/${rs.length}` : "—"
        } | ${median(rs.map((r) => r.othersCores)).toFixed(2)} |`,
      );
      if (!isAlone) {
        rows.push({ name: `overhead, ${c.short}: program slowdown`, unit: "%", runs: sd });
      }
      if (c.realtime === true && fifo < rs.length) {
        log(
          `overhead: ${c.name}: realtime asked for, but no SCHED_FIFO thread seen in ${
            rs.length - fifo
          } run(s)`,
        );
      }
      if (c.realtime === false && fifo > 0) {
        log(`overhead: ${c.name}: realtime refused, but a SCHED_FIFO thread was seen in ${fifo} run(s)`);
      }
    }
    lines.push(
      "",
      "Slowdown: the program's wall time over its median wall time alone; CPU time likewise. Before each run, " +
        "the benchmark waits (up to 5 s) for a quiet moment (the rest of the machine below a quarter of a core). Tool CPU: " +
        "user + system time of the agent (or perf) process and all it started, start-up included, the " +
        "program's own taken out; peak RSS of that process, from wait4 (alone: the program's). Realtime: the " +
        "sampling Worker in SCHED_FIFO, asked for with " +
        (realtimeKey() !== undefined
          ? `\`${realtimeKey()} = true\` and ALUMET_REALTIME=1`
          : "the agent's default at ≤ 3 ms") +
        ", refused with ALUMET_NO_REALTIME=1; SCHED_FIFO seen: runs where a thread of the agent was in it (/proc). " +
        "Others' CPU: what the rest of the machine used meanwhile (/proc/stat busy time, steal included, less the " +
        "program's and the tool's), in cores: the noise the figures were taken in.",
    );

    const checks: OverheadCheck[] = [];
    const perfStat = list.find((c) => c.kind === "perf-stat");
    for (const c of list.filter((c) => c.role === "at-1ms")) {
      if (perfStat === undefined) continue;
      const ours = slowdowns(c);
      const theirs = slowdowns(perfStat);
      const diff = ours.map((x, i) => x - theirs[i]!);
      const d = median(diff);
      checks.push({
        name: `${c.name}: slowdown ≤ perf stat -I 1 -a's (same rounds)`,
        ok: d <= 0,
        detail: `median ${pct(median(ours))} against ${pct(median(theirs))}; per-round difference median ${
          d.toFixed(2)
        } points (${range(diff, (x) => x.toFixed(2))})`,
      });
      rows.push({
        name: `overhead, ${c.short}: slowdown − perf stat -I 1 -a's, per round`,
        unit: "points",
        runs: diff,
        target: { op: "<=", value: 0 },
      });
    }
    const defaults = list.find((c) => c.role === "defaults")!;
    {
      const a = alone.map((r) => r.wallNs / 1e9);
      const d = runs.get(defaults)!.map((r) => r.wallNs / 1e9);
      const overlap = Math.min(...d) <= Math.max(...a) && Math.min(...a) <= Math.max(...d);
      checks.push({
        name: `${defaults.name}: wall times overlap the program's alone`,
        ok: overlap,
        detail: `alone ${range(a, (x) => x.toFixed(3))} s, under exec ${range(d, (x) => x.toFixed(3))} s`,
      });
      rows.push({
        name: "overhead, exec, defaults: fastest run over the slowest alone",
        unit: "%",
        runs: [100 * (Math.min(...d) / Math.max(...a) - 1)],
        target: { op: "<=", value: 0 },
      });
    }
    lines.push("", "Targets:", ...checks.map((c) => `- ${c.ok ? "PASS" : "FAIL"} ${c.name}: ${c.detail}`));
    return { markdown: lines.join("\n"), rows, checks };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  const rounds = Deno.args[0] === undefined ? undefined : Number(Deno.args[0]);
  if (rounds !== undefined && !(Number.isInteger(rounds) && rounds >= 1)) {
    // deno-lint-ignore no-console
    console.error(
      `Usage: deno run -A bench/overhead.ts [ROUNDS]: ROUNDS must be a whole number ≥ 1, not ${Deno.args[0]}`,
    );
    Deno.exit(2);
  }
  const r = await runOverhead(rounds === undefined ? {} : { rounds });
  // deno-lint-ignore no-console
  console.log(r.markdown);
  Deno.exit(r.checks.every((c) => c.ok) ? 0 : 1);
}

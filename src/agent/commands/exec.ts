/**
 * `alumet exec -- PROGRAM ARGS…`: run a program and measure it until it ends, then print a summary.
 *
 * @module
 */
import { AlumetError, messageOf, UsageError } from "../../errors.ts";
import { ffiAvailable, getrusage, killProcess, type Rusage, RUSAGE_CHILDREN } from "../../ffi/libc.ts";
import { type Logger, logLevel } from "../../log.ts";
import { parseDuration } from "../../model/duration.ts";
import { Consumer } from "../../model/resources.ts";
import { now } from "../../model/timestamp.ts";
import type { PluginMetadata } from "../../plugin/plugin.ts";
import { definePlugin } from "../agent.ts";
import type { Agent } from "../agent.ts";
import { BUILTIN_LOADERS } from "../builtin.ts";
import type { Setup } from "../context.ts";
import type { PluginSection } from "../config.ts";
import {
  cpuTimeNs,
  energyDefaults,
  exitCodeOf,
  followProgramOnly,
  peakRssOf,
  type ReapedProgram,
  ReapedStartUnavailable,
  reapedStartUnavailable,
  resolveProgram,
  SIGNAL_NUMBERS,
  spawnStopped,
  startReaped,
  waitForStoppedStart,
  withoutWrapper,
} from "../exec.ts";
import { reportLosses } from "../losses.ts";
import { countCpus } from "../../sys/system.ts";
import {
  type CpuTime,
  EXEC_SUMMARY_PLUGIN,
  ExecSummary,
  formatRepeat,
  outputLabels,
  type RepeatOutcome,
  repeatReport,
  type RunReport,
  type SummaryOptions,
} from "../summary.ts";
import type { Batch } from "../../model/batch.ts";
import type { ElementContext } from "../../plugin/plugin.ts";
import type { CommandContext } from "./define.ts";
import { type EXEC_OPTIONS, MAX_BASELINE_MS, MAX_REPEAT } from "./specs.ts";

/** Runs `alumet exec`; resolves to the exit code. */
export async function run(ctx: ExecContext): Promise<number> {
  const logger = ctx.logger;
  const [program, ...args] = ctx.program;
  if (program === undefined) {
    throw new UsageError("`alumet exec` needs a program: alumet exec -- PROGRAM [ARGS]...");
  }
  const repeat = repeatOf(ctx.options.repeat);
  const baselineMs = baselineOf(ctx.options.baseline);
  const ignoreExit = ctx.options["ignore-exit-code"] === true;
  const cwd = Deno.cwd();
  resolveProgram(program, cwd); // a clear error (127, 126) before anything starts
  const json = ctx.options.json === undefined ? undefined : openJson(ctx.options.json);
  try {
    const given = await ctx.setup();
    const energy = energyDefaults(given.sections as PluginSection[], {
      configured: given.configured,
      only: ctx.options.plugins !== undefined,
      noEstimate: ctx.options["no-estimate"] === true,
      available: (name) => BUILTIN_LOADERS.has(name),
    });
    // Every plugin's modules start loading now, together, while procfs's config is set (the agent awaits them;
    // a plugin that fails to load says so there).
    for (const s of energy.sections) ctx.plugin(s).catch(() => {});
    await followProgramOnly(given.sections);
    const setup: Setup = { ...given, sections: energy.sections };
    if (energy.added.length > 0) {
      logger.debug(`exec enables ${energy.added.join(" and ")} (no such section in the config)`);
    }
    const estimateNote = await estimateNoteOf(ctx, setup, energy.added);
    return await measure({
      ctx,
      logger,
      setup,
      command: [program, ...args],
      cwd,
      repeat,
      baselineMs,
      ignoreExit,
      json,
      ...(estimateNote !== undefined ? { estimateNote } : {}),
    });
  } finally {
    json?.file?.close();
  }
}

type ExecContext = CommandContext<typeof EXEC_OPTIONS>;

/** `--repeat N`: a positive integer. */
function repeatOf(text: string | undefined): number {
  if (text === undefined) return 1;
  const n = /^\s*\d+\s*$/.test(text) ? Number(text) : NaN;
  if (!(Number.isSafeInteger(n) && n >= 1 && n <= MAX_REPEAT)) {
    throw new UsageError(`Option --repeat needs a number of runs from 1 to ${MAX_REPEAT}, not "${text}"`);
  }
  return n;
}

/** `--baseline DUR`: a duration, in ms. */
function baselineOf(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const ms = parseDuration(text);
  if (ms === undefined || !(ms > 0) || ms > MAX_BASELINE_MS) {
    throw new UsageError(
      `Option --baseline needs a duration from 1ms to 1h, such as "2s" or "500ms", not "${text}"`,
    );
  }
  return ms;
}

/** Where `--json` writes: stdout, or a file opened (created, emptied) before anything runs. */
interface JsonTarget {
  readonly path: string;
  readonly file: Deno.FsFile | undefined;
}

function openJson(path: string): JsonTarget {
  if (path === "") throw new UsageError("Option --json needs a path (or - for stdout)");
  if (path === "-") return { path, file: undefined };
  try {
    return { path, file: Deno.openSync(path, { write: true, create: true, truncate: true }) };
  } catch (e) {
    throw new AlumetError(`Cannot write the JSON summary to ${path}: ${messageOf(e)}`);
  }
}

function writeJson(target: JsonTarget, value: unknown, ctx: ExecContext): void {
  const text = JSON.stringify(value, null, 2) + "\n";
  if (target.file === undefined) {
    ctx.write(text, Deno.stdout);
    return;
  }
  try {
    const bytes = new TextEncoder().encode(text);
    let off = 0;
    while (off < bytes.length) off += target.file.writeSync(bytes.subarray(off));
  } catch (e) {
    throw new AlumetError(`Cannot write the JSON summary to ${target.path}: ${messageOf(e)}`);
  }
}

/**
 * The sentence that goes with an estimate: the TDP assumed and how to set it, from the estimate's config
 * (its defaults under the config's table); undefined when the estimate is not enabled.
 */
async function estimateNoteOf(
  ctx: ExecContext,
  setup: Setup,
  added: readonly string[],
): Promise<string | undefined> {
  const section = setup.sections.find((s) => s.name === "energy-estimation-tdp" && s.module === undefined);
  if (section === undefined) return undefined;
  let defaults: Record<string, unknown> = {};
  try {
    defaults = (await ctx.plugin(section)).defaultConfig?.() ?? {};
  } catch {
    // the agent names a plugin that does not load
  }
  const table = { ...defaults, ...section.table };
  const tdp = Number(table.tdp ?? 100);
  const vcpu = Number(table.nb_vcpu ?? 1);
  const nbCpu = table.nb_cpu === undefined ? machineCpus() : Number(table.nb_cpu);
  const perCpu = tdp * vcpu / nbCpu;
  const auto = added.includes("energy-estimation-tdp")
    ? "No energy source is enabled, so exec enabled energy-estimation-tdp (--no-estimate turns it off): "
    : "";
  const set = section.table.tdp === undefined
    ? `the default TDP, not this CPU's: set yours with --config-override plugins.energy-estimation-tdp.tdp=WATTS`
    : `set in the config`;
  return `${auto}the energy marked as an estimate is CPU time × ${
    perCpu.toFixed(1)
  } W per busy CPU (TDP ${tdp} W × nb_vcpu ${vcpu} ÷ nb_cpu ${nbCpu}; ${set}). It is not a measurement.`;
}

/** The machine's logical CPUs, read once (`countCpus` reads `/proc/stat` on each call). */
let cpus: number | undefined;
const machineCpus = (): number => cpus ??= countCpus();

interface MeasureOptions {
  readonly ctx: ExecContext;
  readonly logger: Logger;
  readonly setup: Setup;
  readonly command: readonly string[];
  readonly cwd: string;
  readonly repeat: number;
  readonly baselineMs: number | undefined;
  readonly ignoreExit: boolean;
  readonly json: JsonTarget | undefined;
  readonly estimateNote?: string;
}

/** One run of the program, as {@linkcode runOnce} measured it. */
interface RunResult {
  readonly summary: ExecSummary;
  readonly code: number;
  readonly signal: string | null;
  readonly elapsedMs: number;
  readonly cpu: CpuTime | undefined;
  readonly peakRssBytes: number | undefined;
  readonly peakSource: string | undefined;
  /** The publication of the run's `endConsumerMeasurement` (after its end poll), for the caller to await. */
  readonly ended: Promise<void>;
}

/** Every summary being fed: the baseline's and each run's (a run's last points may come after the next began). */
function collector(summaries: readonly ExecSummary[]): PluginMetadata {
  return definePlugin({
    name: EXEC_SUMMARY_PLUGIN,
    start: (ctx) =>
      ctx.addOutput("summary", {
        write: (b: Batch, c: ElementContext) => {
          for (const s of summaries) s.collect(b, c);
        },
      }),
  }) as PluginMetadata;
}

async function measure(o: MeasureOptions): Promise<number> {
  const { ctx, logger } = o;
  const [program, ...args] = o.command as [string, ...string[]];
  // From here until the last point is written, signals do not kill the agent: Ctrl-C goes to the whole
  // foreground process group, so the program gets it from the terminal and the agent measures until it is
  // gone; SIGTERM/SIGHUP sent to the agent alone are passed on to the program.
  const state: { pid: number | undefined; reaped: boolean; interrupted: boolean } = {
    pid: undefined,
    reaped: false, // once the program is reaped its pid may be another process's: nothing more is sent
    interrupted: false,
  };
  const onInterrupt = () => {
    state.interrupted = true;
    logger.info(
      state.pid ? `Waiting for ${program} (pid ${state.pid}) to end` : "Interrupted: starting, then stopping",
    );
  };
  const forward = (sig: Deno.Signal) => () => {
    state.interrupted = true;
    if (state.pid === undefined || state.reaped) return;
    try {
      Deno.kill(state.pid, sig);
    } catch {
      // already gone
    }
  };
  const handlers: [Deno.Signal, () => void][] = [
    ["SIGINT", onInterrupt],
    ["SIGTERM", forward("SIGTERM")],
    ["SIGHUP", forward("SIGHUP")],
  ];
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);
  try {
    const summaries: ExecSummary[] = [];
    await using agent = await ctx.agent(o.setup, [collector(summaries)]);
    await agent.start();
    // No live status line: the program writes to the same terminal, and a redrawn line would overwrite
    // (or be cut by) its output. The summary comes at the end.
    let baseline: { summary: ExecSummary; seconds: number } | undefined;
    if (o.baselineMs !== undefined) {
      const summary = new ExecSummary();
      summaries.push(summary);
      logger.info(`Measuring the machine idle for ${o.baselineMs / 1000} s before ${program}`);
      const from = now();
      await agent.control.triggerNow();
      const started = performance.now();
      summary.startPolled(from, now());
      await new Promise((r) => setTimeout(r, o.baselineMs));
      await agent.control.triggerNow();
      summary.endPolled(now());
      baseline = { summary, seconds: (performance.now() - started) / 1000 };
    }
    const runs: RunResult[] = [];
    let ending: Promise<void> = Promise.resolve();
    let outcome: RepeatOutcome | undefined;
    for (let i = 1; i <= o.repeat; i++) {
      const summary = new ExecSummary();
      summaries.push(summary);
      state.pid = undefined;
      state.reaped = false;
      // The previous run's end is told before this run starts (its listeners see the runs in order).
      await ending;
      const r = await runOnce(agent, summary, program, args, o.cwd, logger, state);
      ending = r.ended;
      runs.push(r);
      if (r.signal !== null) logger.info(`${program} was killed by ${r.signal}`);
      if (r.code !== 0 && !o.ignoreExit) {
        outcome = {
          asked: o.repeat,
          done: i,
          exitCode: r.code,
          exitCodeOf: { run: i, why: "first failure" },
          ...(i < o.repeat
            ? { stopped: `Stopped after run ${i} of ${o.repeat}: it exited with ${r.code}.` }
            : {}),
        };
        break;
      }
      if (state.interrupted && i < o.repeat) {
        outcome = {
          asked: o.repeat,
          done: i,
          exitCode: r.code,
          exitCodeOf: { run: i, why: "last run" },
          stopped: `Stopped after run ${i} of ${o.repeat}: interrupted.`,
        };
        break;
      }
    }
    outcome ??= {
      asked: o.repeat,
      done: runs.length,
      exitCode: runs.at(-1)!.code,
      exitCodeOf: { run: runs.length, why: "last run" },
    };
    const described = agent.outputs();
    // The last run's end poll is done: the listeners of its end (procfs and perf stop the program's sources)
    // and the agent's stop (which stops every source and drains) overlap; the stop waits for those sources.
    await Promise.all([ending, agent.stop()]);
    const lost = reportLosses(agent, logger);
    // Only the outputs that wrote points: one that lost them all did not get "the others".
    const outputs = outputLabels(described, [EXEC_SUMMARY_PLUGIN], agent.stats()?.outputs ?? new Map());
    const nCpus = machineCpus();
    const baselineLines = baseline === undefined
      ? undefined
      : { seconds: baseline.seconds, lines: baseline.summary.energy() };
    const optionsOf = (r: RunResult): SummaryOptions => ({
      command: o.command,
      elapsedMs: r.elapsedMs,
      outputs,
      nCpus,
      lost,
      exitCode: r.code,
      signal: r.signal,
      ...(r.cpu !== undefined ? { cpu: r.cpu } : {}),
      ...(r.peakRssBytes !== undefined ? { peakRssBytes: r.peakRssBytes } : {}),
      ...(r.peakSource !== undefined ? { peakSource: r.peakSource } : {}),
      ...(baselineLines !== undefined ? { baseline: baselineLines } : {}),
      ...(o.estimateNote !== undefined ? { estimateNote: o.estimateNote } : {}),
    });
    const single = o.repeat === 1;
    const reports: RunReport[] = runs.map((r) => r.summary.report(optionsOf(r)));
    if (logLevel() !== "off") {
      const text = single
        ? runs[0]!.summary.format(optionsOf(runs[0]!))
        : formatRepeat({ command: o.command, outcome, reports, outputs, lost });
      ctx.write(text, Deno.stderr);
    }
    if (o.json !== undefined) {
      writeJson(o.json, single ? reports[0] : repeatReport(o.command, reports, outcome), ctx);
    }
    return o.ignoreExit ? 0 : outcome.exitCode;
  } finally {
    for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
  }
}

/** Runs the program once, between a start poll and an end poll of every source. */
async function runOnce(
  agent: Agent,
  summary: ExecSummary,
  program: string,
  args: readonly string[],
  cwd: string,
  logger: Logger,
  state: { pid: number | undefined; reaped: boolean },
): Promise<RunResult> {
  // Every managed source (energy sources included, those in a Worker too) is polled here, just before the
  // program starts, and again just after it ends: the energy summed covers the polls after this one up to
  // that one, which is exactly the run (the deltas reported up to this poll cover time before it).
  const startPollFrom = now();
  await agent.control.triggerNow();
  summary.startPolled(startPollFrom, now());
  // Start the program stopped before its first instruction (a shell that stops itself, then execs it: the
  // program gets argv[0] as typed), tell the plugins its pid (so that they arm their counters on it), then
  // let it run: nothing of its start-up escapes the measurement. What the shell used before its exec is
  // taken out of the program's CPU time.
  // Best: the program is not forked from the agent (see startReaped), and the agent reaps it itself: the
  // kernel's rusage of it is exact, peak memory included. Else, a child forked from the agent, whose
  // ru_maxrss starts at the agent's own peak.
  let why = reapedStartUnavailable();
  const started = performance.now();
  let reapedProgram: ReapedProgram | undefined;
  let child: Deno.ChildProcess | undefined;
  let before: Rusage | undefined;
  let stopped: boolean;
  if (why === undefined) {
    try {
      reapedProgram = await startReaped(program, args, cwd);
    } catch (e) {
      if (!(e instanceof ReapedStartUnavailable)) throw e;
      why = e.message;
    }
  }
  let pid: number;
  if (reapedProgram !== undefined) {
    pid = reapedProgram.pid;
    stopped = reapedProgram.stopped;
  } else {
    logger.debug(`The program is started as the agent's child (${why}): its peak memory is sampled`);
    before = ffiAvailable() ? getrusage(RUSAGE_CHILDREN) : undefined;
    child = spawnStopped(program, args, cwd);
    pid = child.pid;
    stopped = await waitForStoppedStart(pid);
  }
  state.pid = pid;
  summary.pid = String(pid);
  let wrapperNs = 0;
  if (stopped) {
    wrapperNs = cpuTimeNs(pid) ?? 0;
    logger.debug(`The stopped-start shell used ${(wrapperNs / 1000).toFixed(0)} µs of CPU: not counted`);
  } else if (agent.armsBeforeExec) {
    logger.warn(`${program} (pid ${pid}) did not reach its stopped start; measuring it anyway`);
  }
  await agent.events.publish("startConsumerMeasurement", [Consumer.process(pid)]);
  if (stopped) {
    // A native kill where the start was native too: Deno.kill first loads Deno's process code.
    if (reapedProgram !== undefined) killProcess(pid, SIGNAL_NUMBERS.SIGCONT!);
    else Deno.kill(pid, "SIGCONT");
  }
  let code: number;
  let signal: string | null;
  let cpu: CpuTime | undefined;
  let peakRssBytes: number | undefined;
  let peakSource: string | undefined;
  if (reapedProgram !== undefined) {
    // The kernel's accounting of the program (and of the children it waited for), read as it is reaped:
    // its /proc entry is then gone, and this is the only record of its CPU time up to its last instruction.
    const exit = await reapedProgram.wait().finally(() => state.reaped = true);
    code = exit.code;
    signal = exit.signal;
    cpu = withoutWrapper(
      { userNs: exit.rusage.userUs * 1000, systemNs: exit.rusage.systemUs * 1000 },
      wrapperNs,
    );
    peakRssBytes = exit.rusage.maxRssKiB * 1024;
  } else {
    let sampledPeak = 0;
    const sampler = setInterval(() => sampledPeak = Math.max(sampledPeak, peakRssOf(pid) ?? 0), 100);
    const status = await child!.status.finally(() => {
      clearInterval(sampler);
      state.reaped = true;
    });
    code = exitCodeOf(status);
    signal = status.signal;
    if (before !== undefined) {
      const after = getrusage(RUSAGE_CHILDREN);
      cpu = withoutWrapper({
        userNs: (after.userUs - before.userUs) * 1000,
        systemNs: (after.systemUs - before.systemUs) * 1000,
      }, wrapperNs);
      peakRssBytes = after.maxRssKiB * 1024;
      // ru_maxrss of a child counts the memory of the process it was forked from (the kernel keeps the old
      // memory's high-water mark across exec): this agent's, here. Only a peak above ours is the program's.
      if (peakRssBytes <= (peakRssOf("self") ?? 0)) {
        peakRssBytes = sampledPeak;
        peakSource = "the program's own VmHWM, sampled";
      }
    }
  }
  const elapsedMs = performance.now() - started;
  if (cpu !== undefined) {
    await agent.events.publish("processExit", {
      pid,
      ...cpu,
      maxRssBytes: peakRssBytes ?? 0,
      exitCode: code,
      timestamp: now(),
    });
  } else {
    logger.warn(
      "Native calls are not allowed (--allow-ffi): the program's CPU time after its last poll is not counted",
    );
  }
  await agent.control.triggerNow();
  summary.endPolled(now());
  // Not awaited here: the caller awaits it before the next run, or together with the agent's stop.
  const ended = agent.events.publish("endConsumerMeasurement", [Consumer.process(pid)]);
  return { summary, code, signal, elapsedMs, cpu, peakRssBytes, peakSource, ended };
}

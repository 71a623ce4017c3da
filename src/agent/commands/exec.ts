/**
 * `alumet exec -- PROGRAM ARGS…`: run a program and measure it until it ends, then print a summary.
 *
 * @module
 */
import { UsageError } from "../../errors.ts";
import { ffiAvailable, getrusage, type Rusage, RUSAGE_CHILDREN } from "../../ffi/libc.ts";
import { logLevel } from "../../log.ts";
import { Consumer } from "../../model/resources.ts";
import { now } from "../../model/timestamp.ts";
import {
  cpuTimeNs,
  exitCodeOf,
  followProgramOnly,
  peakRssOf,
  type ReapedProgram,
  ReapedStartUnavailable,
  reapedStartUnavailable,
  resolveProgram,
  spawnStopped,
  startReaped,
  waitForStoppedStart,
  withoutWrapper,
} from "../exec.ts";
import { reportLosses } from "../losses.ts";
import { countCpus } from "../../sys/system.ts";
import { EXEC_SUMMARY_PLUGIN, ExecSummary, outputLabels } from "../summary.ts";
import { defineCommand } from "./define.ts";

/** `alumet exec`. */
export const command = defineCommand({
  name: "exec",
  synopsis: "exec -- PROG ARGS…",
  summary: "Run a program and measure it until it ends",
  usage: "exec [OPTIONS] [--] PROGRAM [ARGS]...",
  description:
    `Runs PROGRAM (looked up in PATH, or a path relative to the current directory) and measures it: every source is
polled just before it starts and just after it ends, and plugins are told its pid. The agent exits with the
program's exit code (128+N when signal N killed it), unless --ignore-exit-code is given.
The program is measured with every process it starts (its process tree), as \`time\` measures it.
Ctrl-C reaches the program; the agent keeps measuring until the program is gone. At the end, a summary on
stderr: the program's CPU time, CPU share and peak memory (from the kernel's accounting), the elapsed time,
what each series measured, the energy of the machine and its devices during the run (joules per domain and
device, from the poll at the program's start to the poll at its end, and the mean power over that interval),
and where the series were written (or how many points were lost).`,
  options: {
    "ignore-exit-code": { type: "boolean", help: "Exit with 0 whatever the program's exit code" },
  },
  runsProgram: true,
  async run(ctx) {
    const logger = ctx.logger;
    const [program, ...args] = ctx.program;
    if (program === undefined) {
      throw new UsageError("`alumet exec` needs a program: alumet exec -- PROGRAM [ARGS]...");
    }
    const cwd = Deno.cwd();
    resolveProgram(program, cwd); // a clear error (127, 126) before anything starts
    const setup = await ctx.setup();
    await followProgramOnly(setup.sections);
    // From here until the last point is written, signals do not kill the agent: Ctrl-C goes to the whole
    // foreground process group, so the program gets it from the terminal and the agent measures until it is
    // gone; SIGTERM/SIGHUP sent to the agent alone are passed on to the program.
    let pid: number | undefined;
    let reaped = false; // once the program is reaped its pid may be another process's: nothing more is sent
    const onInterrupt = () =>
      logger.info(
        pid ? `Waiting for ${program} (pid ${pid}) to end` : "Interrupted: starting, then stopping",
      );
    const forward = (sig: Deno.Signal) => () => {
      if (pid === undefined || reaped) return;
      try {
        Deno.kill(pid, sig);
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
      const summary = new ExecSummary();
      await using agent = await ctx.agent(setup, [summary.plugin()]);
      await agent.start();
      // No live status line: the program writes to the same terminal, and a redrawn line would overwrite
      // (or be cut by) its output. The summary comes at the end.
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
      summary.pid = String(pid);
      let wrapperNs = 0;
      if (stopped) {
        wrapperNs = cpuTimeNs(pid) ?? 0;
        logger.debug(`The stopped-start shell used ${(wrapperNs / 1000).toFixed(0)} µs of CPU: not counted`);
      } else if (agent.armsBeforeExec) {
        logger.warn(`${program} (pid ${pid}) did not reach its stopped start; measuring it anyway`);
      }
      await agent.events.publish("startConsumerMeasurement", [Consumer.process(pid)]);
      if (stopped) Deno.kill(pid, "SIGCONT");
      let code: number;
      let signal: string | null;
      let cpu: { userNs: number; systemNs: number } | undefined;
      let peakRssBytes: number | undefined;
      let peakSource: string | undefined;
      if (reapedProgram !== undefined) {
        // The kernel's accounting of the program (and of the children it waited for), read as it is reaped:
        // its /proc entry is then gone, and this is the only record of its CPU time up to its last instruction.
        const exit = await reapedProgram.wait().finally(() => reaped = true);
        code = exit.code;
        signal = exit.signal;
        cpu = withoutWrapper(
          { userNs: exit.rusage.userUs * 1000, systemNs: exit.rusage.systemUs * 1000 },
          wrapperNs,
        );
        peakRssBytes = exit.rusage.maxRssKiB * 1024;
      } else {
        const p = pid;
        let sampledPeak = 0;
        const sampler = setInterval(() => sampledPeak = Math.max(sampledPeak, peakRssOf(p) ?? 0), 100);
        const status = await child!.status.finally(() => {
          clearInterval(sampler);
          reaped = true;
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
      await agent.events.publish("endConsumerMeasurement", [Consumer.process(pid)]);
      const described = agent.outputs();
      await agent.stop();
      const lost = reportLosses(agent, logger);
      // Only the outputs that wrote points: one that lost them all did not get "the others".
      const outputs = outputLabels(described, [EXEC_SUMMARY_PLUGIN], agent.stats()?.outputs ?? new Map());
      if (logLevel() !== "off") {
        ctx.write(
          summary.format({
            command: [program, ...args],
            elapsedMs,
            outputs,
            nCpus: countCpus(),
            lost,
            ...(cpu !== undefined ? { cpu } : {}),
            ...(peakRssBytes !== undefined ? { peakRssBytes } : {}),
            ...(peakSource !== undefined ? { peakSource } : {}),
          }),
          Deno.stderr,
        );
      }
      if (signal !== null) logger.info(`${program} was killed by ${signal}`);
      return ctx.options["ignore-exit-code"] ? 0 : code;
    } finally {
      for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
    }
  },
});

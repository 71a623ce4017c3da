/**
 * `alumet exec -- PROGRAM ARGS…`: run a program and measure it until it ends, then print a summary.
 *
 * @module
 */
import { UsageError } from "../../errors.ts";
import { ffiAvailable, getrusage, RUSAGE_CHILDREN } from "../../ffi/libc.ts";
import { logLevel } from "../../log.ts";
import { Consumer } from "../../model/resources.ts";
import { now } from "../../model/timestamp.ts";
import {
  cpuTimeNs,
  exitCodeOf,
  peakRssOf,
  resolveProgram,
  spawnStopped,
  waitUntilStopped,
  withoutWrapper,
} from "../exec.ts";
import { reportLosses } from "../losses.ts";
import { countCpus } from "../../sys/system.ts";
import { StatusLine } from "../status.ts";
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
what each series measured, and where the series were written (or how many points were lost).`,
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
    // From here until the last point is written, signals do not kill the agent: Ctrl-C goes to the whole
    // foreground process group, so the program gets it from the terminal and the agent measures until it is
    // gone; SIGTERM/SIGHUP sent to the agent alone are passed on to the program.
    let child: Deno.ChildProcess | undefined;
    const onInterrupt = () =>
      logger.info(
        child ? `Waiting for ${program} (pid ${child.pid}) to end` : "Interrupted: starting, then stopping",
      );
    const forward = (sig: Deno.Signal) => () => {
      try {
        child?.kill(sig);
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
      using statusLine = new StatusLine(agent);
      await agent.control.triggerNow();
      // The kernel's accounting of waited-for children, read around the wait: once the program is reaped its
      // /proc entry is gone, and this is the only record of its CPU time up to its last instruction (its
      // whole tree's, as `time` counts it).
      const before = ffiAvailable() ? getrusage(RUSAGE_CHILDREN) : undefined;
      const started = performance.now();
      // Start the program stopped before its first instruction (a shell that stops itself, then execs it: the
      // program gets argv[0] as typed), tell the plugins its pid (so that they arm their counters on it), then
      // let it run: nothing of its start-up escapes the measurement. What the shell used before its exec is
      // taken out of the program's CPU time.
      child = spawnStopped(program, args, cwd);
      summary.pid = String(child.pid);
      const stopped = await waitUntilStopped(child.pid, 2000);
      let wrapperNs = 0;
      if (stopped) {
        wrapperNs = cpuTimeNs(child.pid) ?? 0;
        logger.debug(`The stopped-start shell used ${(wrapperNs / 1000).toFixed(0)} µs of CPU: not counted`);
      } else if (agent.armsBeforeExec) {
        logger.warn(`${program} (pid ${child.pid}) did not reach its stopped start; measuring it anyway`);
      }
      await agent.events.publish("startConsumerMeasurement", [Consumer.process(child.pid)]);
      if (stopped) child.kill("SIGCONT");
      const pid = child.pid;
      let sampledPeak = 0;
      const sampler = setInterval(() => sampledPeak = Math.max(sampledPeak, peakRssOf(pid) ?? 0), 100);
      const status = await child.status.finally(() => clearInterval(sampler));
      const elapsedMs = performance.now() - started;
      const code = exitCodeOf(status);
      let cpu: { userNs: number; systemNs: number } | undefined;
      let peakRssBytes: number | undefined;
      let peakSource: string | undefined;
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
          // Not the program's: the program's own high-water mark (VmHWM), sampled every 100 ms, instead.
          peakRssBytes = sampledPeak;
          peakSource = "the program's own VmHWM, sampled";
        }
        await agent.events.publish("processExit", {
          pid: child.pid,
          ...cpu,
          maxRssBytes: peakRssBytes,
          exitCode: code,
          timestamp: now(),
        });
      } else {
        logger.warn(
          "Native calls are not allowed (--allow-ffi): the program's CPU time after its last poll is not counted",
        );
      }
      await agent.control.triggerNow();
      await agent.events.publish("endConsumerMeasurement", [Consumer.process(child.pid)]);
      const outputs = outputLabels(agent.outputs(), [EXEC_SUMMARY_PLUGIN]);
      await agent.stop();
      statusLine.stop();
      const lost = reportLosses(agent, logger);
      if (logLevel() !== "off") {
        ctx.write(
          summary.format({
            command: [program, ...args].join(" "),
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
      if (status.signal !== null) logger.info(`${program} was killed by ${status.signal}`);
      return ctx.options["ignore-exit-code"] ? 0 : code;
    } finally {
      for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
    }
  },
});

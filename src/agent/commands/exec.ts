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
import { exitCodeOf, resolveProgram, spawnStopped, waitUntilStopped } from "../exec.ts";
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
Ctrl-C reaches the program; the agent keeps measuring until the program is gone. At the end, a summary on
stderr: what was measured for the program, the elapsed time, and where the series were written.`,
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
    const resolved = resolveProgram(program, cwd);
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
      // /proc entry is gone, and this is the only record of its CPU time up to its last instruction.
      const before = ffiAvailable() ? getrusage(RUSAGE_CHILDREN) : undefined;
      const started = performance.now();
      if (agent.armsBeforeExec) {
        // Start the program stopped before its first instruction, tell the plugins its pid (so that they arm
        // their counters on it), then let it run: nothing of its start-up escapes the measurement.
        child = spawnStopped(resolved, args, cwd);
        summary.pid = String(child.pid);
        const stopped = await waitUntilStopped(child.pid, 2000);
        if (!stopped) {
          logger.warn(`${program} (pid ${child.pid}) did not reach its stopped start; measuring it anyway`);
        }
        await agent.events.publish("startConsumerMeasurement", [Consumer.process(child.pid)]);
        if (stopped) child.kill("SIGCONT");
      } else {
        // No plugin needs to arm before the program runs (a stopped start costs a shell's start-up).
        child = new Deno.Command(resolved, {
          args,
          cwd,
          stdin: "inherit",
          stdout: "inherit",
          stderr: "inherit",
        })
          .spawn();
        summary.pid = String(child.pid);
        await agent.events.publish("startConsumerMeasurement", [Consumer.process(child.pid)]);
      }
      const status = await child.status;
      const elapsedMs = performance.now() - started;
      const code = exitCodeOf(status);
      if (before !== undefined) {
        const after = getrusage(RUSAGE_CHILDREN);
        await agent.events.publish("processExit", {
          pid: child.pid,
          userNs: (after.userUs - before.userUs) * 1000,
          systemNs: (after.systemUs - before.systemUs) * 1000,
          maxRssBytes: after.maxRssKiB * 1024,
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
      if (logLevel() !== "off") {
        ctx.write(summary.format({ command: [program, ...args].join(" "), elapsedMs, outputs }), Deno.stderr);
      }
      if (status.signal !== null) logger.info(`${program} was killed by ${status.signal}`);
      return ctx.options["ignore-exit-code"] ? 0 : code;
    } finally {
      for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
    }
  },
});

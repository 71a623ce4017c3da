/**
 * `alumet watch PID`: measure a running process until it ends.
 *
 * @module
 */
import { AlumetError, UsageError } from "../../errors.ts";
import { logLevel } from "../../log.ts";
import { Consumer } from "../../model/resources.ts";
import { now } from "../../model/timestamp.ts";
import { countCpus } from "../../sys/system.ts";
import { commandLineOf, followProgramOnly, processEnded, processExists, waitForExit } from "../exec.ts";
import { EXIT_POINTS_LOST, lostAny, reportLosses } from "../losses.ts";
import { StopSignals } from "../signals.ts";
import { EXEC_SUMMARY_PLUGIN, ExecSummary, outputLabels } from "../summary.ts";
import type { CommandContext } from "./define.ts";

/** Runs `alumet watch`; resolves to the exit code. */
export async function run(ctx: CommandContext): Promise<number> {
  if (ctx.positionals.length !== 1) {
    throw new UsageError("`alumet watch` needs exactly one PID: alumet watch PID");
  }
  const text = ctx.positionals[0]!;
  const pid = Number(text);
  if (!Number.isInteger(pid) || pid <= 0) {
    throw new UsageError(`Invalid PID "${text}": expected a positive integer`);
  }
  if (!processExists(pid)) throw new AlumetError(`No process with pid ${pid} (nothing under /proc/${pid})`);
  const summary = new ExecSummary();
  summary.pid = String(pid);
  const setup = await ctx.setup();
  await followProgramOnly(setup.sections);
  // SIGINT, SIGTERM and SIGHUP end the watch and drain; copies of one signal count once (see signals.ts).
  // Listening from before the start: a Ctrl-C while plugins start ends the watch once they have started.
  const abort = new AbortController();
  using signals = new StopSignals(ctx.logger);
  void signals.stopped.then(() => abort.abort());
  const command = commandLineOf(pid);
  await using agent = await ctx.agent(setup, [summary.plugin()]);
  await agent.start();
  agent.shutdownRequested.then(() => abort.abort());
  const startPollFrom = now(); // energy: what the start poll reports is before the watch (summary.ts)
  await agent.control.triggerNow();
  summary.startPolled(startPollFrom, now());
  const started = performance.now();
  await agent.events.publish("startConsumerMeasurement", [Consumer.process(pid)]);
  if (processEnded(pid)) ctx.logger.info(`Process ${pid} has already exited (not reaped yet)`);
  else ctx.logger.info(`Watching pid ${pid}`);
  await waitForExit(pid, abort.signal);
  const elapsedMs = performance.now() - started;
  await agent.control.triggerNow();
  summary.endPolled(now());
  await agent.events.publish("endConsumerMeasurement", [Consumer.process(pid)]);
  const described = agent.outputs();
  await agent.stop();
  const lost = reportLosses(agent, ctx.logger);
  const outputs = outputLabels(described, [EXEC_SUMMARY_PLUGIN], agent.stats()?.outputs ?? new Map());
  const peak = summary.peakResidentBytes();
  if (logLevel() !== "off") {
    ctx.write(
      summary.format({
        ...(command !== undefined ? { command } : {}),
        elapsedMs,
        outputs,
        nCpus: countCpus(),
        lost,
        ...(peak !== undefined
          ? { peakRssBytes: peak, peakSource: "the tree's resident memory, sampled at each poll" }
          : {}),
      }),
      Deno.stderr,
    );
  }
  return lostAny(agent) ? EXIT_POINTS_LOST : 0;
}

/**
 * `alumet run`: measure until SIGINT, SIGTERM or SIGHUP, then write every point measured so far.
 *
 * @module
 */
import { UsageError } from "../../errors.ts";
import { EXIT_POINTS_LOST, lostAny, reportLosses } from "../losses.ts";
import { StopSignals } from "../signals.ts";
import { StatusLine } from "../status.ts";
import type { CommandContext } from "./define.ts";

/** Runs `alumet run`; resolves to the exit code. */
export async function run(ctx: CommandContext): Promise<number> {
  const logger = ctx.logger;
  if (ctx.positionals.length > 0) {
    throw new UsageError(`\`alumet run\` takes no argument (got "${ctx.positionals[0]}")`);
  }
  // Declared before the agent, so disposed after it: the listeners stay until the drain and the agent's
  // disposal are over, and the repeats of the stop signal arriving meanwhile (`deno task` forwards each one, late
  // on a loaded machine) are absorbed instead of killing the process with the signal's default action. A signal
  // during the setup ends the run once the plugins have started.
  using signals = new StopSignals(logger);
  await using agent = await ctx.agent(await ctx.setup());
  await agent.start();
  const plugins = agent.pluginNames;
  logger.info(
    `Running with ${plugins.length === 0 ? "no plugin" : plugins.join(", ")}; press Ctrl-C to stop`,
  );
  using _status = new StatusLine(agent);
  const why = await Promise.race([
    signals.stopped,
    agent.shutdownRequested.then(() => "a shutdown request"),
  ]);
  logger.info(`Stopping (${why}): writing what was measured`);
  await agent.stop();
  // One line per output or source that lost points, with how many; the exit code tells scripts.
  reportLosses(agent, logger);
  return lostAny(agent) ? EXIT_POINTS_LOST : 0;
}

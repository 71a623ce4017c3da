/**
 * `alumet run`: measure until SIGINT, SIGTERM or SIGHUP, then write every point measured so far.
 *
 * @module
 */
import { UsageError } from "../../errors.ts";
import { EXIT_POINTS_LOST, lostAny, reportLosses } from "../losses.ts";
import { StopSignals } from "../signals.ts";
import { StatusLine } from "../status.ts";
import { defineCommand } from "./define.ts";

/** `alumet run`. */
export const command = defineCommand({
  name: "run",
  synopsis: "run",
  summary: "Measure until SIGINT, SIGTERM or SIGHUP (the default command)",
  usage: "run [OPTIONS]",
  description:
    `Runs the agent: the enabled sources are measured and sent to the outputs until SIGINT (Ctrl-C), SIGTERM or
SIGHUP; then every point measured so far is written before the agent exits. The exit code is 0 when every
point was written, ${EXIT_POINTS_LOST} when some were lost (the log says how many, and where: an output that
could not write them, or a source stuck or failed before sending them). Repeats of a signal within a second
count once (a Ctrl-C reaches the agent twice through \`deno task\`); a second Ctrl-C after that exits at once
with code 130, without writing what is left.`,
  options: {},
  async run(ctx) {
    const logger = ctx.logger;
    if (ctx.positionals.length > 0) {
      throw new UsageError(`\`alumet run\` takes no argument (got "${ctx.positionals[0]}")`);
    }
    await using agent = await ctx.agent(await ctx.setup());
    // Kept until the drain is over: the repeats of the stop signal arriving during it are absorbed there.
    using signals = new StopSignals(logger);
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
  },
});

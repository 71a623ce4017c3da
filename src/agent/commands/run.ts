/**
 * `alumet run`: measure until SIGINT or SIGTERM, then write every point measured so far.
 *
 * @module
 */
import { UsageError } from "../../errors.ts";
import { StatusLine } from "../status.ts";
import { defineCommand } from "./define.ts";

/** `alumet run`. */
export const command = defineCommand({
  name: "run",
  synopsis: "run",
  summary: "Measure until SIGINT or SIGTERM (the default command)",
  usage: "run [OPTIONS]",
  description:
    `Runs the agent: the enabled sources are measured and sent to the outputs until SIGINT (Ctrl-C) or SIGTERM;
then every point measured so far is written before the agent exits. A second Ctrl-C exits at once.`,
  options: {},
  async run(ctx) {
    const logger = ctx.logger;
    if (ctx.positionals.length > 0) {
      throw new UsageError(`\`alumet run\` takes no argument (got "${ctx.positionals[0]}")`);
    }
    await using agent = await ctx.agent(await ctx.setup());
    const stop = Promise.withResolvers<string>();
    let signals = 0;
    const onSignal = (sig: Deno.Signal) => () => {
      if (++signals > 1) {
        logger.warn(`Second ${sig}: exiting without draining`);
        Deno.exit(130);
      }
      stop.resolve(sig);
    };
    const handlers = (["SIGINT", "SIGTERM"] as const).map((s) => [s, onSignal(s)] as const);
    for (const [s, h] of handlers) Deno.addSignalListener(s, h);
    try {
      await agent.start();
      logger.info(`Running with ${agent.pluginNames.join(", ")}; press Ctrl-C to stop`);
      using _status = new StatusLine(agent);
      const why = await Promise.race([
        stop.promise,
        agent.shutdownRequested.then(() => "a shutdown request"),
      ]);
      logger.info(`Stopping (${why}): writing what was measured`);
      await agent.stop();
      return 0;
    } finally {
      for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
    }
  },
});

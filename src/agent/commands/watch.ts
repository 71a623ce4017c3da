/**
 * `alumet watch PID`: measure a running process until it ends.
 *
 * @module
 */
import { AlumetError, UsageError } from "../../errors.ts";
import { Consumer } from "../../model/resources.ts";
import { processExists, waitForExit } from "../exec.ts";
import { defineCommand } from "./define.ts";

/** `alumet watch`. */
export const command = defineCommand({
  name: "watch",
  synopsis: "watch PID",
  summary: "Measure a running process until it ends",
  usage: "watch [OPTIONS] PID",
  description:
    `Measures the running process PID until it ends (or until SIGINT/SIGTERM): plugins are told its pid, every
source is polled at the start and at the end.`,
  options: {},
  async run(ctx) {
    if (ctx.positionals.length !== 1) {
      throw new UsageError("`alumet watch` needs exactly one PID: alumet watch PID");
    }
    const text = ctx.positionals[0]!;
    const pid = Number(text);
    if (!Number.isInteger(pid) || pid <= 0) {
      throw new UsageError(`Invalid PID "${text}": expected a positive integer`);
    }
    if (!processExists(pid)) throw new AlumetError(`No process with pid ${pid} (nothing under /proc/${pid})`);
    await using agent = await ctx.agent(await ctx.setup());
    await agent.start();
    const abort = new AbortController();
    const handlers = (["SIGINT", "SIGTERM"] as const).map((s) => [s, () => abort.abort()] as const);
    for (const [s, h] of handlers) Deno.addSignalListener(s, h);
    agent.shutdownRequested.then(() => abort.abort());
    try {
      await agent.control.triggerNow();
      await agent.events.publish("startConsumerMeasurement", [Consumer.process(pid)]);
      ctx.logger.info(`Watching pid ${pid}`);
      await waitForExit(pid, abort.signal);
      await agent.control.triggerNow();
      await agent.events.publish("endConsumerMeasurement", [Consumer.process(pid)]);
      await agent.stop();
      return 0;
    } finally {
      for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
    }
  },
});

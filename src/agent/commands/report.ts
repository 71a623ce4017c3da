/**
 * `alumet report FILE`: one self-contained HTML page of a run, from the csv or sqlite output's file.
 *
 * @module
 */
import { UsageError } from "../../errors.ts";
import type { CommandContext } from "./define.ts";
import type { REPORT_OPTIONS } from "./specs.ts";

/** Runs `alumet report`; resolves to the exit code. */
export async function run(ctx: CommandContext<typeof REPORT_OPTIONS>): Promise<number> {
  let top: number | undefined;
  if (ctx.options.top !== undefined) {
    top = /^\d+$/.test(ctx.options.top) ? Number(ctx.options.top) : NaN;
    if (!(Number.isSafeInteger(top) && top > 0)) {
      throw new UsageError(
        `Option --top needs a positive integer, not "${ctx.options.top}"` +
          (ctx.positionals.length === 0 ? ` (usage: alumet report [-o PATH] [--top N] FILE)` : ""),
      );
    }
  }
  if (ctx.positionals.length !== 1) {
    throw new UsageError(
      ctx.positionals.length === 0
        ? "Usage: alumet report [-o PATH] [--top N] FILE (FILE: the csv or sqlite output's file)"
        : `alumet report takes one FILE, not ${ctx.positionals.length} (${ctx.positionals.join(" ")})`,
    );
  }
  // Loaded here: the other commands do not pay for the report's modules (uPlot's 51 KB among them).
  const { buildReport } = await import("../../report/mod.ts");
  const result = await buildReport(ctx.positionals[0]!, {
    ...(ctx.options.output !== undefined ? { output: ctx.options.output } : {}),
    ...(top !== undefined ? { top } : {}),
  });
  ctx.write(result.path);
  return 0;
}

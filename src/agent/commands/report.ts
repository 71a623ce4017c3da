/**
 * `alumet report FILE`: one self-contained HTML page of a run, from the csv or sqlite output's file.
 *
 * @module
 */
import { UsageError } from "../../errors.ts";
import { defineCommand } from "./define.ts";

/** `alumet report`. */
export const command = defineCommand({
  name: "report",
  synopsis: "report FILE",
  summary: "Write an HTML page of a run (csv or sqlite output)",
  usage: "report [OPTIONS] FILE",
  description:
    `Reads FILE, written by the csv output (any delimiter, with or without unit suffixes) or the sqlite output,
and writes one self-contained HTML page next to it (FILE with .html, or -o PATH): power over time per domain and
device, energy per consumer (from energy-attribution), CPU and memory of the program, and a summary table. The
page needs no network; long runs are downsampled. Prints the page's path.`,
  options: {
    output: {
      type: "string",
      short: "o",
      valueName: "PATH",
      help: "Write the page here [default: FILE.html]",
    },
    top: {
      type: "string",
      valueName: "N",
      help: "Consumers named in the charts; the rest are 'other' [default: 10]",
    },
  },
  async run(ctx) {
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
  },
});

/**
 * `alumet plugins list`: the built-in plugins, their versions, and whether the config enables them.
 *
 * @module
 */
import { UsageError } from "../../errors.ts";
import { loadAllBuiltins } from "../builtin.ts";
import type { CommandContext } from "./define.ts";

/** Runs `alumet plugins`; resolves to the exit code. */
export async function run(ctx: CommandContext): Promise<number> {
  if (ctx.positionals[0] !== "list" || ctx.positionals.length !== 1) {
    throw new UsageError("Usage: alumet plugins list [--status]");
  }
  const setup = await ctx.setup();
  const enabled = new Set(setup.sections.map((s) => s.name));
  const rows = (await loadAllBuiltins()).map((m) => [
    m.name,
    m.version,
    enabled.has(m.name) ? "enabled" : "disabled",
    m.description ?? "",
  ]);
  for (const s of setup.sections) {
    if (s.module) rows.push([s.name, (await ctx.plugin(s)).version, "enabled", `external: ${s.module}`]);
  }
  const widths = [0, 1, 2].map((c) => Math.max(...rows.map((r) => r[c]!.length)));
  ctx.write(
    rows.map((r) => r.map((cell, c) => c < 3 ? cell.padEnd(widths[c]!) : cell).join("  ").trimEnd())
      .join("\n"),
  );
  return 0;
}

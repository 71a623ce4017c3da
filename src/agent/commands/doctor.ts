/**
 * `alumet doctor`: what can be measured here, and how to fix what cannot (the checks are in `../doctor.ts`).
 *
 * @module
 */
import { UsageError } from "../../errors.ts";
import { loadAllBuiltins } from "../builtin.ts";
import { validateSection } from "../config.ts";
import { diagnoseAll, formatReport } from "../doctor.ts";
import { defineCommand } from "./define.ts";

/** `alumet doctor`. */
export const command = defineCommand({
  name: "doctor",
  synopsis: "doctor",
  summary: "Check what can be measured here, and how to fix what cannot",
  usage: "doctor [OPTIONS]",
  description:
    `For each source, checks whether it can work on this machine with the current config and, if not, says why and
how to fix it; then checks the machine (native calls, perf_event access). Exits 0 when everything the config
enables can run, 1 otherwise. Lines: ✓ works, ✗ fails (enabled), · fails (not enabled).`,
  options: {},
  async run(ctx) {
    if (ctx.positionals.length > 0) throw new UsageError("`alumet doctor` takes no argument");
    const setup = await ctx.setup();
    const enabled = new Map(setup.sections.map((s) => [s.name, s]));
    const plugins = (await loadAllBuiltins()).map((meta) => {
      const section = enabled.get(meta.name) ?? { name: meta.name, enabled: false, table: {} };
      return {
        meta,
        config: validateSection(meta, section, setup.source),
        enabled: enabled.has(meta.name),
      };
    });
    const lines = await diagnoseAll(plugins);
    ctx.write(formatReport(lines));
    const failing = lines.filter((l) => l.enabled && !l.ok);
    ctx.write(
      failing.length === 0
        ? `\nEverything enabled can run here (${setup.sections.map((s) => s.name).join(", ")}).`
        : `\n${failing.length} check(s) of enabled plugins fail: see the fixes above.`,
    );
    return failing.length === 0 ? 0 : 1;
  },
});

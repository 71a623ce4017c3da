/**
 * `alumet doctor`: what can be measured here, and how to fix what cannot (the checks are in `../doctor.ts`).
 *
 * @module
 */
import { UsageError } from "../../errors.ts";
import { loadAllBuiltins } from "../builtin.ts";
import { validateSection } from "../config.ts";
import { conclusion, diagnoseAll, type DoctorLine, type DoctorPlugin, formatReport } from "../doctor.ts";
import { messageOf } from "../../errors.ts";
import type { CommandContext } from "./define.ts";

/** Runs `alumet doctor`; resolves to the exit code. */
export async function run(ctx: CommandContext): Promise<number> {
  if (ctx.positionals.length > 0) throw new UsageError("`alumet doctor` takes no argument");
  const setup = await ctx.setup();
  const enabled = new Map(setup.sections.map((s) => [s.name, s]));
  // Every built-in plugin, enabled or not (with its defaults then): one config serves a fleet of machines,
  // and the doctor says what each could measure here. Then the config's external plugins (`module = …`).
  // A built-in name the config gives a module of its own is that module's (the built-in is not listed).
  const plugins: DoctorPlugin[] = (await loadAllBuiltins())
    .filter((meta) => enabled.get(meta.name)?.module === undefined)
    .map((meta) => {
      const section = enabled.get(meta.name) ?? { name: meta.name, enabled: false, table: {} };
      return {
        meta,
        config: validateSection(meta, section, setup.source),
        enabled: enabled.has(meta.name),
      };
    });
  const unloadable: DoctorLine[] = [];
  for (const section of setup.sections) {
    if (section.module === undefined) continue;
    try {
      const meta = await ctx.plugin(section);
      plugins.push({ meta, config: validateSection(meta, section, setup.source), enabled: true });
    } catch (e) {
      unloadable.push({
        plugin: section.name,
        enabled: true,
        check: "plugin module",
        ok: false,
        detail: messageOf(e),
        fix: `check plugins.${section.name}.module (${section.module})`,
      });
    }
  }
  const lines = [...unloadable, ...await diagnoseAll(plugins)];
  ctx.write(formatReport(lines));
  const { code, text } = conclusion(lines, setup.sections.map((s) => s.name));
  ctx.write(`\n${text}`);
  return code;
}

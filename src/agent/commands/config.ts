/**
 * `alumet config regen`: write the default config of the enabled plugins.
 *
 * @module
 */
import { AlumetError, closest, messageOf, UsageError } from "../../errors.ts";
import type { PluginMetadata } from "../../plugin/plugin.ts";
import { ALUMET_ONLY, BUILTIN_NAMES, DEFAULT_ENABLED, loadBuiltin } from "../builtin.ts";
import { renderDefaultConfig } from "../config.ts";
import type { CommandContext } from "./define.ts";
import type { CONFIG_OPTIONS } from "./specs.ts";

/** Runs `alumet config`; resolves to the exit code. */
export async function run(ctx: CommandContext<typeof CONFIG_OPTIONS>): Promise<number> {
  if (ctx.positionals[0] !== "regen" || ctx.positionals.length !== 1) {
    throw new UsageError("Usage: alumet config regen [--config PATH] [--plugins A,B] [--force]");
  }
  const path = ctx.options.config ?? Deno.env.get("ALUMET_CONFIG") ?? "alumet-config.toml";
  const names = ctx.options.plugins?.split(",").map((s) => s.trim()).filter((s) => s) ??
    [...DEFAULT_ENABLED];
  const metas: PluginMetadata<unknown>[] = [];
  for (const n of names) {
    const m = await loadBuiltin(n);
    if (m === undefined && ALUMET_ONLY.has(n)) {
      ctx.logger.warn(
        `Plugin "${n}" is an Alumet plugin that this agent does not implement: no section for it`,
      );
      continue;
    }
    if (m === undefined) {
      const near = closest(n, BUILTIN_NAMES);
      throw new UsageError(
        `Unknown plugin "${n}" in --plugins${near ? `; did you mean "${near}"?` : ""} ` +
          `(known: ${BUILTIN_NAMES.join(", ")})`,
      );
    }
    metas.push(m);
  }
  const text = renderDefaultConfig(metas);
  try {
    // Without --force, `createNew` fails if the file exists, in the same system call that would create it.
    Deno.writeTextFileSync(path, text, ctx.options.force ? {} : { createNew: true });
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) {
      throw new AlumetError(
        `The config file ${path} exists: not replaced (it may hold your settings); ` +
          `use --force to replace it, or --config to write another file`,
      );
    }
    throw new AlumetError(`Cannot write the config file ${path}: ${messageOf(e)}`);
  }
  ctx.logger.info(`Wrote the default config of ${metas.map((m) => m.name).join(", ")} to ${path}`);
  return 0;
}

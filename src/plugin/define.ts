/**
 * {@linkcode definePlugin}: the one way to write a plugin, built-in or external.
 *
 * With a config: the schema gives the config's type (`init` receives it validated, durations in ms) and its
 * defaults (`.prefault(v)` in the TOML form, `.default(v)` as a value), so a default is written once, and
 * `config regen` writes exactly those defaults. Any Standard Schema (zod, valibot…) works too; its defaults
 * are then given in `defaults`, in the TOML form.
 *
 * Without a config: `definePlugin({ name, start, … })` gives the lifecycle methods directly.
 *
 * @example
 * ```ts
 * import { definePlugin } from "./define.ts";
 * import { duration, z } from "./schema.ts";
 * import { defaultConfigOf, validatePluginConfig } from "./config.ts";
 * import assert from "node:assert/strict";
 * const plugin = definePlugin({
 *   name: "board",
 *   version: "0.1.0",
 *   description: "Reads a board's sensors",
 *   config: z.strictObject({ poll_interval: duration().prefault("1s"), scale: z.number().default(1) }),
 *   init: (config) => ({ start: () => assert.equal(config.poll_interval, 1000) }),
 * });
 * assert.deepEqual(defaultConfigOf(plugin), { poll_interval: "1s", scale: 1 });
 * assert.deepEqual(validatePluginConfig(plugin, { name: "board", table: { scale: 2 } }, "a.toml"), {
 *   poll_interval: 1000,
 *   scale: 2,
 * });
 * const simple = definePlugin({ name: "mine", start() {} });
 * assert.equal(simple.name, "mine");
 * ```
 *
 * @module
 */
import type { Schema, StandardSchemaV1 } from "./_schema.ts";
import type { ConfigTable, Diagnosis, Plugin, PluginMetadata } from "./plugin.ts";
import { defaultsOf, DERIVED_DEFAULTS } from "./config.ts";

/** A config schema: one of ours, or any Standard Schema. */
// deno-lint-ignore no-explicit-any
export type ConfigSchema = Schema<any, any> | StandardSchemaV1<any, any>;

/** The validated config a schema gives. */
export type ConfigOf<S> = S extends Schema<infer O, infer _I> ? O
  : S extends StandardSchemaV1<infer _I, infer O> ? O
  : never;

/** What {@linkcode definePlugin} takes for a plugin with a config. */
export interface PluginSpec<S extends ConfigSchema> {
  /** Unique name; the TOML key `[plugins.<name>]`. */
  readonly name: string;
  /** Semantic version `x.y.z`. Default `0.0.0`. */
  readonly version?: string;
  /** One line for `plugins list`. */
  readonly description?: string;
  /** The schema of `[plugins.<name>]`: its type is the config's, its defaults are the defaults. */
  readonly config: S;
  /**
   * The defaults in the TOML form, for a Standard Schema that is not ours (whose defaults cannot be read);
   * for ours, they are derived from the schema, and given here they replace that.
   */
  readonly defaults?: ConfigTable;
  /** For outputs that write a file: the config key that `--output-file PATH` sets. */
  readonly outputFileKey?: string;
  /** Creates the plugin from its validated config; called once per agent. */
  init(config: ConfigOf<S>): Plugin | Promise<Plugin>;
  /** For `alumet doctor`; see {@linkcode PluginMetadata.diagnose}. */
  diagnose?(config: ConfigOf<S>): readonly Diagnosis[] | Promise<readonly Diagnosis[]>;
}

/** What {@linkcode definePlugin} takes for a plugin without config: a name and the lifecycle methods. */
export interface SimplePluginSpec extends Plugin {
  readonly name: string;
  readonly version?: string;
  readonly description?: string;
}

/** What {@linkcode definePlugin} returns: metadata whose default table is always there. */
export interface DefinedPlugin<C> extends PluginMetadata<C> {
  /** The default `[plugins.<name>]` table, in the TOML form (`{}` when there is none). */
  defaultConfig(): ConfigTable;
}

/**
 * A plugin's metadata, from its name, schema and `init` (or, without config, its lifecycle methods).
 *
 * @param spec the plugin
 * @returns what the agent loads: `[plugins.<name>]` is validated against the schema, its defaults are what
 *   `config regen` writes
 */
export function definePlugin<S extends ConfigSchema>(
  spec: PluginSpec<S>,
): DefinedPlugin<ConfigOf<S>> & { readonly configSchema: S };
export function definePlugin(spec: SimplePluginSpec): DefinedPlugin<ConfigTable>;
export function definePlugin(
  spec: PluginSpec<ConfigSchema> | SimplePluginSpec,
): DefinedPlugin<unknown> {
  if (!("config" in spec) || !("init" in spec)) {
    const plugin = spec as SimplePluginSpec;
    return {
      name: plugin.name,
      version: plugin.version ?? "0.0.0",
      description: plugin.description ?? "",
      defaultConfig: () => ({}),
      init: () => plugin,
    };
  }
  const defaults = spec.defaults;
  const derived = defaults === undefined ? defaultsOf(spec.config) : undefined;
  return {
    name: spec.name,
    version: spec.version ?? "0.0.0",
    description: spec.description ?? "",
    configSchema: spec.config,
    defaultConfig: () => structuredClone((defaults ?? derived ?? {}) as ConfigTable),
    ...(defaults === undefined ? { [DERIVED_DEFAULTS]: true } : {}),
    ...(spec.outputFileKey !== undefined ? { outputFileKey: spec.outputFileKey } : {}),
    init: (config) => spec.init(config),
    ...(spec.diagnose !== undefined ? { diagnose: (config: unknown) => spec.diagnose!(config) } : {}),
  };
}

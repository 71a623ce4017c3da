/**
 * The agent's configuration: the TOML file `alumet-config.toml` (compatible with alumet-agent's), the
 * `--config-override` and `--plugins` flags, and the validation of each plugin's section against its schema.
 *
 * The steps, in order:
 * 1. {@linkcode loadConfig} (or {@linkcode parseConfigText}) reads the file, substitutes `${ENV}` references,
 *    parses the TOML, applies the overrides and checks the general keys. Its {@linkcode RawConfig} keeps the
 *    plugin sections in file order: that order is the plugin start order, and therefore the transform order.
 * 2. {@linkcode selectPlugins} decides which plugins run, in which order, and rejects unknown plugin names.
 * 3. {@linkcode validateSection} merges a plugin's default table under its section and validates the
 *    result with the plugin's `configSchema`, once, before `init`.
 *
 * Every user mistake is a {@linkcode ConfigError} naming the file (or `--config-override`, `--plugins`), the
 * dotted key, what was expected there and, for a near miss, `did you mean "…"?`.
 *
 * @example
 * ```ts
 * import { parseConfigText, selectPlugins } from "./config.ts";
 * import assert from "node:assert/strict";
 * const raw = parseConfigText('max_update_interval = "1s"\n[plugins.csv]\noutput_path = "${OUT}"\n', "a.toml", {
 *   env: (name) => name === "OUT" ? "out.csv" : undefined,
 *   overrides: ["plugins.csv.csv_delimiter=,"],
 * });
 * assert.deepEqual(raw.general, { maxUpdateInterval: 1000 });
 * assert.deepEqual(raw.sections[0]?.table, { output_path: "out.csv", csv_delimiter: "," });
 * ```
 *
 * @module
 */
import { parseToml, stringifyToml, TomlError } from "../deps.ts";
import { closest, ConfigError, messageOf } from "../errors.ts";
import type { PluginMetadata } from "../plugin/plugin.ts";
import { duration, z } from "../plugin/schema.ts";
import {
  deepMerge,
  defaultConfigOf,
  hasPath,
  isPrefix,
  issueError,
  isTable,
  keySegment,
  type Path,
  setOwn,
  show,
  toPlain,
  validatePluginConfig,
} from "../plugin/config.ts";
import { dirname, isAbsolute, resolve } from "./paths.ts";

/** The agent-wide settings: Alumet's top-level keys. */
export interface GeneralConfig {
  /** `max_update_interval`, in ms: the longest time measurements wait before they are sent on. */
  maxUpdateInterval?: number;
  /** `source_channel_size`: the capacity of the channel between sources and transforms, in batches. */
  sourceChannelSize?: number;
  /**
   * `sampling_realtime`: whether the sampling Worker asks for realtime scheduling (`SCHED_FIFO`) for periods of
   * 3 ms and less. Off when not set: see `setSamplingRealtime` (src/pipeline/sampler.ts) for its cost.
   */
  samplingRealtime?: boolean;
}

/** One `[plugins.<name>]` section. */
export interface PluginSection {
  /** The plugin's name, the `<name>` of `[plugins.<name>]`. */
  name: string;
  /** Whether the plugin runs: present in the file and not `enable(d) = false`. */
  enabled: boolean;
  /** The user's table, without `enable`, `enabled` and `module`. Defaults are not merged in yet. */
  table: Record<string, unknown>;
  /** For an external plugin, the module to import: an absolute path or a URL. */
  module?: string;
}

/** A configuration read and checked, before the plugins are chosen and their sections validated. */
export interface RawConfig {
  /** The file path as given, or `"defaults"` when no file was read. */
  source: string;
  /** Whether a file was read. */
  fromFile: boolean;
  /** The top-level keys. */
  general: GeneralConfig;
  /** The plugin sections in file order; sections created by overrides come after the file's. */
  sections: PluginSection[];
}

/** How {@linkcode loadConfig} finds and completes the configuration. */
export interface LoadOptions {
  /** Absolute path of the config file. Default: none, the defaults are used. */
  path?: string;
  /**
   * Whether the file must exist: `true` when the user named it (`--config`, `ALUMET_CONFIG`), so a missing
   * file is a {@linkcode ConfigError}. Default `false`: a missing file means the defaults.
   */
  required?: boolean;
  /** Reads an environment variable, for `${NAME}` in the file. Default: `Deno.env.get`. */
  env?: (name: string) => string | undefined;
  /** `--config-override` values, `key=value`, applied in order. Default: none. */
  overrides?: readonly string[];
}

/** Which plugins exist and which the user asked for, for {@linkcode selectPlugins}. */
export interface SelectOptions {
  /** The built-in plugins, by name. */
  known: ReadonlyMap<string, unknown>;
  /** `--plugins`: exactly these plugins run, whatever the file says. Default: not given. */
  only?: readonly string[];
  /** The plugins that run when no file was read and `--plugins` is not given, in start order. */
  enabledByDefault: readonly string[];
  /**
   * Plugins this agent knows by name but does not implement (Alumet's others): a section or a `--plugins`
   * name for one is skipped instead of being an error. Default: none.
   */
  skip?: ReadonlySet<string>;
  /** Told, once each, of the skipped plugins that would have run (enabled ones). Default: nothing. */
  onSkip?: (name: string) => void;
}

/** The `source` of a problem found in a `--config-override` value. */
const OVERRIDE = "--config-override";
/**
 * The capacity of the channel between the sources and the transforms when `source_channel_size` is not set, in
 * batches: the pipeline's default (`src/pipeline/pipeline.ts`), written (commented) by
 * {@linkcode renderDefaultConfig}.
 */
export const DEFAULT_SOURCE_CHANNEL_SIZE = 64;

const GENERAL_SCHEMA = z.strictObject({
  max_update_interval: duration().optional(),
  source_channel_size: z.int({ error: "a positive integer" }).positive({ error: "a positive integer" })
    .optional(),
  sampling_realtime: z.boolean({ error: "true or false" }).optional(),
  plugins: z.record(z.string(), z.record(z.string(), z.unknown())).optional(),
});

type Table = Record<string, unknown>;

/** What a section's values came from, to name `--config-override` in messages when it is to blame. */
interface Origin {
  /** Paths set by overrides, relative to the section's table (`[]`: the whole table). */
  readonly overrides: readonly Path[];
  /** The section's table as the file wrote it (`undefined` when the file had no such section). */
  readonly fileTable: unknown;
}
/**
 * Keyed by the section's table, which every copy of the section shares (selectPlugins, the agent's entries),
 * so that whoever validates it can still blame an override.
 */
const ORIGINS = new WeakMap<Table, Origin>();

/**
 * Reads the config file, or takes the defaults when there is none, and applies the overrides.
 *
 * @param options where the file is, whether it must exist, the environment and the overrides
 * @returns the configuration, with `fromFile: false` and no sections (but those the overrides create) when no
 *   file was read; the caller then logs that the defaults are used
 * @throws {ConfigError} for a missing required file, an unreadable file, or any problem of
 *   {@linkcode parseConfigText}
 *
 * @example
 * ```ts
 * import { loadConfig } from "./config.ts";
 * import assert from "node:assert/strict";
 * const raw = await loadConfig({ path: "/nonexistent/alumet-config.toml", overrides: ["plugins.csv.x=1"] });
 * assert.deepEqual(raw.source, "defaults");
 * assert.deepEqual(raw.sections.map((s) => s.name), ["csv"]);
 * ```
 */
export async function loadConfig(options: LoadOptions): Promise<RawConfig> {
  const { path, required = false } = options;
  if (path === undefined) return build(undefined, "defaults", () => resolve("."), options);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      if (!required) return build(undefined, "defaults", () => resolve("."), options);
      throw new ConfigError({
        source: path,
        key: "",
        expected: "an existing config file",
        suggestion: 'check the path, or create the file with "config regen"',
      }, { cause: e });
    }
    throw new ConfigError({ source: path, key: "", expected: `a readable config file (${messageOf(e)})` }, {
      cause: e,
    });
  }
  return build(text, path, () => dirname(resolve(path)), options);
}

/**
 * Parses the text of a config file: substitutes `${NAME}` with the environment variable (`\${NAME}` keeps
 * `${NAME}` as is; lines that are comments are left alone), parses the TOML, applies the overrides, checks the
 * top-level keys and splits the `[plugins.<name>]` sections. A relative `module` path is resolved against the
 * directory of `source`.
 *
 * @param text the file's content
 * @param source the name used in messages (the file path)
 * @param options the environment (default `Deno.env.get`) and the `--config-override` values (default none)
 * @returns the configuration, `fromFile: true`
 * @throws {ConfigError} for an unset variable, a TOML syntax error, a malformed override, an unknown or bad
 *   top-level key, or a bad `enable`/`enabled`/`module` key
 *
 * @example
 * ```ts
 * import { parseConfigText } from "./config.ts";
 * import assert from "node:assert/strict";
 * const raw = parseConfigText("[plugins.rapl]\n[plugins.csv]\nenable = false\n", "a.toml");
 * assert.deepEqual(raw.sections.map((s) => [s.name, s.enabled]), [["rapl", true], ["csv", false]]);
 * assert.throws(() => parseConfigText("max_update_intervall = 1", "a.toml"), /did you mean "max_update_interval"/);
 * ```
 */
export function parseConfigText(
  text: string,
  source: string,
  options: Omit<LoadOptions, "path" | "required"> = {},
): RawConfig {
  return build(text, source, () => dirname(resolve(source)), options);
}

/**
 * Decides which plugins run, in order.
 *
 * Without `only`: the enabled sections of the file, in file order; with no file, `enabledByDefault` (less
 * those an override disables) then the sections the overrides created. With `only`: exactly these plugins,
 * in the order above, then the others in the order of `only`. A plugin with no section gets an empty table
 * (its defaults).
 *
 * @param raw the configuration from {@linkcode loadConfig}
 * @param options the known plugins, `--plugins` and the default set
 * @returns the sections of the plugins to run, `enabled: true`, external ones with their `module`
 * @throws {ConfigError} for a plugin name (in the file, an override or `--plugins`) that is neither known, nor
 *   in `skip`, nor given a `module`; the message lists the known plugins and suggests a near name
 *
 * @example
 * ```ts
 * import { parseConfigText, selectPlugins } from "./config.ts";
 * import type { PluginMetadata } from "../plugin/plugin.ts";
 * import assert from "node:assert/strict";
 * const meta = (name: string): PluginMetadata<unknown> =>
 *   ({ name, version: "0.1.0", defaultConfig: () => ({}), init: () => ({ start() {} }) });
 * const known = new Map(["rapl", "csv", "procfs"].map((n) => [n, meta(n)]));
 * const raw = parseConfigText("[plugins.rapl]\n[plugins.csv]\n", "a.toml");
 * assert.deepEqual(selectPlugins(raw, { known, enabledByDefault: [] }).map((s) => s.name), ["rapl", "csv"]);
 * assert.deepEqual(selectPlugins(raw, { known, enabledByDefault: [], only: ["procfs", "csv"] }).map((s) => s.name), [
 *   "csv",
 *   "procfs",
 * ]);
 * ```
 */
export function selectPlugins(raw: RawConfig, options: SelectOptions): PluginSection[] {
  const { known, only, enabledByDefault, skip = new Set<string>(), onSkip } = options;
  const byName = new Map(raw.sections.map((s) => [s.name, s]));
  const usable = (name: string) => known.has(name) || byName.get(name)?.module !== undefined;
  const skipped = (name: string) => !usable(name) && skip.has(name);
  const unknownPlugin = (name: string, source: string, key: string) =>
    unknownPluginError(name, source, key, known, skip);
  for (const section of raw.sections) {
    if (!usable(section.name) && !skip.has(section.name)) {
      const origin = ORIGINS.get(section.table);
      const fromOverride = origin !== undefined && origin.fileTable === undefined;
      throw unknownPlugin(
        section.name,
        fromOverride ? OVERRIDE : raw.source,
        `plugins.${keySegment(section.name)}`,
      );
    }
  }
  const order = raw.fromFile
    ? raw.sections.map((s) => s.name)
    : unique([...enabledByDefault, ...raw.sections.map((s) => s.name)]);
  let chosen: string[];
  if (only !== undefined) {
    const wanted = unique(only.map((n) => n.trim()).filter((n) => n !== ""));
    for (const name of wanted) {
      if (!usable(name) && !skip.has(name)) throw unknownPlugin(name, "--plugins", name);
    }
    const set = new Set(wanted);
    chosen = unique([...order.filter((n) => set.has(n)), ...wanted]);
  } else {
    for (const name of enabledByDefault) {
      if (!usable(name)) throw unknownPlugin(name, "defaults", name);
    }
    chosen = order.filter((n) => byName.get(n)?.enabled ?? true);
  }
  for (const name of chosen) if (skipped(name)) onSkip?.(name);
  chosen = chosen.filter((name) => !skipped(name));
  return chosen.map((name) => {
    const section = byName.get(name);
    if (section === undefined) return { name, enabled: true, table: {} };
    return section.enabled ? section : { ...section, enabled: true };
  });
}

/**
 * Validates a plugin's section against its schema ({@linkcode validatePluginConfig} of the plugin contract),
 * naming `--config-override` instead of the file when an override set the bad value.
 *
 * @param meta the plugin
 * @param section its section, from {@linkcode selectPlugins}
 * @param source the name used in messages (`raw.source`)
 * @returns the validated config, for `meta.init`
 * @throws {ConfigError} for the first problem (see {@linkcode validatePluginConfig})
 */
export function validateSection<C>(meta: PluginMetadata<C>, section: PluginSection, source: string): C {
  const origin = ORIGINS.get(section.table);
  return validatePluginConfig(
    meta,
    section,
    source,
    (path) =>
      origin !== undefined && blamesOverride(path, origin.overrides, origin.fileTable) ? OVERRIDE : undefined,
  );
}

/**
 * The text of a config file for `config regen`: the general keys, commented out with the agent's defaults, then
 * one `[plugins.<name>]` section per plugin with its `defaultConfig()`, in the given order. `${` in a value is
 * written `\${`, so that the text reads back the same through {@linkcode parseConfigText}.
 *
 * @param plugins the plugins to enable, in start order
 * @returns the TOML text
 *
 * @example
 * ```ts
 * import { parseConfigText, renderDefaultConfig } from "./config.ts";
 * import assert from "node:assert/strict";
 * const csv = { name: "csv", version: "0.1.0", defaultConfig: () => ({ output_path: "alumet-output.csv" }),
 *   init: () => ({ start() {} }) };
 * const text = renderDefaultConfig([csv]);
 * assert.deepEqual(parseConfigText(text, "a.toml").sections[0]?.table, { output_path: "alumet-output.csv" });
 * ```
 */
export function renderDefaultConfig(plugins: readonly PluginMetadata<unknown>[]): string {
  const head = [
    "# Configuration of the Alumet agent.",
    "",
    "# max_update_interval (in Alumet, the longest delay before a control request applies) is accepted and",
    "# has no effect here: control requests apply at once.",
    "# The capacity of the channel between the sources and the transforms, in batches.",
    `# source_channel_size = ${DEFAULT_SOURCE_CHANNEL_SIZE}`,
    "# Realtime scheduling (SCHED_FIFO, needs root or CAP_SYS_NICE) for sources polled every 3 ms or less.",
    "# It keeps ticks on time on a loaded machine, but preempts the measured program: at 1 ms, +7 % slowdown",
    "# of a CPU-bound program against +1.3 % at normal priority. `alumet doctor` says whether it would help.",
    "# sampling_realtime = false",
    "",
    "# One [plugins.<name>] section per plugin to run, in start order (which is also the transform order).",
    "# A plugin with no section does not run; `enabled = false` keeps a section without running the plugin.",
    "",
  ].join("\n");
  const sections: Table = {};
  for (const meta of plugins) setOwn(sections, meta.name, defaultConfigOf(meta));
  if (Object.keys(sections).length === 0) return head;
  const body = stringifyToml({ plugins: sections }).replaceAll("${", "\\${");
  return `${head}\n${body.endsWith("\n") ? body : `${body}\n`}`;
}

// ---------------------------------------------------------------------------------------------------------
// Reading

function build(
  text: string | undefined,
  source: string,
  baseDir: () => string,
  options: Omit<LoadOptions, "path" | "required">,
): RawConfig {
  const env = options.env ?? ((name: string) => Deno.env.get(name));
  let fileDoc: Table = {};
  if (text !== undefined) {
    const substituted = substituteEnv(text, source, env);
    try {
      fileDoc = toPlain(parseToml(substituted)) as Table;
    } catch (e) {
      if (e instanceof TomlError) throw tomlError(e, substituted, source);
      throw e;
    }
  }
  let doc = fileDoc;
  const overridePaths: Path[] = [];
  for (const override of options.overrides ?? []) {
    const { path, value } = parseOverride(override);
    overridePaths.push(path);
    doc = deepMerge(doc, nest(path, value));
  }
  const blame = (path: Path) => blamesOverride(path, overridePaths, fileDoc) ? OVERRIDE : source;

  const result = GENERAL_SCHEMA.safeParse(doc);
  if (!result.success) {
    throw issueError(result.error.issues, { schema: GENERAL_SCHEMA, data: doc, prefix: [], source: blame });
  }
  const general: GeneralConfig = {};
  if (result.data.max_update_interval !== undefined) {
    general.maxUpdateInterval = result.data.max_update_interval;
  }
  if (result.data.source_channel_size !== undefined) {
    general.sourceChannelSize = result.data.source_channel_size;
  }
  if (result.data.sampling_realtime !== undefined) {
    general.samplingRealtime = result.data.sampling_realtime;
  }

  const sections: PluginSection[] = [];
  const fileSections = isTable(fileDoc.plugins) ? fileDoc.plugins : {};
  for (const [name, value] of Object.entries(isTable(doc.plugins) ? doc.plugins : {})) {
    const table = { ...(value as Table) };
    const at = (key: string) => `plugins.${keySegment(name)}.${key}`;
    const fileTable = Object.hasOwn(fileSections, name) ? fileSections[name] : undefined;
    const overrides = overridePaths.flatMap((p) => {
      if (isPrefix(p, ["plugins", name])) return [[]];
      return isPrefix(["plugins", name], p) ? [p.slice(2)] : [];
    });
    const sourceOf = (key: string) => blame(["plugins", name, key]);

    let enabled = true;
    for (const key of ["enable", "enabled"]) {
      if (!Object.hasOwn(table, key)) continue;
      const flag = table[key];
      delete table[key];
      if (typeof flag !== "boolean") {
        throw new ConfigError({
          source: sourceOf(key),
          key: at(key),
          expected: `a boolean, not ${show(flag)}`,
        });
      }
      enabled = enabled && flag;
    }
    const section: PluginSection = { name, enabled, table };
    if (Object.hasOwn(table, "module")) {
      const module = table.module;
      delete table.module;
      if (typeof module !== "string" || module.trim() === "") {
        throw new ConfigError({
          source: sourceOf("module"),
          key: at("module"),
          expected: `the path or URL of a plugin module, not ${show(module)}`,
          suggestion: 'e.g. module = "./my_plugin.ts"',
        });
      }
      const fromOverride = sourceOf("module") === OVERRIDE;
      section.module = resolveModule(module.trim(), fromOverride ? () => resolve(".") : baseDir);
    }
    if (overrides.length > 0) ORIGINS.set(section.table, { overrides, fileTable });
    sections.push(section);
  }
  return { source, fromFile: text !== undefined, general, sections };
}

const ENV_REF = /(\\?)\$\{([^}\n]*)\}/g;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function substituteEnv(text: string, source: string, env: (name: string) => string | undefined): string {
  return text.split("\n").map((line, i) => {
    if (/^\s*#/.test(line)) return line;
    return line.replace(ENV_REF, (match: string, escape: string, name: string) => {
      if (escape !== "") return match.slice(1);
      const key = `line ${i + 1}`;
      const literal = `write \\\${${name}} to keep "\${${name}}" as is`;
      if (!ENV_NAME.test(name)) {
        throw new ConfigError({
          source,
          key,
          expected: `an environment variable name (letters, digits, _) in \${${name}}`,
          suggestion: literal,
        });
      }
      const value = env(name);
      if (value === undefined) {
        throw new ConfigError({
          source,
          key,
          expected: `the environment variable ${name} to be set (the file uses \${${name}})`,
          suggestion: `set it, or ${literal}`,
        });
      }
      return value;
    });
  }).join("\n");
}

function tomlError(e: TomlError, text: string, source: string): ConfigError {
  const reason = (e.message.split("\n")[0] ?? "").replace(/^Invalid TOML document: /, "");
  const lineText = text.split(/\r?\n/)[e.line - 1] ?? "";
  let suggestion: string | undefined;
  const m = /^\s*([A-Za-z0-9_.-]+)\s*=\s*([^\s"'[{#][^#]*?)\s*(?:#.*)?$/.exec(lineText);
  if (m !== null && /^(yes|no|on|off)$/i.test(m[2]!)) {
    suggestion = `a boolean is written true or false: ${m[1]} = ${/^(yes|on)$/i.test(m[2]!)}`;
  } else if (m !== null && !parsesAsValue(m[2]!) && parsesAsValue(JSON.stringify(m[2]))) {
    suggestion = `write strings in quotes: ${m[1]} = ${JSON.stringify(m[2])}`;
  }
  return new ConfigError({
    source,
    key: `line ${e.line}, column ${e.column}`,
    expected: `valid TOML (${reason})`,
    suggestion,
  }, { cause: e });
}

function parsesAsValue(text: string): boolean {
  return parseValue(text) !== NOT_A_VALUE;
}

const NOT_A_VALUE = Symbol("not a TOML value");

/** The TOML value `text` denotes, or NOT_A_VALUE. */
function parseValue(text: string): unknown {
  if (text.includes("\n") || text.includes("\r")) return NOT_A_VALUE;
  try {
    const doc = parseToml(`v = ${text}`);
    const keys = Object.keys(doc);
    return keys.length === 1 && keys[0] === "v" ? toPlain(doc.v) : NOT_A_VALUE;
  } catch (e) {
    if (e instanceof TomlError) return NOT_A_VALUE;
    throw e;
  }
}

/**
 * `plugins.x.key=value`: the key as a path, the value as TOML or else as a plain string (`out.csv`); a value
 * that starts like a TOML string, array or table but is not one is an error.
 */
function parseOverride(text: string): { path: string[]; value: unknown } {
  const eq = text.indexOf("=");
  if (eq < 0) {
    throw new ConfigError({
      source: OVERRIDE,
      key: text,
      expected: "key=value",
      suggestion: `e.g. --config-override 'plugins.NAME.KEY="text"'`,
    });
  }
  const keyText = text.slice(0, eq).trim();
  const valueText = text.slice(eq + 1).trim();
  const path = parseKey(keyText);
  if (path === undefined) {
    throw new ConfigError({
      source: OVERRIDE,
      key: keyText,
      expected: "a dotted TOML key such as plugins.NAME.KEY",
    });
  }
  const value = parseValue(valueText);
  if (value === NOT_A_VALUE && /^["'[{]/.test(valueText)) {
    // It starts as a TOML string, array or table but is not one (`output_path="a`): taking it as text would
    // write to a file named `"a`.
    throw new ConfigError({
      source: OVERRIDE,
      key: text,
      expected: "a TOML value after = (a quoted string, a number, a boolean, an array or a table)",
      suggestion: `e.g. ${keyText}=${closedValue(valueText)}`,
    });
  }
  return { path, value: value === NOT_A_VALUE ? valueText : value };
}

/**
 * The user's own value, made a TOML value for the suggestion: its open quotes, brackets and braces closed
 * (`"a` gives `"a"`, `[1, 2` gives `[1, 2]`), or, when that does not read, the text as one quoted string.
 */
function closedValue(text: string): string {
  const closers: string[] = [];
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quote !== undefined) {
      if (ch === "\\" && quote === '"') i++;
      else if (ch === quote) quote = undefined;
    } else if (ch === '"' || ch === "'") quote = ch;
    else if (ch === "[") closers.push("]");
    else if (ch === "{") closers.push(" }");
    else if ((ch === "]" || ch === "}") && closers.at(-1)?.trim() === ch) closers.pop();
  }
  const closed = text + (quote ?? "") + closers.reverse().join("");
  return parseValue(closed) === NOT_A_VALUE ? JSON.stringify(text) : closed;
}

function parseKey(text: string): string[] | undefined {
  if (text === "" || /[\n\r#]/.test(text)) return undefined;
  let doc: unknown;
  try {
    doc = parseToml(`${text} = 0`);
  } catch {
    return undefined;
  }
  const path: string[] = [];
  while (isTable(doc)) {
    const keys = Object.keys(doc);
    if (keys.length !== 1) return undefined;
    path.push(keys[0]!);
    doc = doc[keys[0]!];
  }
  return path.length > 0 && doc === 0 ? path : undefined;
}

function resolveModule(module: string, baseDir: () => string): string {
  if (/^[A-Za-z][A-Za-z0-9+.-]+:/.test(module)) return module;
  return isAbsolute(module) ? resolve(module) : resolve(baseDir(), module);
}

function unknownPluginError(
  name: string,
  source: string,
  key: string,
  known: ReadonlyMap<string, unknown>,
  others: ReadonlySet<string>,
): ConfigError {
  const names = [...known.keys()].sort();
  const near = closest(name, names) ?? closest(name, [...others]);
  return new ConfigError({
    source,
    key,
    expected: `a known plugin (one of: ${names.join(", ")})`,
    suggestion: near !== undefined
      ? `did you mean "${near}"?`
      : `for an external plugin, add module = "./plugin.ts" to [plugins.${keySegment(name)}]`,
  });
}

// ---------------------------------------------------------------------------------------------------------
// Tables

function nest(path: readonly string[], value: unknown): Table {
  let out = value;
  for (let i = path.length - 1; i >= 0; i--) {
    const t: Table = {};
    setOwn(t, path[i]!, out);
    out = t;
  }
  return out as Table;
}

/** Whether an override set the value at `path`, or created it where the file had nothing. */
function blamesOverride(path: Path, overrides: readonly Path[], fileData: unknown): boolean {
  return overrides.some((o) => isPrefix(o, path) || (isPrefix(path, o) && !hasPath(fileData, path)));
}

function unique<T>(items: Iterable<T>): T[] {
  return [...new Set(items)];
}

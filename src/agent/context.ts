/**
 * What the commands share, loaded only when a command runs (never for `--help` or a usage error): the config
 * and the enabled plugins' sections ({@linkcode Setup}), the plugins themselves (built in, or modules the config
 * names), and the agent made of them. `./cli.ts` hands them to a command as its {@linkcode CommandContext}.
 *
 * @module
 */
import { AlumetError, messageOf, UsageError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { PluginMetadata } from "../plugin/plugin.ts";
import type { Agent, PluginEntry } from "./agent.ts";
import { ALUMET_ONLY, BUILTIN_LOADERS, DEFAULT_ENABLED, loadBuiltin } from "./builtin.ts";
import { intervalProblem, parseDuration } from "../model/duration.ts";
import { loadConfig, type PluginSection, type RawConfig, selectPlugins } from "./config.ts";
import { stringifyToml } from "../deps.ts";
import { setSamplingRealtime } from "../pipeline/sampler.ts";
import { keySegment } from "../plugin/config.ts";
import type { CommandContext } from "./commands/define.ts";
import type { ParsedCommandLine } from "./cli.ts";

/** The configuration the commands share: the enabled plugins' sections and the general settings. */
export interface Setup {
  /** The enabled plugins' sections, in start order (`--output-file` already applied). */
  readonly sections: readonly PluginSection[];
  /** Where the config came from (the file, or `defaults`), for messages. */
  readonly source: string;
  /** Whether a config file was read. */
  readonly fromFile: boolean;
  /** `source_channel_size`, if set. */
  readonly sourceChannelSize: number | undefined;
  /** The names of every plugin the config has a section for, enabled or not (`exec` leaves those alone). */
  readonly configured: ReadonlySet<string>;
}

/** The metadata of each section's plugin, loaded once. */
const METAS = new WeakMap<PluginSection, Promise<PluginMetadata<unknown>>>();

/**
 * The plugin of an enabled section: a built-in one, or the module `module = "…"` names. With `reload`, a module
 * given by an http(s) URL is fetched again first (Deno keeps remote modules in its cache and would reuse them).
 * Loaded once per section, even when asked for again while it loads.
 */
function pluginOf(s: PluginSection, reload = false): Promise<PluginMetadata<unknown>> {
  let known = METAS.get(s);
  if (known === undefined) METAS.set(s, known = loadPlugin(s, reload));
  return known;
}

async function loadPlugin(s: PluginSection, reload: boolean): Promise<PluginMetadata<unknown>> {
  let meta: PluginMetadata<unknown> | undefined;
  if (s.module === undefined) {
    meta = await loadBuiltin(s.name);
  } else {
    const remote = /^https?:/i.test(s.module);
    if (reload && remote) await refetch(s);
    let mod: Record<string, unknown>;
    try {
      mod = await import(s.module);
    } catch (e) {
      throw new AlumetError(
        `Cannot load plugin "${s.name}" from ${s.module}: ${loadErrorLine(e, s.module, remote)}`,
      );
    }
    const m = (mod.default ?? mod.plugin) as PluginMetadata<unknown> | undefined;
    if (m === undefined || typeof m !== "object" || typeof m.init !== "function") {
      throw new AlumetError(
        `Plugin module ${s.module} (plugins.${s.name}) exports no plugin: export default ` +
          `definePlugin({ name, … }) or a PluginMetadata (name, version, init)`,
      );
    }
    if (m.name !== s.name) {
      throw new AlumetError(
        `Plugin module ${s.module} is named "${m.name}", but the config calls it "${s.name}"`,
      );
    }
    meta = m;
  }
  if (meta === undefined) throw new AlumetError(`Unknown plugin "${s.name}"`);
  return meta;
}

/**
 * The one line that says why a plugin module did not load. Deno reports a syntax error of a module it fetched
 * as a `TypeError` (or a `SyntaxError`) whose message starts with the error and goes on with a code frame and
 * an `at URL:line:col` line: the first line is kept, with the position. A server that gives a .ts file a
 * JavaScript content type makes Deno parse TypeScript as JavaScript (a `type` import, a type annotation):
 * the line then says which content type to use.
 */
function loadErrorLine(e: unknown, module: string, remote: boolean): string {
  const message = messageOf(e);
  let line = message.split("\n")[0]!.trim();
  const at = /\n\s*at (\S+):(\d+):(\d+)\s*$/.exec(message);
  if (at !== null && line !== message.trim()) line += ` (line ${at[2]}, column ${at[3]})`;
  const syntax = e instanceof SyntaxError || /\bSyntaxError\b/.test(message);
  if (remote && syntax && /\.m?ts(\?|#|$)/.test(module)) {
    line +=
      " (the server must send .ts files as application/typescript or text/typescript, not as JavaScript)";
  }
  return line;
}

/**
 * What `deno cache --reload=` takes to fetch `url` and the modules of its directory and below again: Deno
 * matches a module against each listed specifier and then against each of its parent paths, written without
 * a trailing slash (`http://host/a/b`, not `http://host/a/b/`, which matches nothing).
 */
export function reloadPrefixes(url: string): string {
  const dir = new URL(".", url).href.replace(/\/$/, "");
  return url.includes(",") ? dir : `${dir},${url}`;
}

/**
 * Fetches a remote plugin module again into Deno's cache with the modules next to it and below
 * (`deno cache --reload=DIR`: the plugin's own imports, `./helper.ts`, change with it), so that the import that
 * follows reads the module as the server has it now. No lockfile is read or written.
 */
async function refetch(s: PluginSection): Promise<void> {
  const url = s.module!;
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(Deno.execPath(), {
      args: ["cache", "--quiet", "--no-lock", "--no-config", `--reload=${reloadPrefixes(url)}`, url],
      env: { NO_COLOR: "1" }, // added to the inherited environment: a plain first line for the message
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
  } catch (e) {
    throw new AlumetError(`Cannot fetch plugin "${s.name}" again from ${url}: ${messageOf(e)}`);
  }
  if (!out.success) {
    const why = new TextDecoder().decode(out.stderr).trim().split("\n")[0];
    throw new AlumetError(`Cannot fetch plugin "${s.name}" again from ${url}: ${why || `exit ${out.code}`}`);
  }
}

/**
 * The `--config-override` value that sets the TOML key `key` of `[plugins.<plugin>]` to the string `value`
 * (the value quoted the TOML way, so that any path reads back as itself).
 */
function stringOverride(plugin: string, key: string, value: string): string {
  const quoted = stringifyToml({ v: value }).trim().replace(/^v = /, "");
  return `plugins.${keySegment(plugin)}.${keySegment(key)}=${quoted}`;
}

/** The enabled sections whose plugin declares an `outputFileKey`, with that key. */
async function fileWriters(
  sections: readonly PluginSection[],
  reload: boolean,
): Promise<[PluginSection, string][]> {
  const found: [PluginSection, string][] = [];
  for (const s of sections) {
    const key = (await pluginOf(s, reload)).outputFileKey;
    if (key !== undefined) found.push([s, key]);
  }
  return found;
}

/** The first plugin of `DEFAULT_ENABLED` that declares an `outputFileKey`, with that key. */
async function defaultFileWriter(): Promise<{ name: string; key: string } | undefined> {
  for (const name of DEFAULT_ENABLED) {
    const key = (await loadBuiltin(name))?.outputFileKey;
    if (key !== undefined) return { name, key };
  }
  return undefined;
}

async function loadSetup(v: CommandContext["options"], logger: Logger): Promise<Setup> {
  const given = v.config ?? Deno.env.get("ALUMET_CONFIG");
  const path = given ?? "alumet-config.toml";
  const load = (extra: readonly string[]) =>
    loadConfig({
      path: absolute(path),
      required: given !== undefined || v["no-default-config"] === true,
      overrides: [...v["config-override"] ?? [], ...extra],
    });
  const only = v.plugins?.split(",").map((s) => s.trim()).filter((s) => s);
  let skipped = new Set<string>();
  const select = (raw: RawConfig) => {
    skipped = new Set();
    return selectPlugins(raw, {
      known: BUILTIN_LOADERS,
      ...(only ? { only } : {}),
      enabledByDefault: DEFAULT_ENABLED,
      skip: ALUMET_ONLY,
      onSkip: (name) => skipped.add(name),
    });
  };
  const alumetOptions = alumetOptionsOf(v, logger);
  const reload = v["reload-plugins"] === true;
  let raw = await load([]);
  if (!raw.fromFile) {
    logger.info(`No config file at ${path}: using the built-in defaults (alumet config regen writes them)`);
  }
  let sections = select(raw);
  const outputFile = v["output-file"];
  if (outputFile !== undefined) {
    // `--output-file PATH` sets the `outputFileKey` of every enabled plugin that declares one. When none
    // does and `--plugins` was not given, it enables the first default plugin that writes a file, through an
    // override (as `--config-override plugins.<name>.<key>=PATH` would: an override creates the section).
    if (outputFile === "") throw new UsageError("Option --output-file needs a non-empty path");
    let writers = await fileWriters(sections, reload);
    let disabled: string | undefined;
    if (writers.length === 0 && only === undefined) {
      const fallback = await defaultFileWriter();
      const existing = raw.sections.find((s) => s.name === fallback?.name);
      if (existing !== undefined) {
        // the config disables it (an explicit choice, kept), or makes that name another plugin module
        if (!existing.enabled) disabled = existing.name;
      } else if (fallback !== undefined) {
        raw = await load([stringOverride(fallback.name, fallback.key, outputFile)]);
        sections = select(raw);
        writers = await fileWriters(sections, reload);
        if (writers.length > 0) {
          logger.info(`--output-file: enabling ${fallback.name}, which writes ${outputFile}`);
        }
      }
    }
    if (writers.length === 0) {
      throw new UsageError(
        `Option --output-file: no enabled plugin writes a file (enabled: ${
          sections.map((s) => s.name).join(", ") || "none"
        }${disabled !== undefined ? `; the config disables ${disabled}` : ""}): enable an output ` +
          `that writes a file (see \`alumet plugins list\`)`,
      );
    }
    for (const [s, key] of writers) s.table[key] = outputFile;
  }
  for (const name of skipped) {
    logger.warn(
      `Plugin "${name}" is an Alumet plugin that this agent does not implement: skipping its section`,
    );
  }
  // The sampling Worker reads it when it starts: realtime scheduling only when the config asks for it.
  setSamplingRealtime(raw.general.samplingRealtime ?? false);
  return {
    sections,
    source: raw.source,
    fromFile: raw.fromFile,
    sourceChannelSize: alumetOptions.sourceChannelSize ?? raw.general.sourceChannelSize,
    configured: new Set(raw.sections.map((s) => s.name)),
  };
}

/**
 * Alumet's command-line options: checked, `--source-channel-size` taken (it overrides the config's
 * `source_channel_size`, as in Alumet), a note for each of the others, which have no effect here.
 */
function alumetOptionsOf(v: CommandContext["options"], logger: Logger): { sourceChannelSize?: number } {
  const positive = (name: string): number | undefined => {
    const text = v[name as keyof typeof v] as string | undefined;
    if (text === undefined) return undefined;
    const n = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
    if (!(Number.isSafeInteger(n) && n > 0)) {
      throw new UsageError(`Option --${name} needs a positive integer, not "${text}"`);
    }
    return n;
  };
  const interval = v["max-update-interval"];
  if (interval !== undefined) {
    const ms = parseDuration(interval);
    const problem = ms === undefined ? `a duration such as "1s"` : intervalProblem(ms);
    if (problem !== undefined) {
      throw new UsageError(`Option --max-update-interval needs ${problem}, not "${interval}"`);
    }
    logger.info("--max-update-interval has no effect here: control requests apply at once");
  }
  for (const name of ["normal-worker-threads", "priority-worker-threads"]) {
    if (positive(name) !== undefined) {
      logger.info(
        `--${name} has no effect here: the agent runs on Deno's event loop, fast sources in a sampling Worker`,
      );
    }
  }
  const size = positive("source-channel-size");
  return size === undefined ? {} : { sourceChannelSize: size };
}

function absolute(path: string): string {
  return path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
}

/**
 * The enabled plugins with their tables, loaded together (each module's graph is read while the others' are),
 * in the sections' order; a plugin that does not load fails it with the first such section's error.
 */
async function pluginEntries(setup: Setup, reload: boolean): Promise<PluginEntry[]> {
  const loaded = await Promise.allSettled(setup.sections.map((s) => pluginOf(s, reload)));
  // The agent validates the table; its origin (file or --config-override) travels with it.
  return loaded.map((r, i) => {
    if (r.status === "rejected") throw r.reason;
    return { plugin: r.value, config: setup.sections[i]!.table };
  });
}

/**
 * What a command receives: the parsed line, the logger, `write`, and the shared setup, loaded on demand. The
 * agent's module is imported when the first agent is made (a command that runs one has it in its own imports).
 */
export function contextOf(
  p: ParsedCommandLine,
  logger: Logger,
  write: CommandContext["write"],
): CommandContext {
  let setup: Promise<Setup> | undefined;
  const reload = p.values["reload-plugins"] === true;
  return {
    options: p.values as CommandContext["options"],
    positionals: p.positionals,
    program: p.program,
    logger,
    setup: () => setup ??= loadSetup(p.values as CommandContext["options"], logger),
    plugin: (s) => pluginOf(s, reload),
    agent: async (s, extra = []): Promise<Agent> => {
      const { Agent } = await import("./agent.ts");
      return new Agent({
        plugins: [...await pluginEntries(s, reload), ...extra],
        configSource: s.source,
        ...(s.sourceChannelSize !== undefined ? { sourceChannelSize: s.sourceChannelSize } : {}),
      });
    },
    write,
  };
}

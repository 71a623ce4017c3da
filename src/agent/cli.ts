/**
 * The `alumet` command line: the dispatch, the global options and what the commands share (loading the
 * config, the plugin entries, the agent). Each command is a file of `./commands/` that declares its options
 * once; the help texts and the parser's option lists are derived from those declarations.
 *
 * `main(args)` returns the exit code; it never throws for a user error: it prints one line and returns
 * a non-zero code (stack traces only with `--log-level debug`).
 *
 * @module
 */
import { AlumetError, closest, messageOf, UsageError } from "../errors.ts";
import { LOG_LEVELS, Logger, logLevel, setLogLevel } from "../log.ts";
import type { PluginMetadata } from "../plugin/plugin.ts";
import { Agent, type PluginEntry } from "./agent.ts";
import { ALUMET_ONLY, BUILTIN_LOADERS, DEFAULT_ENABLED, loadBuiltin } from "./builtin.ts";
import { intervalProblem, parseDuration } from "../model/duration.ts";
import { loadConfig, type PluginSection, type RawConfig, selectPlugins } from "./config.ts";
import { stringifyToml } from "../deps.ts";
import { setSamplingRealtime } from "../pipeline/sampler.ts";
import { keySegment } from "../plugin/config.ts";
import {
  type Command,
  type CommandContext,
  commandHelp,
  formatCommands,
  formatOptions,
  type OptionSpecs,
  type OptionValues,
} from "./commands/define.ts";
import { command as run } from "./commands/run.ts";
import { command as exec } from "./commands/exec.ts";
import { command as watch } from "./commands/watch.ts";
import { command as config } from "./commands/config.ts";
import { command as plugins } from "./commands/plugins.ts";
import { command as doctor } from "./commands/doctor.ts";
import { command as report } from "./commands/report.ts";

const VERSION = "0.1.0";

/** The commands, in the order `alumet --help` lists them; the first is the default. */
const COMMANDS: readonly Command[] = [run, exec, watch, config, plugins, doctor, report];

const BY_NAME: ReadonlyMap<string, Command> = new Map(COMMANDS.map((c) => [c.name, c]));

/** The options every command accepts, before or after its name. */
export const GLOBAL_OPTIONS = {
  config: {
    type: "string",
    valueName: "PATH",
    help: "Config file [env: ALUMET_CONFIG] [default: alumet-config.toml]",
  },
  "no-default-config": {
    type: "boolean",
    help: "Fail if the config file is missing instead of using the defaults",
  },
  "config-override": {
    type: "string",
    multiple: true,
    valueName: "K=V",
    help: `Override a config value, e.g. 'plugins.NAME.KEY="text"' (repeatable)`,
  },
  plugins: { type: "string", valueName: "A,B", help: "Enable exactly these plugins" },
  "output-file": {
    type: "string",
    valueName: "PATH",
    help: "Where the file outputs write (the default one is enabled if none is)",
  },
  "reload-plugins": {
    type: "boolean",
    help: "Fetch the plugin modules given by URL again, not from Deno's cache",
  },
  "max-update-interval": {
    type: "string",
    valueName: "DUR",
    help: "Alumet's, accepted: no effect here (control requests apply at once)",
  },
  "source-channel-size": {
    type: "string",
    valueName: "N",
    help: "Batches buffered between the sources and the transforms [default: 64]",
  },
  "normal-worker-threads": { type: "string", valueName: "N", help: "Alumet's, accepted: no effect here" },
  "priority-worker-threads": { type: "string", valueName: "N", help: "Alumet's, accepted: no effect here" },
  "log-level": {
    type: "string",
    valueName: "LEVEL",
    help: `${LOG_LEVELS.join(", ")} [env: ALUMET_LOG] [default: info]`,
  },
  help: { type: "boolean", short: "h", help: "Print help (also after a command: alumet exec --help)" },
  version: { type: "boolean", short: "V", help: "Print the version" },
} as const satisfies OptionSpecs;

/** The text of `alumet --help`. */
export function mainHelp(): string {
  return `alumet ${VERSION}: measure energy and performance on Linux

Usage: alumet [OPTIONS] [COMMAND]

Commands:
${formatCommands(COMMANDS)}
  ${"help [COMMAND]".padEnd(19)} Print this help, or the help of COMMAND

Options:
${formatOptions(GLOBAL_OPTIONS)}

With no config file, the built-in defaults are used in memory (${
    DEFAULT_ENABLED.join(", ")
  }); nothing is written
unless you run \`alumet config regen\`.`;
}

/** The text of `alumet <command> --help`; undefined for an unknown command. */
export function helpOf(name: string): string | undefined {
  const c = BY_NAME.get(name);
  return c === undefined ? undefined : commandHelp(c);
}

/** The command line, split. */
export interface ParsedCommandLine {
  /** The command's name (`run` when none was given). */
  command: string;
  /** Whether the command was named (`alumet exec --help`) rather than taken by default (`alumet --help`). */
  named: boolean;
  /** The arguments that are not options. */
  positionals: string[];
  /** For `exec`: the program and its arguments. */
  program: string[];
  /** The options given, by name. */
  values: OptionValues;
}

/** The option that `token` (`--name`, `--name=v`, `-h`) names in `specs`, if any. */
function optionOf(token: string, specs: OptionSpecs): string | undefined {
  if (token.startsWith("--")) {
    const eq = token.indexOf("=");
    const name = eq < 0 ? token.slice(2) : token.slice(2, eq);
    return Object.hasOwn(specs, name) ? name : undefined;
  }
  return Object.keys(specs).find((k) => specs[k]!.short === token.slice(1));
}

/** Whether `token` is an option that takes its value from the next argument. */
function takesNext(token: string, specs: OptionSpecs): boolean {
  if (token.includes("=")) return false;
  const name = optionOf(token, specs);
  return name !== undefined && specs[name]!.type === "string";
}

/**
 * Parses option tokens (`--name value`, `--name=value`, `-h`) against `specs`; other tokens are positionals.
 * Written here rather than taken from `node:util`'s parseArgs, whose Node compatibility layer costs about
 * 12 ms of every start-up (and an npm CLI library 15–33 ms).
 */
function parseOptions(
  tokens: readonly string[],
  specs: OptionSpecs,
  command: string,
): { values: OptionValues; positionals: string[] } {
  const values: OptionValues = {};
  const positionals: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (!t.startsWith("-") || t === "-") {
      positionals.push(t);
      continue;
    }
    const name = optionOf(t, specs);
    if (name === undefined) {
      const shown = t.split("=")[0]!;
      throw new UsageError(`Unknown option ${shown} for \`alumet ${command}\`${suggestOption(shown, specs)}`);
    }
    const spec = specs[name]!;
    const eq = t.startsWith("--") ? t.indexOf("=") : -1;
    const inline = eq < 0 ? undefined : t.slice(eq + 1);
    if (spec.type === "boolean") {
      if (inline !== undefined) {
        throw new UsageError(`Option --${name} takes no value (see \`alumet ${command} --help\`)`);
      }
      values[name] = true;
      continue;
    }
    const value = inline ?? tokens[i + 1];
    if (value === undefined || (inline === undefined && value.startsWith("--"))) {
      throw new UsageError(`Option --${name} needs a value (see \`alumet ${command} --help\`)`);
    }
    if (inline === undefined) i++;
    if (spec.multiple) ((values[name] ??= []) as string[]).push(value);
    else values[name] = value;
  }
  return { values, positionals };
}

function suggestOption(token: string, specs: OptionSpecs): string {
  const near = closest(token.replace(/^-+/, ""), Object.keys(specs));
  return near ? `; did you mean --${near}?` : "; see `alumet --help`";
}

/** Splits the arguments into the command, its options and (for exec) the program and its arguments. */
export function parseCommandLine(args: readonly string[]): ParsedCommandLine {
  let i = 0;
  let command = COMMANDS[0]!;
  let named = false;
  const head: string[] = [];
  for (; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") break;
    if (a.startsWith("-")) {
      head.push(a);
      if (takesNext(a, GLOBAL_OPTIONS) && i + 1 < args.length) head.push(args[++i]!);
      continue;
    }
    if (a === "help") {
      // `alumet help [COMMAND]`, as clap's: the same as `alumet [COMMAND] --help`.
      const rest = args.slice(i + 1).filter((x) => !x.startsWith("-"));
      const name = rest[0];
      if (name !== undefined && !BY_NAME.has(name)) throw unknownCommand(name);
      return {
        command: name ?? COMMANDS[0]!.name,
        named: name !== undefined,
        positionals: [],
        program: [],
        values: { help: true },
      };
    }
    const found = BY_NAME.get(a);
    if (found === undefined) throw unknownCommand(a);
    command = found;
    named = true;
    i++;
    break;
  }
  const specs: OptionSpecs = { ...GLOBAL_OPTIONS, ...command.options };
  const rest: string[] = [];
  let program: string[] = [];
  for (; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") {
      program = args.slice(i + 1);
      break;
    }
    if (a.startsWith("-") && a !== "-") {
      rest.push(a);
      if (takesNext(a, specs) && i + 1 < args.length) rest.push(args[++i]!);
      continue;
    }
    if (command.runsProgram) {
      program = args.slice(i);
      break;
    }
    rest.push(a);
  }
  const parsed = parseOptions([...head, ...rest], specs, command.name);
  if (!command.runsProgram && program.length > 0) {
    const runner = COMMANDS.find((c) => c.runsProgram)?.synopsis;
    throw new UsageError(
      `\`alumet ${command.name}\` runs no program (got "${program.join(" ")}")${
        runner ? `: use alumet ${runner}` : ""
      }`,
    );
  }
  return { command: command.name, named, positionals: parsed.positionals, program, values: parsed.values };
}

function unknownCommand(word: string): UsageError {
  const names = [...COMMANDS.map((c) => c.name), "help"];
  const near = closest(word, names);
  return new UsageError(
    `Unknown command "${word}"${near ? `; did you mean "${near}"?` : ""} (commands: ${names.join(", ")})`,
  );
}

/** The directory the user ran the command from: `deno task` runs in the project root and sets INIT_CWD. */
export function userCwd(): string {
  const cwd = Deno.cwd();
  const init = Deno.env.get("INIT_CWD");
  if (init === undefined || init === cwd) return cwd;
  try {
    const root = new URL("../..", import.meta.url);
    if (root.protocol === "file:" && decodeURIComponent(root.pathname).replace(/\/$/, "") === cwd) {
      return init;
    }
  } catch {
    // not a file URL (imported remotely): the cwd is the user's
  }
  return cwd;
}

function write(text: string, stream: { writeSync(p: Uint8Array): number } = Deno.stdout): void {
  const bytes = new TextEncoder().encode(text.endsWith("\n") ? text : text + "\n");
  let off = 0;
  while (off < bytes.length) off += stream.writeSync(bytes.subarray(off));
}

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
const METAS = new WeakMap<PluginSection, PluginMetadata<unknown>>();

/**
 * The plugin of an enabled section: a built-in one, or the module `module = "…"` names. With `reload`, a module
 * given by an http(s) URL is fetched again first (Deno keeps remote modules in its cache and would reuse them).
 */
async function pluginOf(s: PluginSection, reload = false): Promise<PluginMetadata<unknown>> {
  const known = METAS.get(s);
  if (known !== undefined) return known;
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
  METAS.set(s, meta);
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

async function pluginEntries(setup: Setup, reload: boolean): Promise<PluginEntry[]> {
  const entries: PluginEntry[] = [];
  for (const s of setup.sections) {
    // The agent validates the table; its origin (file or --config-override) travels with it.
    entries.push({ plugin: await pluginOf(s, reload), config: s.table });
  }
  return entries;
}

/** What a command receives: the parsed line, the logger and the shared setup, loaded on demand. */
function contextOf(p: ParsedCommandLine, logger: Logger): CommandContext {
  let setup: Promise<Setup> | undefined;
  const reload = p.values["reload-plugins"] === true;
  return {
    options: p.values as CommandContext["options"],
    positionals: p.positionals,
    program: p.program,
    logger,
    setup: () => setup ??= loadSetup(p.values as CommandContext["options"], logger),
    plugin: (s) => pluginOf(s, reload),
    agent: async (s, extra = []) =>
      new Agent({
        plugins: [...await pluginEntries(s, reload), ...extra],
        configSource: s.source,
        ...(s.sourceChannelSize !== undefined ? { sourceChannelSize: s.sourceChannelSize } : {}),
      }),
    write,
  };
}

/** Runs the CLI with `args` and returns the exit code. */
export async function main(args: readonly string[]): Promise<number> {
  const logger = new Logger("alumet");
  try {
    const envLevel = Deno.env.get("ALUMET_LOG");
    if (envLevel) setLogLevel(envLevel);
    const parsed = parseCommandLine(args);
    const level = parsed.values["log-level"];
    if (typeof level === "string") setLogLevel(level);
    if (parsed.values.version) {
      write(`alumet ${VERSION}`);
      return 0;
    }
    if (parsed.values.help) {
      write(parsed.named ? helpOf(parsed.command)! : mainHelp());
      return 0;
    }
    const userDir = userCwd();
    if (userDir !== Deno.cwd()) Deno.chdir(userDir);
    return await BY_NAME.get(parsed.command)!.run(contextOf(parsed, logger));
  } catch (e) {
    if (e instanceof RangeError && /log level/.test(e.message)) {
      write(`alumet: ${e.message}`, Deno.stderr);
      return 2;
    }
    const userError = e instanceof AlumetError;
    write(`alumet: ${userError ? e.message : `unexpected error: ${messageOf(e)}`}`, Deno.stderr);
    if (logLevel() === "debug" || logLevel() === "trace") {
      write(e instanceof Error && e.stack ? e.stack : String(e), Deno.stderr);
    } else if (!userError) {
      write("(run with --log-level debug for the stack trace)", Deno.stderr);
    }
    return userError ? (e as AlumetError).exitCode : 1;
  }
}

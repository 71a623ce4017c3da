/**
 * The `alumet` command line: the dispatch and the global options. Each command is declared once in
 * `./commands/specs.ts` (name, help, options); the help texts and the parser's option lists are derived from
 * those declarations. A command's code (`./commands/<name>.ts`) and what the commands share (`./context.ts`:
 * the config, the plugins, the agent) are imported only when that command runs: `alumet --help` and a usage
 * error load neither, and `alumet exec` loads no other command's code.
 *
 * `main(args)` returns the exit code; it never throws for a user error: it prints one line and returns
 * a non-zero code (stack traces only with `--log-level debug`).
 *
 * @module
 */
import { AlumetError, closest, messageOf, UsageError } from "../errors.ts";
import { LOG_LEVELS, Logger, logLevel, setLogLevel } from "../log.ts";
import type { CliModule } from "./bundle.ts";
import { DEFAULT_ENABLED } from "./builtin.ts";
import {
  type Command,
  commandHelp,
  formatCommands,
  formatOptions,
  type OptionSpecs,
  type OptionValues,
} from "./commands/define.ts";
import { COMMANDS } from "./commands/specs.ts";

export type { Setup } from "./context.ts";

const VERSION = "0.1.0";

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

/**
 * Runs the CLI with `args` and returns the exit code. `from`: which module src/agent/main.ts imported this
 * from, the bundle or the sources and why (./bundle.ts), for the debug log; none when imported directly.
 */
export async function main(args: readonly string[], from?: CliModule): Promise<number> {
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
    const bundled = from !== undefined && from.whySources === undefined;
    const why = from?.whySources ? ` (${from.whySources})` : "";
    logger.debug(`Running from ${bundled ? "the bundle" : `the sources${why}`}: ${import.meta.url}`);
    const userDir = userCwd();
    if (userDir !== Deno.cwd()) Deno.chdir(userDir);
    // The command's code and the shared setup's are loaded together, only now (never for the help).
    const [command, { contextOf }] = await Promise.all([
      BY_NAME.get(parsed.command)!.load(),
      import("./context.ts"),
    ]);
    return await command.run(contextOf(parsed, logger, write));
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

/**
 * {@linkcode defineCommand}: how each `alumet` command declares itself — its name, one line for
 * `alumet --help`, its usage and description for `alumet <command> --help`, and its options, each declared
 * once (name, type, short form, value name, help line), and the module that runs it, imported only when it
 * runs. The parser's option lists, its "did you mean" suggestions and every help text are derived from these
 * declarations (see `../cli.ts`); the declarations are in `./specs.ts`.
 *
 * @example
 * ```ts
 * import { type CommandModule, defineCommand, formatOptions } from "./define.ts";
 * import assert from "node:assert/strict";
 * const HELLO_OPTIONS = { loud: { type: "boolean", short: "l", help: "Shout" } } as const;
 * // Usually a module of its own (`./hello.ts`, exporting `run`), imported by `load` when the command runs.
 * const hello: CommandModule<typeof HELLO_OPTIONS> = {
 *   run: (ctx) => {
 *     const loud: boolean | undefined = ctx.options.loud;
 *     return Promise.resolve(loud ? 1 : 0);
 *   },
 * };
 * const command = defineCommand({
 *   name: "hello",
 *   synopsis: "hello NAME",
 *   summary: "Say hello",
 *   usage: "hello [OPTIONS] NAME",
 *   description: "Says hello to NAME.",
 *   options: HELLO_OPTIONS,
 *   load: () => Promise.resolve(hello),
 * });
 * assert.equal(formatOptions(command.options), "  -l, --loud                  Shout");
 * ```
 *
 * @module
 */
import type { Logger } from "../../log.ts";
import type { PluginMetadata } from "../../plugin/plugin.ts";
import type { Agent } from "../agent.ts";
import type { GLOBAL_OPTIONS } from "../cli.ts";
import type { Setup } from "../context.ts";
import type { PluginSection } from "../config.ts";

/** One option of the command line. */
export interface OptionSpec {
  /** `boolean`: a flag (`--name`); `string`: takes a value (`--name VALUE` or `--name=VALUE`). */
  readonly type: "string" | "boolean";
  /** A one-letter form (`-h`). */
  readonly short?: string;
  /** For a `string` option: may be given several times; the values are collected in order. */
  readonly multiple?: boolean;
  /** For a `string` option: the name of its value in the help (`PATH`). */
  readonly valueName?: string;
  /** The option's line in the help. */
  readonly help: string;
}

/** Options by name (the name without `--`). */
export type OptionSpecs = Readonly<Record<string, OptionSpec>>;

/** What the parser found for each option given; an option not given is absent. */
export type OptionValues = Record<string, string | boolean | string[] | undefined>;

/** The value an option declared as `S` parses to. */
export type ValueOf<S extends OptionSpec> = S["type"] extends "boolean" ? boolean
  : S["multiple"] extends true ? string[]
  : string;

/** The parsed values of options declared as `O`, by name; an option not given is undefined. */
export type ValuesOf<O extends OptionSpecs> = { readonly [K in keyof O]?: ValueOf<O[K]> };

/** What a command's `run` receives: the parsed command line and the agent's shared setup. */
export interface CommandContext<O extends OptionSpecs = OptionSpecs> {
  /** The command's options and the global ones, as given. */
  readonly options: ValuesOf<O & typeof GLOBAL_OPTIONS>;
  /** The arguments that are not options (before `--`, and for `exec` before the program). */
  readonly positionals: readonly string[];
  /** For a command that runs a program: the program and its arguments. */
  readonly program: readonly string[];
  /** The logger of the CLI. */
  readonly logger: Logger;
  /**
   * Loads the config (`--config`, `--config-override`, `--plugins`, `--output-file`) and chooses the
   * plugins; the same result on every call.
   */
  setup(): Promise<Setup>;
  /** The plugin of an enabled section: a built-in one, or the module its `module` key names (loaded once). */
  plugin(section: PluginSection): Promise<PluginMetadata<unknown>>;
  /** An agent with the enabled plugins, then `extra`. */
  agent(setup: Setup, extra?: readonly PluginMetadata<unknown>[]): Promise<Agent>;
  /** Writes `text` and a line break to stdout (or `stream`), whole. */
  write(text: string, stream?: { writeSync(p: Uint8Array): number }): void;
}

/** A command of `alumet`, as {@linkcode defineCommand} takes it. */
export interface CommandSpec<O extends OptionSpecs = OptionSpecs> {
  /** The word that selects it: `alumet <name>`. */
  readonly name: string;
  /** How `alumet --help` shows it in the command list (`exec -- PROG ARGS…`). */
  readonly synopsis: string;
  /** One line for `alumet --help`. */
  readonly summary: string;
  /** Its usage line, after `alumet ` (`watch [OPTIONS] PID`). */
  readonly usage: string;
  /** The paragraph of `alumet <name> --help`. */
  readonly description: string;
  /** The command's own options (the global ones are always accepted too). */
  readonly options: O;
  /** Whether it runs a program: the first argument that is not an option starts it, as `--` does. */
  readonly runsProgram?: boolean;
  /**
   * Imports the module that runs the command (only when it runs: the help and the parser need none of it).
   * Its `run` resolves to the exit code and throws an `AlumetError` for a user's mistake.
   */
  load(): Promise<CommandModule<O>>;
}

/** The module that runs a command: what {@linkcode CommandSpec.load} imports. */
export interface CommandModule<O extends OptionSpecs = OptionSpecs> {
  /** Runs the command; resolves to the exit code. Throws an `AlumetError` for a user's mistake. */
  run(ctx: CommandContext<O>): Promise<number>;
}

/** A command as the CLI sees it. */
export type Command = CommandSpec<OptionSpecs>;

/**
 * Declares a command: its options are declared once, here, and the help and the parser derive from them.
 *
 * @param spec the command
 * @returns the same, typed so that the loaded `run` sees its options' values with their types
 */
export function defineCommand<const O extends OptionSpecs>(spec: CommandSpec<O>): Command {
  return spec as unknown as Command;
}

/** The left column of an option's help line: `-h, --help` or `--config PATH`. */
function optionLabel(name: string, spec: OptionSpec): string {
  const value = spec.type === "string" ? ` ${spec.valueName ?? "VALUE"}` : "";
  return `${spec.short !== undefined ? `-${spec.short}, ` : ""}--${name}${value}`;
}

/** The width of the left column of the help's option and command lists. */
const LABEL_WIDTH = 28;

/** Help lines for `specs`, one per option, in declaration order. */
export function formatOptions(specs: OptionSpecs): string {
  return Object.entries(specs)
    .map(([name, spec]) => `  ${optionLabel(name, spec).padEnd(LABEL_WIDTH - 1)} ${spec.help}`.trimEnd())
    .join("\n");
}

/** The `Commands:` list of `alumet --help`. */
export function formatCommands(commands: readonly Command[]): string {
  return commands.map((c) => `  ${c.synopsis.padEnd(19)} ${c.summary}`).join("\n");
}

/** The text of `alumet <command> --help`. */
export function commandHelp(command: Command): string {
  const own = Object.keys(command.options).length > 0;
  return [
    `Usage: alumet ${command.usage}`,
    "",
    command.description,
    "",
    own
      ? `Options:\n${formatOptions(command.options)}\n  Other options: see \`alumet --help\`.`
      : "Options: see `alumet --help`.",
  ].join("\n");
}

/**
 * The `alumet` command line: `run`, `exec`, `watch`, `config regen`, `plugins list`.
 *
 * `main(args)` returns the exit code; it never throws for a user error: it prints one line and returns
 * a non-zero code (stack traces only with `--log-level debug`).
 *
 * @module
 */
import { AlumetError, closest, messageOf, UsageError } from "../errors.ts";
import { LOG_LEVELS, Logger, logLevel, setLogLevel } from "../log.ts";
import { Consumer } from "../model/resources.ts";
import type { PluginMetadata } from "../plugin/plugin.ts";
import { Agent, type PluginEntry } from "./agent.ts";
import { BUILTIN_LOADERS, BUILTIN_NAMES, DEFAULT_ENABLED, loadAllBuiltins, loadBuiltin } from "./builtin.ts";
import {
  loadConfig,
  type PluginSection,
  renderDefaultConfig,
  selectPlugins,
  validateSection,
} from "./config.ts";
import { diagnoseAll, formatReport } from "./doctor.ts";
import { StatusLine } from "./status.ts";
import { ExecSummary } from "./summary.ts";
import {
  exitCodeOf,
  processExists,
  resolveProgram,
  spawnStopped,
  waitForExit,
  waitUntilStopped,
} from "./exec.ts";
import { ffiAvailable, getrusage, RUSAGE_CHILDREN } from "../ffi/libc.ts";
import { now } from "../model/timestamp.ts";

const VERSION = "0.1.0";

const GLOBAL_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  config: { type: "string" },
  "no-default-config": { type: "boolean" },
  "config-override": { type: "string", multiple: true },
  plugins: { type: "string" },
  "output-file": { type: "string" },
  "log-level": { type: "string" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
} as const;

const COMMAND_OPTIONS: Readonly<
  Record<"run" | "exec" | "watch" | "config" | "plugins" | "doctor", Record<string, OptionSpec>>
> = {
  doctor: {},
  run: {},
  exec: { "ignore-exit-code": { type: "boolean" } },
  watch: {},
  config: {},
  plugins: {},
};

type Command = keyof typeof COMMAND_OPTIONS;

const VALUE_OPTIONS = new Set(["--config", "--config-override", "--plugins", "--output-file", "--log-level"]);

const MAIN_HELP = `alumet ${VERSION}: measure energy and performance on Linux

Usage: alumet [OPTIONS] [COMMAND]

Commands:
  run                 Measure until SIGINT or SIGTERM (the default command)
  exec -- PROG ARGS…  Run a program and measure it until it ends
  watch PID           Measure a running process until it ends
  config regen        Write the default config file
  plugins list        List the plugins and whether they are enabled
  doctor              Check what can be measured here, and how to fix what cannot

Options:
  --config PATH               Config file [env: ALUMET_CONFIG] [default: alumet-config.toml]
  --no-default-config         Fail if the config file is missing instead of using the defaults
  --config-override K=V       Override a config value, e.g. 'plugins.csv.output_path="out.csv"' (repeatable)
  --plugins A,B               Enable exactly these plugins
  --output-file PATH          Where the csv output writes (plugins.csv.output_path)
  --log-level LEVEL           ${LOG_LEVELS.join(", ")} [env: ALUMET_LOG] [default: info]
  -h, --help                  Print help (also after a command: alumet exec --help)
  -V, --version               Print the version

With no config file, the built-in defaults are used in memory (${
  DEFAULT_ENABLED.join(", ")
}); nothing is written
unless you run \`alumet config regen\`.`;

const HELP: Record<Command, string> = {
  run: `Usage: alumet run [OPTIONS]

Runs the agent: the enabled sources are measured and sent to the outputs until SIGINT (Ctrl-C) or SIGTERM;
then every point measured so far is written before the agent exits. A second Ctrl-C exits at once.

Options: see \`alumet --help\`.`,
  exec: `Usage: alumet exec [OPTIONS] [--ignore-exit-code] [--] PROGRAM [ARGS]...

Runs PROGRAM (looked up in PATH, or a path relative to the current directory) and measures it: every source is
polled just before it starts and just after it ends, and plugins are told its pid. The agent exits with the
program's exit code (128+N when signal N killed it), unless --ignore-exit-code is given.
Ctrl-C reaches the program; the agent keeps measuring until the program is gone.

Options:
  --ignore-exit-code   Exit with 0 whatever the program's exit code
  Other options: see \`alumet --help\`.`,
  watch: `Usage: alumet watch [OPTIONS] PID

Measures the running process PID until it ends (or until SIGINT/SIGTERM): plugins are told its pid, every
source is polled at the start and at the end.

Options: see \`alumet --help\`.`,
  config: `Usage: alumet config regen [OPTIONS]

Writes the default configuration of the enabled plugins (the defaults, or --plugins) to the config file
(--config, default alumet-config.toml), replacing it.`,
  doctor: `Usage: alumet doctor [OPTIONS]

For each source, checks whether it can work on this machine with the current config and, if not, says why
and how to fix it; then checks the machine (native calls, perf_event access and PMUs, RAPL, NVML). Exits 0 when
everything the config enables can run, 1 otherwise. Lines: ✓ works, ✗ fails (enabled), · fails (not enabled).`,
  plugins: `Usage: alumet plugins list [OPTIONS]

Lists the built-in plugins, their versions, and whether the current config enables them.`,
};

interface Parsed {
  command: Command;
  positionals: string[];
  program: string[];
  values: Record<string, string | boolean | string[] | undefined>;
}

interface OptionSpec {
  readonly type: "string" | "boolean";
  readonly multiple?: boolean;
  readonly short?: string;
}

/**
 * Parses option tokens (`--name value`, `--name=value`, `-h`) against `specs`; other tokens are positionals.
 * Written here rather than taken from `node:util`'s parseArgs, whose Node compatibility layer costs about
 * 12 ms of every start-up.
 */
function parseOptions(
  tokens: readonly string[],
  specs: Readonly<Record<string, OptionSpec>>,
  command: Command,
): { values: Parsed["values"]; positionals: string[] } {
  const values: Parsed["values"] = {};
  const positionals: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (!t.startsWith("-") || t === "-") {
      positionals.push(t);
      continue;
    }
    let name: string | undefined;
    let inline: string | undefined;
    if (t.startsWith("--")) {
      const eq = t.indexOf("=");
      name = eq < 0 ? t.slice(2) : t.slice(2, eq);
      inline = eq < 0 ? undefined : t.slice(eq + 1);
    } else {
      name = Object.keys(specs).find((k) => specs[k]!.short === t.slice(1));
    }
    const spec = name === undefined || !Object.hasOwn(specs, name) ? undefined : specs[name];
    if (spec === undefined || name === undefined) {
      const shown = t.split("=")[0]!;
      throw new UsageError(
        `Unknown option ${shown} for \`alumet ${command}\`${suggestOption(shown, command)}`,
      );
    }
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

function suggestOption(token: string, command: Command): string {
  const name = token.replace(/^-+/, "").split("=")[0]!;
  const known = [...Object.keys(GLOBAL_OPTIONS), ...Object.keys(COMMAND_OPTIONS[command])];
  const near = closest(name, known);
  return near ? `; did you mean --${near}?` : "; see `alumet --help`";
}

/** Splits the arguments into the command, its options and (for exec) the program and its arguments. */
export function parseCommandLine(args: readonly string[]): Parsed {
  let i = 0;
  let command: Command = "run";
  const head: string[] = [];
  for (; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") break;
    if (a.startsWith("-")) {
      head.push(a);
      if (VALUE_OPTIONS.has(a) && i + 1 < args.length) head.push(args[++i]!);
      continue;
    }
    if (!Object.hasOwn(COMMAND_OPTIONS, a)) {
      const near = closest(a, Object.keys(COMMAND_OPTIONS));
      throw new UsageError(
        `Unknown command "${a}"${
          near ? `; did you mean "${near}"?` : ""
        } (commands: run, exec, watch, config, plugins, doctor)`,
      );
    }
    command = a as Command;
    i++;
    break;
  }
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
      if (VALUE_OPTIONS.has(a) && i + 1 < args.length) rest.push(args[++i]!);
      continue;
    }
    if (command === "exec") {
      program = args.slice(i);
      break;
    }
    rest.push(a);
  }
  const parsed = parseOptions(
    [...head, ...rest],
    { ...GLOBAL_OPTIONS, ...COMMAND_OPTIONS[command] },
    command,
  );
  if (command !== "exec" && program.length > 0) {
    throw new UsageError(
      `\`alumet ${command}\` runs no program (got "${program.join(" ")}"): use alumet exec -- PROGRAM ARGS…`,
    );
  }
  return { command, positionals: parsed.positionals, program, values: parsed.values };
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

interface Setup {
  sections: PluginSection[];
  source: string;
  fromFile: boolean;
  sourceChannelSize: number | undefined;
}

async function loadSetup(p: Parsed, log: Logger): Promise<Setup> {
  const v = p.values;
  const envConfig = Deno.env.get("ALUMET_CONFIG");
  const given = (v.config as string | undefined) ?? envConfig;
  const path = given ?? "alumet-config.toml";
  const overrides = [...((v["config-override"] as string[] | undefined) ?? [])];
  if (typeof v["output-file"] === "string") {
    overrides.push(`plugins.csv.output_path=${JSON.stringify(v["output-file"])}`);
  }
  const raw = await loadConfig({
    path: absolute(path),
    required: given !== undefined || v["no-default-config"] === true,
    overrides,
  });
  if (!raw.fromFile) {
    log.info(`No config file at ${path}: using the built-in defaults (alumet config regen writes them)`);
  }
  const only = typeof v.plugins === "string"
    ? v.plugins.split(",").map((s) => s.trim()).filter((s) => s)
    : undefined;
  const sections = selectPlugins(raw, {
    known: BUILTIN_LOADERS,
    ...(only ? { only } : {}),
    enabledByDefault: DEFAULT_ENABLED,
  });
  return {
    sections,
    source: raw.source,
    fromFile: raw.fromFile,
    sourceChannelSize: raw.general.sourceChannelSize,
  };
}

function absolute(path: string): string {
  return path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
}

async function pluginEntries(setup: Setup): Promise<PluginEntry[]> {
  const entries: PluginEntry[] = [];
  for (const s of setup.sections) {
    let meta: PluginMetadata<unknown> | undefined = s.module === undefined
      ? await loadBuiltin(s.name)
      : undefined;
    if (s.module !== undefined) {
      let mod: Record<string, unknown>;
      try {
        mod = await import(s.module);
      } catch (e) {
        throw new AlumetError(`Cannot load plugin "${s.name}" from ${s.module}: ${messageOf(e)}`);
      }
      const m = (mod.default ?? mod.plugin) as PluginMetadata<unknown> | undefined;
      if (m === undefined || typeof m !== "object" || typeof m.init !== "function") {
        throw new AlumetError(
          `Plugin module ${s.module} (plugins.${s.name}) exports no plugin: export default a PluginMetadata ` +
            `(name, version, defaultConfig, init)`,
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
    entries.push({ plugin: meta, config: s.table });
  }
  return entries;
}

function newAgent(setup: Setup, entries: PluginEntry[]): Agent {
  return new Agent({
    plugins: entries,
    configSource: setup.source,
    ...(setup.sourceChannelSize !== undefined ? { sourceChannelSize: setup.sourceChannelSize } : {}),
  });
}

async function cmdRun(p: Parsed, log: Logger): Promise<number> {
  if (p.positionals.length > 0) {
    throw new UsageError(`\`alumet run\` takes no argument (got "${p.positionals[0]}")`);
  }
  const setup = await loadSetup(p, log);
  await using agent = newAgent(setup, await pluginEntries(setup));
  const stop = Promise.withResolvers<string>();
  let signals = 0;
  const onSignal = (sig: Deno.Signal) => () => {
    if (++signals > 1) {
      log.warn(`Second ${sig}: exiting without draining`);
      Deno.exit(130);
    }
    stop.resolve(sig);
  };
  const handlers = (["SIGINT", "SIGTERM"] as const).map((s) => [s, onSignal(s)] as const);
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);
  try {
    await agent.start();
    log.info(`Running with ${agent.pluginNames.join(", ")}; press Ctrl-C to stop`);
    using _status = new StatusLine(agent);
    const why = await Promise.race([stop.promise, agent.shutdownRequested.then(() => "a shutdown request")]);
    log.info(`Stopping (${why}): writing what was measured`);
    await agent.stop();
    return 0;
  } finally {
    for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
  }
}

async function cmdExec(p: Parsed, log: Logger): Promise<number> {
  const [program, ...args] = p.program;
  if (program === undefined) {
    throw new UsageError("`alumet exec` needs a program: alumet exec -- PROGRAM [ARGS]...");
  }
  const cwd = Deno.cwd();
  const resolved = resolveProgram(program, cwd);
  const setup = await loadSetup(p, log);
  // From here until the last point is written, signals do not kill the agent: Ctrl-C goes to the whole
  // foreground process group, so the program gets it from the terminal and the agent measures until it is
  // gone; SIGTERM/SIGHUP sent to the agent alone are passed on to the program.
  let child: Deno.ChildProcess | undefined;
  const onInterrupt = () =>
    log.info(
      child ? `Waiting for ${program} (pid ${child.pid}) to end` : "Interrupted: starting, then stopping",
    );
  const forward = (sig: Deno.Signal) => () => {
    try {
      child?.kill(sig);
    } catch {
      // already gone
    }
  };
  const handlers: [Deno.Signal, () => void][] = [
    ["SIGINT", onInterrupt],
    ["SIGTERM", forward("SIGTERM")],
    ["SIGHUP", forward("SIGHUP")],
  ];
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);
  try {
    const summary = new ExecSummary();
    await using agent = newAgent(setup, [...await pluginEntries(setup), summary.plugin()]);
    await agent.start();
    using statusLine = new StatusLine(agent);
    await agent.control.triggerNow();
    // The kernel's accounting of waited-for children, read around the wait: once the program is reaped its
    // /proc entry is gone, and this is the only record of its CPU time up to its last instruction.
    const before = ffiAvailable() ? getrusage(RUSAGE_CHILDREN) : undefined;
    const started = performance.now();
    if (agent.armsBeforeExec) {
      // Start the program stopped before its first instruction, tell the plugins its pid (so that they arm
      // their counters on it), then let it run: nothing of its start-up escapes the measurement.
      child = spawnStopped(resolved, args, cwd);
      summary.pid = String(child.pid);
      const stopped = await waitUntilStopped(child.pid, 2000);
      if (!stopped) {
        log.warn(`${program} (pid ${child.pid}) did not reach its stopped start; measuring it anyway`);
      }
      await agent.events.publish("startConsumerMeasurement", [Consumer.process(child.pid)]);
      if (stopped) child.kill("SIGCONT");
    } else {
      // No plugin needs to arm before the program runs (a stopped start costs a shell's start-up).
      child = new Deno.Command(resolved, {
        args,
        cwd,
        stdin: "inherit",
        stdout: "inherit",
        stderr: "inherit",
      })
        .spawn();
      summary.pid = String(child.pid);
      await agent.events.publish("startConsumerMeasurement", [Consumer.process(child.pid)]);
    }
    const status = await child.status;
    const elapsedMs = performance.now() - started;
    const code = exitCodeOf(status);
    if (before !== undefined) {
      const after = getrusage(RUSAGE_CHILDREN);
      await agent.events.publish("processExit", {
        pid: child.pid,
        userNs: (after.userUs - before.userUs) * 1000,
        systemNs: (after.systemUs - before.systemUs) * 1000,
        maxRssBytes: after.maxRssKiB * 1024,
        exitCode: code,
        timestamp: now(),
      });
    } else {
      log.warn(
        "Native calls are not allowed (--allow-ffi): the program's CPU time after its last poll is not counted",
      );
    }
    await agent.control.triggerNow();
    await agent.events.publish("endConsumerMeasurement", [Consumer.process(child.pid)]);
    const outputPlugins = [...new Set(agent.control.list("output").map((e) => e.plugin))]
      .filter((name) => name !== "exec-summary");
    await agent.stop();
    statusLine.stop();
    if (logLevel() !== "off") {
      const csvPath = setup.sections.find((s) => s.name === "csv")?.table.output_path ?? "alumet-output.csv";
      const outputs = outputPlugins.map((name) => name === "csv" ? `${String(csvPath)} (csv)` : name);
      write(summary.format({ command: [program, ...args].join(" "), elapsedMs, outputs }), Deno.stderr);
    }
    if (status.signal !== null) log.info(`${program} was killed by ${status.signal}`);
    return p.values["ignore-exit-code"] ? 0 : code;
  } finally {
    for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
  }
}

async function cmdWatch(p: Parsed, log: Logger): Promise<number> {
  if (p.positionals.length !== 1) {
    throw new UsageError("`alumet watch` needs exactly one PID: alumet watch PID");
  }
  const text = p.positionals[0]!;
  const pid = Number(text);
  if (!Number.isInteger(pid) || pid <= 0) {
    throw new UsageError(`Invalid PID "${text}": expected a positive integer`);
  }
  if (!processExists(pid)) throw new AlumetError(`No process with pid ${pid} (nothing under /proc/${pid})`);
  const setup = await loadSetup(p, log);
  await using agent = newAgent(setup, await pluginEntries(setup));
  await agent.start();
  const abort = new AbortController();
  const handlers = (["SIGINT", "SIGTERM"] as const).map((s) => [s, () => abort.abort()] as const);
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);
  agent.shutdownRequested.then(() => abort.abort());
  try {
    await agent.control.triggerNow();
    await agent.events.publish("startConsumerMeasurement", [Consumer.process(pid)]);
    log.info(`Watching pid ${pid}`);
    await waitForExit(pid, abort.signal);
    await agent.control.triggerNow();
    await agent.events.publish("endConsumerMeasurement", [Consumer.process(pid)]);
    await agent.stop();
    return 0;
  } finally {
    for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
  }
}

async function cmdConfig(p: Parsed, log: Logger): Promise<number> {
  if (p.positionals[0] !== "regen" || p.positionals.length !== 1) {
    throw new UsageError("Usage: alumet config regen [--config PATH] [--plugins A,B]");
  }
  const path = (p.values.config as string | undefined) ?? Deno.env.get("ALUMET_CONFIG") ??
    "alumet-config.toml";
  const names = typeof p.values.plugins === "string"
    ? p.values.plugins.split(",").map((s) => s.trim()).filter((s) => s)
    : [...DEFAULT_ENABLED];
  const metas: PluginMetadata<unknown>[] = [];
  for (const n of names) {
    const m = await loadBuiltin(n);
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
    Deno.writeTextFileSync(path, text);
  } catch (e) {
    throw new AlumetError(`Cannot write the config file ${path}: ${messageOf(e)}`);
  }
  log.info(`Wrote the default config of ${names.join(", ")} to ${path}`);
  return 0;
}

async function cmdPlugins(p: Parsed, log: Logger): Promise<number> {
  if (p.positionals[0] !== "list" || p.positionals.length !== 1) {
    throw new UsageError("Usage: alumet plugins list");
  }
  const setup = await loadSetup(p, log);
  const enabled = new Set(setup.sections.map((s) => s.name));
  const rows = (await loadAllBuiltins()).map((
    m,
  ) => [m.name, m.version, enabled.has(m.name) ? "enabled" : "disabled", m.description ?? ""]);
  for (const s of setup.sections) if (s.module) rows.push([s.name, "?", "enabled", `external: ${s.module}`]);
  const widths = [0, 1, 2].map((c) => Math.max(...rows.map((r) => r[c]!.length)));
  write(
    rows.map((r) => r.map((cell, c) => c < 3 ? cell.padEnd(widths[c]!) : cell).join("  ").trimEnd()).join(
      "\n",
    ),
  );
  return 0;
}

async function cmdDoctor(p: Parsed, log: Logger): Promise<number> {
  if (p.positionals.length > 0) throw new UsageError("`alumet doctor` takes no argument");
  const setup = await loadSetup(p, log);
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
  write(formatReport(lines));
  const failing = lines.filter((l) => l.enabled && !l.ok);
  write(
    failing.length === 0
      ? `\nEverything enabled can run here (${setup.sections.map((s) => s.name).join(", ")}).`
      : `\n${failing.length} check(s) of enabled plugins fail: see the fixes above.`,
  );
  return failing.length === 0 ? 0 : 1;
}

/** Runs the CLI with `args` and returns the exit code. */
export async function main(args: readonly string[]): Promise<number> {
  const log = new Logger("alumet");
  let parsed: Parsed | undefined;
  try {
    const envLevel = Deno.env.get("ALUMET_LOG");
    if (envLevel) setLogLevel(envLevel);
    parsed = parseCommandLine(args);
    const level = parsed.values["log-level"];
    if (typeof level === "string") setLogLevel(level);
    if (parsed.values.version) {
      write(`alumet ${VERSION}`);
      return 0;
    }
    if (parsed.values.help) {
      write(args.some((a) => Object.hasOwn(COMMAND_OPTIONS, a)) ? HELP[parsed.command] : MAIN_HELP);
      return 0;
    }
    const userDir = userCwd();
    if (userDir !== Deno.cwd()) Deno.chdir(userDir);
    switch (parsed.command) {
      case "run":
        return await cmdRun(parsed, log);
      case "exec":
        return await cmdExec(parsed, log);
      case "watch":
        return await cmdWatch(parsed, log);
      case "config":
        return await cmdConfig(parsed, log);
      case "plugins":
        return await cmdPlugins(parsed, log);
      case "doctor":
        return await cmdDoctor(parsed, log);
    }
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

/**
 * What each `alumet` command is: its name, its help and its options, declared once (see `./define.ts`), apart
 * from the code that runs it (`./<name>.ts`, imported only when that command runs). `alumet --help`,
 * `alumet exec --help` and the parser read these declarations alone; `alumet exec` loads exec's code and none
 * of the other commands'.
 *
 * @module
 */
import { EXIT_POINTS_LOST } from "../losses.ts";
import { type Command, defineCommand, type OptionSpecs } from "./define.ts";

/** The most runs `alumet exec --repeat` takes. */
export const MAX_REPEAT = 100_000;

/** The longest `alumet exec --baseline`. */
export const MAX_BASELINE_MS = 3_600_000;

/** `alumet exec`'s own options. */
export const EXEC_OPTIONS = {
  "ignore-exit-code": {
    type: "boolean",
    help: "Exit with 0 whatever the program's exit code (with --repeat: run every time even after a failure)",
  },
  repeat: {
    type: "string",
    short: "r",
    valueName: "N",
    help: "Run the program N times in one agent; report mean ± standard deviation and range [default: 1]",
  },
  json: {
    type: "string",
    valueName: "PATH",
    help: "Also write the summary as one JSON document to PATH (- for stdout, after the program's output)",
  },
  baseline: {
    type: "string",
    valueName: "DUR",
    help: "Measure the machine idle for DUR (e.g. 2s) just before the program; report the energy above idle",
  },
  "no-estimate": {
    type: "boolean",
    help: "Without an energy source, do not estimate the energy from CPU time × TDP",
  },
} as const satisfies OptionSpecs;

/** `alumet config`'s own options. */
export const CONFIG_OPTIONS = {
  force: { type: "boolean", help: "Replace the config file if it exists" },
} as const satisfies OptionSpecs;

/** `alumet report`'s own options. */
export const REPORT_OPTIONS = {
  output: {
    type: "string",
    short: "o",
    valueName: "PATH",
    help: "Write the page here [default: FILE.html]",
  },
  top: {
    type: "string",
    valueName: "N",
    help: "Consumers named in the charts; the rest are 'other' [default: 10]",
  },
} as const satisfies OptionSpecs;

/** `alumet run`. */
export const runCommand: Command = defineCommand({
  name: "run",
  synopsis: "run",
  summary: "Measure until SIGINT, SIGTERM or SIGHUP (the default command)",
  usage: "run [OPTIONS]",
  description:
    `Runs the agent: the enabled sources are measured and sent to the outputs until SIGINT (Ctrl-C), SIGTERM or
SIGHUP; then every point measured so far is written before the agent exits. The exit code is 0 when every
point was written, ${EXIT_POINTS_LOST} when some were lost (the log says how many, and where: an output that
could not write them, or a source stuck or failed before sending them). Repeats of a signal within a second
count once (a Ctrl-C reaches the agent twice through \`deno task\`); a second Ctrl-C after that exits at once
with code 130, without writing what is left.`,
  options: {},
  load: () => import("./run.ts"),
});

/** `alumet exec`. */
export const execCommand: Command = defineCommand({
  name: "exec",
  synopsis: "exec -- PROG ARGS…",
  summary: "Run a program and measure it until it ends",
  usage: "exec [OPTIONS] [--] PROGRAM [ARGS]...",
  description:
    `Runs PROGRAM (looked up in PATH, or a path relative to the current directory) and measures it: every source is
polled just before it starts and just after it ends, and plugins are told its pid. The agent exits with the
program's exit code (128+N when signal N killed it), unless --ignore-exit-code is given.
The program is measured with every process it starts (its process tree), as \`time\` measures it.
Ctrl-C reaches the program; the agent keeps measuring until the program is gone. At the end, a summary on
stderr: the program's CPU time, CPU share and peak memory (from the kernel's accounting), the elapsed time,
what each series measured, the energy of the machine and its devices during the run (joules per domain and
device, from the poll at the program's start to the poll at its end, and the mean power over that interval),
the energy of the program and its children next to the machine's with the method named (the energy-attribution
transform's share of CPU time per interval, or, without it, the program's share of the machine's CPU time over
the run from the kernel's rusage), and where the series were written (or how many points were lost).

Energy without a sensor: when no energy source is enabled (no rapl, nvml, hwmon, grace-hopper, jetson, nor a
plugin given by module), no --plugins is given and procfs is enabled, exec enables energy-estimation-tdp (CPU
time × TDP, every figure labelled as an estimate; the TDP assumed is printed: set yours with
--config-override plugins.energy-estimation-tdp.tdp=WATTS) and energy-attribution; with an energy source, it
enables energy-attribution. A plugin the config has a section for, enabled or not, is left as the config says;
--no-estimate turns the estimate off.

--repeat N runs the program N times, one after the other in the same agent, each between its own start and end
polls, and reports each figure's mean ± sample standard deviation (in % of the mean) and its range [min … max],
as perf stat -r does. It stops at the first run that fails (exits non-zero or is killed) and exits with that
run's code; otherwise with the last run's (the summary says which). With --ignore-exit-code every run is done and
the exit code is 0.

--baseline DUR polls every source, waits DUR with nothing started, polls again: the machine's idle power per
series. The summary then gives each series' energy above idle (its energy − idle power × its interval), and the
program's (its energy − the idle power × its CPU time ÷ the CPUs: its CPU-time share of the idle power).

--json PATH writes the same summary as one JSON document (units in the keys: elapsed_s, joules…; with --repeat,
"statistics" with mean, stddev, min and max of every figure and "results" with each run's); the text still goes
to stderr. PATH - writes it to stdout once the program has ended.`,
  options: EXEC_OPTIONS,
  runsProgram: true,
  load: () => import("./exec.ts"),
});

/** `alumet watch`. */
export const watchCommand: Command = defineCommand({
  name: "watch",
  synopsis: "watch PID",
  summary: "Measure a running process until it ends",
  usage: "watch [OPTIONS] PID",
  description:
    `Measures the running process PID and the processes it starts (its process tree) until it ends (or until
SIGINT, SIGTERM or SIGHUP): plugins are told its pid, every source is polled at the start and at the end. A process that
has exited but was not reaped by its parent (a zombie) has ended. At the end, the same summary as exec: CPU
time and CPU share measured while watching, the peak of the tree's resident memory sampled at each poll (the
sum over its processes: the kernel keeps no peak of a tree it was not asked to wait for), the elapsed time, and
where the series went.`,
  options: {},
  load: () => import("./watch.ts"),
});

/** `alumet config`. */
export const configCommand: Command = defineCommand({
  name: "config",
  synopsis: "config regen",
  summary: "Write the default config file",
  usage: "config regen [OPTIONS]",
  description:
    `Writes the default configuration of the enabled plugins (the defaults, or --plugins) to the config file
(--config, default alumet-config.toml). An existing file is kept unless --force is given.`,
  options: CONFIG_OPTIONS,
  load: () => import("./config.ts"),
});

/** `alumet plugins`. */
export const pluginsCommand: Command = defineCommand({
  name: "plugins",
  synopsis: "plugins list",
  summary: "List the plugins and whether they are enabled",
  usage: "plugins list [OPTIONS]",
  description:
    `Lists the built-in plugins and the external ones the config names, their versions, and whether the current
config enables them.`,
  options: {
    status: { type: "boolean", help: "Alumet's option: the status is always shown here" },
  },
  load: () => import("./plugins.ts"),
});

/** `alumet doctor`. */
export const doctorCommand: Command = defineCommand({
  name: "doctor",
  synopsis: "doctor",
  summary: "Check what can be measured here, and how to fix what cannot",
  usage: "doctor [OPTIONS]",
  description:
    `For each source, checks whether it can work on this machine with the current config and, if not, says why and
how to fix it; every built-in plugin is checked, those the config does not enable too (marked "not enabled"),
and the plugin modules the config loads; then checks the machine (native calls, perf_event access). Exits 0
when everything the config enables can run, 1 otherwise. Lines: ✓ works, ✗ fails (enabled), · fails (not
enabled).`,
  options: {},
  load: () => import("./doctor.ts"),
});

/** `alumet report`. */
export const reportCommand: Command = defineCommand({
  name: "report",
  synopsis: "report FILE",
  summary: "Write an HTML page of a run (csv or sqlite output)",
  usage: "report [OPTIONS] FILE",
  description:
    `Reads FILE, written by the csv output (any delimiter, with or without unit suffixes) or the sqlite output,
and writes one self-contained HTML page next to it (FILE with .html, or -o PATH): power over time per domain and
device, energy per consumer (from energy-attribution), CPU and memory of the program, and a summary table. The
page needs no network; long runs are downsampled. Prints the page's path.`,
  options: REPORT_OPTIONS,
  load: () => import("./report.ts"),
});

/** The commands, in the order `alumet --help` lists them; the first is the default. */
export const COMMANDS: readonly Command[] = [
  runCommand,
  execCommand,
  watchCommand,
  configCommand,
  pluginsCommand,
  doctorCommand,
  reportCommand,
];

/**
 * Process helpers for `exec` and `watch`: resolving a program on PATH, signal numbers, waiting for a pid.
 *
 * @module
 */
import { AlumetError, closest } from "../errors.ts";
import {
  ffiAvailable,
  killProcess,
  posixSpawn,
  type Rusage,
  setChildSubreaper,
  waitChild,
} from "../ffi/libc.ts";
import { ProcFile } from "../ffi/proc_file.ts";
import { isStoppedState, statState } from "../sys/proc_state.ts";
import { auxvInfo } from "../sys/system.ts";
import { after } from "../pipeline/timer.ts";

/** Linux signal numbers, for the 128+N exit code of a program killed by a signal. */
export const SIGNAL_NUMBERS: Readonly<Record<string, number>> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
  SIGSTKFLT: 16,
  SIGCHLD: 17,
  SIGCONT: 18,
  SIGSTOP: 19,
  SIGTSTP: 20,
  SIGTTIN: 21,
  SIGTTOU: 22,
  SIGURG: 23,
  SIGXCPU: 24,
  SIGXFSZ: 25,
  SIGVTALRM: 26,
  SIGPROF: 27,
  SIGWINCH: 28,
  SIGIO: 29,
  SIGPWR: 30,
  SIGSYS: 31,
};

/** A program that cannot be run: exit code 127 (not found) or 126 (not executable), as shells do. */
export class ProgramError extends AlumetError {
  override name = "ProgramError";
  override readonly exitCode: number;
  constructor(message: string, exitCode: 126 | 127) {
    super(message);
    this.exitCode = exitCode;
  }
}

function isExecutableFile(path: string): "ok" | "missing" | "not-executable" | "directory" {
  try {
    const st = Deno.statSync(path);
    if (st.isDirectory) return "directory";
    if (st.mode !== null && (st.mode & 0o111) === 0) return "not-executable";
    return "ok";
  } catch {
    return "missing";
  }
}

/**
 * Finds `program` the way a shell does: a name with a `/` is a path (relative to `cwd`), any other name is
 * looked up in `PATH`. Throws a {@linkcode ProgramError} that says what is wrong and what to do.
 */
export function resolveProgram(program: string, cwd: string, path = Deno.env.get("PATH") ?? ""): string {
  if (program === "") {
    throw new ProgramError("No program given to exec: use `alumet exec -- PROGRAM ARGS…`", 127);
  }
  if (program.includes("/")) {
    const full = program.startsWith("/") ? program : `${cwd}/${program}`;
    const s = isExecutableFile(full);
    if (s === "ok") return full;
    if (s === "missing") throw new ProgramError(`Cannot run "${program}": no such file`, 127);
    if (s === "directory") throw new ProgramError(`Cannot run "${program}": it is a directory`, 126);
    throw new ProgramError(`Cannot run "${program}": permission denied (try \`chmod +x ${program}\`)`, 126);
  }
  const dirs = path.split(":").filter((d) => d !== "");
  let notExecutable: string | undefined;
  for (const dir of dirs) {
    const full = `${dir}/${program}`;
    const s = isExecutableFile(full);
    if (s === "ok") return full;
    if (s === "not-executable") notExecutable ??= full;
  }
  if (notExecutable) {
    throw new ProgramError(
      `Cannot run "${program}": ${notExecutable} is not executable (permission denied)`,
      126,
    );
  }
  const names = new Set<string>();
  for (const dir of dirs) {
    try {
      for (const e of Deno.readDirSync(dir)) names.add(e.name);
    } catch {
      // unreadable PATH entry: skip
    }
  }
  const near = closest(program, names);
  const hint = near
    ? `; did you mean "${near}"?`
    : "; check the spelling, or give a path such as ./" + program;
  throw new ProgramError(`Command not found: "${program}" is not in PATH${hint}`, 127);
}

/** The shell-style exit code of a finished child: its code, or 128+N when signal N killed it. */
export function exitCodeOf(status: Deno.CommandStatus): number {
  if (status.signal !== null) return 128 + (SIGNAL_NUMBERS[status.signal] ?? 0);
  return status.code;
}

/** True while a process with this pid exists. */
export function processExists(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/**
 * Resolves when process `pid` has ended (checked every `intervalMs`) or `signal` aborts. A zombie (exited,
 * not reaped by its parent) has ended: its `/proc` entry stays until the parent waits for it.
 */
export async function waitForExit(pid: number, signal: AbortSignal, intervalMs = 100): Promise<void> {
  while (!signal.aborted && !processEnded(pid)) {
    await new Promise<void>((resolve) => {
      const onAbort = () => {
        clearTimeout(id);
        resolve();
      };
      const id = setTimeout(() => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      }, intervalMs);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }
}

/**
 * For `exec` and `watch`: the built-in procfs plugin, when enabled, follows the program only, not every process
 * as Alumet's default group does, unless the config writes groups of its own (procfs's `followProgramOnly`,
 * imported only when procfs is enabled: its module is not on `exec`'s start-up path otherwise).
 */
export async function followProgramOnly(
  sections: readonly { name: string; module?: string; table: Record<string, unknown> }[],
): Promise<void> {
  if (!sections.some((s) => s.name === "procfs" && s.module === undefined)) return;
  const procfs = await import("../../plugins/procfs/config.ts");
  procfs.followProgramOnly(sections);
}

/** The name of signal number `n` (`SIGKILL` for 9), or `signal N` when unknown. */
export function signalName(n: number): string {
  for (const [name, num] of Object.entries(SIGNAL_NUMBERS)) if (num === n) return name;
  return `signal ${n}`;
}

/**
 * The start of the reaped program (see {@linkcode startReaped}): the shell forks a subshell and waits for it
 * (a command in the foreground keeps stdin and the signals' dispositions: a background one would get
 * /dev/null and SIGINT, SIGQUIT ignored, for good); the subshell reads its own pid (`$$` is its parent's:
 * `/proc/self` opened by the subshell itself is its own), stops itself, and once continued execs the program
 * (`exec "$@"`: looked up in PATH, `argv[0]` as typed). `; exit` keeps the subshell a fork: a shell runs a
 * last command in itself.
 */
const REAPED_START = `(read -r p _ < /proc/self/stat && kill -STOP "$p" || exit 126; exec "$@"); exit $?`;

let reapable: string | undefined | null = null;

/**
 * Whether {@linkcode startReaped} can work here: undefined when it can, else why not (no native calls; a kernel
 * without `/proc/<pid>/task/<tid>/children`, `CONFIG_PROC_CHILDREN`).
 */
export function reapedStartUnavailable(): string | undefined {
  if (reapable !== null) return reapable;
  return reapable = (() => {
    if (!ffiAvailable()) return "native calls are not allowed (--allow-ffi)";
    const probe = ProcFile.tryOpen(`/proc/self/task/${Deno.pid}/children`, 64);
    if (probe === undefined) return "this kernel lists no process's children (/proc/PID/task/TID/children)";
    probe.close();
    return undefined;
  })();
}

/** {@linkcode startReaped} cannot work here (found before anything was started): start the program otherwise. */
export class ReapedStartUnavailable extends Error {
  override name = "ReapedStartUnavailable";
}

/** How a program started by {@linkcode startReaped} ended. */
export interface ReapedExit {
  /** The shell-style exit code: its code, or 128+N when signal N killed it. */
  readonly code: number;
  /** The name of the signal that killed it, else null. */
  readonly signal: string | null;
  /** The kernel's accounting of the program and the children it waited for, as `/usr/bin/time` gets it. */
  readonly rusage: Rusage;
}

/** A program started by {@linkcode startReaped}, stopped before its first instruction. */
export interface ReapedProgram {
  /** Its pid (the program's own once it runs); a child of this process. */
  readonly pid: number;
  /** True when it reached its stopped start (false: it ended or failed before). */
  readonly stopped: boolean;
  /** Reaps it (`wait4`, on another thread): its exit and its exact rusage. Call once. */
  wait(): Promise<ReapedExit>;
}

/**
 * Starts `program` as a child of this process that is not forked from it, stopped just before its `exec`, so
 * that the kernel's accounting of it is its own (a process forked from the agent would inherit the agent's peak
 * memory into its `ru_maxrss`, the kernel keeping the old memory's high-water mark at exec). One process hop:
 * this process becomes a child subreaper for the moment of the start; a shell (started by
 * {@linkcode posixSpawn} as `Deno.Command` would start it) forks a
 * subshell that stops itself (see `REAPED_START`); its pid is the shell's only child
 * (`/proc/<shell>/task/<shell>/children`, no file written); once it is stopped the shell, which only waits for
 * it, is killed, and the subshell is reparented to this process. Continued, it execs the program with
 * `argv[0]` as given (looked up in PATH as any shell does), stdin, stdout and stderr inherited, in this process's
 * process group (Ctrl-C reaches it), SIGINT and SIGQUIT at their defaults. Send it SIGCONT once the plugins know
 * its pid, then {@linkcode ReapedProgram.wait}. Needs {@linkcode reapedStartUnavailable} to have said yes;
 * throws {@linkcode ReapedStartUnavailable} when it cannot start (`prctl` refused), before anything was started.
 */
export async function startReaped(
  program: string,
  args: readonly string[],
  cwd: string,
): Promise<ReapedProgram> {
  try {
    setChildSubreaper(true);
  } catch (e) {
    throw new ReapedStartUnavailable((e as Error).message);
  }
  let pid: number | undefined;
  let stopped = false;
  try {
    // posixSpawn, not Deno.Command: the same start, without loading Deno's process and streams code. Another
    // working directory is the shell's first step (`cd -P`: the directory itself, as chdir(2) gives it).
    const here = cwd === Deno.cwd();
    const shell = await posixSpawn("/bin/sh", [
      "sh",
      "-c",
      here ? REAPED_START : `cd -P -- "$1" || exit 126; shift; ${REAPED_START}`,
      "sh",
      ...(here ? [] : [cwd]),
      program,
      ...args,
    ]);
    try {
      pid = await waitForOnlyChild(shell);
      stopped = pid !== undefined && await waitForStoppedStart(pid);
    } finally {
      // The shell only waits for its subshell: ended, it leaves the subshell to this process (the subreaper).
      if (stopped) {
        try {
          killProcess(shell, SIGNAL_NUMBERS.SIGKILL!);
        } catch {
          // already gone
        }
      }
      await waitChild(shell);
    }
    if (!stopped) {
      throw new AlumetError(`Cannot start "${program}": the start-up shell failed before the program's exec`);
    }
  } finally {
    // The program was reparented to this process when the shell ended: it stays our child. Its own orphans
    // go to init again, as they would without the agent.
    setChildSubreaper(false);
  }
  const child = pid!;
  return {
    pid: child,
    stopped,
    wait: async () => {
      const e = await waitChild(child);
      const signal = e.signal === null ? null : signalName(e.signal);
      return { code: e.signal !== null ? 128 + e.signal : e.code ?? 0, signal, rusage: e.rusage };
    },
  };
}

/**
 * The pid of the one child of process `parent` (from `/proc/<parent>/task/<parent>/children`), once it has one;
 * undefined when `parent` ends first or after `limitMs`.
 */
async function waitForOnlyChild(parent: number, limitMs = 60_000): Promise<number | undefined> {
  const file = ProcFile.tryOpen(`/proc/${parent}/task/${parent}/children`, 64);
  if (file === undefined) return undefined;
  try {
    const deadline = performance.now() + limitMs;
    for (let spins = 0; performance.now() < deadline; spins++) {
      const n = file.read();
      if (n < 0) return undefined;
      if (n > 0) {
        const pid = Number(new TextDecoder().decode(file.buffer.subarray(0, n)).trim().split(" ")[0]);
        if (Number.isInteger(pid) && pid > 0) return pid;
      }
      if (processEnded(parent)) return undefined;
      // The shell forks within a few milliseconds: as waitUntilStopped, every 50 µs, then every millisecond.
      if (spins < 1000) Atomics.wait(NAP, 0, 0, 0.05);
      else await new Promise((r) => after(1, () => r(undefined)));
    }
    return undefined;
  } finally {
    file.close();
  }
}

/**
 * Spawns `program` as a child of this process (forked from it: its `ru_maxrss` starts at this process's peak;
 * {@linkcode startReaped} is better where it works), stopped just before its `exec`:
 * `sh -c 'kill -STOP $$; exec "$@"' sh PROGRAM ARGS…` (Deno has no pre-exec hook). The pid is the program's own once it runs. The shell looks `program` up in PATH as
 * any shell does and passes it on as `argv[0]` as it is given, as a shell would (Deno.Command would pass the
 * resolved path).
 */
export function spawnStopped(program: string, args: readonly string[], cwd: string): Deno.ChildProcess {
  return new Deno.Command("/bin/sh", {
    args: ["-c", 'kill -STOP $$; exec "$@"', "sh", program, ...args],
    cwd,
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
}

/**
 * CPU time process `pid` has used so far, ns, from `/proc/<pid>/schedstat` (its time on a CPU, in ns, for a
 * single-threaded process such as the stopped-start shell), or from `/proc/<pid>/stat` (in clock ticks) when
 * the kernel has no schedstat; undefined when neither can be read.
 */
export function cpuTimeNs(pid: number, root = "/proc"): number | undefined {
  try {
    const ns = Number(Deno.readTextFileSync(`${root}/${pid}/schedstat`).split(" ")[0]);
    if (Number.isFinite(ns) && ns >= 0) return ns;
  } catch {
    // no schedstat: fall back to stat
  }
  try {
    const text = Deno.readTextFileSync(`${root}/${pid}/stat`);
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(f[11]) + Number(f[12]); // utime + stime
    return Number.isFinite(ticks) ? ticks * 1e9 / auxvInfo().userHz : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Takes `wrapperNs` (CPU time that was not the program's) out of the program's final user and system time,
 * in proportion to them, as the kernel splits a process's run time between user and system.
 *
 * @example
 * ```ts
 * import { withoutWrapper } from "./exec.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(withoutWrapper({ userNs: 3e6, systemNs: 1e6 }, 2e6), { userNs: 1.5e6, systemNs: 0.5e6 });
 * assert.deepEqual(withoutWrapper({ userNs: 1e6, systemNs: 0 }, 5e6), { userNs: 0, systemNs: 0 });
 * ```
 */
export function withoutWrapper(
  cpu: { userNs: number; systemNs: number },
  wrapperNs: number,
): { userNs: number; systemNs: number } {
  const total = cpu.userNs + cpu.systemNs;
  if (!(wrapperNs > 0) || total <= 0) return { userNs: cpu.userNs, systemNs: cpu.systemNs };
  const keep = Math.max(0, total - wrapperNs) / total;
  return { userNs: Math.round(cpu.userNs * keep), systemNs: Math.round(cpu.systemNs * keep) };
}

/**
 * The peak resident set size of process `pid` (`VmHWM` in `/proc/<pid>/status`, or `VmRSS` when higher: the kernel's
 * high-water mark of its memory since its last exec), bytes; undefined when it cannot be read (gone, a zombie).
 */
export function peakRssOf(pid: number | "self"): number | undefined {
  try {
    // The high-water mark is updated lazily: the current resident size can be above it.
    const text = Deno.readTextFileSync(`/proc/${pid}/status`);
    const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN);
    const peak = Math.max(kib("VmHWM"), kib("VmRSS"));
    return Number.isFinite(peak) ? peak * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The command line of process `pid` (`/proc/<pid>/cmdline`, its argv); undefined when it has none (a zombie, a
 * kernel thread) or cannot be read.
 */
export function commandLineOf(pid: number): string[] | undefined {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/cmdline`);
    if (text === "") return undefined;
    const argv = text.split("\0");
    if (argv.at(-1) === "") argv.pop();
    return argv;
  } catch {
    return undefined;
  }
}

/** True when process `pid` has ended: no `/proc/<pid>`, or a zombie (`Z`, exited and not reaped yet) or `X`. */
export function processEnded(pid: number): boolean {
  const f = ProcFile.tryOpen(`/proc/${pid}/stat`, 512);
  if (f === undefined) return true;
  try {
    const n = f.read();
    if (n <= 0) return true;
    const state = statState(f.buffer, n);
    return state === "Z" || state === "X";
  } finally {
    f.close();
  }
}

/**
 * Waits until process `pid`, a stopped-start shell, has stopped itself: true then, false when it ended first
 * (it could not start). On a loaded machine the stop can take long: a SIGCONT sent before it would be lost, and
 * the program left stopped for good, so this waits up to `limitMs` (a minute) rather than a fixed short time.
 */
export async function waitForStoppedStart(pid: number, limitMs = 60_000): Promise<boolean> {
  const deadline = performance.now() + limitMs;
  do {
    if (await waitUntilStopped(pid, 1000)) return true;
    if (processEnded(pid)) return false;
  } while (performance.now() < deadline);
  return false;
}

const NAP = new Int32Array(new SharedArrayBuffer(4));

/** Waits until process `pid` is stopped (state `T` in `/proc/<pid>/stat`); false after `timeoutMs`. */
export async function waitUntilStopped(pid: number, timeoutMs: number): Promise<boolean> {
  const file = ProcFile.tryOpen(`/proc/${pid}/stat`, 512);
  if (file === undefined) return false;
  try {
    const deadline = performance.now() + timeoutMs;
    for (let spins = 0; performance.now() < deadline; spins++) {
      const n = file.read();
      if (n < 0) return false;
      if (isStoppedState(statState(file.buffer, n))) return true;
      // sh stops itself within a few milliseconds: look again every 50 µs (a timer would wake after 1–4 ms),
      // then, if it takes longer, every millisecond without holding the thread.
      if (spins < 1000) Atomics.wait(NAP, 0, 0, 0.05);
      else await new Promise((r) => after(1, () => r(undefined)));
    }
    return false;
  } finally {
    file.close();
  }
}

/** Plugins that measure or estimate energy (a plugin given by `module` may too: it counts as one). */
export const ENERGY_SOURCES: ReadonlySet<string> = new Set([
  "rapl",
  "nvml",
  "hwmon",
  "grace-hopper",
  "jetson",
  "energy-estimation-tdp",
]);

/** Transforms that use energy series: the estimate and the attribution go before them. */
const ENERGY_TRANSFORMS = ["energy-attribution", "energy-to-carbon", "filter", "aggregation"];

/** A plugin section as {@linkcode energyDefaults} reads and adds them. */
export interface SectionLike {
  readonly name: string;
  readonly enabled: boolean;
  readonly table: Record<string, unknown>;
  readonly module?: string;
}

/** What {@linkcode energyDefaults} decided. */
export interface EnergyDefaults<S extends SectionLike> {
  /** The sections to run, in start order (the transform order): those given, plus the ones added. */
  readonly sections: S[];
  /** The plugins added, in order. */
  readonly added: string[];
}

/**
 * The energy plugins `exec` adds so that a plain `alumet exec -- PROG` reports the program's joules:
 * - `energy-estimation-tdp` when no energy source is enabled (no rapl, nvml, hwmon, grace-hopper, jetson, nor
 *   any plugin given by `module`), unless `noEstimate`: an estimate from CPU time × TDP, labelled as such;
 * - `energy-attribution` when an energy source is enabled or the estimate was added, to share the energy
 *   among consumers per interval (the program's own share among them).
 * Nothing is added when `only` (`--plugins`: exactly those), when procfs (the CPU time both need) is not
 * enabled, for a plugin that is not built in (`available`), nor for one the config has a section for, enabled
 * or not (`configured`: the user's choice stands). Each goes before the transforms that use energy
 * (`energy-to-carbon`, `filter`, `aggregation`; the estimate before `energy-attribution` too).
 *
 * @example
 * ```ts
 * import { energyDefaults } from "./exec.ts";
 * import assert from "node:assert/strict";
 * const s = (name: string) => ({ name, enabled: true, table: {} });
 * const options = { configured: new Set<string>(), only: false, noEstimate: false, available: () => true };
 * assert.deepEqual(
 *   energyDefaults([s("procfs"), s("csv")], options).added,
 *   ["energy-estimation-tdp", "energy-attribution"],
 * );
 * assert.deepEqual(energyDefaults([s("procfs"), s("rapl"), s("csv")], options).added, ["energy-attribution"]);
 * assert.deepEqual(energyDefaults([s("procfs")], { ...options, only: true }).added, []);
 * ```
 */
export function energyDefaults<S extends SectionLike>(
  sections: readonly S[],
  options: {
    readonly configured: ReadonlySet<string>;
    readonly only: boolean;
    readonly noEstimate: boolean;
    readonly available: (name: string) => boolean;
  },
  make: (name: string) => S = (name) => ({ name, enabled: true, table: {} }) as unknown as S,
): EnergyDefaults<S> {
  const out = [...sections];
  const added: string[] = [];
  const procfs = sections.some((s) => s.name === "procfs" && s.module === undefined);
  if (options.only || !procfs) return { sections: out, added };
  const has = (name: string) => out.some((s) => s.name === name);
  const free = (name: string) => !has(name) && !options.configured.has(name) && options.available(name);
  const insert = (name: string, before: readonly string[]) => {
    const at = out.findIndex((s) => before.includes(s.name));
    out.splice(at < 0 ? out.length : at, 0, make(name));
    added.push(name);
  };
  const source = sections.some((s) => ENERGY_SOURCES.has(s.name) || s.module !== undefined);
  let estimate = false;
  if (!source && !options.noEstimate && free("energy-estimation-tdp")) {
    insert("energy-estimation-tdp", ENERGY_TRANSFORMS);
    estimate = true;
  }
  if ((source || estimate) && free("energy-attribution")) {
    insert("energy-attribution", ENERGY_TRANSFORMS.slice(1));
  }
  return { sections: out, added };
}

/**
 * Process helpers for `exec` and `watch`: resolving a program on PATH, signal numbers, waiting for a pid.
 *
 * @module
 */
import { AlumetError, closest } from "../errors.ts";
import { ProcFile } from "../ffi/proc_file.ts";
import { isStoppedState, statState } from "../sys/proc_state.ts";
import { auxvInfo } from "../sys/system.ts";

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
 * Spawns `program` stopped just before its `exec`: `sh -c 'kill -STOP $$; exec "$@"' sh PROGRAM ARGS…` (Deno
 * has no pre-exec hook). The pid is the program's own once it runs. The shell looks `program` up in PATH as
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
      else await new Promise((r) => setTimeout(r, 1));
    }
    return false;
  } finally {
    file.close();
  }
}

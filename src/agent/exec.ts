/**
 * Process helpers for `exec` and `watch`: resolving a program on PATH, signal numbers, waiting for a pid.
 *
 * @module
 */
import { AlumetError, closest } from "../errors.ts";
import { ProcFile } from "../ffi/proc_file.ts";
import { isStoppedState, statState } from "../sys/proc_state.ts";

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

/** Resolves when process `pid` has ended (checked every `intervalMs`) or `signal` aborts. */
export async function waitForExit(pid: number, signal: AbortSignal, intervalMs = 100): Promise<void> {
  while (!signal.aborted && processExists(pid)) {
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
 * has no pre-exec hook). The pid is the program's own once it runs. The program sees its resolved path as
 * `argv[0]`.
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

/**
 * The libc symbols the sources need, with the C prototype beside each entry, opened by the one loader
 * (`library.ts`), and the conversion of a failing call into an {@linkcode ErrnoError} in exactly one
 * function, {@linkcode unwrap}, which can also tolerate listed errno values.
 *
 * The library is opened lazily, on first use, so that importing this module costs nothing and a script run
 * without `--allow-ffi` only fails when it really needs a native call (and then with a clear message).
 *
 * @module
 */
import { AlumetError } from "../errors.ts";
import { type LibrarySpec, openLibrary } from "./library.ts";

/**
 * The symbols, as Deno FFI declarations, in groups that are bound separately, each on the first use of one of
 * its symbols: binding costs Deno 0.2 ms per symbol called in place (0.45 ms with a buffer parameter: its
 * fast-call code is compiled then; 0.02 ms for a `nonblocking` one), the first `dlopen` about 2 ms more, and
 * `exec` needs only some groups, not all thirty symbols.
 */
const GROUPS = {
  /** Files: every user of libc needs these (opened first, which also checks that FFI is allowed). */
  io: {
    /** `int open(const char *path, int flags, mode_t mode)` */
    open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
    /** `int close(int fd)` */
    close: { parameters: ["i32"], result: "i32" },
    /** `ssize_t read(int fd, void *buf, size_t count)` */
    read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
    /** `ssize_t pread(int fd, void *buf, size_t count, off_t offset)` */
    pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  },
  /** Errors. */
  errno: {
    /** `int *__errno_location(void)`: errno of the calling thread. */
    __errno_location: { parameters: [], result: "pointer" },
    /** `char *strerror(int errnum)` */
    strerror: { parameters: ["i32"], result: "pointer" },
  },
  /** Processes: reaping, the subreaper flag (`exec`'s start). */
  process: {
    /** `int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5)` */
    prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
    /** `pid_t wait4(pid_t pid, int *wstatus, int options, struct rusage *rusage)`, run on another thread: returns a promise, the event loop runs while the child runs. */
    wait4_async: {
      name: "wait4",
      parameters: ["i32", "buffer", "i32", "buffer"],
      result: "i32",
      nonblocking: true,
    },
  },
  /**
   * Processes, in place: accounting, and the reaping call whose errno can be read (apart from `process`: a
   * symbol with a buffer parameter, called in place, takes Deno 0.45 ms to bind, and `exec`'s usual path
   * needs neither).
   */
  accounting: {
    /** `int getrusage(int who, struct rusage *usage)` */
    getrusage: { parameters: ["i32", "buffer"], result: "i32" },
    /** `pid_t wait4(pid_t pid, int *wstatus, int options, struct rusage *rusage)` */
    wait4: { parameters: ["i32", "buffer", "i32", "buffer"], result: "i32" },
  },
  /**
   * Starting a process without Deno's process code (`exec`'s start: `Deno.Command` first loads Deno's process,
   * fetch-body and streams modules).
   */
  spawn: {
    /**
     * `int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *actions,
     * const posix_spawnattr_t *attr, char *const argv[], char *const envp[])`: returns an error number.
     * These are bound `nonblocking` (each call a promise, run on another thread) because Deno binds such a
     * symbol in 0.02 ms, against 0.2–0.45 ms for one called in place (its fast-call code is compiled then);
     * `exec` calls each once.
     */
    posix_spawn: {
      parameters: ["buffer", "buffer", "pointer", "buffer", "buffer", "pointer"],
      result: "i32",
      nonblocking: true,
    },
    /** `int posix_spawnattr_init(posix_spawnattr_t *attr)` */
    posix_spawnattr_init: { parameters: ["buffer"], result: "i32", nonblocking: true },
    /** `int posix_spawnattr_destroy(posix_spawnattr_t *attr)` */
    posix_spawnattr_destroy: { parameters: ["buffer"], result: "i32", nonblocking: true },
    /** `int posix_spawnattr_setflags(posix_spawnattr_t *attr, short flags)` */
    posix_spawnattr_setflags: { parameters: ["buffer", "i16"], result: "i32", nonblocking: true },
    /** `int posix_spawnattr_setsigmask(posix_spawnattr_t *attr, const sigset_t *mask)` */
    posix_spawnattr_setsigmask: { parameters: ["buffer", "buffer"], result: "i32", nonblocking: true },
    /** `int posix_spawnattr_setsigdefault(posix_spawnattr_t *attr, const sigset_t *set)` */
    posix_spawnattr_setsigdefault: { parameters: ["buffer", "buffer"], result: "i32", nonblocking: true },
    /** `int kill(pid_t pid, int sig)` */
    kill: { parameters: ["i32", "i32"], result: "i32" },
    /** `extern char **environ`: the address of the variable (read it at each use: `setenv` may move it) */
    environ: { type: "pointer" },
  },
  /** Clocks and sleeps (the sampling Worker's). */
  clock: {
    /** `int clock_gettime(clockid_t clockid, struct timespec *tp)` */
    clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
    /** `int clock_nanosleep(clockid_t, int flags, const struct timespec *t, struct timespec *remain)`; blocks the caller */
    clock_nanosleep: { parameters: ["i32", "i32", "buffer", "buffer"], result: "i32" },
    /** The same, run on another thread: returns a promise (errno is the return value, so it stays readable). */
    clock_nanosleep_async: {
      name: "clock_nanosleep",
      parameters: ["i32", "i32", "buffer", "buffer"],
      result: "i32",
      nonblocking: true,
    },
    /** `int sched_setscheduler(pid_t pid, int policy, const struct sched_param *param)`; pid 0 = this thread */
    sched_setscheduler: { parameters: ["i32", "i32", "buffer"], result: "i32" },
    /** `int sched_getscheduler(pid_t pid)`: the policy of the thread; pid 0 = this thread */
    sched_getscheduler: { parameters: ["i32"], result: "i32" },
    /** `int sched_getparam(pid_t pid, struct sched_param *param)`: its priority */
    sched_getparam: { parameters: ["i32", "buffer"], result: "i32" },
  },
  /** System calls without a libc wrapper (perf_event_open, bpf…). */
  syscall: {
    /** `long syscall(long number, ...)`, six register arguments. */
    syscall6: {
      name: "syscall",
      parameters: ["i64", "i64", "i64", "i64", "i64", "i64", "i64"],
      result: "i64",
    },
    /** `int ioctl(int fd, unsigned long request, unsigned long arg)` */
    ioctl: { parameters: ["i32", "u64", "u64"], result: "i32" },
  },
  /** inotify (the watchers of directories). */
  inotify: {
    /** `int inotify_init1(int flags)` */
    inotify_init1: { parameters: ["i32"], result: "i32" },
    /** `int inotify_add_watch(int fd, const char *path, uint32_t mask)` */
    inotify_add_watch: { parameters: ["i32", "buffer", "u32"], result: "i32" },
    /** `int inotify_rm_watch(int fd, int wd)` */
    inotify_rm_watch: { parameters: ["i32", "i32"], result: "i32" },
  },
} as const satisfies Record<string, Deno.ForeignLibraryInterface>;

/** Every symbol, as one Deno FFI declaration. */
const SYMBOLS = {
  ...GROUPS.io,
  ...GROUPS.errno,
  ...GROUPS.process,
  ...GROUPS.accounting,
  ...GROUPS.spawn,
  ...GROUPS.clock,
  ...GROUPS.syscall,
  ...GROUPS.inotify,
} as const satisfies Deno.ForeignLibraryInterface;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** Where libc is: glibc's soname, no environment override (it is on the start-up path). */
export const LIBC: LibrarySpec = {
  name: "libc",
  candidates: ["libc.so.6"],
  install: "run on a Linux system with glibc (libc.so.6)",
};

/** The symbols libc binds, for a check that they all resolve (`diagnoseLibrary("…", LIBC, LIBC_SYMBOLS)`). */
export const LIBC_SYMBOLS: Deno.ForeignLibraryInterface = SYMBOLS;

let symbols: Libc | undefined;
let loadError: Error | undefined;

/**
 * The libc symbols. Throws a `LibraryError` (an {@linkcode AlumetError}; library.ts) when FFI is not allowed
 * or libc cannot be opened, the same one on every later call. Each group of symbols is bound on the first
 * use of one of them (a property that then holds the bound function).
 */
export function libc(): Libc {
  if (symbols !== undefined) return symbols;
  if (loadError !== undefined) throw loadError;
  try {
    symbols = bindLazily();
    return symbols;
  } catch (e) {
    loadError = e as Error;
    throw e;
  }
}

function bindLazily(): Libc {
  const target: Record<string, unknown> = {};
  const bind = (group: keyof typeof GROUPS) => {
    const bound = openLibrary(LIBC, GROUPS[group]).library.symbols as Record<string, unknown>;
    for (const name of Object.keys(GROUPS[group])) {
      Object.defineProperty(target, name, { value: bound[name], enumerable: true, writable: false });
    }
  };
  for (const group of Object.keys(GROUPS) as (keyof typeof GROUPS)[]) {
    for (const name of Object.keys(GROUPS[group])) {
      Object.defineProperty(target, name, {
        configurable: true,
        enumerable: true,
        get: () => {
          bind(group);
          return target[name];
        },
      });
    }
  }
  bind("io");
  return target as Libc;
}

/** True when libc can be used (FFI allowed, Linux with glibc). */
export function ffiAvailable(): boolean {
  try {
    libc();
    return true;
  } catch {
    return false;
  }
}

/** Linux errno names by number (the ones the sources can meet). */
const ERRNO = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  6: "ENXIO",
  7: "E2BIG",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  20: "ENOTDIR",
  21: "EISDIR",
  22: "EINVAL",
  23: "ENFILE",
  24: "EMFILE",
  25: "ENOTTY",
  28: "ENOSPC",
  36: "ENAMETOOLONG",
  38: "ENOSYS",
  40: "ELOOP",
  61: "ENODATA",
  95: "EOPNOTSUPP",
} as const;

/** An errno name that {@linkcode ERRNO_NAMES} knows, e.g. `"EAGAIN"`. */
export type ErrnoName = typeof ERRNO[keyof typeof ERRNO];

/** Linux errno names by number (the ones the sources can meet). */
export const ERRNO_NAMES: Readonly<Record<number, ErrnoName>> = ERRNO;

/** A failed system call: the call, the errno name, the system's text and, when known, what to do. */
export class ErrnoError extends AlumetError {
  override name = "ErrnoError";
  readonly call: string;
  readonly errno: number;
  readonly code: string;
  constructor(call: string, errno: number, hint?: string) {
    const code = ERRNO_NAMES[errno] ?? `errno ${errno}`;
    super(`${call} failed: ${strerror(errno)} (${code})${hint ? `; ${hint}` : ""}`);
    this.call = call;
    this.errno = errno;
    this.code = code;
  }
}

/** errno of this thread, right after a failing call of a blocking symbol. */
export function errno(): number {
  const p = libc().__errno_location();
  return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32();
}

/** The system's text for an errno value. */
export function strerror(n: number): string {
  try {
    const p = libc().strerror(n);
    return p === null ? `errno ${n}` : Deno.UnsafePointerView.getCString(p);
  } catch {
    return `errno ${n}`;
  }
}

/**
 * What {@linkcode unwrap} returns for a tolerated errno: -1, never a valid result (those are ≥ 0). Read
 * `errno()` right after if the caller must know which of the tolerated values it was.
 */
export const TOLERATED = -1;

/** How {@linkcode unwrap} treats a failure. */
export interface UnwrapOptions {
  /**
   * errno values that are not errors here (`EAGAIN` on a non-blocking fd, `ESRCH` for a process that is
   * gone): for them, `unwrap` returns {@linkcode TOLERATED} instead of throwing.
   */
  readonly tolerate?: readonly ErrnoName[];
  /** Advice added to the error: a text, or one per errno name (undefined for none). */
  readonly hint?: string | ((code: string) => string | undefined);
}

/**
 * The single place where a libc result becomes an error: a negative result throws an {@linkcode ErrnoError}
 * built from errno, unless errno is one of `options.tolerate`, for which it returns {@linkcode TOLERATED}.
 * A result ≥ 0 is returned as it is. Keep the options in a constant on hot paths (no allocation per call).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { cString, ErrnoError, libc, O_RDONLY_CLOEXEC, TOLERATED, unwrap } from "./libc.ts";
 * const missing = () => libc().open(cString("/nonexistent/alumet"), O_RDONLY_CLOEXEC, 0);
 * assert.equal(unwrap(missing(), "open(/nonexistent/alumet)", { tolerate: ["ENOENT"] }), TOLERATED);
 * assert.throws(() => unwrap(missing(), "open(/nonexistent/alumet)"), (e) => e instanceof ErrnoError && e.code === "ENOENT");
 * ```
 *
 * @param result what the call returned
 * @param call the call, for the message: `read(inotify)`, `open(/proc/stat)`
 * @param options errno values to tolerate, advice for the message
 * @returns `result` when ≥ 0, {@linkcode TOLERATED} for a tolerated errno
 * @throws {ErrnoError} for any other errno
 */
export function unwrap<T extends number | bigint>(
  result: T,
  call: string,
  options?: UnwrapOptions & { readonly tolerate?: undefined },
): T;
export function unwrap<T extends number | bigint>(
  result: T,
  call: string,
  options: UnwrapOptions,
): T | typeof TOLERATED;
export function unwrap<T extends number | bigint>(
  result: T,
  call: string,
  options?: UnwrapOptions,
): T | typeof TOLERATED {
  if (result >= 0) return result;
  const n = errno();
  const code: ErrnoName | undefined = ERRNO_NAMES[n];
  if (code !== undefined && options?.tolerate?.includes(code)) return TOLERATED;
  const hint = options?.hint;
  throw new ErrnoError(call, n, typeof hint === "function" ? hint(code ?? "") : hint);
}

const encoder = new TextEncoder();

/** A NUL-terminated copy of `s`, for `const char *` parameters. */
export function cString(s: string): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(s.length * 3 + 1);
  const { written } = encoder.encodeInto(s, b);
  return b.subarray(0, written + 1) as Uint8Array<ArrayBuffer>;
}

/** `O_RDONLY | O_CLOEXEC` */
export const O_RDONLY_CLOEXEC = 0o2000000;
/** `CLOCK_REALTIME` */
export const CLOCK_REALTIME = 0;
/** `CLOCK_MONOTONIC` */
export const CLOCK_MONOTONIC = 1;
/** `TIMER_ABSTIME` */
export const TIMER_ABSTIME = 1;
/** `SCHED_FIFO` */
export const SCHED_FIFO = 1;
/** `RUSAGE_SELF` */
export const RUSAGE_SELF = 0;
/** `RUSAGE_CHILDREN` */
export const RUSAGE_CHILDREN = -1;

/** CPU time and peak memory from `getrusage`. */
export interface Rusage {
  /** User CPU time, µs. */
  readonly userUs: number;
  /** System CPU time, µs. */
  readonly systemUs: number;
  /** Peak resident set size, KiB. */
  readonly maxRssKiB: number;
  /** Minor and major page faults. */
  readonly minorFaults: number;
  readonly majorFaults: number;
  /** Voluntary and involuntary context switches. */
  readonly voluntarySwitches: number;
  readonly involuntarySwitches: number;
}

/**
 * `getrusage(who)`: {@linkcode RUSAGE_SELF} or {@linkcode RUSAGE_CHILDREN} (every waited-for descendant).
 * `struct rusage` on x86_64/aarch64 Linux: two `timeval`s (16 bytes each), then 14 `long`s.
 */
export function getrusage(who: number): Rusage {
  const buf = new BigInt64Array(18);
  unwrap(libc().getrusage(who, buf), "getrusage");
  return rusageOf(buf);
}

/** Reads a `struct rusage` (18 `long`s on x86_64/aarch64 Linux) filled by `getrusage` or `wait4`. */
function rusageOf(buf: BigInt64Array): Rusage {
  const n = (i: number) => Number(buf[i]!);
  return {
    userUs: n(0) * 1e6 + n(1),
    systemUs: n(2) * 1e6 + n(3),
    maxRssKiB: n(4),
    minorFaults: n(8),
    majorFaults: n(9),
    voluntarySwitches: n(16),
    involuntarySwitches: n(17),
  };
}

/** `PR_SET_CHILD_SUBREAPER` (`prctl`): orphaned descendants are reparented to this process, not to init. */
export const PR_SET_CHILD_SUBREAPER = 36;
/** `WNOHANG` (`wait4`): return 0 at once when the child has not changed state. */
export const WNOHANG = 1;

/**
 * Makes this process a child subreaper, or no longer one (`prctl(PR_SET_CHILD_SUBREAPER, on)`): a descendant
 * whose parent exits is reparented to it, so that it can `wait4` for it. Throws an {@linkcode ErrnoError} when
 * refused.
 */
export function setChildSubreaper(on: boolean): void {
  unwrap(libc().prctl(PR_SET_CHILD_SUBREAPER, on ? 1n : 0n, 0n, 0n, 0n), "prctl(PR_SET_CHILD_SUBREAPER)");
}

/** How a child ended, and the kernel's accounting of it (its own and that of the children it waited for). */
export interface ChildExit {
  /** The exit code when it exited, else null. */
  readonly code: number | null;
  /** The number of the signal that killed it, else null. */
  readonly signal: number | null;
  /** `struct rusage` from `wait4`: exactly what `/usr/bin/time` reports for it. */
  readonly rusage: Rusage;
}

/**
 * Decodes a `wait4` status word (exited or killed; `wait4` without `WUNTRACED` reports nothing else).
 *
 * @example
 * ```ts
 * import { decodeWaitStatus } from "./libc.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(decodeWaitStatus(7 << 8), { code: 7, signal: null });
 * assert.deepEqual(decodeWaitStatus(9), { code: null, signal: 9 });
 * assert.deepEqual(decodeWaitStatus(0x80 | 11), { code: null, signal: 11 }); // SIGSEGV, core dumped
 * ```
 */
export function decodeWaitStatus(status: number): { code: number | null; signal: number | null } {
  const sig = status & 0x7f;
  return sig === 0 ? { code: (status >> 8) & 0xff, signal: null } : { code: null, signal: sig };
}

/** glibc's `POSIX_SPAWN_SETSIGDEF` and `POSIX_SPAWN_SETSIGMASK`. */
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;
/** `SIGPIPE` (13 on Linux). */
const SIGPIPE = 13;
/** Room for a `posix_spawnattr_t` (336 bytes in glibc on x86_64 and aarch64). */
const SPAWNATTR_BYTES = 512;

/**
 * Starts `path` with arguments `argv` (`argv[0]` included) as a child of this process, with this process's
 * environment, working directory, stdin, stdout and stderr, in its process group, as `Deno.Command` with
 * `"inherit"` starts it (Rust's `posix_spawn`, an empty signal mask, `SIGPIPE` at its default: Deno ignores
 * it; a handled signal is reset by the `exec` itself, an ignored one stays ignored), without loading Deno's
 * process code. Resolves to its pid; reap it with {@linkcode waitChild}. Rejects with an
 * {@linkcode ErrnoError} when it cannot be started (the error number that `posix_spawn` returns: `ENOENT` when
 * `path` does not exist).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { posixSpawn, waitChild } from "./libc.ts";
 * const pid = await posixSpawn("/bin/sh", ["sh", "-c", "exit 3"]);
 * assert.equal((await waitChild(pid)).code, 3);
 * ```
 */
export async function posixSpawn(path: string, argv: readonly string[]): Promise<number> {
  const s = libc();
  const attr = new Uint8Array(SPAWNATTR_BYTES);
  const spawnError = (call: string, err: number) => new ErrnoError(`${call}(${path})`, err);
  let err = await s.posix_spawnattr_init(attr);
  if (err !== 0) throw spawnError("posix_spawnattr_init", err);
  // The C strings that argv points to must outlive the call: reachable from `spawning` until it returns.
  const strings = argv.map(cString);
  const cPath = cString(path);
  const held = [strings, cPath];
  spawning.add(held);
  try {
    const emptySet = new BigUint64Array(16); // sigset_t: 1024 bits
    const pipeSet = new BigUint64Array(16);
    pipeSet[0] = 1n << BigInt(SIGPIPE - 1);
    err = await s.posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK) ||
      await s.posix_spawnattr_setsigmask(attr, emptySet) ||
      await s.posix_spawnattr_setsigdefault(attr, pipeSet);
    if (err !== 0) throw spawnError("posix_spawnattr_set*", err);
    const pointers = new BigUint64Array(strings.length + 1);
    strings.forEach((c, i) => pointers[i] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(c))));
    const environ = new Deno.UnsafePointerView(s.environ as Deno.PointerObject).getPointer();
    const pid = new Int32Array(1);
    err = await s.posix_spawn(pid, cPath, null, attr, pointers, environ);
    if (err !== 0) throw spawnError("posix_spawn", err);
    return pid[0]!;
  } finally {
    spawning.delete(held);
    await s.posix_spawnattr_destroy(attr);
  }
}

/** The C strings of the {@linkcode posixSpawn} calls in progress (kept reachable until they return). */
const spawning = new Set<unknown>();

/**
 * `kill(pid, signal)`, by number (`SIGCONT` is 18 on x86_64 and aarch64 Linux): `Deno.kill` first loads
 * Deno's process code. Throws an {@linkcode ErrnoError}.
 */
export function killProcess(pid: number, signal: number): void {
  unwrap(libc().kill(pid, signal), `kill(${pid}, ${signal})`);
}

/**
 * Waits, on another thread (the event loop runs meanwhile), for child `pid` to end and reaps it with
 * `wait4(pid, &status, 0, &rusage)`. Throws an {@linkcode ErrnoError} when it is not a child of this process
 * (`ECHILD`: it was reaped by someone else).
 */
export async function waitChild(pid: number): Promise<ChildExit> {
  const status = new Int32Array(1);
  const buf = new BigInt64Array(18);
  for (;;) {
    const r = await libc().wait4_async(pid, status, 0, buf);
    if (r === pid) break;
    // errno belongs to the other thread: ask again here, without waiting, to know why (EINTR: wait again).
    const again = libc().wait4(pid, status, WNOHANG, buf);
    if (again === pid) break;
    if (again < 0) unwrap(again, `wait4(${pid})`);
  }
  return { ...decodeWaitStatus(status[0]!), rusage: rusageOf(buf) };
}

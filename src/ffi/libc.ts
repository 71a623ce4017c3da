/**
 * The one place that calls `Deno.dlopen`: the libc symbols the sources need, with the C prototype beside each
 * entry, and the conversion of a failing call into an {@linkcode ErrnoError} in exactly one function.
 *
 * The library is opened lazily, on first use, so that importing this module costs nothing and a script run
 * without `--allow-ffi` only fails when it really needs a native call (and then with a clear message).
 *
 * @module
 */
import { AlumetError } from "../errors.ts";

/** The symbols, as Deno FFI declarations. */
const SYMBOLS = {
  /** `int open(const char *path, int flags, mode_t mode)` */
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  /** `int close(int fd)` */
  close: { parameters: ["i32"], result: "i32" },
  /** `ssize_t read(int fd, void *buf, size_t count)` */
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  /** `ssize_t pread(int fd, void *buf, size_t count, off_t offset)` */
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  /** `int getrusage(int who, struct rusage *usage)` */
  getrusage: { parameters: ["i32", "buffer"], result: "i32" },
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
  /** `int *__errno_location(void)`: errno of the calling thread. */
  __errno_location: { parameters: [], result: "pointer" },
  /** `char *strerror(int errnum)` */
  strerror: { parameters: ["i32"], result: "pointer" },
  /** `long syscall(long number, ...)`, six register arguments. */
  syscall6: {
    name: "syscall",
    parameters: ["i64", "i64", "i64", "i64", "i64", "i64", "i64"],
    result: "i64",
  },
  /** `int sched_setscheduler(pid_t pid, int policy, const struct sched_param *param)`; pid 0 = this thread */
  sched_setscheduler: { parameters: ["i32", "i32", "buffer"], result: "i32" },
  /** `int inotify_init1(int flags)` */
  inotify_init1: { parameters: ["i32"], result: "i32" },
  /** `int inotify_add_watch(int fd, const char *path, uint32_t mask)` */
  inotify_add_watch: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  /** `int inotify_rm_watch(int fd, int wd)` */
  inotify_rm_watch: { parameters: ["i32", "i32"], result: "i32" },
  /** `int ioctl(int fd, unsigned long request, unsigned long arg)` */
  ioctl: { parameters: ["i32", "u64", "u64"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let lib: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;
let loadError: Error | undefined;

/** The libc symbols. Throws an {@linkcode AlumetError} when FFI is not allowed or libc cannot be opened. */
export function libc(): Libc {
  if (lib !== undefined) return lib.symbols;
  if (loadError !== undefined) throw loadError;
  try {
    lib = Deno.dlopen("libc.so.6", SYMBOLS);
    return lib.symbols;
  } catch (e) {
    const denied = e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied;
    loadError = new AlumetError(
      denied
        ? "Native calls are not allowed: run Deno with --allow-ffi (the alumet task does)"
        : `Cannot open libc.so.6: ${(e as Error).message}`,
      { cause: e },
    );
    throw loadError;
  }
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
export const ERRNO_NAMES: Readonly<Record<number, string>> = {
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
  38: "ENOSYS",
  61: "ENODATA",
  95: "EOPNOTSUPP",
};

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
 * The single place where a libc result becomes an error: a negative result throws an {@linkcode ErrnoError}
 * built from errno; `hint` gives advice per errno name.
 */
export function unwrap<T extends number | bigint>(
  result: T,
  call: string,
  hint?: (code: string) => string | undefined,
): T {
  if (result >= 0) return result;
  const n = errno();
  throw new ErrnoError(call, n, hint?.(ERRNO_NAMES[n] ?? ""));
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

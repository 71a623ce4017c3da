/**
 * Directory watching with inotify: which watched directories gained or lost a subdirectory since the last
 * look. The fd is non-blocking, so a look is one `read` that returns at once (EAGAIN when nothing happened).
 *
 * @module
 */
import { cString, libc, TOLERATED, unwrap, type UnwrapOptions } from "./libc.ts";

const IN_NONBLOCK = 0o4000;
const IN_CLOEXEC = 0o2000000;
const IN_CREATE = 0x100;
const IN_DELETE = 0x200;
const IN_DELETE_SELF = 0x400;
const IN_MOVED_FROM = 0x40;
const IN_MOVED_TO = 0x80;
const IN_ONLYDIR = 0x1000000;
const IN_Q_OVERFLOW = 0x4000;
const IN_IGNORED = 0x8000;
const MASK = IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVED_FROM | IN_MOVED_TO | IN_ONLYDIR;

/** `inotify_init1` fails for lack of instances (EMFILE) or memory; the rescan still finds changes. */
const INIT: UnwrapOptions = { hint: "raise fs.inotify.max_user_instances, or rely on the rescan" };
/** A directory that is gone, not a directory, not readable, or over the watch limit is just not watched. */
const WATCH: UnwrapOptions = {
  tolerate: ["ENOENT", "ENOTDIR", "EACCES", "ENOSPC", "ENOMEM", "ENAMETOOLONG", "ELOOP"],
};
/** Nothing pending on the non-blocking fd, or a signal. */
const READ: UnwrapOptions = { tolerate: ["EAGAIN", "EINTR"] };

/**
 * Watches directories for subdirectories created, removed or moved.
 *
 * @example
 * ```ts
 * import { DirWatcher } from "./inotify.ts";
 * import assert from "node:assert/strict";
 * const dir = Deno.makeTempDirSync();
 * using w = DirWatcher.open();
 * w.watch(dir);
 * assert.equal(w.changed(), false);
 * Deno.mkdirSync(`${dir}/child`);
 * assert.equal(w.changed(), true);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export class DirWatcher implements Disposable {
  #fd: number;
  readonly #watched = new Map<string, number>();
  readonly #buf = new Uint8Array(16384);

  private constructor(fd: number) {
    this.#fd = fd;
  }

  /** A new watcher. Throws an ErrnoError when inotify is not available (or the limit of instances is hit). */
  static open(): DirWatcher {
    return new DirWatcher(unwrap(libc().inotify_init1(IN_NONBLOCK | IN_CLOEXEC), "inotify_init1", INIT));
  }

  /**
   * Watches `dir` (again harmless); false when it is gone or cannot be watched (not a directory, not
   * readable, over `fs.inotify.max_user_watches`). Throws an `ErrnoError` for anything else (a bug).
   */
  watch(dir: string): boolean {
    if (this.#fd < 0) return false;
    const wd = unwrap(
      libc().inotify_add_watch(this.#fd, cString(dir), MASK),
      `inotify_add_watch(${dir})`,
      WATCH,
    );
    if (wd === TOLERATED) return false;
    this.#watched.set(dir, wd);
    return true;
  }

  /** How many directories are watched. */
  get size(): number {
    return this.#watched.size;
  }

  /**
   * Reads every pending event: true when a watched directory gained, lost or renamed a subdirectory, or was
   * removed, or when the kernel's queue overflowed (then anything may have changed).
   */
  changed(): boolean {
    if (this.#fd < 0) return false;
    let changed = false;
    const { read } = libc();
    for (;;) {
      const n = unwrap(Number(read(this.#fd, this.#buf, BigInt(this.#buf.length))), "read(inotify)", READ);
      if (n === TOLERATED || n === 0) return changed;
      // struct inotify_event { int wd; uint32_t mask, cookie, len; char name[len]; }
      const view = new DataView(this.#buf.buffer, 0, n);
      for (let off = 0; off + 16 <= n;) {
        const mask = view.getUint32(off + 4, true);
        const len = view.getUint32(off + 12, true);
        if ((mask & ~IN_IGNORED) !== 0 || (mask & IN_Q_OVERFLOW) !== 0) changed = true;
        off += 16 + len;
      }
    }
  }

  /** Stops watching and closes the fd. Idempotent. */
  close(): void {
    if (this.#fd < 0) return;
    libc().close(this.#fd);
    this.#fd = -1;
    this.#watched.clear();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

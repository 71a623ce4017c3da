/**
 * A kernel text file (`/proc/stat`, `/proc/<pid>/stat`…) kept open and re-read from offset 0 into a reusable
 * buffer: one `pread` per poll through FFI (about 3 µs here), instead of open/read/close (about 20–50 µs).
 * Without FFI (a script run without `--allow-ffi`) it falls back to `Deno.FsFile` seek + read (about 6 µs).
 *
 * @module
 */
import {
  cString,
  ErrnoError,
  ffiAvailable,
  libc,
  O_RDONLY_CLOEXEC,
  unwrap,
  type UnwrapOptions,
} from "./libc.ts";

/** What happened to a file that was readable before. */
export type ReadOutcome = "ok" | "gone";

/**
 * An open kernel file. `read()` returns the number of bytes now in {@linkcode ProcFile.buffer}; it grows
 * the buffer when the file does not fit. Close it with `close()` or `using`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ProcFile } from "./proc_file.ts";
 * using f = ProcFile.open("/proc/self/stat");
 * const n = f.read();
 * assert.ok(n > 0);
 * assert.ok(new TextDecoder().decode(f.buffer.subarray(0, n)).startsWith(`${Deno.pid} (`)); // starts with the pid
 * ```
 */
export class ProcFile implements Disposable {
  readonly path: string;
  /** The bytes of the last read (the first `read()` result bytes are valid). */
  buffer: Uint8Array<ArrayBuffer>;
  #fd = -1;
  /** The call named in a read error, built once (the read is on hot paths). */
  readonly #preadCall: string;
  #file: Deno.FsFile | undefined;

  private constructor(path: string, size: number) {
    this.path = path;
    this.#preadCall = `pread(${path})`;
    this.buffer = new Uint8Array(size);
  }

  /**
   * Opens `path` for reading. Throws an {@linkcode ErrnoError} (FFI) or a Deno error (fallback) when it
   * cannot be opened.
   */
  static open(path: string, initialSize = 4096, useFfi = ffiAvailable()): ProcFile {
    const f = new ProcFile(path, initialSize);
    if (useFfi) {
      f.#fd = unwrap(libc().open(cString(path), O_RDONLY_CLOEXEC, 0), `open(${path})`);
    } else {
      f.#file = Deno.openSync(path, { read: true });
    }
    return f;
  }

  /** Opens `path`, or returns undefined when it does not exist (a process that is gone). */
  static tryOpen(path: string, initialSize = 4096): ProcFile | undefined {
    try {
      return ProcFile.open(path, initialSize);
    } catch (e) {
      if (e instanceof ErrnoError && (e.code === "ENOENT" || e.code === "ESRCH")) return undefined;
      if (e instanceof Deno.errors.NotFound) return undefined;
      throw e;
    }
  }

  /** Re-reads the whole file; returns the byte count, or -1 when the file is gone (its process exited). */
  read(): number {
    for (;;) {
      const n = this.#file === undefined ? this.#preadFfi() : this.#readFallback();
      if (n < 0) return -1;
      if (n < this.buffer.length) return n;
      this.buffer = new Uint8Array(this.buffer.length * 2); // did not fit: grow and read again
    }
  }

  /**
   * Re-reads the whole file as text: for plugins polled every second or so, where decoding costs nothing
   * that matters (hot paths scan {@linkcode ProcFile.buffer} instead, see `src/sys/scan.ts`).
   *
   * @returns the text, or `undefined` when the file is gone
   */
  readText(): string | undefined {
    const n = this.read();
    return n < 0 ? undefined : DECODER.decode(this.buffer.subarray(0, n));
  }

  #preadFfi(): number {
    if (this.#fd < 0) throw new Error(`${this.path} is closed`);
    // A /proc/<pid> file of an exited process reads as ESRCH: tolerated, -1 (gone).
    return unwrap(
      Number(libc().pread(this.#fd, this.buffer, BigInt(this.buffer.length), 0n)),
      this.#preadCall,
      GONE,
    );
  }

  #readFallback(): number {
    const f = this.#file!;
    try {
      f.seekSync(0, Deno.SeekMode.Start);
      let total = 0;
      while (total < this.buffer.length) {
        const n = f.readSync(this.buffer.subarray(total));
        if (n === null || n === 0) break;
        total += n;
      }
      return total;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound || (e as { code?: string }).code === "ESRCH") return -1;
      throw e;
    }
  }

  /** Closes the file. Idempotent. */
  close(): void {
    if (this.#fd >= 0) {
      libc().close(this.#fd);
      this.#fd = -1;
    }
    if (this.#file !== undefined) {
      this.#file.close();
      this.#file = undefined;
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

const DECODER = new TextDecoder();
/** A file of a process that exited reads as ESRCH (or ENOENT): not an error, the file is gone. */
const GONE: UnwrapOptions = { tolerate: ["ESRCH", "ENOENT"] };

/**
 * Byte-level parsing of kernel text files (`/proc/stat`, `/proc/<pid>/stat`, `/proc/net/dev`…) straight from
 * a {@linkcode ProcFile}'s buffer: fields are found by scanning for blanks and newlines and integers are
 * parsed digit by digit, so a poll creates no string per value.
 *
 * @module
 */
import type { ProcFile } from "../ffi/proc_file.ts";

const EMPTY = new Uint8Array(0);

/** Bytes of an ASCII word, to compare with {@linkcode ByteScanner.matches}. */
export function ascii(word: string): Uint8Array {
  const b = new Uint8Array(word.length);
  for (let i = 0; i < word.length; i++) b[i] = word.charCodeAt(i) & 0x7f;
  return b;
}

/**
 * A cursor over the first `end` bytes of a buffer.
 *
 * {@linkcode ByteScanner.uint} also leaves the integer it parsed split in two exact parts, `hi` (the digits
 * above the last nine) and `lo` (the last nine digits), so that the difference of two u64 counters beyond
 * 2^53 is still exact: `(hi1 - hi0) * 1e9 + (lo1 - lo0)`.
 *
 * @example
 * ```ts
 * import { ascii, ByteScanner } from "./scan.ts";
 * import assert from "node:assert/strict";
 * const s = new ByteScanner().reset(ascii("cpu0 12 18446744073709551615\n"));
 * assert.ok(s.matches(ascii("cpu")));
 * s.pos += 3;
 * assert.equal(s.uint(), 0);
 * assert.equal(s.uint(), 12);
 * s.uint();
 * assert.deepEqual([s.hi, s.lo], [18446744073, 709551615]);
 * assert.equal(s.uint(), -1); // no digits left on the line
 * ```
 */
export class ByteScanner {
  /** The bytes scanned. */
  buf: Uint8Array = EMPTY;
  /** Current position. */
  pos = 0;
  /** End of the valid bytes. */
  end = 0;
  /** Digits of the last integer above its last nine (`value = hi * 1e9 + lo`). */
  hi = 0;
  /** Last nine digits of the last integer. */
  lo = 0;

  /** Scans `buf[pos, end)`. */
  reset(buf: Uint8Array, end: number = buf.length, pos = 0): this {
    this.buf = buf;
    this.end = Math.min(end, buf.length);
    this.pos = pos;
    return this;
  }

  /** True when every byte has been consumed. */
  get done(): boolean {
    return this.pos >= this.end;
  }

  /** The byte at the cursor, or -1 at the end. */
  peek(): number {
    return this.pos < this.end ? this.buf[this.pos]! : -1;
  }

  /** Skips spaces and tabs (not newlines). */
  skipBlanks(): void {
    const b = this.buf;
    let p = this.pos;
    while (p < this.end && (b[p] === 32 || b[p] === 9)) p++;
    this.pos = p;
  }

  /** Moves past the next newline (or to the end). */
  skipLine(): void {
    const i = this.buf.indexOf(10, this.pos);
    this.pos = i < 0 || i >= this.end ? this.end : i + 1;
  }

  /** Skips blanks, then one field (a run of bytes other than blanks and newlines). */
  skipField(): void {
    this.skipBlanks();
    const b = this.buf;
    let p = this.pos;
    while (p < this.end) {
      const c = b[p]!;
      if (c === 32 || c === 9 || c === 10) break;
      p++;
    }
    this.pos = p;
  }

  /** Skips `n` fields. */
  skipFields(n: number): void {
    for (let i = 0; i < n; i++) this.skipField();
  }

  /**
   * Skips blanks and parses an unsigned decimal integer; returns it (rounded beyond 2^53: use `hi` and `lo`
   * for exact differences), or -1 when there is no digit at the cursor (the cursor then stays on the blank-
   * skipped position).
   */
  uint(): number {
    this.skipBlanks();
    const b = this.buf;
    const end = this.end;
    let p = this.pos;
    let hi = 0;
    let lo = 0;
    const start = p;
    while (p < end) {
      const d = b[p]! - 48;
      if (d < 0 || d > 9) break;
      const t = lo * 10 + d;
      if (t >= 1e9) {
        const carry = Math.floor(t / 1e9);
        hi = hi * 10 + carry;
        lo = t - carry * 1e9;
      } else {
        hi *= 10;
        lo = t;
      }
      p++;
    }
    this.pos = p;
    this.hi = hi;
    this.lo = lo;
    return p === start ? -1 : hi * 1e9 + lo;
  }

  /** True when the bytes at the cursor are `word` (the cursor does not move). */
  matches(word: Uint8Array): boolean {
    const p = this.pos;
    if (p + word.length > this.end) return false;
    const b = this.buf;
    for (let i = 0; i < word.length; i++) if (b[p + i] !== word[i]) return false;
    return true;
  }

  /** Index of the last `byte` in `[from, to)`, or -1. */
  lastIndexOf(byte: number, from = 0, to = this.end): number {
    if (to <= from) return -1;
    const i = this.buf.lastIndexOf(byte, to - 1);
    return i >= from ? i : -1;
  }
}

/** Re-reads an open kernel file and points `scan` at its bytes; throws when it is closed, empty or gone. */
export function rescan(scan: ByteScanner, file: ProcFile | undefined, path: string): ByteScanner {
  if (file === undefined) throw new Error(`${path} is closed`);
  const n = file.read();
  if (n <= 0) throw new Error(`Cannot read ${path}: it is empty or gone`);
  return scan.reset(file.buffer, n);
}

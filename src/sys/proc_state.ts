/**
 * The state of a process (`R`, `S`, `T`…), the field of `/proc/<pid>/stat` after the command name.
 *
 * @module
 */
import { ProcFile } from "../ffi/proc_file.ts";

/**
 * The state letter in the first `n` bytes of a `/proc/<pid>/stat`: the command name is in parentheses and may
 * hold spaces and `)`, so the state is found after the last `)`.
 *
 * @example
 * ```ts
 * import { statState } from "./proc_state.ts";
 * import assert from "node:assert/strict";
 * const b = new TextEncoder().encode("42 (a) b) T 1 42");
 * assert.equal(statState(b, b.length), "T");
 * ```
 */
export function statState(buf: Uint8Array, n: number): string | undefined {
  let close = n - 1;
  while (close > 0 && buf[close] !== 41 /* ) */) close--;
  const c = buf[close + 2];
  return close > 0 && c !== undefined ? String.fromCharCode(c) : undefined;
}

/** True for the stopped states (`T` stopped by a signal, `t` stopped by a tracer). */
export function isStoppedState(state: string | undefined): boolean {
  return state === "T" || state === "t";
}

/** True when process `pid` is stopped now. */
export function isStopped(pid: number): boolean {
  const f = ProcFile.tryOpen(`/proc/${pid}/stat`, 512);
  if (f === undefined) return false;
  try {
    const n = f.read();
    return n > 0 && isStoppedState(statState(f.buffer, n));
  } finally {
    f.close();
  }
}

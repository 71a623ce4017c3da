/**
 * The live status line of `run`: when stderr is a terminal, one line kept at the bottom (elapsed time, points
 * lost, measured and written, late ticks), redrawn twice a second; log lines are printed above it. Nothing
 * at all when stderr is not a terminal. `exec` draws none: its program writes to the same terminal, and a
 * line redrawn over that output would overwrite it (the summary comes at the end instead).
 *
 * @module
 */
import { type LogSink, setLogSink } from "../log.ts";
import type { Agent } from "./agent.ts";
import { formatCount } from "./format.ts";

const encoder = new TextEncoder();
const CLEAR = "\r\x1b[2K";

/** Totals shown on the status line. */
export interface StatusTotals {
  measured: number;
  written: number;
  lost: number;
  late: number;
  missed: number;
}

/** Sums an agent's pipeline statistics: points measured by sources, written by the slowest output, lost. */
export function totals(agent: Agent): StatusTotals {
  const s = agent.stats();
  const t: StatusTotals = { measured: 0, written: 0, lost: 0, late: 0, missed: 0 };
  if (s === undefined) return t;
  for (const src of s.sources.values()) {
    t.measured += src.points;
    t.late += src.late;
    t.missed += src.missed;
  }
  let minWritten = Infinity;
  for (const o of s.outputs.values()) {
    minWritten = Math.min(minWritten, o.points);
    t.lost += o.droppedPoints;
  }
  t.written = minWritten === Infinity ? 0 : minWritten;
  return t;
}

/**
 * Formats the line, the points lost first (what a user must not miss), e.g.
 * `alumet 00:01:05 · lost 0 · measured 12,345 · written 12,340 · late ticks 3`. When that is wider than a
 * terminal of `columns` columns, a compact form (`00:01:05 · lost 0 · measured 12,345 · written 12,…`) cut to
 * fit ({@linkcode fitToWidth}): the elapsed time and the losses always show from 40 columns.
 *
 * @param columns the terminal's width; default: unlimited (the full line)
 *
 * @example
 * ```ts
 * import { formatStatus } from "./status.ts";
 * import assert from "node:assert/strict";
 * const t = { measured: 123_456, written: 123_400, lost: 56, late: 0, missed: 0 };
 * assert.equal(formatStatus(5_000, t, 40), "00:00:05 · lost 56 · measured 123,456…");
 * ```
 */
export function formatStatus(elapsedMs: number, t: StatusTotals, columns = Infinity): string {
  const s = Math.floor(elapsedMs / 1000);
  const hms = [Math.floor(s / 3600), Math.floor(s / 60) % 60, s % 60].map((n) => String(n).padStart(2, "0"))
    .join(":");
  const n = formatCount;
  const fields = `lost ${n(t.lost)} · measured ${n(t.measured)} · written ${n(t.written)}`;
  const full = `alumet ${hms} · ${fields} · late ticks ${n(t.late + t.missed)}`;
  if ([...full].length <= columns - 1) return full;
  return fitToWidth(`${hms} · ${fields} · late ${n(t.late + t.missed)}`, columns);
}

/**
 * Cuts `line` to `columns - 1` characters (a line as wide as the terminal would wrap, and the next redraw
 * would clear only its second half), ending with `…` when cut (after no blank or `·`).
 *
 * @example
 * ```ts
 * import { fitToWidth } from "./status.ts";
 * import assert from "node:assert/strict";
 * assert.equal(fitToWidth("alumet 00:00:01 · measured 10", 12), "alumet 00:…");
 * assert.equal(fitToWidth("short", 80), "short");
 * ```
 */
export function fitToWidth(line: string, columns: number): string {
  const max = Math.max(1, columns - 1);
  const chars = [...line];
  return chars.length <= max ? line : chars.slice(0, max - 1).join("").replace(/[\s·]+$/, "") + "…";
}

/** The terminal's width, or 80 when it cannot be known. */
function terminalColumns(): number {
  try {
    return Deno.consoleSize().columns || 80;
  } catch {
    return 80;
  }
}

/** A status line on a terminal; `stop()` removes it. */
export class StatusLine implements Disposable {
  #timer: ReturnType<typeof setInterval> | undefined;
  #prevSink: LogSink | undefined;
  #line = "";
  #out: { writeSync(p: Uint8Array): number };

  /** Starts the line when `out` is a terminal; otherwise does nothing. */
  constructor(agent: Agent, out: { writeSync(p: Uint8Array): number; isTerminal(): boolean } = Deno.stderr) {
    this.#out = out;
    if (!out.isTerminal()) return;
    const start = performance.now();
    this.#prevSink = setLogSink((level, scope, message) => {
      this.#write(CLEAR);
      this.#prevSink!(level, scope, message);
      this.#write(this.#line);
    });
    const draw = () => {
      this.#line = formatStatus(performance.now() - start, totals(agent), terminalColumns());
      this.#write(CLEAR + this.#line);
    };
    const timer = setInterval(draw, 500);
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  #write(s: string): void {
    const b = encoder.encode(s);
    try {
      let off = 0;
      while (off < b.length) off += this.#out.writeSync(b.subarray(off));
    } catch {
      // the terminal went away
    }
  }

  /** Removes the line and restores plain logging. Idempotent. */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#prevSink !== undefined) {
      setLogSink(this.#prevSink);
      this.#prevSink = undefined;
      this.#write(CLEAR);
    }
  }

  [Symbol.dispose](): void {
    this.stop();
  }
}

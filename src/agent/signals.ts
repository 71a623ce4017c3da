/**
 * {@linkcode StopSignals}: how the long-running commands hear that they must stop, without losing what was
 * measured to a repeated signal.
 *
 * One Ctrl-C often reaches the agent twice: the terminal sends SIGINT to its whole foreground process group,
 * and `deno task` forwards what it receives to its child. A service manager stopping the group (`timeout`,
 * systemd's default `KillMode=control-group`) does the same with SIGTERM, and a closed terminal with SIGHUP.
 * So repeats of one signal within a short window count as one; SIGTERM and SIGHUP only ever ask for a clean
 * stop (the drain), and only a second, deliberate Ctrl-C — a SIGINT more than the window after the first one —
 * skips the drain.
 *
 * @module
 */
import type { Logger } from "../log.ts";

/** The signals a command stops on. */
export const STOP_SIGNALS: readonly Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];

/** Repeats of one signal closer than this (ms) are one signal. */
export const DEFAULT_WINDOW_MS = 1000;

/** The exit code of a forced stop (a second Ctrl-C), as a shell reports a program killed by SIGINT. */
export const EXIT_FORCED = 130;

/** What a signal means, as {@linkcode StopDecision.receive} decides it. */
export type SignalVerdict =
  /** The first stop signal: stop cleanly, writing what was measured. */
  | "stop"
  /** A repeat of a signal already received (or a SIGTERM/SIGHUP during the stop): nothing more to do. */
  | "repeat"
  /** A second, deliberate Ctrl-C: exit now, without the drain. */
  | "force";

/**
 * The pure part of {@linkcode StopSignals}: given each signal and when it arrived, what it means.
 *
 * @example
 * ```ts
 * import { StopDecision } from "./signals.ts";
 * import assert from "node:assert/strict";
 * const d = new StopDecision(1000);
 * assert.equal(d.receive("SIGINT", 0), "stop");
 * assert.equal(d.receive("SIGINT", 2), "repeat"); // the same Ctrl-C, forwarded by `deno task`
 * assert.equal(d.receive("SIGTERM", 5000), "repeat"); // SIGTERM never forces
 * assert.equal(d.receive("SIGINT", 5000), "force"); // a second Ctrl-C, well after the first
 * ```
 */
export class StopDecision {
  readonly #windowMs: number;
  #stopping = false;
  /** When the first SIGINT arrived (the start of its window), if one did. */
  #firstInterrupt: number | undefined;

  /** @param windowMs repeats of one signal closer than this (ms) count once; default 1000 */
  constructor(windowMs: number = DEFAULT_WINDOW_MS) {
    if (!(windowMs >= 0) || !Number.isFinite(windowMs)) {
      throw new RangeError(`The signal window must be a finite number of ms >= 0, got ${windowMs}`);
    }
    this.#windowMs = windowMs;
  }

  /**
   * What `signal`, arriving at `atMs` (any monotonic clock in ms, e.g. `performance.now()`), means.
   *
   * @param signal the signal received
   * @param atMs when it arrived
   * @returns `"stop"` for the first stop signal, `"force"` for a SIGINT more than the window after an earlier
   *   SIGINT, `"repeat"` otherwise
   */
  receive(signal: Deno.Signal, atMs: number): SignalVerdict {
    const first = !this.#stopping;
    this.#stopping = true;
    if (signal === "SIGINT") {
      if (this.#firstInterrupt === undefined) this.#firstInterrupt = atMs;
      else if (atMs - this.#firstInterrupt > this.#windowMs) return "force";
    }
    return first ? "stop" : "repeat";
  }
}

/** Options of {@linkcode StopSignals}. */
export interface StopSignalsOptions {
  /** Repeats of one signal closer than this (ms) count once. Default 1000. */
  readonly windowMs?: number;
  /**
   * Called on a second, deliberate SIGINT. Default: log one line and exit with code 130 at once, without the
   * drain.
   */
  readonly onForce?: (signal: Deno.Signal) => void;
  /** The signals to listen to. Default SIGINT, SIGTERM, SIGHUP. */
  readonly signals?: readonly Deno.Signal[];
  /** The clock, ms (tests). Default `performance.now`. */
  readonly now?: () => number;
}

/**
 * Listens to the stop signals while a command runs: `stopped` resolves with the first one; repeats within the
 * window are ignored; a second Ctrl-C after the window calls `onForce`. Dispose it (`using`) to remove the
 * listeners; keep it until the drain is over, so that repeats arriving during the drain are still absorbed.
 *
 * @example
 * ```ts ignore
 * using signals = new StopSignals(logger);
 * const sig = await signals.stopped;
 * logger.info(`Stopping (${sig})`);
 * await agent.stop(); // a repeated SIGINT or SIGTERM here changes nothing; a second Ctrl-C exits 130
 * ```
 */
export class StopSignals implements Disposable {
  /** Resolves with the first stop signal. */
  readonly stopped: Promise<Deno.Signal>;
  readonly #listeners: [Deno.Signal, () => void][] = [];

  /**
   * @param log where the repeats (debug) and a forced exit (warn) are told
   * @param options window (default 1000 ms), force handler (default: log + exit 130), signals (default
   *   SIGINT, SIGTERM, SIGHUP)
   */
  constructor(log: Logger, options: StopSignalsOptions = {}) {
    const decision = new StopDecision(options.windowMs ?? DEFAULT_WINDOW_MS);
    const now = options.now ?? (() => performance.now());
    const onForce = options.onForce ?? ((sig: Deno.Signal) => {
      safely(() => log.warn(`Second ${describe(sig)}: exiting at once; points not yet written are lost`));
      Deno.exit(EXIT_FORCED);
    });
    const { promise, resolve } = Promise.withResolvers<Deno.Signal>();
    this.stopped = promise;
    for (const sig of options.signals ?? STOP_SIGNALS) {
      const listener = () => {
        const verdict = decision.receive(sig, now());
        if (verdict === "stop") resolve(sig);
        else if (verdict === "force") onForce(sig);
        else safely(() => log.debug(`${sig} again: already stopping`));
      };
      Deno.addSignalListener(sig, listener);
      this.#listeners.push([sig, listener]);
    }
  }

  /** Removes the listeners. */
  [Symbol.dispose](): void {
    for (const [sig, listener] of this.#listeners.splice(0)) {
      try {
        Deno.removeSignalListener(sig, listener);
      } catch {
        // already removed
      }
    }
  }
}

/** `Ctrl-C (SIGINT)` for SIGINT, the name otherwise. */
function describe(sig: Deno.Signal): string {
  return sig === "SIGINT" ? "Ctrl-C (SIGINT)" : sig;
}

/** Runs `fn`, ignoring what it throws: a log line must never break a stop (stderr gone after a SIGHUP). */
function safely(fn: () => void): void {
  try {
    fn();
  } catch {
    // nowhere to tell it
  }
}

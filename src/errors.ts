/**
 * The error hierarchy. Programming errors use the built-in classes (TypeError, RangeError); conditions a
 * user or a caller can act on are {@linkcode AlumetError}s, which the CLI prints as one line.
 *
 * @module
 */

/** Base class of the errors a user can act on; the CLI prints `message` alone, with no stack trace. */
export class AlumetError extends Error {
  override name = "AlumetError";
  /** Process exit code the CLI uses for this error. */
  readonly exitCode: number = 1;
}

/** What is wrong in a configuration, and where. */
export interface ConfigProblem {
  /** The file (or `"--config-override"`, `"defaults"`) the value came from. */
  readonly source: string;
  /** Dotted key, e.g. `plugins.csv.output_path`. Empty for the whole file. */
  readonly key: string;
  /** What was expected there. */
  readonly expected: string;
  /** A near miss ("did you mean …") or the fix, if one is known. */
  readonly suggestion?: string | undefined;
}

/**
 * A bad configuration value: names the file, the key, what was expected and, for near misses, a suggestion.
 *
 * @example
 * ```ts
 * import { ConfigError } from "./errors.ts";
 * import assert from "node:assert/strict";
 * const e = new ConfigError({ source: "a.toml", key: "plugins.csv.outptu_path", expected: "a known key",
 *   suggestion: 'did you mean "output_path"?' });
 * assert.equal(e.message, 'Invalid config in a.toml: plugins.csv.outptu_path: expected a known key; did you mean "output_path"?');
 * ```
 */
export class ConfigError extends AlumetError {
  override name = "ConfigError";
  override readonly exitCode = 2;
  readonly problem: ConfigProblem;
  constructor(problem: ConfigProblem, options?: ErrorOptions) {
    const where = problem.key === "" ? problem.source : `${problem.source}: ${problem.key}`;
    const hint = problem.suggestion ? `; ${problem.suggestion}` : "";
    super(`Invalid config in ${where}: expected ${problem.expected}${hint}`, options);
    this.problem = problem;
  }
}

/** Lifecycle phases in which a plugin can fail. */
export type PluginPhase = "load" | "init" | "start" | "preStart" | "postStart" | "stop" | "dispose";

/** A plugin failed in a phase of its lifecycle. */
export class PluginError extends AlumetError {
  override name = "PluginError";
  readonly plugin: string;
  readonly phase: PluginPhase;
  /** The cause's exit code when it is an {@linkcode AlumetError} (a `ConfigError` thrown by `init`: 2), else 1. */
  override readonly exitCode: number;
  constructor(plugin: string, phase: PluginPhase, cause: unknown) {
    super(`Plugin "${plugin}" failed in ${phase}: ${messageOf(cause)}`, { cause });
    this.plugin = plugin;
    this.phase = phase;
    this.exitCode = cause instanceof AlumetError ? cause.exitCode : 1;
  }
}

/** A command-line usage error (unknown flag, missing argument). */
export class UsageError extends AlumetError {
  override name = "UsageError";
  override readonly exitCode = 2;
}

/**
 * Thrown by a source's `poll`, a transform or an output's `write` for a transient failure: the error is
 * logged and the element goes on (an output retries the same batch with a back-off first).
 */
export class RetryableError extends AlumetError {
  override name = "RetryableError";
}

/**
 * Thrown by a source's `poll` to stop that source normally (it has nothing more to measure, e.g. its process
 * is gone). Not logged as an error.
 */
export class NormalStop extends AlumetError {
  override name = "NormalStop";
}

/**
 * The message of anything thrown, without its stack, followed by its causes (`error.cause`) when they add
 * something: Deno's `fetch` throws a bare "fetch failed" and keeps the reason (refused, TLS, DNS) in `cause`.
 * The "error sending request for url (…): " that Deno puts before a cause is left out (the caller names the
 * URL).
 *
 * @example
 * ```ts
 * import { messageOf } from "./errors.ts";
 * import assert from "node:assert/strict";
 * const refused = new TypeError("fetch failed", {
 *   cause: new Error("error sending request for url (http://127.0.0.1:9/): client error (Connect): tcp connect error: Connection refused (os error 111)"),
 * });
 * assert.equal(
 *   messageOf(refused),
 *   "fetch failed: client error (Connect): tcp connect error: Connection refused (os error 111)",
 * );
 * assert.equal(messageOf(new Error("a", { cause: new Error("a") })), "a");
 * assert.equal(messageOf(42), "42");
 * ```
 */
export function messageOf(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  let message = e.message;
  let cause: unknown = e.cause;
  for (let depth = 0; depth < 4 && cause !== undefined && cause !== null; depth++) {
    const text = (cause instanceof Error ? cause.message : String(cause))
      .replace(/^error sending request for url \([^)]*\): /, "");
    if (text !== "" && !message.includes(text)) message += `: ${text}`;
    cause = cause instanceof Error ? cause.cause : undefined;
  }
  return message;
}

/**
 * Edit distance counting insertions, deletions, substitutions and swaps of two adjacent letters (optimal
 * string alignment), for "did you mean" suggestions on short identifiers.
 *
 * @example
 * ```ts
 * import { editDistance } from "./errors.ts";
 * import assert from "node:assert/strict";
 * assert.equal(editDistance("outptu_path", "output_path"), 1);
 * assert.equal(editDistance("cvs", "csv"), 1);
 * ```
 */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d = new Array<number>(rows * cols);
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(
        d[(i - 1) * cols + j]! + 1,
        d[i * cols + j - 1]! + 1,
        d[(i - 1) * cols + j - 1]! + cost,
      );
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        v = Math.min(v, d[(i - 2) * cols + j - 2]! + 1);
      }
      d[i * cols + j] = v;
    }
  }
  return d[rows * cols - 1]!;
}

/** The closest candidate to `word`, if it is close enough to be a likely typo. */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) [best, bestD] = [c, d];
  }
  const limit = Math.max(1, Math.floor(word.length / 3));
  return bestD <= limit ? best : undefined;
}

/**
 * A small leveled logger writing one line per message to stderr.
 *
 * @module
 */

/** Log levels, from quietest to loudest. */
export const LOG_LEVELS = ["off", "error", "warn", "info", "debug", "trace"] as const;

/** A log level. */
export type LogLevel = typeof LOG_LEVELS[number];

/** Where log lines go; replaceable in tests. */
export type LogSink = (level: Exclude<LogLevel, "off">, scope: string, message: string) => void;

const encoder = new TextEncoder();

const stderrSink: LogSink = (level, scope, message) => {
  const line = `${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${scope}: ${message}\n`;
  try {
    Deno.stderr.writeSync(encoder.encode(line));
  } catch {
    // stderr closed: nothing sensible to do.
  }
};

let threshold = LOG_LEVELS.indexOf("info");
let sink: LogSink = stderrSink;

/** Sets the global level. Throws a RangeError for an unknown name. */
export function setLogLevel(level: string): void {
  const i = LOG_LEVELS.indexOf(level as LogLevel);
  if (i < 0) throw new RangeError(`Unknown log level "${level}": use one of ${LOG_LEVELS.join(", ")}`);
  threshold = i;
}

/** The current global level. */
export function logLevel(): LogLevel {
  return LOG_LEVELS[threshold]!;
}

/** Replaces where lines go (tests); returns the previous sink. */
export function setLogSink(next: LogSink): LogSink {
  const prev = sink;
  sink = next;
  return prev;
}

/** A logger bound to a scope (a plugin, an element, `agent`). */
export class Logger {
  readonly scope: string;
  constructor(scope: string) {
    this.scope = scope;
  }
  /** True when `level` would be written. */
  enabled(level: Exclude<LogLevel, "off">): boolean {
    return LOG_LEVELS.indexOf(level) <= threshold;
  }
  error(message: string): void {
    if (threshold >= 1) sink("error", this.scope, message);
  }
  warn(message: string): void {
    if (threshold >= 2) sink("warn", this.scope, message);
  }
  info(message: string): void {
    if (threshold >= 3) sink("info", this.scope, message);
  }
  debug(message: string): void {
    if (threshold >= 4) sink("debug", this.scope, message);
  }
  trace(message: string): void {
    if (threshold >= 5) sink("trace", this.scope, message);
  }
  /** A logger for a sub-scope, e.g. `csv/out`. */
  child(name: string): Logger {
    return new Logger(`${this.scope}/${name}`);
  }
}

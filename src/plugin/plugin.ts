/**
 * The plugin contract: metadata, lifecycle, and the contexts each phase receives.
 *
 * Lifecycle, in order, for every enabled plugin:
 * 1. **metadata**: `name`, `version`, `configSchema` (and its defaults) are read; nothing runs.
 * 2. **init(config)**: once per agent, with the config validated against `configSchema` (defaults merged).
 * 3. **start(ctx)**: create metrics, add sources, transforms and outputs. Nothing is running yet.
 * 4. **preStart(ctx)**: every metric of every plugin is known; subscribe to events here.
 * 5. the pipeline runs; **postStart(ctx)**: a control handle is available.
 * 6. **stop()**: called after the plugin's elements have stopped and drained. A stopped plugin may be started
 *    again: `start`, `preStart` and `postStart` run again, `init` does not.
 * 7. **[Symbol.asyncDispose]()**: once, when the agent ends; release native resources. Must be idempotent.
 *
 * Guarantees: no two lifecycle calls of one agent overlap; plugins are called in the order of the config.
 * A failing `init`, `start`, `preStart` or `postStart` aborts start-up with the plugin's name and cause (the
 * plugins already started are stopped); a failing `stop` is reported and the other plugins still stop.
 *
 * @module
 */
import type { Schema, StandardSchemaV1 } from "./_schema.ts";
import type { Batch } from "../model/batch.ts";
import type { Metric, MetricId, MetricRegistry, MetricSpec, ValueType } from "../model/metrics.ts";
import type { MetricDefinitions, MetricIds } from "../model/metric_set.ts";
import type { Timestamp } from "../model/timestamp.ts";
import type { EventBus } from "./events.ts";
import type { ControlHandle } from "../pipeline/control.ts";
import type { ElementState } from "../pipeline/source.ts";
import type { Logger } from "../log.ts";

/** A plugin's configuration table, as TOML gives it. */
export type ConfigTable = Record<string, unknown>;

/**
 * What the agent knows of a plugin before it runs: its name, version, default config, schema, and `init`.
 *
 * @typeParam C the validated config `init` receives (the output of `configSchema`).
 */
export interface PluginMetadata<C = ConfigTable> {
  /** Unique name; the TOML key `[plugins.<name>]`. */
  readonly name: string;
  /** Semantic version `x.y.z`. */
  readonly version: string;
  /** One line for `plugins list`. */
  readonly description?: string;
  /**
   * The default configuration, as it is written in TOML (snake_case keys, durations as strings).
   * `config regen` writes it; it is merged under the user's values before validation. Optional: without it,
   * the defaults declared in `configSchema` (`.prefault(v)`, `.default(v)`) are used. {@linkcode definePlugin}
   * derives it from the schema.
   */
  defaultConfig?(): ConfigTable | undefined;
  /**
   * Validates and converts the TOML table (unknown keys are errors: use `z.strictObject`). One of ours, or any
   * Standard Schema (zod, valibot…: `~standard`) whose `validate` is synchronous. Validation runs once, before
   * `init`, never per batch.
   */
  readonly configSchema?: Schema<C> | StandardSchemaV1<unknown, C>;
  /**
   * For outputs that write a file: the config key that `--output-file PATH` sets (e.g. `output_path`).
   */
  readonly outputFileKey?: string;
  /** Creates the plugin from its validated config. Called once per agent. */
  init(config: C): Plugin | Promise<Plugin>;
  /**
   * For `alumet doctor`: can this plugin work on this machine with this config, and if not, why and the fix.
   * It must not start anything; it may open and close files.
   */
  diagnose?(config: C): readonly Diagnosis[] | Promise<readonly Diagnosis[]>;
}

/** One check of `alumet doctor`. */
export interface Diagnosis {
  /** What was checked, e.g. `/proc/stat readable`. */
  readonly check: string;
  readonly ok: boolean;
  /** What was found. */
  readonly detail: string;
  /** What to do when it fails. */
  readonly fix?: string;
}

/** A plugin instance: the lifecycle methods after `init`. */
export interface Plugin {
  /**
   * True when the plugin must see an `exec` program before its first instruction (to arm counters on it):
   * `exec` then starts the program stopped, publishes "start consumer measurement", and only then lets it run.
   * It costs a shell's start-up (a few ms), so plugins that do not need it leave it unset.
   */
  readonly armsBeforeExec?: boolean;
  /** Creates metrics and adds the plugin's pipeline elements. */
  start(ctx: StartContext): void | Promise<void>;
  /** Every metric is known; subscribe to events. */
  preStart?(ctx: PreStartContext): void | Promise<void>;
  /** The pipeline runs; `ctx.control` is available. */
  postStart?(ctx: PostStartContext): void | Promise<void>;
  /** The plugin's elements have stopped and drained; release what `start` took. */
  stop?(): void | Promise<void>;
  /** Last chance to free native resources; called once when the agent ends. */
  [Symbol.asyncDispose]?(): Promise<void>;
}

/**
 * A managed source: the pipeline calls `poll` on its trigger, with the time taken just before the call.
 * `poll` pushes points into `batch` (whose default timestamp is already set). It may throw a
 * `RetryableError` (logged, goes on), a `NormalStop` (the source ends quietly), or anything else (the source
 * stops, the rest of the pipeline goes on).
 */
export interface Source {
  poll(batch: Batch, timestamp: Timestamp): void | Promise<void>;
  /** Called when the source is paused: forget state such as the previous counter value. */
  reset?(): void;
  /** Called once when the source stops; release files and counters. */
  close?(): void | Promise<void>;
}

/**
 * A source described by a module and a serialisable config, so that it can be created off the main thread.
 * The module exports a function (default name `createSource`) taking the config and a
 * {@linkcode SourceContext}, and returning a `Source`.
 */
export interface SourceModule {
  readonly module: string | URL;
  readonly export?: string;
  readonly config: unknown;
  /**
   * True for a source whose `poll` may block for milliseconds (a vendor library call such as NVML's): it then
   * runs in a Worker of its own, whatever its period, so that it never stalls the other sources.
   */
  readonly blocking?: boolean;
}

/** A log in a source's name (`source/<plugin>/<name>`). */
export interface SourceLog {
  error(message: string): void;
  warn(message: string): void;
  info(message: string): void;
  debug(message: string): void;
}

/**
 * What a module source's `createSource(config, context)` is given besides its config, wherever it runs (the
 * sampling Worker, a Worker of its own, or the main thread): a log in the source's name, for what is worth
 * saying once without failing a poll (a counter that never moves, a fallback taken). Not for every poll: from
 * a Worker, each call is a message to the main thread, whatever the log level. A factory that takes one
 * argument ignores it.
 */
export interface SourceContext {
  readonly log: SourceLog;
}

/** When a managed source is polled and flushed. */
export interface Trigger {
  /** Time between polls, in ms, or a humantime string (`"1s"`, `"10ms"`). */
  readonly pollInterval: number | string;
  /**
   * Time between flushes into the pipeline; default: equal to `pollInterval`, except under 10 ms where it is
   * 100 ms (a batch per poll would cost more to hand over than the poll).
   */
  readonly flushInterval?: number | string;
}

/** A transform, applied in plugin order to every batch, in place. Returning a batch replaces it. */
export interface Transform {
  apply(batch: Batch, ctx: ElementContext): void | Batch | Promise<void | Batch>;
  /**
   * Called once at shutdown, after the last batch (like `close` of sources and outputs). A batch it returns
   * (what the transform still held: windows still open, intervals still pending) goes on through the
   * transforms after it, then to the outputs.
   */
  close?(): void | Batch | Promise<void | Batch>;
  /** @deprecated renamed {@linkcode Transform.close}; still called when `close` is absent. */
  finish?(): void | Promise<void>;
}

/**
 * An output. `write` receives a batch shared with the other outputs: read it, do not change it. Throw a
 * `RetryableError` for a transient failure (the batch is retried with back-off, then counted as lost);
 * anything else stops this output and the others go on.
 */
export interface Output {
  /**
   * Writes the batch. No room for now (ENOSPC, EDQUOT, EAGAIN): throw an `OutputBlockedError` after undoing
   * what you wrote of the batch, or keep the unwritten tail so that the next call, with the same batch, writes
   * only that: the output is paused and the same batch retried until it goes out, so the retry must duplicate
   * nothing. A bare ENOSPC/EDQUOT/EAGAIN error promises nothing: the batch is counted as lost, not retried (a
   * retry could write part of it twice), and the next batches are tried after a back-off.
   */
  write(batch: Batch, ctx: ElementContext): void | Promise<void>;
  /** Called once after the last write (drain done); flush and close files or connections. */
  close?(): void | Promise<void>;
  /**
   * Where the data went, for people: a file path, a URL (`alumet-output.csv`, `http://127.0.0.1:9091/metrics`).
   * `exec` prints it in its summary.
   */
  describe?(): string;
  /**
   * Points this output lost on its own after `write` accepted them (a network output's journal that was full
   * and dropped its oldest data, a batch the backend rejected), since the start. The pipeline adds them to
   * the output's `droppedPoints`, so that they count in `alumet_dropped_points` and `Agent.losses()`.
   */
  lostPoints?(): number;
}

/** What an output does when its queue is full. */
export type FullPolicy = "block" | "drop-oldest";

/** How an output's queue behaves. */
export interface OutputOptions {
  /** Queue capacity, in batches. Default 64. */
  readonly queue?: number;
  /** Default `block`: a full queue holds the sources back. `drop-oldest` drops and counts the loss. */
  readonly whenFull?: FullPolicy;
}

/** What transforms and outputs see of the agent. */
export interface ElementContext {
  /** The metric with this id. */
  metric(id: MetricId): Metric;
}

/** A running or pending source of this plugin, as {@linkcode PhaseContext.addSource} returns it. */
export interface SourceHandle {
  /** The source's name within its plugin. */
  readonly name: string;
  /** `source/<plugin>/<name>`, as the control handle and the logs name it. */
  readonly fullName: string;
  /**
   * Resolves once the source is in the pipeline; rejects when it could not be added (a name already taken, a
   * module that failed to load, a pipeline that is stopping). Awaiting it is optional.
   */
  readonly ready: Promise<void>;
  /** `pending` until it is added, then `running`, `paused` or `stopped`. */
  readonly state: ElementState | "pending";
  /** Polls it now, and waits for the poll. */
  trigger(): Promise<void>;
  /** Sends what it buffered now. */
  flush(): Promise<void>;
  /** Pauses it: it flushes, then forgets its previous values (`reset`). */
  pause(): Promise<void>;
  /** Resumes it. */
  resume(): Promise<void>;
  /** Stops it after a last flush; its name can then be used again. */
  stop(): Promise<void>;
  /** Changes its poll period (`"10ms"`, or ms as a number). */
  setPollInterval(interval: number | string): void;
}

/** What a task does each time it runs; the signal aborts when the task stops. */
export type TaskFn = (signal: AbortSignal) => void | Promise<void>;

/** When a task runs. */
export interface TaskOptions {
  /** Time between the end of a run and the start of the next, in ms or a humantime string. */
  readonly interval: number | string;
}

/** A task of this plugin, as {@linkcode PhaseContext.addTask} returns it. */
export interface TaskHandle {
  readonly name: string;
  /** Runs it now (after the run in progress, if any), and waits for that run. */
  runNow(): Promise<void>;
  /** Stops it; resolves once a run in progress has ended. */
  stop(): Promise<void>;
}

/** Options of a source added by a plugin. */
export interface SourceOptions {
  /** Start paused. Default false. */
  readonly paused?: boolean;
}

/** Services every phase gets. */
export interface PhaseContext {
  /** This plugin's name. */
  readonly plugin: string;
  /** The agent's event bus. */
  readonly events: EventBus;
  /** A logger that names the plugin. */
  readonly log: Logger;
  /**
   * Adds a managed source of this plugin, polled on a trigger: in `start`, before the pipeline runs; later
   * (in `postStart`, in an event listener, in a task), to the running pipeline. The handle controls it.
   */
  addSource(
    name: string,
    source: Source | SourceModule,
    trigger: Trigger,
    options?: SourceOptions,
  ): SourceHandle;
  /**
   * Adds a task: control work off the data path (discovery of processes or cgroups, refreshing a list of
   * devices). It runs first when the pipeline starts (every plugin has subscribed to events by then; the agent
   * waits for these first runs before `postStart`), then `interval` after the end of each run; runs never
   * overlap; a failing run is logged and the task goes on. Tasks stop before the pipeline drains. A task added
   * once the pipeline runs starts at once.
   */
  addTask(name: string, fn: TaskFn, options: TaskOptions): TaskHandle;
}

/** What `start` may do. */
export interface StartContext extends PhaseContext {
  /** Creates (or, when identical, reuses) a metric. */
  createMetric<T extends ValueType>(spec: MetricSpec<T>): MetricId<T>;
  /** Creates the metrics of a {@linkcode defineMetrics} set and returns their typed ids, by key. */
  createMetrics<D extends MetricDefinitions>(definitions: D): MetricIds<D>;
  /**
   * Adds an autonomous source: the plugin produces its own stream of batches. The factory receives a signal
   * that aborts at shutdown; the stream should then close (after enqueuing what it still has).
   */
  addAutonomousSource(name: string, stream: (signal: AbortSignal) => ReadableStream<Batch>): void;
  /** Adds a transform; transforms run in plugin order, then in the order added. */
  addTransform(name: string, transform: Transform | TransformStream<Batch, Batch>): void;
  /** Adds an output with its own bounded queue. */
  addOutput(name: string, output: Output | WritableStream<Batch>, options?: OutputOptions): void;
}

/** What `preStart` may do. */
export interface PreStartContext extends PhaseContext {
  /** Every metric registered by every plugin. */
  readonly metrics: MetricRegistry;
}

/** What `postStart` may do. */
export interface PostStartContext extends PreStartContext {
  /** Controls the whole running pipeline (every plugin's elements; prefer the handles for your own). */
  readonly control: ControlHandle;
}

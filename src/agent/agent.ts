/**
 * The agent: runs the plugin lifecycle around a pipeline. The CLI uses it, and so can `deno run` scripts.
 *
 * @module
 */
import { AlumetError, messageOf, PluginError, type PluginPhase } from "../errors.ts";
import { Logger } from "../log.ts";
import { MetricRegistry } from "../model/metrics.ts";
import { registerMetrics } from "../model/metric_set.ts";
import { EventBus } from "../plugin/events.ts";
import type {
  ConfigTable,
  PhaseContext,
  Plugin,
  PluginMetadata,
  PostStartContext,
  PreStartContext,
  StartContext,
} from "../plugin/plugin.ts";
import type { ControlHandle } from "../pipeline/control.ts";
import { Pipeline } from "../pipeline/pipeline.ts";
import { sourceHandle } from "../pipeline/handles.ts";
import { Task } from "../pipeline/task.ts";
import type { LatenessHistogram } from "../pipeline/lateness.ts";
import { validateSection } from "./config.ts";

/** A plugin to run: its metadata alone (default config), or with a config table. */
export type PluginEntry =
  // deno-lint-ignore no-explicit-any
  | PluginMetadata<any>
  // deno-lint-ignore no-explicit-any
  | { readonly plugin: PluginMetadata<any>; readonly config?: ConfigTable };

/** Options of an agent. */
export interface AgentOptions {
  /** The plugins, in start order (which is also the transform order). */
  readonly plugins: readonly PluginEntry[];
  /** Where the configs came from, for messages. Default `"code"`. */
  readonly configSource?: string;
  /** Batches buffered between sources and transforms. Default 64. */
  readonly sourceChannelSize?: number;
  /** Period of the self-monitoring source, ms. Default 1000. */
  readonly selfInterval?: number;
}

/** The sources `start` added, which it waits for before going on (only while `start` runs). */
interface Pending {
  open: boolean;
  readonly list: Promise<void>[];
}

interface Loaded {
  // deno-lint-ignore no-explicit-any
  readonly meta: PluginMetadata<any>;
  readonly table: ConfigTable;
  readonly log: Logger;
  instance?: Plugin;
  started: boolean;
  disposed: boolean;
  /** The plugin's tasks of the current run. */
  tasks: Task[];
}

/**
 * Runs plugins through their lifecycle: `init` once, then `start`, `preStart`, pipeline start, `postStart`;
 * `stop` drains the pipeline and stops the plugins; `start` may be called again after `stop`. Disposing
 * (`await using`) stops if needed, then disposes every plugin once.
 *
 * @example
 * ```ts
 * import { Agent, definePlugin, Batch, unit } from "../../mod.ts";
 * import assert from "node:assert/strict";
 * const seen: number[] = [];
 * const demo = definePlugin({
 *   name: "demo",
 *   start(ctx) {
 *     const m = ctx.createMetric({ name: "answer", unit: unit("1"), valueType: "u64" });
 *     ctx.addSource("in", { poll: (b: Batch) => b.push(m, 42) }, { pollInterval: "1h" });
 *     ctx.addOutput("out", { write: (b: Batch) => { for (const p of b) seen.push(Number(p.value)); } });
 *   },
 * });
 * {
 *   await using agent = new Agent({ plugins: [demo] });
 *   await agent.start();
 *   await agent.control.triggerNow();
 * }
 * assert.deepEqual(seen, [42]);
 * ```
 */
export class Agent implements AsyncDisposable {
  /** The event bus plugins publish to and subscribe on. */
  readonly events: EventBus = new EventBus();
  readonly #plugins: Loaded[];
  readonly #options: AgentOptions;
  readonly #log = new Logger("agent");
  #registry = new MetricRegistry();
  #pipeline: Pipeline | undefined;
  #state: "idle" | "starting" | "running" | "stopping" | "disposed" = "idle";
  #starting: Promise<void> | undefined;
  #stopping: Promise<PluginError[]> | undefined;
  #disposing: Promise<void> | undefined;
  #stopRequested: { promise: Promise<void>; resolve: () => void } = Promise.withResolvers<void>();

  constructor(options: AgentOptions) {
    this.#options = options;
    const names = new Set<string>();
    this.#plugins = options.plugins.map((entry) => {
      const meta = "plugin" in entry ? entry.plugin : entry;
      const table = "plugin" in entry ? entry.config ?? {} : {};
      if (names.has(meta.name)) throw new AlumetError(`Plugin "${meta.name}" is listed twice`);
      names.add(meta.name);
      return { meta, table, log: new Logger(meta.name), started: false, disposed: false, tasks: [] };
    });
  }

  /** True when an initialised plugin wants `exec` programs started stopped (see `Plugin.armsBeforeExec`). */
  get armsBeforeExec(): boolean {
    return this.#plugins.some((p) => p.instance?.armsBeforeExec === true);
  }

  /** The metrics of the current (or last) run. */
  get metrics(): MetricRegistry {
    return this.#registry;
  }

  /** `idle`, `starting`, `running`, `stopping` or `disposed`. */
  get state(): string {
    return this.#state;
  }

  /** The names of the plugins, in order. */
  get pluginNames(): string[] {
    return this.#plugins.map((p) => p.meta.name);
  }

  /** Controls the running pipeline. Throws when the agent is not running. */
  get control(): ControlHandle {
    if (this.#pipeline === undefined || this.#state !== "running") {
      throw new Error(`The agent is ${this.#state}: there is no running pipeline to control`);
    }
    return this.#pipeline.control;
  }

  /** Statistics of the running pipeline's sources and outputs. */
  stats(): ReturnType<Pipeline["stats"]> | undefined {
    return this.#pipeline?.stats();
  }

  /**
   * The points the current (or last) run lost. Outputs: dropped from a full `drop-oldest` queue, failed
   * writes, an output that failed or stopped with points queued. Sources: points polled that never reached the
   * pipeline (a sampling Worker that failed or was terminated, stuck, before sending them); a source cut off in
   * the middle of a poll (one that never returned) lost an unknown number more: its `unknown` is true, and so
   * is the whole loss's. Read it after `stop()` to report a run's loss; what lost nothing is not listed.
   *
   * @returns `{ output: "output/<plugin>/<name>", points }` per output that lost points,
   *   `{ source: "source/<plugin>/<name>", points, unknown }` per source, the total of the points known lost,
   *   and whether more may have been lost
   */
  losses(): {
    total: number;
    byOutput: { output: string; points: number }[];
    bySource: { source: string; points: number; unknown: boolean }[];
    unknown: boolean;
  } {
    const stats = this.#pipeline?.stats();
    const byOutput: { output: string; points: number }[] = [];
    for (const [output, s] of stats?.outputs ?? []) {
      if (s.droppedPoints > 0) byOutput.push({ output, points: s.droppedPoints });
    }
    const bySource: { source: string; points: number; unknown: boolean }[] = [];
    for (const [source, s] of stats?.sources ?? []) {
      const points = s.lostPoints ?? 0;
      const unknown = s.lossUnknown ?? false;
      if (points > 0 || unknown) bySource.push({ source, points, unknown });
    }
    const total = byOutput.reduce((t, o) => t + o.points, 0) + bySource.reduce((t, o) => t + o.points, 0);
    return { total, byOutput, bySource, unknown: bySource.some((s) => s.unknown) };
  }

  /** Where each output sends its data (`Output.describe`), for summaries; empty before the first start. */
  outputs(): { name: string; description: string }[] {
    return this.#pipeline?.describeOutputs() ?? [];
  }

  /** The tick-lateness histogram of a managed source (`source/plugin/name`) of the running pipeline. */
  latenessOf(name: string): LatenessHistogram | undefined {
    return this.#pipeline?.latenessOf(name);
  }

  /** Resolves when someone (a plugin, a script) asked for a shutdown through the control handle. */
  get shutdownRequested(): Promise<void> {
    return this.#stopRequested.promise;
  }

  /**
   * Initialises the plugins (first time only), starts them and the pipeline. On failure, what was started is
   * stopped again and a {@linkcode PluginError} names the plugin and the phase.
   */
  start(): Promise<void> {
    if (this.#state !== "idle") {
      return Promise.reject(new Error(`Cannot start an agent that is ${this.#state}`));
    }
    this.#state = "starting";
    this.#starting = this.#start().finally(() => (this.#starting = undefined));
    return this.#starting;
  }

  async #start(): Promise<void> {
    try {
      await this.#init();
      this.#registry = new MetricRegistry();
      const pipeline = new Pipeline(this.#registry, {
        ...(this.#options.sourceChannelSize !== undefined
          ? { sourceChannelSize: this.#options.sourceChannelSize }
          : {}),
        ...(this.#options.selfInterval !== undefined ? { selfInterval: this.#options.selfInterval } : {}),
        onShutdownRequest: () => this.#stopRequested.resolve(),
      });
      this.#pipeline = pipeline;
      for (const p of this.#plugins) {
        await this.#phase(p, "start", async () => {
          const pending: Pending = { open: true, list: [] };
          try {
            await p.instance!.start(this.#startContext(p, pipeline, pending));
          } finally {
            pending.open = false; // sources added later (a kept context) are not start's to wait for
            await Promise.all(pending.list);
          }
        });
        p.started = true;
      }
      for (const p of this.#plugins) {
        await this.#phase(p, "preStart", () => p.instance!.preStart?.(this.#preContext(p, pipeline)));
      }
      pipeline.start();
      this.#state = "running";
      // Tasks run a first time before postStart: what exists is discovered before the measured program starts.
      await Promise.all(this.#plugins.flatMap((p) => p.tasks.map((t) => t.start())));
      for (const p of this.#plugins) {
        await this.#phase(p, "postStart", () => p.instance!.postStart?.(this.#postContext(p, pipeline)));
      }
      this.#log.debug(`Started with plugins: ${this.pluginNames.join(", ") || "(none)"}`);
    } catch (e) {
      await this.#stop();
      throw e;
    }
  }

  /** Initialises the plugins not initialised yet: `init` runs once per plugin, even if a start failed. */
  async #init(): Promise<void> {
    const source = this.#options.configSource ?? "code";
    for (const p of this.#plugins) {
      if (p.instance !== undefined) continue;
      const config = validateSection(
        p.meta,
        { name: p.meta.name, enabled: true, table: p.table },
        source,
      );
      await this.#phase(p, "init", async () => {
        p.instance = await p.meta.init(config);
      });
    }
  }

  async #phase(p: Loaded, phase: PluginPhase, fn: () => unknown): Promise<void> {
    try {
      await fn();
    } catch (e) {
      if (e instanceof PluginError) throw e;
      throw new PluginError(p.meta.name, phase, e);
    }
  }

  /**
   * Stops the pipeline (draining every point to the outputs), then calls `stop` on every started plugin; a
   * failing `stop` is logged and the others still stop. Resolves with those failures. Called while the agent
   * starts, it waits for the start to end first; called while it stops, it waits for that stop.
   */
  async stop(): Promise<PluginError[]> {
    if (this.#starting) await this.#starting.catch(() => {});
    if (this.#stopping) return await this.#stopping;
    if (this.#state !== "running") return [];
    return await this.#stop();
  }

  #stop(): Promise<PluginError[]> {
    this.#stopping ??= this.#doStop().finally(() => (this.#stopping = undefined));
    return this.#stopping;
  }

  async #doStop(): Promise<PluginError[]> {
    this.#state = "stopping";
    const failures: PluginError[] = [];
    // Control work first: a discovery task must not add sources to a pipeline that drains.
    await Promise.all(this.#plugins.flatMap((p) => p.tasks.map((t) => t.stop())));
    try {
      await this.#pipeline?.stop();
    } catch (e) {
      this.#log.error(`Stopping the pipeline failed: ${messageOf(e)}`);
    }
    for (const p of this.#plugins) p.tasks = [];
    for (const p of this.#plugins) {
      if (!p.started) continue;
      p.started = false;
      try {
        await p.instance!.stop?.();
      } catch (e) {
        const err = new PluginError(p.meta.name, "stop", e);
        this.#log.error(err.message);
        failures.push(err);
      }
    }
    this.events.clear();
    this.#stopRequested = Promise.withResolvers<void>();
    this.#state = "idle";
    return failures;
  }

  /** Stops (after a start or a stop in progress), then disposes every plugin once. Idempotent. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#disposing) return await this.#disposing;
    this.#disposing = (async () => {
      await this.stop();
      this.#state = "disposed";
      for (const p of this.#plugins) {
        if (p.disposed || p.instance === undefined) continue;
        p.disposed = true;
        try {
          await p.instance[Symbol.asyncDispose]?.();
        } catch (e) {
          this.#log.error(new PluginError(p.meta.name, "dispose", e).message);
        }
      }
    })();
    return await this.#disposing;
  }

  /** What every phase gets: the plugin's name, events, logger, and its sources and tasks, scoped to it. */
  #base(p: Loaded, pipeline: Pipeline, pending?: Pending): PhaseContext {
    const name = p.meta.name;
    const current = () =>
      this.#pipeline === pipeline && (this.#state === "starting" || this.#state === "running");
    return {
      plugin: name,
      events: this.events,
      log: p.log,
      addSource: (n, source, trigger, options = {}) => {
        const added = pipeline.addManagedSource(name, n, source, trigger, options.paused ?? false);
        const handle = sourceHandle({ kind: "source", plugin: name, name: n }, added);
        // In `start`, a source given as a module is imported asynchronously: start() awaits it before going on
        // (and fails with its error). Later, a failure nobody awaits is logged rather than lost.
        if (pending?.open) pending.list.push(handle.ready);
        else added.catch((e) => p.log.warn(`Cannot add source ${handle.fullName}: ${messageOf(e)}`));
        return handle;
      },
      addTask: (n, fn, options) => {
        if (!current()) {
          throw new Error(`Cannot add task "${n}" of plugin "${name}": the agent is ${this.#state}`);
        }
        if (p.tasks.some((t) => t.name === n)) {
          throw new RangeError(`Plugin "${name}" added two tasks named "${n}"`);
        }
        const task: Task = new Task(n, fn, options.interval, p.log, () => {
          p.tasks = p.tasks.filter((t) => t !== task); // a stopped task frees its name
        });
        p.tasks.push(task);
        if (this.#state === "running") void task.start();
        return task;
      },
    };
  }

  #startContext(p: Loaded, pipeline: Pipeline, pending: Pending): StartContext {
    const name = p.meta.name;
    return {
      ...this.#base(p, pipeline, pending),
      createMetric: (spec) => this.#registry.register(name, spec),
      createMetrics: (definitions) => registerMetrics(this.#registry, name, definitions),
      addAutonomousSource: (n, factory) => pipeline.addAutonomousSource(name, n, factory),
      addTransform: (n, t) => pipeline.addTransform(name, n, t),
      addOutput: (n, o, options) => pipeline.addOutput(name, n, o, options),
    };
  }

  #preContext(p: Loaded, pipeline: Pipeline): PreStartContext {
    return { ...this.#base(p, pipeline), metrics: this.#registry };
  }

  #postContext(p: Loaded, pipeline: Pipeline): PostStartContext {
    return { ...this.#base(p, pipeline), metrics: this.#registry, control: pipeline.control };
  }
}

export { definePlugin, type SimplePluginSpec } from "../plugin/define.ts";

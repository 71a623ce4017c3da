/**
 * The measurement pipeline:
 *
 * ```
 * managed sources ─┐                                     ┌─▶ queue ─▶ output
 * autonomous ──────┼─▶ FanIn ─▶ transforms (in order) ─▶ fan-out ─▶ queue ─▶ output
 * (added at run time)┘                                   └─▶ queue ─▶ output
 * ```
 *
 * Between its own stages batches go through channels (./channel.ts) and a loop (runFlow, ./transform.ts); Web
 * Streams where a plugin hands one (an autonomous source, a `TransformStream`, a `WritableStream` output).
 *
 * Shutdown drains: sources stop and flush, the fan-in closes once every source stream has ended, transforms
 * see the last batch and `close`, every output writes its queue and closes. Every point polled before the
 * stop reaches every output still alive.
 *
 * @module
 */
import type { Batch } from "../model/batch.ts";
import type { MetricId, MetricRegistry } from "../model/metrics.ts";
import { unit } from "../model/units.ts";
import { intervalProblem, parseDuration } from "../model/duration.ts";
import { messageOf } from "../errors.ts";
import { Logger } from "../log.ts";
import type {
  ElementContext,
  Output,
  OutputOptions,
  Source,
  SourceContext,
  SourceModule,
  Transform,
  Trigger,
} from "../plugin/plugin.ts";
import type { ControlHandle, ElementInfo } from "./control.ts";
import { FanIn } from "./fan_in.ts";
import { type ElementKind, type ElementName, ElementPattern, formatName } from "./names.ts";
import { batchSink, outputFromWritable, OutputTask } from "./output.ts";
import { ManagedSource, type SourceStats, type SourceTask } from "./source.ts";
import { HOT_PERIOD_MS, Sampler } from "./sampler.ts";
import type { LatenessHistogram } from "./lateness.ts";
import { runFlow, TransformStage } from "./transform.ts";

/** How many stopped sources stay listed before the oldest are forgotten. */
export const MAX_STOPPED = 256;

/** The key, in {@linkcode Pipeline.stats}, of the summed counts of the stopped sources no longer listed. */
export const RETIRED = "source/(retired)";

/** Options of a pipeline. */
export interface PipelineOptions {
  /** Batches the fan-in buffers before sources wait (Alumet's `source_channel_size`). Default 64. */
  readonly sourceChannelSize?: number;
  /** Period of the self-monitoring source `source/alumet/self`, ms. Default 1000. */
  readonly selfInterval?: number;
  /**
   * Called when something asks for a shutdown: the control handle, or an output whose reader went away (EPIPE,
   * as when `alumet run | head` has read enough).
   */
  readonly onShutdownRequest?: () => void;
  /**
   * How long an output blocked by a full disk (ENOSPC…) keeps retrying once the stop begins, ms, before what it
   * holds is counted as lost. Default 5000.
   */
  readonly outputBlockedGraceMs?: number;
}

interface AutonomousSpec {
  readonly name: ElementName;
  readonly factory: (signal: AbortSignal) => ReadableStream<Batch>;
}

interface AutonomousRunning {
  readonly name: ElementName;
  readonly abort: AbortController;
  ended: boolean;
  /** `performance.now()` when the pending read of its stream began; undefined when no read is pending. */
  readingSince: number | undefined;
}

/** Resolves a trigger's intervals to milliseconds, with a clear error for a bad value. */
export function triggerIntervals(trigger: Trigger): { poll: number; flush: number } {
  const poll = toMs(trigger.pollInterval, "pollInterval");
  // A batch per poll at 1 kHz would cost more in hand-over (post, stream, outputs) than the polls themselves:
  // without an explicit flush interval, a hot source flushes every DEFAULT_HOT_FLUSH_MS.
  const fallback = poll < HOT_PERIOD_MS ? Math.max(poll, DEFAULT_HOT_FLUSH_MS) : poll;
  const flush = trigger.flushInterval === undefined ? fallback : toMs(trigger.flushInterval, "flushInterval");
  return { poll, flush };
}

/** Flush interval of a source polled faster than every 10 ms that does not set one, ms. */
export const DEFAULT_HOT_FLUSH_MS = 100;

function toMs(v: number | string, what: string): number {
  const ms = typeof v === "number" ? v : parseDuration(v);
  if (ms === undefined || !(ms > 0) || !Number.isFinite(ms)) {
    throw new RangeError(`Invalid ${what} ${JSON.stringify(v)}: expected a positive duration such as "1s"`);
  }
  const problem = intervalProblem(ms);
  if (problem !== undefined) {
    throw new RangeError(`Invalid ${what} ${JSON.stringify(v)}: expected ${problem}`);
  }
  return ms;
}

async function instantiate(source: Source | SourceModule, log: Logger): Promise<Source> {
  if (!("module" in source)) return source;
  const mod = await import(String(source.module));
  const create = mod[source.export ?? "createSource"];
  if (typeof create !== "function") {
    throw new TypeError(`Module ${source.module} exports no function "${source.export ?? "createSource"}"`);
  }
  return await create(source.config, { log } satisfies SourceContext);
}

/** A pipeline being assembled, then running, then stopped. It runs once. */
export class Pipeline {
  readonly #registry: MetricRegistry;
  readonly #ctx: ElementContext;
  readonly #log = new Logger("pipeline");
  readonly #options: PipelineOptions;
  readonly #sources = new Map<string, SourceTask>();
  readonly #sampler = new Sampler(new Logger("sampler"));
  /** Each blocking source runs in a Worker of its own, so that a slow call never delays another source. */
  readonly #blockingSamplers: Sampler[] = [];
  readonly #autonomousSpecs: AutonomousSpec[] = [];
  readonly #autonomous: AutonomousRunning[] = [];
  readonly #transforms: TransformStage[] = [];
  readonly #outputs = new Map<string, OutputTask>();
  readonly #pendingOutputs: { name: ElementName; output: Output; options: OutputOptions }[] = [];
  #fanIn: FanIn<Batch> | undefined;
  #flow: Promise<void> | undefined;
  #phase: "building" | "running" | "stopping" | "stopped" = "building";
  readonly #droppedMetric: MetricId<"u64">;

  constructor(registry: MetricRegistry, options: PipelineOptions = {}) {
    this.#registry = registry;
    this.#options = options;
    this.#ctx = { metric: (id) => registry.get(id) };
    this.#droppedMetric = registry.register("alumet", {
      name: "alumet_dropped_points",
      unit: unit("1"),
      valueType: "u64",
      kind: "counter",
      description: "Points an output lost (queue full with drop-oldest, failed writes), since the start",
    });
  }

  /** Controls the running pipeline. */
  readonly control: ControlHandle = {
    list: (pattern) => this.#list(pattern),
    pause: (pattern) => this.#pause(pattern),
    resume: (pattern) => this.#resume(pattern),
    stop: (pattern) => this.#stopElements(pattern),
    setPollInterval: (pattern, interval) => this.#setPollInterval(pattern, interval),
    triggerNow: (pattern) => this.#triggerNow(pattern),
    flushNow: (pattern) => this.#flushNow(pattern),
    addSource: async (name, source, trigger, options = {}) =>
      void await this.addManagedSource(
        options.plugin ?? "script",
        name,
        source,
        trigger,
        options.paused ?? false,
      ),
    shutdown: () => this.#options.onShutdownRequest?.(),
  };

  /** The context transforms and outputs receive. */
  get elementContext(): ElementContext {
    return this.#ctx;
  }

  /** `building`, `running`, `stopping` or `stopped`. */
  get phase(): string {
    return this.#phase;
  }

  readonly #reserved = new Set<string>();
  #stopped: PromiseWithResolvers<void> | undefined;
  readonly #retired: SourceStats = { polls: 0, late: 0, missed: 0, points: 0, errors: 0 };

  #checkName(kind: ElementKind, plugin: string, name: string): ElementName {
    if (!/^[\w.@:\-\[\]]+$/.test(name)) {
      throw new RangeError(
        `Invalid ${kind} name "${name}" (plugin ${plugin}): use letters, digits, "-", "_", "."`,
      );
    }
    const n: ElementName = { kind, plugin, name };
    const full = formatName(n);
    const existing = this.#sources.get(full);
    if (
      this.#reserved.has(full) || (existing !== undefined && existing.state !== "stopped") ||
      this.#outputs.has(full) || this.#names().has(full)
    ) {
      throw new RangeError(`Plugin "${plugin}" added two elements named "${full}"`);
    }
    this.#reserved.add(full);
    return n;
  }

  #names(): Set<string> {
    const s = new Set<string>();
    for (const a of this.#autonomousSpecs) s.add(formatName(a.name));
    for (const t of this.#transforms) s.add(formatName(t.name));
    for (const o of this.#pendingOutputs) s.add(formatName(o.name));
    return s;
  }

  /**
   * Adds a managed source (before start, or while running).
   *
   * @returns the running source (what a plugin's source handle controls)
   */
  async addManagedSource(
    plugin: string,
    name: string,
    source: Source | SourceModule,
    trigger: Trigger,
    paused = false,
  ): Promise<SourceTask> {
    if (this.#phase === "stopping" || this.#phase === "stopped") {
      throw new Error(`Cannot add source "${name}": the pipeline is ${this.#phase}`);
    }
    const n = this.#checkName("source", plugin, name);
    const full = formatName(n);
    let ms: SourceTask;
    try {
      const { poll, flush } = triggerIntervals(trigger);
      const log = new Logger(full);
      if ("module" in source && (poll < HOT_PERIOD_MS || source.blocking === true)) {
        let sampler = this.#sampler;
        if (source.blocking === true) {
          sampler = new Sampler(new Logger("sampler"), "alumet-blocking");
          this.#blockingSamplers.push(sampler);
        }
        ms = await sampler.add(n, source, { pollInterval: poll, flushInterval: flush, paused, log });
      } else {
        if (poll < HOT_PERIOD_MS) {
          log.warn(
            `Polled every ${poll} ms on the main thread, where timers are coarse and each wake-up is costly; ` +
              `give the source as a module ({ module, config }) to sample it in the sampling Worker`,
          );
        }
        ms = new ManagedSource(n, await instantiate(source, log), {
          pollInterval: poll,
          flushInterval: flush,
          paused,
          log,
        });
      }
    } finally {
      this.#reserved.delete(full);
    }
    if (this.#isClosing()) {
      await ms.stop();
      throw new Error(`Cannot add source "${name}": the pipeline is ${this.#phase}`);
    }
    this.#retire(full);
    this.#sources.set(full, ms);
    this.#pruneStopped();
    if (this.#phase === "running") {
      this.#fanIn!.add(full, ms.readable);
      ms.start();
    }
    return ms;
  }

  /** True once `stop()` has begun (the phase changes across awaits). */
  #isClosing(): boolean {
    return this.#phase === "stopping" || this.#phase === "stopped";
  }

  /** Forgets a stopped source, keeping its counts in the retired totals. */
  #retire(full: string): void {
    const old = this.#sources.get(full);
    if (old === undefined || old.state !== "stopped") return;
    this.#sources.delete(full);
    const r = this.#retired;
    r.polls += old.stats.polls;
    r.late += old.stats.late;
    r.missed += old.stats.missed;
    r.points += old.stats.points;
    r.errors += old.stats.errors;
    // What a retired source lost stays in Agent.losses().
    if (old.stats.lostPoints) r.lostPoints = (r.lostPoints ?? 0) + old.stats.lostPoints;
    if (old.stats.lossUnknown) r.lossUnknown = true;
  }

  /**
   * Keeps at most {@linkcode MAX_STOPPED} stopped sources listed (a watcher following short-lived processes
   * would otherwise keep one per process forever); the oldest are retired first.
   */
  #pruneStopped(): void {
    let stopped = 0;
    for (const s of this.#sources.values()) if (s.state === "stopped") stopped++;
    if (stopped <= MAX_STOPPED) return;
    for (const [full, s] of this.#sources) {
      if (stopped <= MAX_STOPPED) break;
      if (s.state === "stopped") {
        this.#retire(full);
        stopped--;
      }
    }
  }

  /** Adds an autonomous source (before start). */
  addAutonomousSource(
    plugin: string,
    name: string,
    factory: (signal: AbortSignal) => ReadableStream<Batch>,
  ): void {
    this.#assertBuilding("add an autonomous source");
    this.#autonomousSpecs.push({ name: this.#checkName("source", plugin, name), factory });
  }

  /** Adds a transform (before start). */
  addTransform(plugin: string, name: string, transform: Transform | TransformStream<Batch, Batch>): void {
    this.#assertBuilding("add a transform");
    const n = this.#checkName("transform", plugin, name);
    this.#transforms.push(new TransformStage(n, transform, new Logger(formatName(n))));
  }

  /** Adds an output (before start). */
  addOutput(
    plugin: string,
    name: string,
    output: Output | WritableStream<Batch>,
    options: OutputOptions = {},
  ): void {
    this.#assertBuilding("add an output");
    const n = this.#checkName("output", plugin, name);
    // Told apart without touching the WritableStream global (which would load Deno's streams code).
    const o = typeof (output as Output).write === "function"
      ? output as Output
      : outputFromWritable(output as WritableStream<Batch>);
    if (options.queue !== undefined && !(Number.isInteger(options.queue) && options.queue > 0)) {
      throw new RangeError(
        `Output "${formatName(n)}": queue must be a positive integer, got ${options.queue}`,
      );
    }
    this.#pendingOutputs.push({ name: n, output: o, options });
  }

  #assertBuilding(what: string): void {
    if (this.#phase !== "building") throw new Error(`Cannot ${what} once the pipeline has started`);
  }

  /** Starts every element. */
  start(): void {
    this.#assertBuilding("start the pipeline twice");
    this.#phase = "running";
    const log = this.#log;
    if (this.#pendingOutputs.length === 0) log.warn("No output is enabled: measurements go nowhere");
    for (const { name, output, options } of this.#pendingOutputs) {
      this.#outputs.set(
        formatName(name),
        new OutputTask(name, output, {
          capacity: options.queue ?? 64,
          policy: options.whenFull ?? "block",
          ctx: this.#ctx,
          log: new Logger(formatName(name)),
          onReaderGone: () => this.#options.onShutdownRequest?.(),
          blockedGraceMs: this.#options.outputBlockedGraceMs,
        }),
      );
    }
    const fanIn = new FanIn<Batch>(log, this.#options.sourceChannelSize ?? 64);
    this.#fanIn = fanIn;
    const selfName: ElementName = { kind: "source", plugin: "alumet", name: "self" };
    const self = new ManagedSource(selfName, { poll: (b) => this.#pollSelf(b) }, {
      pollInterval: this.#options.selfInterval ?? 1000,
      flushInterval: this.#options.selfInterval ?? 1000,
      log: new Logger(formatName(selfName)),
    });
    this.#sources.set(formatName(selfName), self);
    for (const [full, s] of this.#sources) fanIn.add(full, s.readable);
    for (const spec of this.#autonomousSpecs) {
      const abort = new AbortController();
      const running: AutonomousRunning = { name: spec.name, abort, ended: false, readingSince: undefined };
      this.#autonomous.push(running);
      try {
        const stream = spec.factory(abort.signal);
        fanIn.add(formatName(spec.name), endWatch(stream, running));
      } catch (e) {
        running.ended = true;
        log.error(`Autonomous source ${formatName(spec.name)} failed to start: ${messageOf(e)}`);
      }
    }
    const sink = batchSink(() => this.#outputs.values());
    this.#flow = runFlow(fanIn.readable, this.#transforms, this.#ctx, sink).catch((e) => {
      log.error(`The pipeline broke: ${messageOf(e)}`);
    });
    for (const s of this.#sources.values()) s.start();
  }

  #pollSelf(batch: Batch): void {
    for (const o of this.#outputs.values()) {
      o.syncLosses();
      if (o.stats.droppedPoints > 0) {
        batch.push(this.#droppedMetric, o.stats.droppedPoints, { attributes: o.dropAttributes });
      }
    }
  }

  /**
   * Stops the pipeline and drains it. Autonomous sources get `graceMs` to close their stream after their
   * signal aborts; then they are cancelled.
   */
  async stop(graceMs = 5000): Promise<void> {
    if (this.#phase === "building") {
      // Start-up failed after plugins added elements: release what they hold.
      this.#phase = "stopped";
      await Promise.all([...this.#sources.values()].map((s) => s.stop()));
      for (const o of this.#pendingOutputs) {
        try {
          await o.output.close?.();
        } catch (e) {
          this.#log.error(`Closing ${formatName(o.name)} failed: ${messageOf(e)}`);
        }
      }
      await this.#sampler.close();
      await Promise.all(this.#blockingSamplers.map((b) => b.close()));
      return;
    }
    if (this.#phase !== "running") {
      await this.#stopped?.promise;
      return;
    }
    this.#phase = "stopping";
    this.#stopped = Promise.withResolvers<void>();
    const fanIn = this.#fanIn!;
    fanIn.seal();
    // A paused output would hold the drain back (block) or keep its queue: every output writes to the end. One
    // blocked by a full disk keeps retrying for its grace period from now, then counts what it holds as lost
    // and lets the drain go on.
    for (const o of this.#outputs.values()) {
      o.resume();
      o.beginStop();
    }
    const self = this.#sources.get("source/alumet/self");
    await Promise.all([...this.#sources.values()].filter((s) => s !== self).map((s) => s.stop()));
    for (const a of this.#autonomous) a.abort.abort(new Error("shutdown"));
    // A source that does not close its stream is stuck only when a read of it has waited `graceMs`: one that
    // is merely not read yet (a slow output upstream of it) still drains.
    const isStuck = (a: AutonomousRunning) =>
      !a.ended && a.readingSince !== undefined && performance.now() - a.readingSince > graceMs;
    while (this.#autonomous.some((a) => !a.ended && !isStuck(a))) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const stuck = this.#autonomous.filter((a) => !a.ended);
    if (stuck.length > 0) {
      this.#log.warn(
        `Autonomous sources did not close within ${graceMs} ms of the shutdown and are cancelled: ` +
          stuck.map((a) => formatName(a.name)).join(", "),
      );
      await Promise.all(stuck.map((a) => fanIn.cancelInput(formatName(a.name))));
    }
    await self?.stop(); // last, so that it reports the losses of the drain so far
    await this.#flow;
    await Promise.all([...this.#outputs.values()].map((o) => o.done));
    await this.#sampler.close();
    await Promise.all(this.#blockingSamplers.map((b) => b.close()));
    this.#phase = "stopped";
    this.#stopped.resolve();
  }

  /** Resolves when the pipeline has stopped. */
  get finished(): Promise<void> {
    return this.#flow ?? Promise.resolve();
  }

  /**
   * Where each output sends its data, as the output describes it (`Output.describe`), in the order added.
   *
   * @returns `output/<plugin>/<name>` and its description (the plugin's name when it gives none)
   */
  describeOutputs(): { name: string; description: string }[] {
    return this.#pendingOutputs.map(({ name, output }) => {
      let description = name.plugin;
      try {
        description = output.describe?.() ?? name.plugin;
      } catch (e) {
        this.#log.debug(`${formatName(name)}: describe() failed: ${messageOf(e)}`);
      }
      return { name: formatName(name), description };
    });
  }

  /** Statistics of sources and outputs, for status lines and tests. */
  stats(): {
    sources: Map<string, SourceTask["stats"]>;
    outputs: Map<string, OutputTask["stats"]>;
  } {
    return {
      sources: new Map([
        ...[...this.#sources].map(([k, s]) => [k, s.stats] as const),
        ...(this.#retired.polls > 0 ? [[RETIRED, this.#retired] as const] : []),
      ]),
      outputs: new Map([...this.#outputs].map(([k, o]) => {
        o.syncLosses();
        return [k, o.stats] as const;
      })),
    };
  }

  /** The lateness histogram of a managed source (`source/plugin/name`), if there is one. */
  latenessOf(name: string): LatenessHistogram | undefined {
    return this.#sources.get(name)?.lateness;
  }

  // ---- ControlHandle ----

  #select<T extends { name: ElementName }>(items: Iterable<T>, pattern: string): T[] {
    const p = ElementPattern.parse(pattern);
    return [...items].filter((x) => p.matches(x.name));
  }

  #list(pattern = "*"): ElementInfo[] {
    const out: ElementInfo[] = [];
    const info = (
      n: ElementName,
      state: ElementInfo["state"],
      extra: Partial<ElementInfo> = {},
    ): ElementInfo => ({
      name: formatName(n),
      kind: n.kind,
      plugin: n.plugin,
      element: n.name,
      state,
      ...extra,
    });
    for (const s of this.#select(this.#sources.values(), pattern)) {
      out.push(info(s.name, s.state, { pollInterval: s.pollInterval }));
    }
    for (const a of this.#select(this.#autonomous, pattern)) {
      out.push(info(a.name, a.ended ? "stopped" : "running"));
    }
    for (const t of this.#select(this.#transforms, pattern)) out.push(info(t.name, t.state));
    for (const o of this.#select(this.#outputs.values(), pattern)) {
      out.push(info(o.name, o.state, { queued: o.queued }));
    }
    return out;
  }

  async #pause(pattern: string): Promise<number> {
    const s = this.#select(this.#sources.values(), pattern);
    const t = this.#select(this.#transforms, pattern).filter((x) => x.state === "running");
    const o = this.#select(this.#outputs.values(), pattern);
    await Promise.all(s.map((x) => x.pause()));
    for (const x of t) x.state = "paused";
    for (const x of o) x.pause();
    return s.length + t.length + o.length;
  }

  #resume(pattern: string): Promise<number> {
    const s = this.#select(this.#sources.values(), pattern);
    const t = this.#select(this.#transforms, pattern).filter((x) => x.state === "paused");
    const o = this.#select(this.#outputs.values(), pattern);
    for (const x of s) x.resume();
    for (const x of t) x.state = "running";
    for (const x of o) x.resume();
    return Promise.resolve(s.length + t.length + o.length);
  }

  async #stopElements(pattern: string): Promise<number> {
    const s = this.#select(this.#sources.values(), pattern);
    const a = this.#select(this.#autonomous, pattern);
    const o = this.#select(this.#outputs.values(), pattern);
    for (const x of a) x.abort.abort(new Error("stopped by control"));
    await Promise.all([...s.map((x) => x.stop()), ...o.map((x) => x.stop())]);
    return s.length + a.length + o.length;
  }

  #setPollInterval(pattern: string, interval: number | string): number {
    const ms = toMs(interval, "poll interval");
    const s = this.#select(this.#sources.values(), pattern);
    for (const x of s) x.setPollInterval(ms);
    return s.length;
  }

  async #triggerNow(pattern = "source/*"): Promise<number> {
    const s = this.#select(this.#sources.values(), pattern);
    await Promise.all(s.map((x) => x.triggerNow()));
    return s.length;
  }

  async #flushNow(pattern = "source/*"): Promise<number> {
    const s = this.#select(this.#sources.values(), pattern);
    await Promise.all(s.map((x) => x.flushNow()));
    return s.length;
  }
}

/**
 * Passes an autonomous source's chunks through, recording when it ends (closes, errors, is cancelled) and
 * since when a read of it has been pending.
 */
function endWatch<T>(stream: ReadableStream<T>, state: AutonomousRunning): ReadableStream<T> {
  const reader = stream.getReader();
  return new ReadableStream<T>({
    async pull(c) {
      state.readingSince = performance.now();
      try {
        const { value, done } = await reader.read();
        if (done) {
          state.ended = true;
          c.close();
        } else c.enqueue(value);
      } catch (e) {
        state.ended = true;
        c.error(e);
      } finally {
        state.readingSince = undefined;
      }
    },
    cancel(reason) {
      state.ended = true;
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

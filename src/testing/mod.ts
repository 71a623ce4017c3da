/**
 * The test kit: run one source, transform or output of a plugin in isolation, trigger it by hand and check
 * what it produced; plus the contract suites every source and output runs.
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { testPlugin } from "./mod.ts";
 * import { definePlugin, duration, unit, z } from "../../mod.ts";
 * const counter = definePlugin({
 *   name: "counter",
 *   config: z.strictObject({ poll_interval: duration().prefault("1s"), step: z.int().default(1) }),
 *   init: (config) => ({
 *     start(ctx) {
 *       const m = ctx.createMetric({ name: "count", unit: unit("1"), valueType: "u64" });
 *       let n = 0;
 *       ctx.addSource("count", { poll: (b) => b.push(m, n += config.step) }, { pollInterval: config.poll_interval });
 *     },
 *   }),
 * });
 * await using h = await testPlugin(counter, { step: 5 });
 * assert.equal((await h.poll("count")).valueAt(0), 5);
 * assert.equal((await h.poll("count")).valueAt(0), 10);
 * ```
 *
 * @module
 */
import assert from "node:assert/strict";
import { Batch } from "../model/batch.ts";
import { type Metric, type MetricId, MetricRegistry } from "../model/metrics.ts";
import { Consumer, Resource } from "../model/resources.ts";
import { now } from "../model/timestamp.ts";
import { unit } from "../model/units.ts";
import { NormalStop, RetryableError } from "../errors.ts";
import { Logger } from "../log.ts";
import { EventBus } from "../plugin/events.ts";
import type {
  ConfigTable,
  ElementContext,
  Output,
  OutputOptions,
  PhaseContext,
  Plugin,
  PluginMetadata,
  Source,
  SourceContext,
  SourceHandle,
  SourceModule,
  TaskFn,
  TaskOptions,
  Transform,
  Trigger,
} from "../plugin/plugin.ts";
import { registerMetrics } from "../model/metric_set.ts";
import { validatePluginConfig } from "../plugin/config.ts";
import { outputFromWritable } from "../pipeline/output.ts";
import { isBatch } from "../pipeline/transform.ts";

/** A plugin started without a pipeline: its elements are captured so a test can drive them by hand. */
export interface PluginHarness extends AsyncDisposable {
  readonly plugin: Plugin;
  readonly metrics: MetricRegistry;
  readonly events: EventBus;
  readonly context: ElementContext;
  readonly sources: ReadonlyMap<string, { source: Source; trigger: Trigger }>;
  readonly autonomous: ReadonlyMap<string, (signal: AbortSignal) => ReadableStream<Batch>>;
  readonly transforms: ReadonlyMap<string, Transform | TransformStream<Batch, Batch>>;
  readonly outputs: ReadonlyMap<string, { output: Output; options: OutputOptions }>;
  /** The plugin's tasks (they do not run by themselves: {@linkcode PluginHarness.runTask} runs one). */
  readonly tasks: ReadonlyMap<string, { fn: TaskFn; options: TaskOptions }>;
  /** Runs a task once, as the agent would on its interval. */
  runTask(name: string): Promise<void>;
  /** Polls a managed source once, as the pipeline would, and returns the batch it filled. */
  poll(source: string): Promise<Batch>;
  /**
   * Applies a transform to `batch` and returns the result (a `TransformStream` is then closed: its last
   * batches are in the result).
   */
  transform(name: string, batch: Batch): Promise<Batch>;
  /** Closes a `Transform` object as the pipeline does at shutdown, and returns the last batch it gave, if any. */
  closeTransform(name: string): Promise<Batch | undefined>;
  /** Writes `batch` to an output. */
  write(output: string, batch: Batch): Promise<void>;
  /** Calls the plugin's `stop`, then its dispose. */
  stop(): Promise<void>;
}

function one<V>(map: ReadonlyMap<string, V>, name: string, kind: string): V {
  const v = map.get(name);
  if (v === undefined) {
    throw new Error(
      `The plugin added no ${kind} named "${name}" (it has: ${[...map.keys()].join(", ") || "none"})`,
    );
  }
  return v;
}

/**
 * Validates `config` (merged over the plugin's defaults), runs `init` and `start` with a recording context,
 * then `preStart`. Elements are not running: the test drives them.
 */
export async function testPlugin<C>(
  meta: PluginMetadata<C>,
  config: ConfigTable = {},
): Promise<PluginHarness> {
  const parsed = validatePluginConfig(meta, { name: meta.name, table: config }, "test");
  const plugin = await meta.init(parsed);
  const metrics = new MetricRegistry();
  const events = new EventBus();
  const log = new Logger(meta.name);
  const sources = new Map<string, { source: Source; trigger: Trigger }>();
  const autonomous = new Map<string, (signal: AbortSignal) => ReadableStream<Batch>>();
  const transforms = new Map<string, Transform | TransformStream<Batch, Batch>>();
  const outputs = new Map<string, { output: Output; options: OutputOptions }>();
  const tasks = new Map<string, { fn: TaskFn; options: TaskOptions }>();
  const abort = new AbortController();
  const pending: Promise<void>[] = [];
  const poll = async (name: string) => {
    const { source } = one(sources, name, "source");
    const b = new Batch();
    const ts = now();
    b.timestamp = ts;
    await source.poll(b, ts);
    return b;
  };
  const base = (record?: Promise<void>[]): PhaseContext => ({
    plugin: meta.name,
    events,
    log,
    addSource: (name: string, source: Source | SourceModule, trigger: Trigger) => {
      type Entry = { source: Source; trigger: Trigger };
      let added: Promise<Entry>;
      if (sources.has(name)) added = Promise.reject(new RangeError(`Source "${name}" is already added`));
      else if ("module" in source) {
        added = import(String(source.module)).then(async (m) => {
          const context: SourceContext = { log: new Logger(`source/${meta.name}/${name}`) };
          const entry = { source: await m[source.export ?? "createSource"](source.config, context), trigger };
          sources.set(name, entry);
          return entry;
        });
      } else {
        const entry = { source, trigger };
        sources.set(name, entry);
        added = Promise.resolve(entry);
      }
      const handle = harnessHandle(name, meta.name, added, sources, poll);
      record?.push(handle.ready);
      return handle;
    },
    addTask: (name, fn, options) => {
      if (tasks.has(name)) throw new RangeError(`Plugin "${meta.name}" added two tasks named "${name}"`);
      tasks.set(name, { fn, options });
      return {
        name,
        runNow: async () => void (tasks.has(name) && await fn(abort.signal)),
        stop: () => Promise.resolve(void tasks.delete(name)),
      };
    },
  });
  await plugin.start({
    ...base(pending),
    createMetric: (spec) => metrics.register(meta.name, spec),
    createMetrics: (definitions) => registerMetrics(metrics, meta.name, definitions),
    addAutonomousSource: (name, factory) => void autonomous.set(name, factory),
    addTransform: (name, t) => void transforms.set(name, t),
    addOutput: (name, o, options = {}) =>
      void outputs.set(name, { output: o instanceof WritableStream ? outputFromWritable(o) : o, options }),
  });
  await Promise.all(pending);
  await plugin.preStart?.({ ...base(), metrics });
  const context: ElementContext = { metric: (id) => metrics.get(id) };
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    abort.abort(new Error("stopped"));
    tasks.clear();
    for (const { source } of sources.values()) await source.close?.();
    for (const { output } of outputs.values()) await output.close?.();
    await plugin.stop?.();
    await plugin[Symbol.asyncDispose]?.();
  };
  return {
    plugin,
    metrics,
    events,
    context,
    sources,
    autonomous,
    transforms,
    outputs,
    tasks,
    async runTask(name) {
      await one(tasks, name, "task").fn(abort.signal);
    },
    poll,
    async transform(name, batch) {
      const t = one(transforms, name, "transform");
      if (t instanceof TransformStream) {
        const out = ReadableStream.from([batch]).pipeThrough(t);
        const got = await Array.fromAsync(out);
        const merged = new Batch();
        for (const b of got) merged.append(b);
        return merged;
      }
      return (await t.apply(batch, context)) ?? batch;
    },
    async closeTransform(name) {
      const t = one(transforms, name, "transform");
      if (t instanceof TransformStream) {
        throw new Error(`Transform "${name}" is a TransformStream: transform() closes it`);
      }
      const last = await (t.close !== undefined ? t.close() : t.finish?.());
      return isBatch(last) ? last : undefined;
    },
    async write(name, batch) {
      await one(outputs, name, "output").output.write(batch, context);
    },
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/** A handle on a recorded source: `trigger` polls it (the batch is dropped), `stop` closes and forgets it. */
function harnessHandle(
  name: string,
  plugin: string,
  added: Promise<{ source: Source; trigger: Trigger }>,
  sources: Map<string, { source: Source; trigger: Trigger }>,
  poll: (name: string) => Promise<Batch>,
): SourceHandle {
  let entry: { source: Source; trigger: Trigger } | undefined;
  let paused = false;
  const settled = added.then((e) => void (entry = e), () => {});
  const ready = added.then(() => {});
  ready.catch(() => {});
  // Bound to the source it added, as the agent's handles: a later source with the same name is not its own.
  const mine = () => entry !== undefined && sources.get(name) === entry;
  return {
    name,
    fullName: `source/${plugin}/${name}`,
    ready,
    get state() {
      return entry === undefined ? "pending" : !mine() ? "stopped" : paused ? "paused" : "running";
    },
    trigger: async () => {
      await settled;
      if (mine() && !paused) await poll(name);
    },
    flush: () => settled,
    pause: () => settled.then(() => void (paused = mine())),
    resume: () => settled.then(() => void (paused = false)),
    stop: async () => {
      await settled;
      if (!mine()) return;
      sources.delete(name);
      await entry!.source.close?.();
    },
    setPollInterval: () => {},
  };
}

/** Checks that every point of `batch` is well formed against `metrics`; returns the number checked. */
export function checkBatch(batch: Batch, metrics: MetricRegistry): number {
  for (let i = 0; i < batch.length; i++) {
    const where = `point ${i}`;
    let m: Metric;
    try {
      m = metrics.get(batch.metricAt(i));
    } catch {
      assert.fail(`${where}: metric id ${batch.metricAt(i)} is not registered`);
    }
    const v = batch.valueAt(i);
    if (m.valueType === "u64") {
      const ok = typeof v === "bigint" ? v >= 0n : Number.isInteger(v) && v >= 0;
      assert.ok(ok, `${where} (${m.name}, u64): value ${v} is not a non-negative integer`);
    } else {
      assert.equal(typeof v, "number", `${where} (${m.name}, f64): value ${v} is not a number`);
    }
    assert.ok(batch.timestampAt(i) > 0n, `${where} (${m.name}): no timestamp`);
    const r = batch.resourceAt(i);
    const c = batch.consumerAt(i);
    assert.ok(
      typeof r.kind === "string" && r.kind !== "" && typeof r.id === "string",
      `${where}: bad resource`,
    );
    assert.ok(
      typeof c.kind === "string" && c.kind !== "" && typeof c.id === "string",
      `${where}: bad consumer`,
    );
    for (const [k, a] of Object.entries(batch.attributesAt(i))) {
      assert.ok(/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(k), `${where}: attribute key "${k}" is not snake_case`);
      assert.ok(
        ["string", "number", "boolean", "bigint"].includes(typeof a),
        `${where}: attribute ${k} has a bad type`,
      );
    }
  }
  return batch.length;
}

/** What a source contract run needs. */
export interface SourceContractOptions<C> {
  readonly plugin: PluginMetadata<C>;
  readonly config?: ConfigTable;
  readonly source: string;
  /** Polls to run. Default 3. */
  readonly polls?: number;
  /** Minimum points a poll after the first must produce (sources that diff produce nothing at first). Default 0. */
  readonly minPoints?: number;
}

/**
 * The contract every managed source honours: it polls repeatedly (failing only with RetryableError or
 * NormalStop), produces well-formed points of registered metrics, survives `reset`, and closes idempotently.
 */
export async function runSourceContract<C>(
  t: Deno.TestContext,
  options: SourceContractOptions<C>,
): Promise<void> {
  await using h = await testPlugin(options.plugin, options.config);
  const { source, trigger } = one(h.sources, options.source, "source");
  await t.step("has a valid trigger", () => {
    const p = trigger.pollInterval;
    assert.ok(typeof p === "number" ? p > 0 : p.length > 0, "pollInterval is empty");
  });
  await t.step("polls repeatedly with well-formed points", async () => {
    for (let i = 0; i < (options.polls ?? 3); i++) {
      try {
        const b = await h.poll(options.source);
        checkBatch(b, h.metrics);
        if (i > 0) assert.ok(b.length >= (options.minPoints ?? 0), `poll ${i} produced ${b.length} points`);
      } catch (e) {
        if (!(e instanceof RetryableError || e instanceof NormalStop)) throw e;
      }
    }
  });
  await t.step("survives reset", async () => {
    source.reset?.();
    checkBatch(await h.poll(options.source), h.metrics);
  });
  await t.step("closes idempotently", async () => {
    await source.close?.();
    await source.close?.();
  });
}

/** What an output contract run needs. */
export interface OutputContractOptions<C> {
  readonly plugin: PluginMetadata<C>;
  readonly config?: ConfigTable;
  readonly output: string;
}

/** A batch with every kind of value, resource, consumer and attribute, for output contracts. */
export function sampleBatch(metrics: MetricRegistry): Batch {
  const f = metrics.register("contract", {
    name: "contract_energy",
    unit: unit("J", "milli"),
    valueType: "f64",
    kind: "delta",
  });
  const u = metrics.register("contract", {
    name: "contract_count",
    unit: unit("1"),
    valueType: "u64",
    kind: "counter",
  });
  const b = new Batch();
  b.timestamp = now();
  b.push(f, 1.5);
  b.push(f, 0.1, {
    resource: Resource.cpuPackage(0),
    attributes: { domain: "package", socket: 0, exact: true },
  });
  b.push(u, 2n ** 60n + 1n, { consumer: Consumer.process(1), attributes: { big: 2n ** 64n - 1n } });
  b.push(u, 7, { resource: Resource.custom("disk", "sda;1"), consumer: Consumer.cgroup('/a b/"c"') });
  b.push(f as MetricId<"f64">, -0.25, { attributes: { note: 'semi;colon, comma="quoted"\nline' } });
  return b;
}

/**
 * The contract every output honours: it writes an empty batch and a batch of every kind of point, leaves the
 * batch unchanged (outputs share it), and closes idempotently.
 */
export async function runOutputContract<C>(
  t: Deno.TestContext,
  options: OutputContractOptions<C>,
): Promise<void> {
  await using h = await testPlugin(options.plugin, options.config);
  const { output } = one(h.outputs, options.output, "output");
  await t.step("writes an empty batch", async () => {
    await output.write(new Batch(), h.context);
  });
  await t.step("writes every kind of point and leaves the batch unchanged", async () => {
    const b = sampleBatch(h.metrics);
    const before = [...b].map((p) => ({ ...p }));
    await output.write(b, h.context);
    assert.deepEqual([...b].map((p) => ({ ...p })), before);
  });
  await t.step("closes idempotently", async () => {
    await output.close?.();
    await output.close?.();
  });
}

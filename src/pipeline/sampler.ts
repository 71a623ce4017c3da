/**
 * The pipeline's side of the sampling Worker: one Worker per pipeline, started on first use, running every
 * hot source (period under {@linkcode HOT_PERIOD_MS}) given as a module; each appears to the pipeline as a
 * {@linkcode SourceTask} like any managed source.
 *
 * @module
 */
import { projectModule } from "../plugin/module_url.ts";
import { type Batch, BatchDecoder } from "../model/batch.ts";
import type { Logger } from "../log.ts";
import type { SourceModule } from "../plugin/plugin.ts";
import { Channel, type ChannelController } from "./channel.ts";
import { LatenessHistogram } from "./lateness.ts";
import { type ElementName, formatName } from "./names.ts";
import { Counts, type SamplerCommand, type SamplerMessage } from "./sampler_protocol.ts";
import type { ElementState, SourceStats, SourceTask } from "./source.ts";
import { STOP_GRACE_MS } from "./task.ts";

/** Sources polled more often than this (ms) run in the sampling Worker when they are given as a module. */
export const HOT_PERIOD_MS = 10;

/** Periods up to this (ms) get the realtime scheduling class when realtime is asked for and allowed. */
export const REALTIME_UP_TO_MS = 3;

let realtimeConfigured = false;

/**
 * Asks for realtime scheduling (`SCHED_FIFO`, priority 55, as Alumet) of the sampling Worker, for periods of
 * 0.5 to {@linkcode REALTIME_UP_TO_MS} ms: the config's top-level `sampling_realtime`. Off by default: a
 * realtime sampling thread preempts the measured program (measured here at 1 kHz: +7 % slowdown of a
 * CPU-bound program against +1.3 % at normal priority, with ≥ 99.85 % of the ticks on time either way on an
 * unloaded machine). Applies to the Workers started afterwards (a pipeline starts its Worker with its first
 * hot source).
 */
export function setSamplingRealtime(on: boolean): void {
  realtimeConfigured = on;
}

/**
 * Whether a sampling Worker started now asks for realtime: `ALUMET_NO_REALTIME=1` says no, whatever the
 * rest; else `ALUMET_REALTIME=1` says yes; else {@linkcode setSamplingRealtime} (default no). Asking is not
 * getting it: the Worker needs root or `CAP_SYS_NICE`, and says so in one debug line when it is refused.
 *
 * @example
 * ```ts
 * import { samplingRealtime, setSamplingRealtime } from "./sampler.ts";
 * import assert from "node:assert/strict";
 * if (Deno.env.get("ALUMET_NO_REALTIME") === undefined && Deno.env.get("ALUMET_REALTIME") === undefined) {
 *   assert.equal(samplingRealtime(), false);
 *   setSamplingRealtime(true);
 *   assert.equal(samplingRealtime(), true);
 *   setSamplingRealtime(false);
 * }
 * ```
 */
export function samplingRealtime(): boolean {
  if (envFlag("ALUMET_NO_REALTIME")) return false;
  if (envFlag("ALUMET_REALTIME")) return true;
  return realtimeConfigured;
}

/** Whether the environment variable `name` is `1`; false when it cannot be read (no --allow-env). */
function envFlag(name: string): boolean {
  try {
    return Deno.env.get(name) === "1";
  } catch {
    return false;
  }
}

type Command = Exclude<SamplerCommand, { type: "init" }>;
type Payload<C> = C extends { seq: number } ? Omit<C, "seq"> : never;

/** Owns the Worker and routes its messages to the sources. */
export class Sampler {
  #worker: Worker | undefined;
  #control = new Int32Array(new SharedArrayBuffer(4));
  #seq = 0;
  #nextId = 1;
  #pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  #sources = new Map<number, WorkerSource>();
  #log: Logger;
  readonly #name: string;
  /** The Worker failed and was terminated (the next `add` starts a fresh one). */
  #failed = false;

  /**
   * @param log where the Worker's failures go
   * @param name the Worker's name (`alumet-sampler` for hot sources, `alumet-blocking` for blocking ones)
   */
  constructor(log: Logger, name = "alumet-sampler") {
    this.#log = log;
    this.#name = name;
  }

  #ensure(): Worker {
    if (this.#worker) return this.#worker;
    const w = new Worker(projectModule("src/pipeline/sampler_worker.ts"), {
      type: "module",
      name: this.#name,
    });
    w.onmessage = (e: MessageEvent<SamplerMessage>) => this.#receive(e.data);
    w.onerror = (e) => {
      e.preventDefault();
      this.#fail(w, `failed: ${e.message}`);
    };
    // A fresh control word: a terminated Worker may have left commands counted in the old one.
    this.#control = new Int32Array(new SharedArrayBuffer(4));
    w.postMessage(
      {
        type: "init",
        control: this.#control.buffer as SharedArrayBuffer,
        realtime: samplingRealtime(),
      } satisfies SamplerCommand,
    );
    this.#worker = w;
    this.#failed = false;
    return w;
  }

  /**
   * The Worker `w` cannot go on: one line says why, it is terminated, its sources end (keeping the points they
   * had sent, and counting in their `lostPoints` those they had polled but not sent) and the requests waiting
   * for it fail.
   */
  #fail(w: Worker, why: string): void {
    if (w !== this.#worker) return;
    this.#worker = undefined;
    this.#failed = true;
    w.terminate();
    const names = [...this.#sources.values()].map((s) => formatName(s.name));
    this.#log.error(
      `The sampling Worker ${why}; ${
        names.length === 0 ? "its sources stopped" : `stopped ${names.join(", ")}`
      }; the points they had sent are kept, those they had not are counted as lost`,
    );
    const error = new Error(`The sampling Worker ${why}`);
    for (const p of this.#pending.values()) p.reject(error);
    this.#pending.clear();
    for (const s of [...this.#sources.values()]) s.end(false);
  }

  /**
   * Sends a command and waits for the Worker's acknowledgement. With `timeoutMs`, a Worker that has not
   * answered by then (a poll or close that never returns, a Worker that closed itself) is taken as failed and
   * terminated (see {@linkcode STOP_GRACE_MS}).
   */
  request(cmd: Payload<Command>, timeoutMs?: number): Promise<void> {
    const w = this.#ensure();
    const seq = ++this.#seq;
    const done = new Promise<void>((resolve, reject) => this.#pending.set(seq, { resolve, reject }));
    w.postMessage({ ...cmd, seq } as Command);
    Atomics.add(this.#control, 0, 1);
    Atomics.notify(this.#control, 0);
    if (timeoutMs === undefined) return done;
    const timer = setTimeout(() => {
      this.#fail(
        w,
        `did not answer "${cmd.type}" within ${
          timeoutMs / 1000
        } s (a poll or close that never returns?) and was terminated`,
      );
    }, timeoutMs);
    return done.finally(() => clearTimeout(timer));
  }

  /** Whether the Worker has failed and was terminated (until a new source starts a fresh one). */
  get failed(): boolean {
    return this.#failed;
  }

  #receive(msg: SamplerMessage): void {
    if (msg.type === "ack") {
      const p = this.#pending.get(msg.seq);
      this.#pending.delete(msg.seq);
      if (msg.error !== undefined) p?.reject(new Error(msg.error));
      else p?.resolve();
      return;
    }
    if (msg.type === "fatal") {
      if (this.#worker !== undefined) this.#fail(this.#worker, `failed: ${msg.message}`);
      return;
    }
    if (msg.type === "log" && msg.id === 0) {
      // About the Worker itself, or a source of it that the Worker cannot tell: name the candidates.
      const names = [...this.#sources.values()].map((s) => formatName(s.name));
      const which = msg.level === "error" && names.length > 0 ? ` [sources: ${names.join(", ")}]` : "";
      this.#log[msg.level](msg.message + which);
      return;
    }
    const s = this.#sources.get(msg.id);
    if (s === undefined) return;
    if (msg.type === "log") {
      s.log[msg.level](msg.message);
      return;
    }
    s.receive(msg);
  }

  /** Creates a source in the Worker. Rejects when its module cannot be loaded there. */
  async add(
    name: ElementName,
    spec: SourceModule,
    options: { pollInterval: number; flushInterval: number; paused: boolean; log: Logger },
  ): Promise<WorkerSource> {
    const id = this.#nextId++;
    const s = new WorkerSource(this, id, name, options.pollInterval, options.paused, options.log);
    this.#sources.set(id, s);
    try {
      await this.request({
        type: "add",
        id,
        module: String(spec.module),
        export: spec.export ?? "createSource",
        config: spec.config,
        pollMs: options.pollInterval,
        flushMs: options.flushInterval,
        paused: options.paused,
        counts: s.counts,
      });
    } catch (e) {
      this.#sources.delete(id);
      throw e;
    }
    return s;
  }

  /** Forgets a source that has ended. */
  forget(id: number): void {
    this.#sources.delete(id);
  }

  /** Stops the Worker (its sources must have been stopped); at most {@linkcode STOP_GRACE_MS} of waiting. */
  async close(): Promise<void> {
    if (!this.#worker) return;
    try {
      await this.request({ type: "exit" }, STOP_GRACE_MS);
    } catch {
      // the Worker failed (and was terminated), or was gone already
    }
    this.#worker?.terminate();
    this.#worker = undefined;
  }
}

/** A hot source polled in the sampling Worker. */
export class WorkerSource implements SourceTask {
  readonly name: ElementName;
  readonly readable: Channel<Batch>;
  readonly stats: SourceStats = { polls: 0, late: 0, missed: 0, points: 0, errors: 0 };
  readonly lateness: LatenessHistogram = new LatenessHistogram();
  readonly thread = "worker" as const;
  readonly log: Logger;
  #sampler: Sampler;
  #id: number;
  #state: ElementState;
  #period: number;
  #controller!: ChannelController<Batch>;
  #closed = false;
  #ended = Promise.withResolvers<void>();
  /** Decodes the Worker's batches, giving resources, consumers and attribute sets a stable identity. */
  readonly #decoder = new BatchDecoder();
  /** Shared with the Worker, which counts there what this source produced: see {@linkcode Counts}. */
  readonly counts: SharedArrayBuffer = new SharedArrayBuffer(2 * Float64Array.BYTES_PER_ELEMENT);

  constructor(sampler: Sampler, id: number, name: ElementName, period: number, paused: boolean, log: Logger) {
    this.#sampler = sampler;
    this.#id = id;
    this.name = name;
    this.#period = period;
    this.#state = paused ? "paused" : "running";
    this.log = log;
    // The Worker cannot wait for a slow pipeline without missing its ticks: its batches are always taken,
    // and backpressure applies downstream (the fan-in reads this stream only when there is room).
    this.readable = new Channel<Batch>({
      start: (c) => {
        this.#controller = c;
      },
      cancel: () => {
        // Cancelled (the flow broke): nothing more is sent through it; the Worker's source is stopped.
        this.#closed = true;
        void this.stop().catch(() => {});
      },
    });
  }

  get state(): ElementState {
    return this.#state;
  }

  get pollInterval(): number {
    return this.#period;
  }

  start(): void {
    // The Worker starts sampling as soon as the source is added.
  }

  /** A message from the Worker for this source. */
  receive(msg: Extract<SamplerMessage, { type: "batch" }>): void {
    const s = this.stats;
    s.polls = msg.stats.polls;
    s.late = msg.stats.late;
    s.missed = msg.stats.missed;
    s.errors = msg.stats.errors;
    this.lateness.merge(msg.lateness);
    if (msg.batch !== undefined && !this.#closed) {
      const b = this.#decoder.decode(msg.batch);
      s.points += b.length;
      this.#controller.enqueue(b);
    }
    if (msg.final) this.end(true);
  }

  /**
   * The source has ended: `drained` when the Worker posted its last batch (stopped, failed alone), else cut off
   * (the Worker failed or was terminated). Closes the stream; a cut-off source counts the points it had polled
   * but not sent in `stats.lostPoints`, and sets `stats.lossUnknown` if it was cut off in a poll.
   */
  end(drained: boolean): void {
    if (!drained && !this.#closed) this.#countLoss();
    this.#state = "stopped";
    if (!this.#closed) {
      this.#closed = true;
      this.#controller.close();
    }
    this.#sampler.forget(this.#id);
    this.#ended.resolve();
  }

  /**
   * The source was cut off: what the Worker counted it produced and it did not send is lost. Read when asked,
   * not now: a Worker just told to terminate may still finish a poll.
   */
  #countLoss(): void {
    const counts = new Float64Array(this.counts);
    const stats = this.stats;
    Object.defineProperties(stats, {
      lostPoints: {
        get: () => Math.max(0, counts[Counts.PRODUCED]! - stats.points),
        enumerable: true,
        configurable: true,
      },
      lossUnknown: { get: () => counts[Counts.POLLING] !== 0, enumerable: true, configurable: true },
    });
  }

  async triggerNow(): Promise<void> {
    if (this.#state !== "stopped") await this.#sampler.request({ type: "trigger", id: this.#id });
  }

  async flushNow(): Promise<void> {
    if (this.#state !== "stopped") await this.#sampler.request({ type: "flush", id: this.#id });
  }

  setPollInterval(ms: number): void {
    if (!(ms > 0)) throw new RangeError(`Poll interval must be positive, got ${ms} ms`);
    this.#period = ms;
    void this.#sampler.request({ type: "period", id: this.#id, pollMs: ms }).catch(() => {});
  }

  async pause(): Promise<void> {
    if (this.#state !== "running") return;
    this.#state = "paused";
    await this.#sampler.request({ type: "pause", id: this.#id });
  }

  resume(): void {
    if (this.#state !== "paused") return;
    this.#state = "running";
    void this.#sampler.request({ type: "resume", id: this.#id }).catch(() => {});
  }

  /**
   * Stops the source in the Worker; resolves once its last batch is in the stream and the stream closed. A
   * Worker that does not answer within {@linkcode STOP_GRACE_MS} (or two poll intervals) is terminated.
   */
  async stop(): Promise<void> {
    if (this.#state !== "stopped") {
      this.#state = "stopped";
      try {
        await this.#sampler.request(
          { type: "stop", id: this.#id },
          Math.max(STOP_GRACE_MS, 2 * this.#period),
        );
      } catch {
        this.end(false);
      }
    }
    await this.#ended.promise;
  }
}

/**
 * The transform chain: plugin transforms applied in order. When every transform is a `Transform` object (every
 * built-in plugin's), {@linkcode runFlow} applies them in a plain loop from the fan-in to the outputs, with no
 * Web Stream; when a plugin hands a `TransformStream`, the chain is piped as streams, consecutive `Transform`
 * objects fused into one TransformStream.
 *
 * A transform that throws a `RetryableError` leaves that batch as it was and goes on; any other error disables
 * that transform (logged once) and the batches flow on through the others.
 *
 * @module
 */
import type { Batch } from "../model/batch.ts";
import { messageOf, RetryableError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { ElementContext, Transform } from "../plugin/plugin.ts";
import type { ReadableLike } from "./channel.ts";
import type { ElementName } from "./names.ts";
import type { ElementState } from "./source.ts";

/** A transform registered in the pipeline. */
export class TransformStage {
  readonly name: ElementName;
  readonly element: Transform | TransformStream<Batch, Batch>;
  state: ElementState = "running";
  readonly log: Logger;
  constructor(name: ElementName, element: Transform | TransformStream<Batch, Batch>, log: Logger) {
    this.name = name;
    this.element = element;
    this.log = log;
  }

  fail(e: unknown): void {
    this.state = "stopped";
    this.log.error(`Disabled after an error; batches now flow past it: ${messageOf(e)}`);
    this.log.debug(e instanceof Error && e.stack ? e.stack : String(e));
  }
}

/** A plugin's `TransformStream` (told apart without touching the global, which would load Deno's streams code). */
function isStream(x: Transform | TransformStream<Batch, Batch>): x is TransformStream<Batch, Batch> {
  return typeof (x as Transform).apply !== "function";
}

/** Applies `Transform` objects to `batch` in order: a failing one is skipped (retryable) or disabled. */
async function applyAll(
  stages: readonly TransformStage[],
  batch: Batch,
  ctx: ElementContext,
): Promise<Batch> {
  let b = batch;
  for (const s of stages) {
    if (s.state !== "running") continue;
    try {
      const r = await (s.element as Transform).apply(b, ctx);
      if (r !== undefined) b = r;
    } catch (e) {
      if (e instanceof RetryableError) s.log.warn(`Skipped one batch: ${e.message}`);
      else s.fail(e);
    }
  }
  return b;
}

/**
 * A batch, told apart by shape rather than class: a plugin that imports the framework from another URL has its
 * own copy of `Batch` (as `apply`'s results, which are not checked either).
 */
export function isBatch(x: unknown): x is Batch {
  return typeof x === "object" && x !== null && typeof (x as Batch).length === "number" &&
    typeof (x as Batch).metricAt === "function";
}

/**
 * Closes `Transform` objects in order once no batch will come (`close`, or the older `finish`): a batch that
 * one returns goes through the stages after it, then to `deliver`; one from a stage disabled by an error is
 * dropped (its state may be inconsistent), as a failed `TransformStream` is not flushed.
 */
async function closeAll(
  stages: readonly TransformStage[],
  ctx: ElementContext,
  deliver: (batch: Batch) => void | Promise<void>,
): Promise<void> {
  for (const [i, s] of stages.entries()) {
    let last: void | Batch = undefined;
    try {
      const t = s.element as Transform;
      last = await (t.close !== undefined ? t.close() : t.finish?.());
    } catch (e) {
      s.log.error(`close() failed: ${messageOf(e)}`);
    }
    if (s.state === "stopped") continue;
    if (isBatch(last) && last.length > 0) {
      await deliver(await applyAll(stages.slice(i + 1), last, ctx));
    }
  }
}

/** Applies consecutive `Transform` objects in one TransformStream (one stream hop for all of them). */
function fused(stages: TransformStage[], ctx: ElementContext): TransformStream<Batch, Batch> {
  return new TransformStream<Batch, Batch>({
    async transform(batch, controller) {
      controller.enqueue(await applyAll(stages, batch, ctx));
    },
    flush: (controller) => closeAll(stages, ctx, (b) => controller.enqueue(b)),
  });
}

/** Wraps a plugin's TransformStream so that its failure disables it instead of breaking the pipeline. */
function guarded(stage: TransformStage): TransformStream<Batch, Batch> {
  const inner = stage.element as TransformStream<Batch, Batch>;
  const writer = inner.writable.getWriter();
  const reader = inner.readable.getReader();
  let pump: Promise<void> = Promise.resolve();
  let forwarded = 0; // batches the inner stream has given back
  return new TransformStream<Batch, Batch>({
    start(controller) {
      pump = (async () => {
        try {
          for (;;) {
            const { value, done } = await reader.read();
            if (done) return;
            forwarded++;
            controller.enqueue(value);
          }
        } catch (e) {
          if (stage.state === "running") stage.fail(e);
        }
      })();
    },
    async transform(batch, controller) {
      if (stage.state !== "running") {
        controller.enqueue(batch); // paused or failed: batches flow past it
        return;
      }
      const before = forwarded;
      try {
        await writer.write(batch);
      } catch (e) {
        if (stage.state === "running") stage.fail(e);
        // Pass the batch on, unless the stage already gave it (or its result) back before failing.
        if (forwarded === before) controller.enqueue(batch);
      }
    },
    async flush() {
      if (stage.state !== "stopped") {
        try {
          await writer.close();
        } catch (e) {
          stage.fail(e);
        }
      } else {
        reader.cancel().catch(() => {});
      }
      await pump;
    },
  });
}

/** Pipes `input` through every stage, fusing runs of `Transform` objects. */
function chainTransforms(
  input: ReadableStream<Batch>,
  stages: readonly TransformStage[],
  ctx: ElementContext,
): ReadableStream<Batch> {
  let out = input;
  let run: TransformStage[] = [];
  const flushRun = () => {
    if (run.length > 0) out = out.pipeThrough(fused(run, ctx));
    run = [];
  };
  for (const s of stages) {
    if (isStream(s.element)) {
      flushRun();
      out = out.pipeThrough(guarded(s));
    } else {
      run.push(s);
    }
  }
  flushRun();
  return out;
}

/** Where the chain delivers: the outputs' fan-out (./output.ts), as the underlying sink of a WritableStream. */
export interface BatchSink {
  write(batch: Batch): void | Promise<void>;
  close(): Promise<void>;
  abort(reason: unknown): Promise<void>;
}

/**
 * Runs the pipeline's flow: every batch of `input` through every stage, then to `sink`; resolves once `input`
 * has ended and the sink is closed, rejects when the flow broke (as `pipeTo` does: a failing read aborts the
 * sink, a failing write cancels the input). Without `TransformStream` stages, a plain loop: one batch at a
 * time, each write awaited before the next read (backpressure goes back to the fan-in and the sources).
 */
export async function runFlow(
  input: ReadableLike<Batch> & AsyncIterable<Batch>,
  stages: readonly TransformStage[],
  ctx: ElementContext,
  sink: BatchSink,
): Promise<void> {
  if (stages.some((s) => isStream(s.element))) {
    // ReadableStream.from reads the channel only when the chain asks (a high-water mark of 0).
    await chainTransforms(ReadableStream.from(input), stages, ctx).pipeTo(new WritableStream<Batch>(sink));
    return;
  }
  const reader = input.getReader();
  try {
    for (;;) {
      let r: ReadableStreamReadResult<Batch>;
      try {
        r = await reader.read();
      } catch (e) {
        await sink.abort(e);
        throw e;
      }
      if (r.done) break;
      const batch = await applyAll(stages, r.value, ctx);
      try {
        await sink.write(batch);
      } catch (e) {
        await reader.cancel(e).catch(() => {});
        throw e;
      }
    }
    await closeAll(stages, ctx, (b) => sink.write(b));
    await sink.close();
  } finally {
    reader.releaseLock();
  }
}

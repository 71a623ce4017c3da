/**
 * The transform chain: plugin transforms applied in order, fused into as few TransformStreams as possible.
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

function isStream(x: Transform | TransformStream<Batch, Batch>): x is TransformStream<Batch, Batch> {
  return x instanceof TransformStream;
}

/** Applies consecutive `Transform` objects in one TransformStream (one stream hop for all of them). */
function fused(stages: TransformStage[], ctx: ElementContext): TransformStream<Batch, Batch> {
  return new TransformStream<Batch, Batch>({
    async transform(batch, controller) {
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
      controller.enqueue(b);
    },
    async flush() {
      for (const s of stages) {
        try {
          const t = s.element as Transform;
          await (t.close !== undefined ? t.close() : t.finish?.());
        } catch (e) {
          s.log.error(`close() failed: ${messageOf(e)}`);
        }
      }
    },
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
export function chainTransforms(
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

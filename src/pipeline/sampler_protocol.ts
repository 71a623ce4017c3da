/**
 * The messages between the pipeline (`sampler.ts`) and the sampling Worker (`sampler_worker.ts`). A module of
 * its own: the Worker's module installs handlers on its global scope when it is evaluated, so the main thread
 * must never import it, not even for a constant.
 *
 * @module
 */
import type { EncodedBatch } from "../model/batch.ts";

/** A command from the pipeline. */
export type SamplerCommand =
  | {
    type: "init";
    control: SharedArrayBuffer;
    /** Whether the Worker may put itself in `SCHED_FIFO` for short periods (see `samplingRealtime`). */
    realtime?: boolean;
  }
  | {
    type: "add";
    seq: number;
    id: number;
    module: string;
    export: string;
    config: unknown;
    pollMs: number;
    flushMs: number;
    paused: boolean;
    /** A `Float64Array(2)`'s buffer: see {@linkcode Counts}. */
    counts: SharedArrayBuffer;
  }
  | { type: "stop" | "trigger" | "flush" | "pause" | "resume"; seq: number; id: number }
  | { type: "period"; seq: number; id: number; pollMs: number }
  | { type: "exit"; seq: number };

/** A message to the pipeline. */
export type SamplerMessage =
  | { type: "ack"; seq: number; error?: string }
  | {
    type: "batch";
    id: number;
    /** The source's points since the last flush, encoded by its `BatchEncoder`. */
    batch: EncodedBatch | undefined;
    stats: { polls: number; late: number; missed: number; errors: number };
    lateness: Uint32Array;
    final: boolean;
  }
  | { type: "log"; id: number; level: "warn" | "error" | "info" | "debug"; message: string }
  | { type: "fatal"; message: string };

/**
 * Indexes in a source's `counts` (a `Float64Array` on a SharedArrayBuffer the pipeline reads at any time): the
 * points the source produced in all (posted or still in its batch), as of its last poll; and 1 while a poll is
 * under way (what that poll pushed is not counted yet), else 0. Plain writes: one aligned 8-byte store each,
 * no allocation, no fence on the hot path; the pipeline reads them only once the Worker is gone or stuck.
 */
export const Counts = { PRODUCED: 0, POLLING: 1 } as const;

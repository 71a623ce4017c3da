/**
 * The `kernel` source: CPU time per state, context switches, forks and runnable/blocked processes from
 * `/proc/stat`.
 *
 * @module
 */
import type { Batch, PointContext } from "../../src/model/batch.ts";
import { Resource } from "../../src/model/resources.ts";
import type { Source } from "../../src/plugin/plugin.ts";
import { ProcFile } from "../../src/ffi/proc_file.ts";
import type { KernelMetrics } from "./metrics.ts";
import { ascii, ByteScanner, rescan } from "../../src/sys/scan.ts";
import { auxvInfo } from "../../src/sys/system.ts";

/** The `cpu_state` values, in Alumet's order. `iowait` is left out, as in Alumet: the kernel calls it unreliable. */
export const CPU_STATES = [
  "user",
  "nice",
  "system",
  "idle",
  "irq",
  "softirq",
  "steal",
  "guest",
  "guest_nice",
] as const;

/** Column of each state of {@linkcode CPU_STATES} in a `cpu` line (column 4 is iowait). */
const COLUMNS = [0, 1, 2, 3, 5, 6, 7, 8, 9];
const N_COLUMNS = 10;

const STATE_ATTRIBUTES = CPU_STATES.map((s) => Object.freeze({ cpu_state: s }));

const CPU = ascii("cpu");
const CTXT = ascii("ctxt ");
const PROCESSES = ascii("processes ");
const PROCS_RUNNING = ascii("procs_running ");
const PROCS_BLOCKED = ascii("procs_blocked ");

/** Where a `cpu` line's counters are kept between polls. */
interface CpuSlot {
  /** Counters of the previous poll (ticks), -1 for a column the kernel does not print. */
  readonly prev: Float64Array;
  /** Whether `prev` holds a poll's values. */
  valid: boolean;
  /** Whether the line was seen in the current poll. */
  seen: boolean;
  /** One point context per state, created once. */
  readonly contexts: readonly PointContext[];
}

function newSlot(resource: Resource): CpuSlot {
  return {
    prev: new Float64Array(N_COLUMNS),
    valid: false,
    seen: false,
    contexts: STATE_ATTRIBUTES.map((attributes) => Object.freeze({ resource, attributes })),
  };
}

/** Options of a {@linkcode KernelSource}. */
export interface KernelSourceOptions {
  /** The procfs root. Default `/proc`. */
  readonly root?: string;
  /** Clock ticks per second of `/proc/stat` (USER_HZ). Default: the system's (100 on Linux). */
  readonly userHz?: number;
}

/**
 * Reads `<root>/stat` (kept open) and pushes, per poll:
 * - `kernel_cpu_time` (ms) per `cpu_state`, for the local machine (`cpu` line) and each `cpu_core` (`cpuN`);
 * - `kernel_context_switches` and `kernel_new_forks`;
 * - `kernel_n_procs_running` and `kernel_n_procs_blocked` (gauges).
 *
 * The counters are differences since the previous poll, so the first poll (and the first after `reset`)
 * only sets the baseline and pushes the gauges. A CPU that comes online starts with a baseline too; a counter
 * that goes down (idle can, on some kernels) gives 0 for that interval. Ticks are USER_HZ (100 per second
 * on Linux), converted to milliseconds.
 */
export class KernelSource implements Source {
  readonly path: string;
  readonly #metrics: KernelMetrics;
  readonly #msPerTick: number;
  #file: ProcFile | undefined;
  readonly #scan = new ByteScanner();
  readonly #total = newSlot(Resource.localMachine());
  readonly #cores: (CpuSlot | undefined)[] = [];
  readonly #now = new Float64Array(N_COLUMNS);
  #prevCtxt = -1;
  #prevForks = -1;

  /** Opens `<root>/stat`; throws when it cannot be opened. */
  constructor(metrics: KernelMetrics, options: KernelSourceOptions = {}) {
    this.#metrics = metrics;
    this.path = `${options.root ?? "/proc"}/stat`;
    this.#msPerTick = 1000 / (options.userHz ?? auxvInfo().userHz);
    this.#file = ProcFile.open(this.path, 16384);
  }

  poll(batch: Batch): void {
    const s = rescan(this.#scan, this.#file, this.path);
    const m = this.#metrics;
    for (const core of this.#cores) if (core !== undefined) core.seen = false;
    while (!s.done) {
      if (s.matches(CPU)) {
        s.pos += 3;
        let slot: CpuSlot;
        if (s.peek() === 32) slot = this.#total;
        else {
          const id = s.uint();
          if (id < 0) {
            s.skipLine();
            continue;
          }
          slot = this.#cores[id] ??= newSlot(Resource.cpuCore(id));
        }
        this.#cpuLine(batch, slot);
      } else if (s.matches(CTXT)) {
        s.pos += CTXT.length;
        const v = s.uint();
        if (v >= 0) {
          if (this.#prevCtxt >= 0) batch.push(m.contextSwitches, Math.max(0, v - this.#prevCtxt));
          this.#prevCtxt = v;
        }
      } else if (s.matches(PROCESSES)) {
        s.pos += PROCESSES.length;
        const v = s.uint();
        if (v >= 0) {
          if (this.#prevForks >= 0) batch.push(m.newForks, Math.max(0, v - this.#prevForks));
          this.#prevForks = v;
        }
      } else if (s.matches(PROCS_RUNNING)) {
        s.pos += PROCS_RUNNING.length;
        const v = s.uint();
        if (v >= 0) batch.push(m.procsRunning, v);
      } else if (s.matches(PROCS_BLOCKED)) {
        s.pos += PROCS_BLOCKED.length;
        const v = s.uint();
        if (v >= 0) batch.push(m.procsBlocked, v);
      }
      s.skipLine();
    }
    // A CPU that went offline loses its baseline: when it comes back, its first poll is a baseline again.
    for (const core of this.#cores) if (core !== undefined && !core.seen) core.valid = false;
  }

  #cpuLine(batch: Batch, slot: CpuSlot): void {
    const s = this.#scan;
    const now = this.#now;
    for (let c = 0; c < N_COLUMNS; c++) now[c] = s.uint();
    slot.seen = true;
    if (slot.valid) {
      const prev = slot.prev;
      const metric = this.#metrics.cpuTime;
      for (let i = 0; i < COLUMNS.length; i++) {
        const c = COLUMNS[i]!;
        const v = now[c]!;
        const p = prev[c]!;
        if (v < 0 || p < 0) continue; // a column this kernel does not print
        const ticks = v > p ? v - p : 0;
        batch.push(metric, Math.round(ticks * this.#msPerTick), slot.contexts[i]);
      }
    }
    slot.prev.set(now);
    slot.valid = true;
  }

  /** Forgets the previous values: the next poll is a baseline. */
  reset(): void {
    this.#total.valid = false;
    for (const core of this.#cores) if (core !== undefined) core.valid = false;
    this.#prevCtxt = -1;
    this.#prevForks = -1;
  }

  /** Closes the file. Idempotent. */
  close(): void {
    this.#file?.close();
    this.#file = undefined;
  }
}

/** Creates a {@linkcode KernelSource} from a serialisable config, for the sampling Worker (short periods). */
export function createKernelSource(
  config: { metrics: KernelMetrics; options: KernelSourceOptions },
): KernelSource {
  return new KernelSource(config.metrics, config.options);
}

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
import { CounterArray, NO_DELTA } from "../../src/model/counter.ts";
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
  /** One counter (ticks) per state of {@linkcode CPU_STATES}; a glitch that goes down gives 0. */
  readonly counters: CounterArray;
  /** Whether the line was seen in the current poll. */
  seen: boolean;
  /** One point context per state, created once. */
  readonly contexts: readonly PointContext[];
}

function newSlot(resource: Resource): CpuSlot {
  return {
    counters: new CounterArray(CPU_STATES.length, "monotonic"),
    seen: false,
    contexts: STATE_ATTRIBUTES.map((attributes) => Object.freeze({ resource, attributes })),
  };
}

/** Indexes of the single counters of `/proc/stat` in {@linkcode KernelSource}'s array. */
const CTXT_COUNTER = 0;
const FORKS_COUNTER = 1;

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
  /** Context switches and forks. */
  readonly #counters = new CounterArray(2, "monotonic");

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
        const d = v >= 0 ? this.#counters.update(CTXT_COUNTER, v) : NO_DELTA;
        if (d !== NO_DELTA) batch.push(m.contextSwitches, d);
      } else if (s.matches(PROCESSES)) {
        s.pos += PROCESSES.length;
        const v = s.uint();
        const d = v >= 0 ? this.#counters.update(FORKS_COUNTER, v) : NO_DELTA;
        if (d !== NO_DELTA) batch.push(m.newForks, d);
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
    for (const core of this.#cores) if (core !== undefined && !core.seen) core.counters.reset();
  }

  #cpuLine(batch: Batch, slot: CpuSlot): void {
    const s = this.#scan;
    const now = this.#now;
    for (let c = 0; c < N_COLUMNS; c++) now[c] = s.uint();
    slot.seen = true;
    const counters = slot.counters;
    const metric = this.#metrics.cpuTime;
    for (let i = 0; i < COLUMNS.length; i++) {
      const v = now[COLUMNS[i]!]!;
      if (v < 0) { // a column this kernel does not print: its next value is a baseline
        counters.reset(i);
        continue;
      }
      const ticks = counters.update(i, v);
      if (ticks !== NO_DELTA) batch.push(metric, Math.round(ticks * this.#msPerTick), slot.contexts[i]);
    }
  }

  /** Forgets the previous values: the next poll is a baseline. */
  reset(): void {
    this.#total.counters.reset();
    for (const core of this.#cores) if (core !== undefined) core.counters.reset();
    this.#counters.reset();
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

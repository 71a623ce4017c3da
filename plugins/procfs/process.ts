/**
 * A process source: CPU time, CPU share and memory of one process, from `/proc/<pid>/stat` and
 * `/proc/<pid>/statm` (or `smaps_rollup`).
 *
 * @module
 */
import type { Batch, PointContext } from "../../src/model/batch.ts";
import { Consumer } from "../../src/model/resources.ts";
import type { Timestamp } from "../../src/model/timestamp.ts";
import type { Source } from "../../src/plugin/plugin.ts";
import type { ProcessExit } from "../../src/plugin/events.ts";
import { ProcFile } from "../../src/ffi/proc_file.ts";
import { NormalStop } from "../../src/errors.ts";
import { Counter, NO_DELTA } from "../../src/model/counter.ts";
import type { ProcessMetrics } from "./metrics.ts";
import { ascii, ByteScanner } from "../../src/sys/scan.ts";
import { type SystemInfo, systemInfo } from "../../src/sys/system.ts";

/** How memory is read: `statm` (quick) or `smaps_rollup` (about ten times slower; adds `proportional`). */
export type MemoryMode = "quick" | "slow_but_accurate";

/**
 * Where the CPU time of the first poll is counted from:
 * - `zero`: the process started while we measure, so all its CPU time is reported (the first poll reports
 *   everything since the process started);
 * - `current`: the first poll only sets the baseline (a process that was running before).
 */
export type Baseline = "zero" | "current";

/** Options of a {@linkcode ProcessSource}. */
export interface ProcessSourceOptions {
  /** The procfs root. Default `/proc`. */
  readonly root?: string;
  /** Default `current`. */
  readonly baseline?: Baseline;
  /** Default `quick`. */
  readonly memoryMode?: MemoryMode;
  /**
   * The process is followed on an event (`exec`, `watch`): when it disappears, wait for its
   * {@linkcode ProcessSource.exited} accounting (at least one poll, up to one second) before ending. Default
   * false: end at once.
   */
  readonly awaitExit?: boolean;
  /** USER_HZ, page size and CPU count. Default: {@linkcode systemInfo} of `root`. */
  readonly system?: SystemInfo;
  /** Called once when the source closes. */
  readonly onClose?: () => void;
}

/** The final accounting of an exited process, as `processExit` gives it. */
export type FinalCpuTime = Pick<ProcessExit, "userNs" | "systemNs" | "timestamp">;

const KIND_USER = Object.freeze({ kind: "user" });
const KIND_SYSTEM = Object.freeze({ kind: "system" });
const KIND_GUEST = Object.freeze({ kind: "guest" });
const KIND_TOTAL = Object.freeze({ kind: "total" });
const KIND_RESIDENT = Object.freeze({ kind: "resident" });
const KIND_SHARED = Object.freeze({ kind: "shared" });
const KIND_VIRTUAL = Object.freeze({ kind: "virtual" });
const KIND_PROPORTIONAL = Object.freeze({ kind: "proportional" });

/** How long a process followed on an event may be gone before its exit accounting arrives, ns. */
const EXIT_GRACE_NS = 1_000_000_000n;

const RSS = ascii("Rss:");
const PSS = ascii("Pss:");
const SHARED_CLEAN = ascii("Shared_Clean:");
const SHARED_DIRTY = ascii("Shared_Dirty:");

/**
 * Measures one process. Files stay open and are re-read at each poll; bytes are parsed in place. Per poll:
 * - `memory_usage` (By) `kind` = resident, shared, virtual (and proportional with `slow_but_accurate`);
 * - `cpu_time_delta` (ns) `kind` = user, system, guest: the CPU time since the previous poll (USER_HZ ticks,
 *   100 per second on Linux, in ns);
 * - `cpu_percent` `kind` = user, system, total (= user + system): that time as a share of the whole machine,
 *   `100 × delta / elapsed / number of CPUs`, from the second poll on.
 *
 * When the process is gone (its files read as ESRCH, or empty in a fixture tree) the source ends with
 * {@linkcode NormalStop}; with `awaitExit`, only once it has been gone for a second (and at least one poll), since
 * its exit accounting may still come. After {@linkcode ProcessSource.exited}
 * the next poll pushes the remainder of user and system time (`final − already counted`), so that the sum of
 * `cpu_time_delta` equals the kernel's final accounting; the poll after that ends the source.
 *
 * @example
 * ```ts
 * import { ProcessSource } from "./process.ts";
 * import { createProcessMetrics } from "./metrics.ts";
 * import { MetricRegistry } from "../../src/model/metrics.ts";
 * import { Batch } from "../../src/model/batch.ts";
 * import assert from "node:assert/strict";
 * const registry = new MetricRegistry();
 * const metrics = createProcessMetrics((spec) => registry.register("procfs", spec));
 * using source = new ProcessSource(Deno.pid, metrics);
 * const batch = new Batch();
 * source.poll(batch, 1n);
 * assert.ok(batch.length >= 3); // memory only: the first poll sets the CPU baseline
 * ```
 */
export class ProcessSource implements Source, Disposable {
  readonly pid: number;
  readonly #metrics: ProcessMetrics;
  readonly #system: SystemInfo;
  readonly #nsPerTick: number;
  readonly #memoryMode: MemoryMode;
  readonly #scan = new ByteScanner();
  readonly #onClose: (() => void) | undefined;
  #stat: ProcFile | undefined;
  #mem: ProcFile | undefined;
  #awaitExit: boolean;
  #goneSince: Timestamp = -1n;
  #final: FinalCpuTime | undefined;
  #ended = false;
  #closed = false;
  /** CPU time (ticks) → delta since the previous poll; from zero for a process born while we measure. */
  readonly #cpuUser: Counter;
  readonly #cpuSystem: Counter;
  readonly #cpuGuest: Counter;
  /**
   * The CPU times (ticks) already accounted for, reported or skipped by a reset, for the exit remainder; -1:
   * none yet. Unlike the counters' baselines, a reset does not forget them.
   */
  #accountedUser = -1;
  #accountedSystem = -1;
  #prevTs: Timestamp = -1n;
  readonly #ctx: {
    user: PointContext;
    system: PointContext;
    guest: PointContext;
    total: PointContext;
    resident: PointContext;
    shared: PointContext;
    virtual: PointContext;
    proportional: PointContext;
  };

  /**
   * Opens `<root>/<pid>/stat` and the memory file. A process that is already gone is not an error: the
   * source then only waits for its exit accounting (with `awaitExit`) or ends at its first poll. Other
   * failures (permission denied) throw.
   */
  constructor(pid: number, metrics: ProcessMetrics, options: ProcessSourceOptions = {}) {
    this.pid = pid;
    this.#metrics = metrics;
    const root = options.root ?? "/proc";
    this.#system = options.system ?? systemInfo(root);
    this.#nsPerTick = 1e9 / this.#system.userHz;
    this.#memoryMode = options.memoryMode ?? "quick";
    this.#awaitExit = options.awaitExit ?? false;
    this.#onClose = options.onClose;
    const zero = (options.baseline ?? "current") === "zero";
    const baseline = zero ? "zero" : "next";
    this.#cpuUser = new Counter("monotonic", baseline);
    this.#cpuSystem = new Counter("monotonic", baseline);
    this.#cpuGuest = new Counter("monotonic", baseline);
    if (zero) {
      this.#accountedUser = 0;
      this.#accountedSystem = 0;
    }
    const consumer = Consumer.process(pid);
    const ctx = (attributes: Readonly<Record<string, string>>): PointContext =>
      Object.freeze({ consumer, attributes });
    this.#ctx = {
      user: ctx(KIND_USER),
      system: ctx(KIND_SYSTEM),
      guest: ctx(KIND_GUEST),
      total: ctx(KIND_TOTAL),
      resident: ctx(KIND_RESIDENT),
      shared: ctx(KIND_SHARED),
      virtual: ctx(KIND_VIRTUAL),
      proportional: ctx(KIND_PROPORTIONAL),
    };
    this.#stat = ProcFile.tryOpen(`${root}/${pid}/stat`, 1024);
    if (this.#stat !== undefined) {
      try {
        this.#mem = this.#memoryMode === "quick"
          ? ProcFile.tryOpen(`${root}/${pid}/statm`, 256)
          : ProcFile.tryOpen(`${root}/${pid}/smaps_rollup`, 2048);
      } catch (e) {
        this.#stat.close();
        throw e;
      }
    }
  }

  /** True once the source has nothing more to report. */
  get ended(): boolean {
    return this.#ended;
  }

  /** From now on, wait for {@linkcode ProcessSource.exited} when the process disappears (up to one second). */
  expectExit(): void {
    this.#awaitExit = true;
  }

  /**
   * The process has exited and its final CPU time is known (its `/proc` entry is gone): the next poll pushes
   * what has not been counted yet, then the source ends.
   */
  exited(final: FinalCpuTime): void {
    if (!this.#ended) this.#final = final;
  }

  poll(batch: Batch, timestamp: Timestamp): void {
    if (this.#ended) throw new NormalStop(`Process ${this.pid} has exited`);
    if (this.#final !== undefined) {
      this.#pushRemainder(batch, this.#final);
      this.#end();
      return;
    }
    const statLength = this.#stat?.read() ?? -1;
    const memLength = statLength > 0 ? this.#mem?.read() ?? -1 : -1;
    if (statLength <= 0 || memLength <= 0) {
      if (this.#awaitExit) {
        // The exit accounting may still come: wait at least one poll, and up to a second.
        if (this.#goneSince < 0n) this.#goneSince = timestamp;
        if (timestamp === this.#goneSince || timestamp - this.#goneSince < EXIT_GRACE_NS) return;
      }
      this.#end();
      throw new NormalStop(`Process ${this.pid} has exited`);
    }
    this.#measure(batch, timestamp, statLength, memLength);
  }

  #measure(batch: Batch, timestamp: Timestamp, statLength: number, memLength: number): void {
    const s = this.#scan.reset(this.#stat!.buffer, statLength);
    // The command name (field 2) is in parentheses and may hold spaces and ")": the fields go on after the
    // last ")".
    const paren = s.lastIndexOf(41);
    if (paren < 0) throw new Error(`Unexpected content in /proc/${this.pid}/stat: no ")"`);
    s.pos = paren + 1;
    s.skipFields(11); // state … cmajflt (fields 3 to 13)
    const user = s.uint(); // 14 utime
    const system = s.uint(); // 15 stime
    s.skipFields(7); // cutime … starttime (16 to 22)
    const vsize = s.uint(); // 23 vsize, bytes
    s.skipFields(19); // rss … delayacct_blkio_ticks (24 to 42)
    const guest = s.uint(); // 43 guest_time (-1 when absent)
    if (user < 0 || system < 0) throw new Error(`Unexpected content in /proc/${this.pid}/stat`);

    const m = this.#metrics;
    const c = this.#ctx;
    if (this.#memoryMode === "quick") {
      const page = this.#system.pageSize;
      s.reset(this.#mem!.buffer, memLength);
      const size = s.uint();
      const resident = s.uint();
      const shared = s.uint();
      batch.push(m.memoryUsage, resident * page, c.resident);
      batch.push(m.memoryUsage, shared * page, c.shared);
      batch.push(m.memoryUsage, size * page, c.virtual);
    } else {
      this.#pushRollup(batch, memLength, vsize);
    }

    // User and system time are read, reset and started together: both have a delta, or neither.
    const userTicks = this.#cpuUser.update(user);
    const systemTicks = this.#cpuSystem.update(system);
    let guestTicks = NO_DELTA;
    if (guest >= 0) guestTicks = this.#cpuGuest.update(guest);
    else this.#cpuGuest.reset(); // absent: its next value is a baseline
    if (userTicks !== NO_DELTA && systemTicks !== NO_DELTA) {
      const dUser = this.#ticksToNs(userTicks);
      const dSystem = this.#ticksToNs(systemTicks);
      batch.push(m.cpuTimeDelta, dUser, c.user);
      batch.push(m.cpuTimeDelta, dSystem, c.system);
      if (guestTicks !== NO_DELTA) batch.push(m.cpuTimeDelta, this.#ticksToNs(guestTicks), c.guest);
      if (this.#prevTs >= 0n) this.#pushPercent(batch, dUser, dSystem, Number(timestamp - this.#prevTs));
    }
    this.#accountedUser = user;
    this.#accountedSystem = system;
    this.#prevTs = timestamp;
  }

  #pushRollup(batch: Batch, length: number, vsize: number): void {
    const s = this.#scan.reset(this.#mem!.buffer, length);
    let rss = -1, pss = -1, sharedClean = -1, sharedDirty = -1;
    while (!s.done) {
      if (s.matches(RSS)) {
        s.pos += RSS.length;
        rss = s.uint();
      } else if (s.matches(PSS)) {
        s.pos += PSS.length;
        pss = s.uint();
      } else if (s.matches(SHARED_CLEAN)) {
        s.pos += SHARED_CLEAN.length;
        sharedClean = s.uint();
      } else if (s.matches(SHARED_DIRTY)) {
        s.pos += SHARED_DIRTY.length;
        sharedDirty = s.uint();
      }
      s.skipLine();
    }
    const m = this.#metrics;
    const c = this.#ctx;
    if (pss >= 0) batch.push(m.memoryUsage, pss * 1024, c.proportional);
    if (rss >= 0) batch.push(m.memoryUsage, rss * 1024, c.resident);
    if (sharedClean >= 0 && sharedDirty >= 0) {
      batch.push(m.memoryUsage, (sharedClean + sharedDirty) * 1024, c.shared);
    }
    if (vsize >= 0) batch.push(m.memoryUsage, vsize, c.virtual);
  }

  #pushPercent(batch: Batch, userNs: number, systemNs: number, elapsedNs: number): void {
    if (!(elapsedNs > 0)) return;
    const scale = 100 / elapsedNs / this.#system.nCpus;
    const m = this.#metrics;
    const c = this.#ctx;
    batch.push(m.cpuPercent, userNs * scale, c.user);
    batch.push(m.cpuPercent, systemNs * scale, c.system);
    batch.push(m.cpuPercent, (userNs + systemNs) * scale, c.total);
  }

  /**
   * The CPU time not counted yet: the final accounting minus what the polls counted. Without a baseline (a
   * process that was running before and never polled) nothing is known of what came before: nothing is pushed.
   */
  #pushRemainder(batch: Batch, final: FinalCpuTime): void {
    if (this.#accountedUser < 0) return;
    const m = this.#metrics;
    const c = this.#ctx;
    const dUser = Math.max(0, Math.round(final.userNs - this.#ticksToNs(this.#accountedUser)));
    const dSystem = Math.max(0, Math.round(final.systemNs - this.#ticksToNs(this.#accountedSystem)));
    batch.push(m.cpuTimeDelta, dUser, c.user);
    batch.push(m.cpuTimeDelta, dSystem, c.system);
    // No cpu_percent for the remainder: /proc counts in 10 ms ticks, so what it had not counted yet may have
    // been spent at any time before the last poll, and dividing it by the last interval alone overstates it
    // (seen: 50 % for `sleep 1`).
  }

  #ticksToNs(ticks: number): number {
    return Math.round(ticks * this.#nsPerTick);
  }

  #end(): void {
    this.#ended = true;
    this.#final = undefined;
    this.#closeFiles();
  }

  /** The next poll sets a new baseline; the time skipped meanwhile is still left out of the remainder. */
  reset(): void {
    this.#cpuUser.reset();
    this.#cpuSystem.reset();
    this.#cpuGuest.reset();
    this.#prevTs = -1n;
  }

  #closeFiles(): void {
    this.#stat?.close();
    this.#mem?.close();
    this.#stat = undefined;
    this.#mem = undefined;
  }

  /** Closes the files. Idempotent. */
  close(): void {
    this.#closeFiles();
    if (this.#closed) return;
    this.#closed = true;
    this.#onClose?.();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

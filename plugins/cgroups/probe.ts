/**
 * One cgroup's measurements: its files (v2 `cpu.stat`, `memory.*`, `*.pressure`, or v1 `cpuacct.*`,
 * `memory.*`), kept open and re-read from offset 0 at each poll, parsed from bytes.
 *
 * @module
 */
import type { Attributes, Batch, PointContext } from "../../src/model/batch.ts";
import { Consumer } from "../../src/model/resources.ts";
import type { Timestamp } from "../../src/model/timestamp.ts";
import { ProcFile } from "../../src/ffi/proc_file.ts";
import { ErrnoError } from "../../src/ffi/libc.ts";
import { ascii, ByteScanner } from "../../src/sys/scan.ts";
import { type CgroupFiles, cgroupFiles, type CgroupLayout } from "./hierarchy.ts";
import type { CgroupMetrics, PressureMetrics } from "./metrics.ts";
import { Counter, NO_DELTA } from "../../src/model/counter.ts";

/**
 * Where the counters (CPU time, pressure) of the first poll are counted from:
 * - `zero`: the cgroup appeared while the plugin measures, so everything it counted happened since: the first
 *   poll reports its whole CPU time and stall time;
 * - `current`: the cgroup existed before the plugin started: the first poll only sets the baseline.
 */
export type Baseline = "zero" | "current";

/** Options of a {@linkcode CgroupProbe}. */
export interface ProbeOptions {
  /** Online CPUs: the divisor of `cpu_percent`. */
  readonly nCpus: number;
  /** Clock ticks per second of v1 `cpuacct.stat` (USER_HZ, 100 on Linux). */
  readonly userHz: number;
  /** Default `current`. */
  readonly baseline?: Baseline;
}

/** A cumulative CPU or stall time: it never decreases for one cgroup (a lower reading gives 0). */
const newCounter = (baseline: Baseline) => new Counter("monotonic", counterBaseline(baseline));

/** The counter helper's baseline for a cgroup's baseline: `current` is "from the next reading". */
function counterBaseline(baseline: Baseline): "zero" | "next" {
  return baseline === "zero" ? "zero" : "next";
}

/** The resources with a pressure file. */
type PressureResource = "cpu" | "memory" | "io";

/** The counters of one pressure file. */
interface PressureSlot {
  readonly resource: PressureResource;
  readonly file: ProcFile;
  readonly metrics: PressureMetrics;
  readonly some: Counter;
  readonly full: Counter;
}

const USAGE_USEC = ascii("usage_usec ");
const USER_USEC = ascii("user_usec ");
const SYSTEM_USEC = ascii("system_usec ");
const USER = ascii("user ");
const SYSTEM = ascii("system ");
const SOME = ascii("some ");
const FULL = ascii("full ");
const TOTAL_EQ = ascii("total=");

/** memory.stat keys (v2, then v1 where they differ) and the metric each feeds. */
type StatKey =
  | "memoryAnonymous"
  | "memoryFile"
  | "memoryKernelStack"
  | "memoryPagetables"
  | "memorySwapCurrent"
  | "slabReclaimable"
  | "pswpin"
  | "pswpout";
const STAT_V2: readonly (readonly [Uint8Array, StatKey])[] = [
  [ascii("anon "), "memoryAnonymous"],
  [ascii("file "), "memoryFile"],
  [ascii("kernel_stack "), "memoryKernelStack"],
  [ascii("pagetables "), "memoryPagetables"],
  [ascii("slab_reclaimable "), "slabReclaimable"],
  [ascii("pswpin "), "pswpin"],
  [ascii("pswpout "), "pswpout"],
];
/** v1 has hierarchical totals (`total_*`), which is what v2 reports. */
const STAT_V1: readonly (readonly [Uint8Array, StatKey])[] = [
  [ascii("total_rss "), "memoryAnonymous"],
  [ascii("total_cache "), "memoryFile"],
  [ascii("total_swap "), "memorySwapCurrent"],
];

/** A v1 limit at or above this many bytes is "no limit" (the kernel writes about 2^63 rounded to a page). */
const V1_UNLIMITED = 2 ** 62;

const KIND_TOTAL: Attributes = Object.freeze({ kind: "total" });
const KIND_USER: Attributes = Object.freeze({ kind: "user" });
const KIND_SYSTEM: Attributes = Object.freeze({ kind: "system" });

/**
 * True when an error from reading an open cgroup file means the cgroup has been removed: the open files of a
 * removed cgroup read as ENODEV (kernfs); ENOENT and ESRCH for safety. Through FFI the error is an
 * {@linkcode ErrnoError}; without FFI, `Deno.FsFile` throws a plain `Error` ending in "(os error 19)".
 */
function isGone(e: unknown): boolean {
  if (e instanceof Deno.errors.NotFound) return true;
  if (e instanceof ErrnoError) return e.code === "ENODEV" || e.code === "ENOENT" || e.code === "ESRCH";
  return e instanceof Error && /\(os error (19|2|3)\)$/.test(e.message);
}

/** Opens `path`, or undefined when it is missing (or disappears meanwhile). */
function open(path: string | undefined, size: number): ProcFile | undefined {
  return path === undefined ? undefined : ProcFile.tryOpen(path, size);
}

/**
 * Measures one cgroup. Per poll:
 * - `cpu_time_delta` (ns) `kind` = total, user, system: v2 `cpu.stat` (`usage_usec`, `user_usec`,
 *   `system_usec`), or v1 `cpuacct.usage` (ns, total) and `cpuacct.stat` (USER_HZ ticks, user and system);
 * - `cpu_percent` for the same kinds: `100 × delta / elapsed / number of CPUs`, from the second poll on;
 * - `memory_usage` (`memory.current` or v1 `memory.usage_in_bytes`), `memory_max` (`memory.max` or v1
 *   `memory.limit_in_bytes`, -1 when unlimited), the `memory.stat` entries and, on v2, swap;
 * - `{cpu,memory,io}_pressure_{some,full}_total` (µs) from the v2 `*.pressure` files.
 *
 * {@linkcode CgroupProbe.poll} returns false once the cgroup is gone (its files read as ENODEV, or empty in
 * a fixture tree): the caller then closes it.
 */
export class CgroupProbe implements Disposable {
  /** The cgroup path, relative to the hierarchy roots (`/` for the root). */
  readonly path: string;
  readonly consumer: Consumer;
  readonly #metrics: CgroupMetrics;
  readonly #nCpus: number;
  readonly #nsPerTick: number;
  readonly #scan = new ByteScanner();
  readonly #ctx: PointContext;
  readonly #total: PointContext;
  readonly #user: PointContext;
  readonly #system: PointContext;
  #cpuStat: ProcFile | undefined;
  #cpuacctUsage: ProcFile | undefined;
  #cpuacctStat: ProcFile | undefined;
  #memCurrent: ProcFile | undefined;
  #memMax: ProcFile | undefined;
  #memStat: ProcFile | undefined;
  #statV1 = false;
  #limitV1 = false;
  #swapCurrent: ProcFile | undefined;
  #swapMax: ProcFile | undefined;
  #pressure: PressureSlot[] = [];
  /**
   * `usage_usec`, `user_usec` and `system_usec` (or v1 `cpuacct.usage` ns and `cpuacct.stat` ticks), kept as
   * two exact parts ({@linkcode Counter.updateSplit}): v1 `cpuacct.usage` passes 2^53 ns after 104 days of CPU
   * time, and deltas stay exact beyond.
   */
  readonly #usageCounter = newCounter("current");
  readonly #userCounter = newCounter("current");
  readonly #systemCounter = newCounter("current");
  #prevTs: Timestamp = -1n;
  #closed = false;

  /**
   * Opens the files of cgroup `path` that exist in `layout`. Files that are missing are left out (a v1-only
   * cgroup has no pressure files; a v2 hierarchy without the memory controller has no `memory.*`). Errors
   * other than a missing file (too many open files, permission denied) throw, after closing what was opened.
   */
  constructor(layout: CgroupLayout, path: string, metrics: CgroupMetrics, options: ProbeOptions) {
    this.path = path;
    this.consumer = Consumer.cgroup(path);
    this.#metrics = metrics;
    this.#nCpus = Math.max(1, options.nCpus);
    this.#nsPerTick = 1e9 / options.userHz;
    const consumer = this.consumer;
    this.#ctx = Object.freeze({ consumer });
    this.#total = Object.freeze({ consumer, attributes: KIND_TOTAL });
    this.#user = Object.freeze({ consumer, attributes: KIND_USER });
    this.#system = Object.freeze({ consumer, attributes: KIND_SYSTEM });
    const baseline = options.baseline ?? "current";
    this.#rebaseCpu(baseline);
    try {
      this.#openMissing(cgroupFiles(layout, path), baseline);
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** The files this probe may hold open (undefined where the layout has none). */
  #files(): (ProcFile | undefined)[] {
    return [
      this.#cpuStat,
      this.#cpuacctUsage,
      this.#cpuacctStat,
      this.#memCurrent,
      this.#memMax,
      this.#memStat,
      this.#swapCurrent,
      this.#swapMax,
    ];
  }

  /** Number of files open. */
  get openFiles(): number {
    return this.#files().filter((f) => f !== undefined).length + this.#pressure.length;
  }

  /**
   * Opens the files that were missing when the probe was created and exist now (in a hybrid layout a cgroup
   * may appear in one hierarchy a moment before another). Their counters start from zero: the cgroup is new.
   */
  completeFiles(layout: CgroupLayout): void {
    if (this.#closed) return;
    this.#openMissing(cgroupFiles(layout, this.path), "zero");
  }

  #openMissing(files: CgroupFiles, baseline: Baseline): void {
    const noCpu = this.#cpuStat === undefined && this.#cpuacctUsage === undefined;
    if (noCpu) {
      this.#cpuStat = open(files.cpuStat, 512);
      if (this.#cpuStat === undefined) {
        this.#cpuacctUsage = open(files.cpuacctUsage, 64);
        this.#cpuacctStat = open(files.cpuacctStat, 128);
      }
      if (this.#cpuStat !== undefined || this.#cpuacctUsage !== undefined) this.#rebaseCpu(baseline);
    }
    if (this.#memCurrent === undefined) {
      this.#memCurrent = open(files.memoryCurrent, 64);
      if (this.#memCurrent === undefined) this.#memCurrent = open(files.memoryUsageV1, 64);
    }
    if (this.#memMax === undefined) {
      this.#memMax = open(files.memoryMax, 64);
      this.#limitV1 = false;
      if (this.#memMax === undefined) {
        this.#memMax = open(files.memoryLimitV1, 64);
        this.#limitV1 = this.#memMax !== undefined;
      }
    }
    if (this.#memStat === undefined) {
      this.#memStat = open(files.memoryStat, 4096);
      this.#statV1 = false;
      if (this.#memStat === undefined) {
        this.#memStat = open(files.memoryStatV1, 4096);
        this.#statV1 = this.#memStat !== undefined;
      }
    }
    this.#swapCurrent ??= open(files.memorySwapCurrent, 64);
    this.#swapMax ??= open(files.memorySwapMax, 64);
    const m = this.#metrics;
    const pressures: [PressureResource, string | undefined, PressureMetrics][] = [
      ["cpu", files.cpuPressure, { some: m.cpuPressureSome, full: m.cpuPressureFull }],
      ["memory", files.memoryPressure, { some: m.memoryPressureSome, full: m.memoryPressureFull }],
      ["io", files.ioPressure, { some: m.ioPressureSome, full: m.ioPressureFull }],
    ];
    for (const [resource, path, metrics] of pressures) {
      if (this.#pressure.some((p) => p.resource === resource)) continue;
      const file = open(path, 256);
      if (file === undefined) continue;
      this.#pressure.push({
        resource,
        file,
        metrics,
        some: newCounter(baseline),
        full: newCounter(baseline),
      });
    }
  }

  /** Re-reads `f`; returns the byte count, or -1 when the cgroup is gone. */
  #read(f: ProcFile): number {
    let n: number;
    try {
      n = f.read();
    } catch (e) {
      if (isGone(e)) return -1;
      throw e;
    }
    return n > 0 ? n : -1;
  }

  /** Pushes this poll's points; returns false when the cgroup is gone (nothing more will come). */
  poll(batch: Batch, timestamp: Timestamp): boolean {
    if (this.#closed) return false;
    const elapsed = this.#prevTs >= 0n ? Number(timestamp - this.#prevTs) : -1;
    if (!this.#pollCpu(batch, elapsed)) return false;
    if (!this.#pollMemory(batch)) return false;
    for (const p of this.#pressure) if (!this.#pollPressure(batch, p)) return false;
    this.#prevTs = timestamp;
    return true;
  }

  #pollCpu(batch: Batch, elapsed: number): boolean {
    const s = this.#scan;
    let total = NO_DELTA, user = NO_DELTA, system = NO_DELTA;
    if (this.#cpuStat !== undefined) {
      const n = this.#read(this.#cpuStat);
      if (n < 0) return false;
      s.reset(this.#cpuStat.buffer, n);
      while (!s.done) {
        if (s.matches(USAGE_USEC)) {
          s.pos += USAGE_USEC.length;
          if (s.uint() >= 0) total = usToNs(this.#usageCounter.updateSplit(s.hi, s.lo));
        } else if (s.matches(USER_USEC)) {
          s.pos += USER_USEC.length;
          if (s.uint() >= 0) user = usToNs(this.#userCounter.updateSplit(s.hi, s.lo));
        } else if (s.matches(SYSTEM_USEC)) {
          s.pos += SYSTEM_USEC.length;
          if (s.uint() >= 0) system = usToNs(this.#systemCounter.updateSplit(s.hi, s.lo));
        }
        s.skipLine();
      }
    } else if (this.#cpuacctUsage !== undefined) {
      const n = this.#read(this.#cpuacctUsage);
      if (n < 0) return false;
      s.reset(this.#cpuacctUsage.buffer, n);
      if (s.uint() >= 0) total = this.#usageCounter.updateSplit(s.hi, s.lo);
      if (this.#cpuacctStat !== undefined) {
        const k = this.#read(this.#cpuacctStat);
        if (k < 0) return false;
        s.reset(this.#cpuacctStat.buffer, k);
        while (!s.done) {
          if (s.matches(USER)) {
            s.pos += USER.length;
            if (s.uint() >= 0) user = this.#ticksToNs(this.#userCounter.updateSplit(s.hi, s.lo));
          } else if (s.matches(SYSTEM)) {
            s.pos += SYSTEM.length;
            if (s.uint() >= 0) system = this.#ticksToNs(this.#systemCounter.updateSplit(s.hi, s.lo));
          }
          s.skipLine();
        }
      }
    } else {
      return true;
    }
    const scale = elapsed > 0 ? 100 / elapsed / this.#nCpus : 0;
    this.#pushCpu(batch, total, scale, this.#total);
    this.#pushCpu(batch, user, scale, this.#user);
    this.#pushCpu(batch, system, scale, this.#system);
    return true;
  }

  /** `cpu_time_delta` and, when the interval is known (`scale` > 0), `cpu_percent`; nothing for {@linkcode NO_DELTA}. */
  #pushCpu(batch: Batch, ns: number, scale: number, ctx: PointContext): void {
    if (ns === NO_DELTA) return;
    batch.push(this.#metrics.cpuTimeDelta, ns, ctx);
    if (scale > 0) batch.push(this.#metrics.cpuPercent, ns * scale, ctx);
  }

  #ticksToNs(ticks: number): number {
    return ticks === NO_DELTA ? NO_DELTA : Math.round(ticks * this.#nsPerTick);
  }

  #pollMemory(batch: Batch): boolean {
    const m = this.#metrics;
    const s = this.#scan;
    const ctx = this.#ctx;
    if (this.#memCurrent !== undefined) {
      const n = this.#read(this.#memCurrent);
      if (n < 0) return false;
      const v = s.reset(this.#memCurrent.buffer, n).uint();
      if (v >= 0) batch.push(m.memoryUsage, v, ctx);
    }
    if (this.#memMax !== undefined) {
      const v = this.#readLimit(this.#memMax, this.#limitV1);
      if (v === undefined) return false;
      if (!Number.isNaN(v)) batch.push(m.memoryMax, v, ctx);
    }
    if (this.#memStat !== undefined) {
      const n = this.#read(this.#memStat);
      if (n < 0) return false;
      const keys = this.#statV1 ? STAT_V1 : STAT_V2;
      s.reset(this.#memStat.buffer, n);
      while (!s.done) {
        for (const [word, key] of keys) {
          if (!s.matches(word)) continue;
          s.pos += word.length;
          const v = s.uint();
          if (v >= 0) batch.push(m[key], v, ctx);
          break;
        }
        s.skipLine();
      }
    }
    if (this.#swapCurrent !== undefined) {
      const n = this.#read(this.#swapCurrent);
      if (n < 0) return false;
      const v = s.reset(this.#swapCurrent.buffer, n).uint();
      if (v >= 0) batch.push(m.memorySwapCurrent, v, ctx);
    }
    if (this.#swapMax !== undefined) {
      const v = this.#readLimit(this.#swapMax, false);
      if (v === undefined) return false;
      if (!Number.isNaN(v)) batch.push(m.memorySwapMax, v, ctx);
    }
    return true;
  }

  /** A limit in bytes, -1 for "max" (v2) or a v1 value at the top of the range; NaN when unparsable. */
  #readLimit(f: ProcFile, v1: boolean): number | undefined {
    const n = this.#read(f);
    if (n < 0) return undefined;
    const s = this.#scan.reset(f.buffer, n);
    if (s.peek() === 0x6d) return -1; // "max"
    const v = s.uint();
    if (v < 0) return NaN;
    return v1 && v >= V1_UNLIMITED ? -1 : v;
  }

  #pollPressure(batch: Batch, p: PressureSlot): boolean {
    const n = this.#read(p.file);
    if (n < 0) return false;
    const s = this.#scan.reset(p.file.buffer, n);
    while (!s.done) {
      const some = s.matches(SOME);
      if (some || s.matches(FULL)) {
        const end = s.buf.indexOf(10, s.pos);
        const lineEnd = end < 0 || end >= s.end ? s.end : end;
        const at = indexOfWord(s.buf, TOTAL_EQ, s.pos, lineEnd);
        if (at >= 0) {
          s.pos = at + TOTAL_EQ.length;
          if (s.uint() >= 0) {
            const d = (some ? p.some : p.full).updateSplit(s.hi, s.lo);
            if (d !== NO_DELTA) batch.push(some ? p.metrics.some : p.metrics.full, d, this.#ctx);
          }
        }
      }
      s.skipLine();
    }
    return true;
  }

  /** The next poll sets a new baseline (after a pause). */
  reset(): void {
    this.#rebaseCpu("current");
    for (const p of this.#pressure) {
      p.some.reset();
      p.full.reset();
    }
    this.#prevTs = -1n;
  }

  /** The CPU counters count from `baseline`. */
  #rebaseCpu(baseline: Baseline): void {
    const b = counterBaseline(baseline);
    for (const c of [this.#usageCounter, this.#userCounter, this.#systemCounter]) c.reset(b);
  }

  /** Closes the files. Idempotent. */
  close(): void {
    this.#closed = true;
    for (const f of this.#files()) f?.close();
    for (const p of this.#pressure) p.file.close();
    this.#cpuStat = this.#cpuacctUsage = this.#cpuacctStat = undefined;
    this.#memCurrent =
      this.#memMax =
      this.#memStat =
      this.#swapCurrent =
      this.#swapMax =
        undefined;
    this.#pressure = [];
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** A delta in µs to ns; {@linkcode NO_DELTA} (no delta yet) stays so. */
function usToNs(us: number): number {
  return us === NO_DELTA ? NO_DELTA : us * 1000;
}

/** Index of `word` in `buf[from, to)`, or -1. */
function indexOfWord(buf: Uint8Array, word: Uint8Array, from: number, to: number): number {
  const first = word[0]!;
  for (let i = buf.indexOf(first, from); i >= 0 && i + word.length <= to; i = buf.indexOf(first, i + 1)) {
    let j = 1;
    while (j < word.length && buf[i + j] === word[j]) j++;
    if (j === word.length) return i;
  }
  return -1;
}

/**
 * A process-tree source: CPU time, CPU share and memory of a program and every descendant it has while it
 * runs, reported for the program's own consumer (`process`, its pid). This is what `exec` and `watch` measure:
 * a build (`make -j2`) does its work in children, which a source of the first process alone never sees.
 *
 * @module
 */
import type { Batch, PointContext } from "../../src/model/batch.ts";
import { Consumer } from "../../src/model/resources.ts";
import { now, type Timestamp } from "../../src/model/timestamp.ts";
import type { Source } from "../../src/plugin/plugin.ts";
import { ProcFile } from "../../src/ffi/proc_file.ts";
import { NormalStop } from "../../src/errors.ts";
import type { ProcessMetrics } from "./metrics.ts";
import type { Baseline, FinalCpuTime, MemoryMode } from "./process.ts";
import { ascii, ByteScanner } from "../../src/sys/scan.ts";
import { type SystemInfo, systemInfo } from "../../src/sys/system.ts";
import { readProcessInfo } from "./watcher.ts";

/** Options of a {@linkcode ProcessTreeSource}. */
export interface ProcessTreeSourceOptions {
  /** The procfs root. Default `/proc`. */
  readonly root?: string;
  /** Default `zero` (a program started while we measure: all its CPU time counts). */
  readonly baseline?: Baseline;
  /** Default `quick`. */
  readonly memoryMode?: MemoryMode;
  /**
   * Wait for {@linkcode ProcessTreeSource.exited} (at least one poll, up to one second) when the program's
   * `/proc` entry disappears. Default true.
   */
  readonly awaitExit?: boolean;
  /** USER_HZ, page size and CPU count. Default: {@linkcode systemInfo} of `root`. */
  readonly system?: SystemInfo;
  /** Called once when the source closes. */
  readonly onClose?: () => void;
  /** Called for each process that joins the tree (not the program itself): it leaves its group. */
  readonly onJoin?: (pid: number) => void;
}

interface Member {
  readonly pid: number;
  stat: ProcFile | undefined;
  mem: ProcFile | undefined;
  /** Its main thread's `task/<pid>/children`, opened on first use (with `children` discovery only). */
  children: ProcFile | undefined | null;
}

const EXIT_GRACE_NS = 1_000_000_000n;
const KIND = (kind: string) => Object.freeze({ kind });
const RSS = ascii("Rss:");
const PSS = ascii("Pss:");
const SHARED_CLEAN = ascii("Shared_Clean:");
const SHARED_DIRTY = ascii("Shared_Dirty:");

/**
 * Measures a process and its descendants, as one consumer: the program's pid.
 *
 * Each poll reads the tree parents first (so that a child reaped between two reads is counted at most once: at
 * worst it is missed until the next poll), and each member's children as the kernel lists them
 * (`<root>/<pid>/task/<tid>/children` of each of its threads: one kept-open file for a single-threaded member),
 * which join the tree and are read in the same poll. Where the kernel has no such file (no
 * `CONFIG_PROC_CHILDREN`, or a fake root without one), each poll lists `<root>` for processes it has not seen
 * instead (their `stat` read once, for the parent pid) and adds those whose parent is in the tree. Either way a
 * program that is stopped before its exec (`exec`'s start) costs its first poll a few reads, not a scan of
 * every process. The tree's CPU time is the sum,
 * over its live members (zombies included), of their own time and of the time of the children they waited for
 * (`utime + cutime`, `stime + cstime`): every process that ran in the tree and was waited for is counted once,
 * whatever the moment it ended. Pushed per poll:
 * - `cpu_time_delta` (ns) `kind` = user, system, guest: the growth of that sum since the previous poll. The
 *   sum can drop (a member leaves the tree: reparented to init when its parent died before it); the time
 *   it took with it is not taken back, and growth is counted only above the highest sum reported;
 * - `cpu_percent` `kind` = user, system, total: that time as a share of the whole machine. For a program
 *   measured from zero the first interval starts when the source is created (just after the program started);
 * - `memory_usage` (By) `kind` = resident, shared, virtual (+ proportional): sums over the live members
 *   (resident and shared pages of two processes can be the same pages: `proportional`, with
 *   `slow_but_accurate`, is the sum that counts them once).
 *
 * After {@linkcode ProcessTreeSource.exited} (the kernel's rusage of the reaped program: its whole tree, as
 * `time` reports it) the next poll pushes the CPU time not counted yet (`cpu_time_delta` only), then the source
 * ends.
 */
export class ProcessTreeSource implements Source, Disposable {
  readonly pid: number;
  readonly #root: string;
  readonly #metrics: ProcessMetrics;
  readonly #system: SystemInfo;
  readonly #nsPerTick: number;
  readonly #memoryMode: MemoryMode;
  readonly #scan = new ByteScanner();
  readonly #onClose: (() => void) | undefined;
  readonly #onJoin: ((pid: number) => void) | undefined;
  /** Tree members in discovery order: a parent always comes before its children. */
  readonly #members = new Map<number, Member>();
  /** Pids seen by a scan and not members (read once), until they disappear (scan discovery only). */
  readonly #others = new Set<number>();
  /** Whether members' children are read from `task/<tid>/children` (else found by a scan of the root). */
  readonly #byChildren: boolean;
  #awaitExit: boolean;
  #goneSince: Timestamp = -1n;
  #final: FinalCpuTime | undefined;
  #ended = false;
  #closed = false;
  /** Whether the next sums only set the baseline (a process measured from its current time, or a reset). */
  #rebase: boolean;
  /** The highest tree sums seen, in ticks: what has been accounted for (reported or skipped). */
  #hwUser: number;
  #hwSystem: number;
  #hwGuest = -1;
  #prevTs: Timestamp;
  readonly #ctx: Record<
    "user" | "system" | "guest" | "total" | "resident" | "shared" | "virtual" | "proportional",
    PointContext
  >;

  /** Opens the program's files; a program already gone is not an error (the source waits for its exit). */
  constructor(pid: number, metrics: ProcessMetrics, options: ProcessTreeSourceOptions = {}) {
    this.pid = pid;
    this.#metrics = metrics;
    this.#root = options.root ?? "/proc";
    this.#system = options.system ?? systemInfo(this.#root);
    this.#nsPerTick = 1e9 / this.#system.userHz;
    this.#memoryMode = options.memoryMode ?? "quick";
    this.#awaitExit = options.awaitExit ?? true;
    this.#onClose = options.onClose;
    this.#onJoin = options.onJoin;
    const zero = (options.baseline ?? "zero") === "zero";
    this.#rebase = !zero;
    this.#hwUser = 0;
    this.#hwSystem = 0;
    if (zero) this.#hwGuest = 0;
    this.#prevTs = zero ? now() : -1n;
    const consumer = Consumer.process(pid);
    const ctx = (kind: string): PointContext => Object.freeze({ consumer, attributes: KIND(kind) });
    this.#ctx = {
      user: ctx("user"),
      system: ctx("system"),
      guest: ctx("guest"),
      total: ctx("total"),
      resident: ctx("resident"),
      shared: ctx("shared"),
      virtual: ctx("virtual"),
      proportional: ctx("proportional"),
    };
    this.#addMember(pid);
    const root = this.#members.get(pid)!;
    root.children = root.stat === undefined
      ? undefined
      : ProcFile.tryOpen(`${this.#root}/${pid}/task/${pid}/children`, 256) ?? null;
    this.#byChildren = root.children !== null && root.children !== undefined;
  }

  /** The pids in the tree at the last poll (the program first). */
  get members(): number[] {
    return [...this.#members.keys()];
  }

  /** Whether the process is in the tree (as of the last poll). */
  has(pid: number): boolean {
    return this.#members.has(pid);
  }

  /** True once the source has nothing more to report. */
  get ended(): boolean {
    return this.#ended;
  }

  /** From now on, wait for {@linkcode ProcessTreeSource.exited} when the program disappears. */
  expectExit(): void {
    this.#awaitExit = true;
  }

  /** The program has been reaped; `final` is its tree's whole CPU time. The next poll pushes the rest. */
  exited(final: FinalCpuTime): void {
    if (!this.#ended) this.#final = final;
  }

  #addMember(pid: number): void {
    const stat = ProcFile.tryOpen(`${this.#root}/${pid}/stat`, 1024);
    let mem: ProcFile | undefined;
    if (stat !== undefined) {
      try {
        mem = this.#memoryMode === "quick"
          ? ProcFile.tryOpen(`${this.#root}/${pid}/statm`, 256)
          : ProcFile.tryOpen(`${this.#root}/${pid}/smaps_rollup`, 2048);
      } catch {
        mem = undefined; // smaps_rollup of another user's process: no memory for this one
      }
    }
    this.#members.set(pid, { pid, stat, mem, children: undefined });
  }

  #removeMember(pid: number): void {
    const m = this.#members.get(pid);
    if (m === undefined) return;
    m.stat?.close();
    m.mem?.close();
    m.children?.close();
    this.#members.delete(pid);
  }

  /** Adds the processes born in the tree since the last scan; forgets the pids that are gone. */
  #discover(): void {
    const fresh: { pid: number; ppid: number }[] = [];
    const present = new Set<number>();
    let entries: Iterable<Deno.DirEntry>;
    try {
      entries = Deno.readDirSync(this.#root);
    } catch {
      return;
    }
    for (const e of entries) {
      const c = e.name.charCodeAt(0);
      if (c < 48 || c > 57) continue;
      const pid = Number(e.name);
      if (!Number.isInteger(pid)) continue;
      present.add(pid);
      if (this.#members.has(pid) || this.#others.has(pid)) continue;
      const info = readProcessInfo(this.#root, pid);
      if (info === undefined) continue;
      fresh.push({ pid, ppid: info.ppid });
    }
    for (const pid of this.#others) if (!present.has(pid)) this.#others.delete(pid);
    // A child may be listed before its parent: add until nothing more joins.
    let joined = true;
    while (joined) {
      joined = false;
      for (let i = 0; i < fresh.length; i++) {
        const f = fresh[i]!;
        if (f.pid < 0 || !this.#members.has(f.ppid)) continue;
        this.#addMember(f.pid);
        this.#onJoin?.(f.pid);
        f.pid = -1;
        joined = true;
      }
    }
    for (const f of fresh) if (f.pid > 0) this.#others.add(f.pid);
  }

  /**
   * Adds the children of member `m` that are not members yet (they are read later in the same poll): from its
   * main thread's kept-open `children` file when it has one thread, else from every thread's.
   */
  #adoptChildren(m: Member, threads: number): void {
    if (threads > 1) {
      let tids: Iterable<Deno.DirEntry>;
      try {
        tids = Deno.readDirSync(`${this.#root}/${m.pid}/task`);
      } catch {
        return; // gone
      }
      for (const t of tids) {
        let text: string;
        try {
          text = Deno.readTextFileSync(`${this.#root}/${m.pid}/task/${t.name}/children`);
        } catch {
          continue; // the thread ended
        }
        for (const word of text.split(" ")) {
          const child = Number(word);
          if (word !== "" && Number.isInteger(child)) this.#join(child);
        }
      }
      return;
    }
    if (m.children === undefined) {
      m.children = ProcFile.tryOpen(`${this.#root}/${m.pid}/task/${m.pid}/children`, 256) ?? null;
    }
    const n = m.children?.read() ?? -1;
    if (n <= 0) return;
    const s = this.#scan.reset(m.children!.buffer, n);
    for (let child = s.uint(); child > 0; child = s.uint()) this.#join(child);
  }

  #join(pid: number): void {
    if (this.#members.has(pid)) return;
    this.#addMember(pid);
    this.#onJoin?.(pid);
  }

  poll(batch: Batch, timestamp: Timestamp): void {
    if (this.#ended) throw new NormalStop(`Process ${this.pid} has exited`);
    if (this.#final !== undefined) {
      this.#pushRemainder(batch, this.#final);
      this.#end();
      return;
    }
    const rootMember = this.#members.get(this.pid);
    const rootLength = rootMember?.stat?.read() ?? -1;
    if (rootLength <= 0) {
      if (this.#awaitExit) {
        if (this.#goneSince < 0n) this.#goneSince = timestamp;
        if (timestamp === this.#goneSince || timestamp - this.#goneSince < EXIT_GRACE_NS) return;
      }
      this.#end();
      throw new NormalStop(`Process ${this.pid} has exited`);
    }
    if (!this.#byChildren) this.#discover();
    let user = 0, system = 0, guest = 0, guestKnown = true;
    let resident = 0, shared = 0, virt = 0, pss = 0;
    const s = this.#scan;
    // Live iteration: the children adopted below come after their parent and are read in this poll.
    for (const m of this.#members.values()) {
      // The program's stat was read above; every other member is read now, parents first.
      const n = m.pid === this.pid ? rootLength : m.stat?.read() ?? -1;
      if (n <= 0) {
        this.#removeMember(m.pid); // gone (and reaped: its time is in its parent's cutime now)
        continue;
      }
      s.reset(m.stat!.buffer, n);
      const paren = s.lastIndexOf(41);
      if (paren < 0) continue;
      s.pos = paren + 1;
      s.skipFields(1); // 3 state
      const ppid = s.uint(); // 4
      if (m.pid !== this.pid && !this.#members.has(ppid)) {
        // Reparented out of the tree (its parent died first): no longer the program's.
        this.#removeMember(m.pid);
        this.#others.add(m.pid);
        continue;
      }
      s.skipFields(9); // 5 pgrp … 13 cmajflt
      const utime = s.uint(); // 14
      const stime = s.uint(); // 15
      const cutime = s.uint(); // 16
      const cstime = s.uint(); // 17
      s.skipFields(2); // 18 priority, 19 nice
      const threads = s.uint(); // 20 num_threads
      s.skipFields(2); // 21 itrealvalue, 22 starttime
      const vsize = s.uint(); // 23
      const pos = s.pos;
      if (this.#byChildren) this.#adoptChildren(m, threads); // uses the scanner: the stat's place is kept
      s.reset(m.stat!.buffer, n, pos);
      s.skipFields(19); // 24 rss … 42 delayacct_blkio_ticks
      const g = s.uint(); // 43 guest_time
      const cg = s.uint(); // 44 cguest_time
      if (utime < 0 || stime < 0) continue;
      user += utime + Math.max(0, cutime);
      system += stime + Math.max(0, cstime);
      if (g >= 0 && cg >= 0) guest += g + cg;
      else guestKnown = false;
      const ml = m.mem?.read() ?? -1;
      if (ml <= 0) continue; // a zombie has no memory left
      if (this.#memoryMode === "quick") {
        s.reset(m.mem!.buffer, ml);
        const size = s.uint();
        const res = s.uint();
        const sh = s.uint();
        const page = this.#system.pageSize;
        if (size >= 0) virt += size * page;
        if (res >= 0) resident += res * page;
        if (sh >= 0) shared += sh * page;
      } else {
        const r = this.#rollup(m.mem!.buffer, ml);
        resident += r.rss;
        shared += r.shared;
        pss += r.pss;
        if (vsize >= 0) virt += vsize;
      }
    }
    const mt = this.#metrics;
    const c = this.#ctx;
    if (this.#memoryMode === "slow_but_accurate") batch.push(mt.memoryUsage, pss, c.proportional);
    batch.push(mt.memoryUsage, resident, c.resident);
    batch.push(mt.memoryUsage, shared, c.shared);
    batch.push(mt.memoryUsage, virt, c.virtual);

    if (this.#rebase) {
      this.#hwUser = Math.max(this.#hwUser, user);
      this.#hwSystem = Math.max(this.#hwSystem, system);
      this.#hwGuest = guestKnown ? Math.max(this.#hwGuest, guest) : -1;
      this.#rebase = false;
      this.#prevTs = timestamp;
      return;
    }
    const dUser = this.#ticksToNs(Math.max(0, user - this.#hwUser));
    const dSystem = this.#ticksToNs(Math.max(0, system - this.#hwSystem));
    this.#hwUser = Math.max(this.#hwUser, user);
    this.#hwSystem = Math.max(this.#hwSystem, system);
    batch.push(mt.cpuTimeDelta, dUser, c.user);
    batch.push(mt.cpuTimeDelta, dSystem, c.system);
    if (guestKnown) {
      if (this.#hwGuest >= 0) {
        batch.push(mt.cpuTimeDelta, this.#ticksToNs(Math.max(0, guest - this.#hwGuest)), c.guest);
      }
      this.#hwGuest = Math.max(this.#hwGuest, guest);
    }
    if (this.#prevTs >= 0n) this.#pushPercent(batch, dUser, dSystem, Number(timestamp - this.#prevTs));
    this.#prevTs = timestamp;
  }

  #rollup(buf: Uint8Array, length: number): { rss: number; pss: number; shared: number } {
    const s = this.#scan.reset(buf, length);
    let rss = 0, pss = 0, shared = 0;
    while (!s.done) {
      for (const [key, add] of [[RSS, 1], [PSS, 2], [SHARED_CLEAN, 3], [SHARED_DIRTY, 3]] as const) {
        if (!s.matches(key)) continue;
        s.pos += key.length;
        const v = Math.max(0, s.uint()) * 1024;
        if (add === 1) rss += v;
        else if (add === 2) pss += v;
        else shared += v;
        break;
      }
      s.skipLine();
    }
    return { rss, pss, shared };
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
   * The CPU time not counted yet (final − accounted), as `cpu_time_delta`. No `cpu_percent`: /proc counts
   * whole ticks, truncated, so the remainder holds up to a tick per member and per kind spent at any time
   * before the last poll, and the interval since that poll is often a few ms (polls are aligned on the
   * program's start, and `sleep N` ends just after one): its share would be a spike nothing ran in.
   */
  #pushRemainder(batch: Batch, final: FinalCpuTime): void {
    if (this.#rebase) return; // never polled alive, measured from its current time: nothing is known
    const m = this.#metrics;
    const c = this.#ctx;
    const accountedUser = this.#ticksToNs(this.#hwUser);
    const accountedSystem = this.#ticksToNs(this.#hwSystem);
    const dUser = Math.max(0, Math.round(final.userNs - accountedUser));
    const dSystem = Math.max(0, Math.round(final.systemNs - accountedSystem));
    batch.push(m.cpuTimeDelta, dUser, c.user);
    batch.push(m.cpuTimeDelta, dSystem, c.system);
    if (this.#hwGuest >= 0) batch.push(m.cpuTimeDelta, 0, c.guest);
  }

  #ticksToNs(ticks: number): number {
    return Math.round(ticks * this.#nsPerTick);
  }

  #end(): void {
    this.#ended = true;
    this.#final = undefined;
    this.#closeFiles();
  }

  /** The next poll sets a new baseline; the time skipped meanwhile stays out of the remainder. */
  reset(): void {
    this.#rebase = true;
    this.#prevTs = -1n;
  }

  #closeFiles(): void {
    for (const pid of [...this.#members.keys()]) this.#removeMember(pid);
    this.#others.clear();
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

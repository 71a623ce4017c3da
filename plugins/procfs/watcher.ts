/**
 * The process watcher: control work, off the data path. Each scan lists `/proc` and hands the new processes
 * that match a group's filter to a callback; the plugin runs it as its task `process-watcher`, every
 * `processes.refresh_interval`, and adds each process to its group's source.
 *
 * @module
 */
import type { MemoryMode } from "./process.ts";

/** A group of processes to follow, and how to measure them. */
export interface WatchGroup {
  /** Only the process with this pid. */
  readonly pid?: number;
  /** Only the processes whose parent has this pid. */
  readonly ppid?: number;
  /**
   * Only the processes whose executable path (`/proc/<pid>/exe`) matches (a search, not anchored); when the
   * path cannot be read (a kernel thread, another user's process), the command name (`comm`) is matched.
   */
  readonly exeRegex?: RegExp;
  /** Poll period of each process source, ms. */
  readonly pollInterval: number;
  /** Flush period of each process source, ms. */
  readonly flushInterval: number;
  readonly memoryMode: MemoryMode;
}

/** What the watcher reads of a process it has not seen before. */
export interface ProcessInfo {
  readonly pid: number;
  readonly ppid: number;
  /** The command name (`comm`, at most 15 bytes). */
  readonly comm: string;
  /** When the process started, in clock ticks since boot. */
  readonly startTicks: number;
}

/**
 * Reads `ppid`, `comm` and the start time of `<root>/<pid>/stat` (once per new process), or returns undefined
 * when the process is gone or unreadable.
 *
 * @example
 * ```ts
 * import { readProcessInfo } from "./watcher.ts";
 * import assert from "node:assert/strict";
 * assert.equal(readProcessInfo("/proc", Deno.pid)?.pid, Deno.pid);
 * ```
 */
export function readProcessInfo(root: string, pid: number): ProcessInfo | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(`${root}/${pid}/stat`);
  } catch {
    return undefined;
  }
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  if (open < 0 || close < open) return undefined;
  const fields = text.slice(close + 2).split(" ");
  const ppid = Number(fields[1]); // field 4
  const startTicks = Number(fields[19]); // field 22
  if (!Number.isInteger(ppid) || !Number.isFinite(startTicks)) return undefined;
  return { pid, ppid, comm: text.slice(open + 1, close), startTicks };
}

/** Called for each new process that matches a group; returns false to be asked again at the next scan. */
export type OnMatch = (info: ProcessInfo, group: WatchGroup) => boolean | Promise<boolean>;

/** Options of a {@linkcode ProcessWatcher}. */
export interface ProcessWatcherOptions {
  /** The procfs root. Default `/proc`. */
  readonly root?: string;
  /** The groups, tried in order: a process goes to the first one whose filters all match. */
  readonly groups: readonly WatchGroup[];
  readonly onMatch: OnMatch;
}

/**
 * Finds processes to follow. Each {@linkcode ProcessWatcher.scan} lists `<root>`, reads the `stat` of the pids
 * it has not seen yet and tries the groups in order (the first that matches wins, as in Alumet). A pid is
 * looked at once while it lives: a pid that is no longer listed is forgotten, so a reused pid is seen again
 * once its first owner has gone from a scan.
 */
export class ProcessWatcher {
  readonly root: string;
  readonly #groups: readonly WatchGroup[];
  readonly #onMatch: OnMatch;
  #seen = new Set<number>();

  constructor(options: ProcessWatcherOptions) {
    this.root = options.root ?? "/proc";
    this.#groups = options.groups;
    this.#onMatch = options.onMatch;
  }

  /**
   * Scans `<root>` once and waits for the callbacks of the processes it matched.
   *
   * @param signal when it aborts (the task stops), the scan ends early (still waiting for the callbacks
   *   started)
   */
  async scan(signal?: AbortSignal): Promise<void> {
    const present = new Set<number>();
    const pending: Promise<void>[] = [];
    let entries: Iterable<Deno.DirEntry>;
    try {
      entries = Deno.readDirSync(this.root);
    } catch (e) {
      // Out of descriptors (the followed processes hold them): say what to do, not just "os error 24".
      if (/EMFILE|ENFILE|Too many open files/.test(String(e))) {
        throw new Error(
          `Cannot list ${this.root}: too many open files (each followed process keeps 2 open); raise the limit ` +
            "(ulimit -n) or narrow processes.groups",
        );
      }
      throw e;
    }
    for (const entry of entries) {
      if (signal?.aborted) break;
      const c = entry.name.charCodeAt(0);
      if (c < 48 || c > 57) continue;
      const pid = Number(entry.name);
      if (!Number.isInteger(pid)) continue;
      present.add(pid);
      if (this.#seen.has(pid)) continue;
      const info = readProcessInfo(this.root, pid);
      if (info === undefined) continue; // gone already
      this.#seen.add(pid);
      const group = this.#groups.find((g) => this.#accepts(g, info));
      if (group === undefined) continue;
      pending.push(
        Promise.resolve(this.#onMatch(info, group)).then(
          (ok) => void (ok || this.#seen.delete(pid)),
          () => void this.#seen.delete(pid),
        ),
      );
    }
    // An aborted scan did not list every pid: forget only after a whole one.
    if (signal?.aborted !== true) {
      for (const pid of this.#seen) if (!present.has(pid)) this.#seen.delete(pid);
    }
    await Promise.all(pending);
  }

  #accepts(g: WatchGroup, info: ProcessInfo): boolean {
    if (g.pid !== undefined && g.pid !== info.pid) return false;
    if (g.ppid !== undefined && g.ppid !== info.ppid) return false;
    if (g.exeRegex !== undefined) {
      let name: string;
      try {
        name = Deno.readLinkSync(`${this.root}/${info.pid}/exe`);
      } catch {
        name = info.comm;
      }
      g.exeRegex.lastIndex = 0;
      if (!g.exeRegex.test(name)) return false;
    }
    return true;
  }

  /** Forgets the pids seen: the next scan looks at every process again. */
  reset(): void {
    this.#seen = new Set();
  }
}

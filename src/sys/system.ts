/**
 * What the sources need to know about the machine, read once: the clock tick of `/proc` times (USER_HZ), the
 * page size, the number of CPUs, and the time since boot.
 *
 * @module
 */

/** Facts about the machine the procfs sources convert with. */
export interface SystemInfo {
  /**
   * Clock ticks per second of the times in `/proc/stat` and `/proc/<pid>/stat` (`USER_HZ`, what
   * `sysconf(_SC_CLK_TCK)` returns): 100 on Linux on every common architecture, whatever the kernel's
   * internal `HZ`. Read from the auxiliary vector (`AT_CLKTCK`), 100 when it cannot be read.
   */
  readonly userHz: number;
  /** Bytes per memory page (the unit of `/proc/<pid>/statm`): `AT_PAGESZ`, 4096 when it cannot be read. */
  readonly pageSize: number;
  /** Online CPUs (the `cpuN` lines of `/proc/stat`): the divisor of `cpu_percent`. */
  readonly nCpus: number;
}

const AT_PAGESZ = 6n;
const AT_CLKTCK = 17n;

let auxv: { userHz: number; pageSize: number } | undefined;

/** `AT_CLKTCK` and `AT_PAGESZ` from this process's auxiliary vector (read once), with Linux's defaults. */
export function auxvInfo(): { userHz: number; pageSize: number } {
  if (auxv !== undefined) return auxv;
  let userHz = 100;
  let pageSize = 4096;
  try {
    const bytes = Deno.readFileSync("/proc/self/auxv");
    const words = new BigUint64Array(bytes.buffer, bytes.byteOffset, Math.floor(bytes.byteLength / 8));
    for (let i = 0; i + 1 < words.length; i += 2) {
      const type = words[i]!;
      if (type === 0n) break;
      if (type === AT_CLKTCK && words[i + 1]! > 0n) userHz = Number(words[i + 1]!);
      if (type === AT_PAGESZ && words[i + 1]! > 0n) pageSize = Number(words[i + 1]!);
    }
  } catch {
    // not Linux, or no read permission: keep the defaults
  }
  auxv = { userHz, pageSize };
  return auxv;
}

/** The number of `cpuN` lines in `<root>/stat`, or `navigator.hardwareConcurrency` when it cannot be read. */
export function countCpus(root = "/proc"): number {
  try {
    const text = Deno.readTextFileSync(`${root}/stat`);
    const n = text.match(/^cpu\d+ /gm)?.length ?? 0;
    if (n > 0) return n;
  } catch {
    // fall through
  }
  return Math.max(1, navigator.hardwareConcurrency ?? 1);
}

/**
 * The machine's facts, for sources reading `root`. The CPU count comes from `<root>/stat`, so a fixture tree
 * can choose it; USER_HZ and the page size are this process's.
 */
export function systemInfo(root = "/proc"): SystemInfo {
  const { userHz, pageSize } = auxvInfo();
  return { userHz, pageSize, nCpus: countCpus(root) };
}

/**
 * Time since boot in clock ticks, from `<root>/uptime` (the clock of the start time in `/proc/<pid>/stat`),
 * or undefined when it cannot be read.
 */
export function uptimeTicks(root: string, userHz: number): number | undefined {
  try {
    const text = Deno.readTextFileSync(`${root}/uptime`);
    const seconds = Number(text.slice(0, text.indexOf(" ")));
    return Number.isFinite(seconds) && seconds >= 0 ? Math.floor(seconds * userHz) : undefined;
  } catch {
    return undefined;
  }
}

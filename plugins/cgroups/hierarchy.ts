/**
 * Where the cgroup hierarchies are, found from `/proc/mounts` (never from a fixed path): pure cgroup v2
 * (`/sys/fs/cgroup`), pure v1 (one mount per controller), or the hybrid layout of these machines (v1
 * controllers under `/sys/fs/cgroup/<controller>`, v2 at `/sys/fs/cgroup/unified` with no memory controller).
 * For a cgroup path it tells which file holds each measurement: CPU from v2 `cpu.stat` or v1
 * `cpuacct.usage`, memory from v2 `memory.*` when v2 has the memory controller, else from the v1 memory
 * hierarchy at the same path.
 *
 * @module
 */

import { ProcFile } from "../../src/ffi/proc_file.ts";

/** One mounted cgroup hierarchy. */
export interface Hierarchy {
  readonly version: 1 | 2;
  /** Where it is mounted, e.g. `/sys/fs/cgroup/unified`. */
  readonly mountPoint: string;
  /** v1: the controllers in the mount options (`cpu`, `cpuacct`, `memory`…); v2: the root's `cgroup.controllers`. */
  readonly controllers: readonly string[];
  /** v1 named hierarchies (`name=systemd`). */
  readonly name?: string;
}

/** The hierarchies of a machine. */
export interface CgroupLayout {
  /** The v2 hierarchy, if mounted. */
  readonly v2: Hierarchy | undefined;
  /** v1 hierarchies by controller. */
  readonly v1: ReadonlyMap<string, Hierarchy>;
}

/** The files holding a cgroup's measurements (absolute paths), those that exist in this layout. */
export interface CgroupFiles {
  /** v2 `cpu.stat` (usage_usec, user_usec, system_usec). */
  readonly cpuStat?: string;
  /** v1 `cpuacct.usage` (ns) and `cpuacct.stat` (user/system in USER_HZ ticks). */
  readonly cpuacctUsage?: string;
  readonly cpuacctStat?: string;
  /** v2 `memory.current`, `memory.max`, `memory.stat`. */
  readonly memoryCurrent?: string;
  readonly memoryMax?: string;
  readonly memoryStat?: string;
  /** v2 `memory.swap.current` and `memory.swap.max`. */
  readonly memorySwapCurrent?: string;
  readonly memorySwapMax?: string;
  /** v1 `memory.usage_in_bytes`, `memory.limit_in_bytes`, `memory.stat`. */
  readonly memoryUsageV1?: string;
  readonly memoryLimitV1?: string;
  readonly memoryStatV1?: string;
  /** v2 pressure files (PSI), when the kernel has them. */
  readonly cpuPressure?: string;
  readonly memoryPressure?: string;
  readonly ioPressure?: string;
}

/** The cgroup v1 controllers (the other mount options are flags such as `rw`, `xattr`, `noprefix`). */
const V1_CONTROLLERS = new Set([
  "cpu",
  "cpuacct",
  "cpuset",
  "memory",
  "devices",
  "freezer",
  "net_cls",
  "net_prio",
  "blkio",
  "perf_event",
  "hugetlb",
  "pids",
  "rdma",
  "misc",
]);

/** `/proc/mounts` escapes space, tab, newline and backslash as octal (`\040`). */
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/**
 * The cgroup mounts listed in a `/proc/mounts` text. v2 controllers are read with `v2Controllers(mountPoint)`
 * (the root's `cgroup.controllers`), given so that tests can use fixtures.
 *
 * @example
 * ```ts
 * import { parseMounts } from "./hierarchy.ts";
 * import assert from "node:assert/strict";
 * const hs = parseMounts("cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n", () => ["cpu", "memory"]);
 * assert.deepEqual(hs, [{ version: 2, mountPoint: "/sys/fs/cgroup", controllers: ["cpu", "memory"] }]);
 * ```
 */
export function parseMounts(text: string, v2Controllers: (mountPoint: string) => string[]): Hierarchy[] {
  const out: Hierarchy[] = [];
  for (const line of text.split("\n")) {
    const f = line.split(" ");
    if (f.length < 4) continue;
    const mountPoint = unescapeMount(f[1]!);
    const type = f[2]!;
    if (type === "cgroup2") {
      out.push({ version: 2, mountPoint, controllers: v2Controllers(mountPoint) });
    } else if (type === "cgroup") {
      const opts = f[3]!.split(",");
      const name = opts.find((o) => o.startsWith("name="))?.slice(5);
      const controllers = opts.filter((o) => V1_CONTROLLERS.has(o));
      out.push({ version: 1, mountPoint, controllers, ...(name !== undefined ? { name } : {}) });
    }
  }
  return out;
}

/** Reads the root `cgroup.controllers` of a v2 mount (empty when unreadable). */
export function readV2Controllers(mountPoint: string): string[] {
  try {
    return Deno.readTextFileSync(`${mountPoint}/cgroup.controllers`).trim().split(/\s+/).filter((c) =>
      c !== ""
    );
  } catch {
    return [];
  }
}

/** The layout from a list of hierarchies: the first v2 mount, and the first v1 mount of each controller. */
export function layoutOf(hierarchies: readonly Hierarchy[]): CgroupLayout {
  let v2: Hierarchy | undefined;
  const v1 = new Map<string, Hierarchy>();
  for (const h of hierarchies) {
    if (h.version === 2) v2 ??= h;
    else for (const c of h.controllers) if (!v1.has(c)) v1.set(c, h);
  }
  return { v2, v1 };
}

/**
 * Reads a mount table. `/proc/mounts` is a link to `/proc/self/mounts`, which Deno only lets a program read
 * with every permission (`--allow-all`); through libc (with `--allow-ffi`) it is an ordinary read.
 */
export function readMounts(mountsPath = "/proc/mounts"): string {
  try {
    using f = ProcFile.open(mountsPath, 16384);
    const n = f.read();
    return new TextDecoder().decode(f.buffer.subarray(0, Math.max(0, n)));
  } catch (e) {
    const hint = e instanceof Deno.errors.NotCapable
      ? ": run with --allow-ffi (it is then read through libc) or --allow-all"
      : "";
    throw new Error(
      `Cannot read ${mountsPath} to find the cgroup hierarchies${hint} (${(e as Error).message})`,
      {
        cause: e,
      },
    );
  }
}

/** This machine's layout, from `/proc/mounts` (see {@linkcode readMounts}). */
export function detectLayout(mountsPath = "/proc/mounts"): CgroupLayout {
  return layoutOf(parseMounts(readMounts(mountsPath), readV2Controllers));
}

/**
 * The files of cgroup `path` (relative to the hierarchy roots, e.g. `/system.slice/x.service`), those that
 * exist (checked with `exists`, replaceable in tests).
 */
export function cgroupFiles(
  layout: CgroupLayout,
  path: string,
  exists: (file: string) => boolean = fileExists,
): CgroupFiles {
  const rel = path === "/" || path === "" ? "" : path.startsWith("/") ? path : `/${path}`;
  const files: Record<string, string> = {};
  const put = (key: keyof CgroupFiles, file: string) => {
    if (exists(file)) files[key] = file;
  };
  const v2 = layout.v2;
  if (v2 !== undefined) {
    const dir = `${v2.mountPoint}${rel}`;
    put("cpuStat", `${dir}/cpu.stat`);
    if (v2.controllers.includes("memory")) {
      put("memoryCurrent", `${dir}/memory.current`);
      put("memoryMax", `${dir}/memory.max`);
      put("memoryStat", `${dir}/memory.stat`);
      put("memorySwapCurrent", `${dir}/memory.swap.current`);
      put("memorySwapMax", `${dir}/memory.swap.max`);
    }
    put("cpuPressure", `${dir}/cpu.pressure`);
    put("memoryPressure", `${dir}/memory.pressure`);
    put("ioPressure", `${dir}/io.pressure`);
  }
  const cpuacct = layout.v1.get("cpuacct");
  if (cpuacct !== undefined && files.cpuStat === undefined) {
    put("cpuacctUsage", `${cpuacct.mountPoint}${rel}/cpuacct.usage`);
    put("cpuacctStat", `${cpuacct.mountPoint}${rel}/cpuacct.stat`);
  }
  const memory = layout.v1.get("memory");
  if (memory !== undefined && files.memoryCurrent === undefined) {
    put("memoryUsageV1", `${memory.mountPoint}${rel}/memory.usage_in_bytes`);
    put("memoryLimitV1", `${memory.mountPoint}${rel}/memory.limit_in_bytes`);
    put("memoryStatV1", `${memory.mountPoint}${rel}/memory.stat`);
  }
  return files as CgroupFiles;
}

/**
 * The hierarchies that hold measurements, whose cgroups the plugin walks: the v2 hierarchy, and the v1
 * hierarchies of the `cpuacct` and `memory` controllers (one entry per mount point, in that order).
 *
 * @example
 * ```ts
 * import { layoutOf, measuredHierarchies, parseMounts } from "./hierarchy.ts";
 * import assert from "node:assert/strict";
 * const mounts = "cgroup /c cgroup rw,cpu,cpuacct 0 0\ncgroup /m cgroup rw,memory 0 0\ncgroup /p cgroup rw,pids 0 0\n";
 * const layout = layoutOf(parseMounts(mounts, () => []));
 * assert.deepEqual(measuredHierarchies(layout).map((h) => h.mountPoint), ["/c", "/m"]);
 * ```
 */
export function measuredHierarchies(layout: CgroupLayout): Hierarchy[] {
  const out: Hierarchy[] = [];
  for (const h of [layout.v2, layout.v1.get("cpuacct"), layout.v1.get("memory")]) {
    if (h !== undefined && !out.some((o) => o.mountPoint === h.mountPoint)) out.push(h);
  }
  return out;
}

function fileExists(file: string): boolean {
  try {
    return Deno.statSync(file).isFile;
  } catch {
    return false;
  }
}

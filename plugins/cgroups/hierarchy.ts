/**
 * Which file holds each measurement of a cgroup: CPU from v2 `cpu.stat` or v1 `cpuacct.usage`, memory from v2
 * `memory.*` when v2 has the memory controller, else from the v1 memory hierarchy at the same path; and which
 * hierarchies hold measurements. The layout itself (the mounts in `/proc/mounts`) is found by
 * `src/sys/cgroup_layout.ts`, re-exported here.
 *
 * @module
 */
import type { CgroupLayout, Hierarchy } from "../../src/sys/cgroup_layout.ts";

export {
  type CgroupLayout,
  detectLayout,
  type Hierarchy,
  layoutOf,
  parseMounts,
  readMounts,
  readV2Controllers,
} from "../../src/sys/cgroup_layout.ts";

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

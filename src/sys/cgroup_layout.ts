/**
 * Where the cgroup hierarchies of this machine are, found from `/proc/mounts` (never from a fixed path): pure
 * cgroup v2 (`/sys/fs/cgroup`), pure v1 (one mount per controller, or several controllers co-mounted), or the
 * hybrid layout (v1 controllers under `/sys/fs/cgroup/<controller>`, v2 at `/sys/fs/cgroup/unified`, often
 * without controllers). Shared by every plugin that reads or targets cgroups (`cgroups`, `perf`).
 *
 * @example
 * ```ts
 * import { layoutOf, parseMounts } from "./cgroup_layout.ts";
 * import assert from "node:assert/strict";
 * const mounts = "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
 * const layout = layoutOf(parseMounts(mounts, () => []));
 * assert.equal(layout.v2?.mountPoint, "/sys/fs/cgroup/unified");
 * assert.equal(layout.v1.get("memory")?.mountPoint, "/sys/fs/cgroup/memory");
 * ```
 *
 * @module
 */
import { ProcFile } from "../ffi/proc_file.ts";

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
 * @param text the mount table
 * @param v2Controllers the controllers of a v2 mount point
 * @returns the cgroup hierarchies, in the table's order
 *
 * @example
 * ```ts
 * import { parseMounts } from "./cgroup_layout.ts";
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

/**
 * Reads the root `cgroup.controllers` of a v2 mount.
 *
 * @param mountPoint where the v2 hierarchy is mounted
 * @returns the controllers enabled there (empty when unreadable)
 */
export function readV2Controllers(mountPoint: string): string[] {
  try {
    return Deno.readTextFileSync(`${mountPoint}/cgroup.controllers`).trim().split(/\s+/).filter((c) =>
      c !== ""
    );
  } catch {
    return [];
  }
}

/**
 * The layout from a list of hierarchies: the first v2 mount, and the first v1 mount of each controller.
 *
 * @param hierarchies what {@linkcode parseMounts} found
 * @returns the layout
 */
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
 *
 * @param mountsPath the mount table, default `/proc/mounts`
 * @returns its text
 * @throws {Error} naming the file and, without the permission, the flag that gives it
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
      { cause: e },
    );
  }
}

/**
 * This machine's layout, from `/proc/mounts` (see {@linkcode readMounts}).
 *
 * @param mountsPath the mount table, default `/proc/mounts`
 * @returns the layout
 */
export function detectLayout(mountsPath = "/proc/mounts"): CgroupLayout {
  return layoutOf(parseMounts(readMounts(mountsPath), readV2Controllers));
}

/**
 * Finding RAPL on a machine, under a sysfs root (`/sys`, or a fixture tree):
 *
 * - powercap zones in `<root>/class/powercap`: `intel-rapl:N` (a package, or `psys`) and `intel-rapl:N:M`
 *   (core, uncore, dram of the package `intel-rapl:N`), on Intel and AMD alike (AMD: package and core only);
 *   an `intel-rapl-mmio:N` zone (some Intel laptops) repeats a package already there and is counted once. Zone
 *   numbers are not package numbers: the package is read from the zone's `name` (`package-1`); on packages
 *   of several dies the kernel names one zone per die (`package-0-die-1`), each measured, summed into its
 *   package's point by the source;
 * - the perf `power` PMU in `<root>/bus/event_source/devices/power`: its `events/energy-*` with `.scale` and
 *   `.unit`, and its `cpumask` (one CPU per package), each CPU's package read from
 *   `<root>/devices/system/cpu/cpuN/topology/physical_package_id`;
 * - the safe subset: when both interfaces are there and list different domains, only the domains both list
 *   are measured (as Alumet's `consistency.rs` does).
 *
 * @module
 */
import { listPmuEvents, parsePerfEvent, readPmuCpumask } from "../../src/ffi/perf_events_parse.ts";
import { messageOf } from "../../src/errors.ts";
import { perfDomain, powercapDomain, RAPL_DOMAINS, type RaplDomain } from "./domains.ts";
import type { PerfChannel, PowercapChannel } from "./source.ts";

/** A powercap zone found, readable or not. */
export interface PowerZone extends PowercapChannel {
  /** The zone's directory name, e.g. `intel-rapl:0:1`. */
  readonly zone: string;
  /** Its `name` file, e.g. `package-0`, `package-0-die-1`, `core`. */
  readonly name: string;
  /** The die, on packages of several dies (`package-N-die-M` and its sub-zones). */
  readonly die?: number;
  /** Why `energy_uj` cannot be read (undefined when it can). */
  readonly unreadable?: string;
}

/** What the powercap scan found. */
export interface PowercapScan {
  /** `<root>/class/powercap`. */
  readonly dir: string;
  /** Whether the directory exists. */
  readonly present: boolean;
  /** The zones measured, readable or not (mmio repeats left out). */
  readonly zones: PowerZone[];
  /** Zones left out, with why (an mmio zone that repeats a package, a name this plugin does not know). */
  readonly skipped: string[];
  /** The zones left out because their name is not one this plugin knows (`intel-rapl:0 (name "…")`). */
  readonly unknown: string[];
}

const ZONE_DIR = /^intel-rapl(-mmio)?:(\d+)(?::(\d+))?$/;

function readText(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch {
    return undefined;
  }
}

function isDir(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

/** Why `path` cannot be opened for reading (undefined when it can). */
export function unreadableReason(path: string): string | undefined {
  try {
    Deno.openSync(path, { read: true }).close();
    return undefined;
  } catch (e) {
    if (e instanceof Deno.errors.PermissionDenied) return "permission denied (EACCES)";
    return messageOf(e);
  }
}

/**
 * Whether `root` (a sysfs mount, `/sys` on a machine) shows RAPL at all: an `intel-rapl:0` powercap zone or the
 * perf `power` PMU. A quick look, not a plan: {@linkcode scanPowercap} and {@linkcode planPerf} say what can
 * be read.
 *
 * @example
 * ```ts
 * import { raplShown } from "./discovery.ts";
 * import assert from "node:assert/strict";
 * assert.equal(raplShown("/nonexistent"), false);
 * ```
 */
export function raplShown(root = "/sys"): boolean {
  for (const path of [`${root}/class/powercap/intel-rapl:0`, `${root}/bus/event_source/devices/power`]) {
    try {
      Deno.statSync(path);
      return true;
    } catch {
      // not there
    }
  }
  return false;
}

/**
 * The RAPL zones under `<root>/class/powercap`.
 *
 * @example
 * ```ts
 * import { scanPowercap } from "./discovery.ts";
 * import assert from "node:assert/strict";
 * const scan = scanPowercap("/nonexistent");
 * assert.equal(scan.present, false);
 * assert.deepEqual(scan.zones, []);
 * ```
 */
export function scanPowercap(root: string): PowercapScan {
  const dir = `${root}/class/powercap`;
  const skipped: string[] = [];
  const unknown: string[] = [];
  let names: string[];
  try {
    names = [...Deno.readDirSync(dir)].map((e) => e.name);
  } catch {
    return { dir, present: false, zones: [], skipped, unknown };
  }
  const parsed = names.map((n) => ({ n, m: ZONE_DIR.exec(n) }))
    .filter((x) => x.m !== null && isDir(`${dir}/${x.n}`))
    .map(({ n, m }) => ({ zone: n, mmio: m![1] !== undefined, top: Number(m![2]), sub: m![3] }))
    // MSR zones first, so that an mmio zone is the repeat; then by zone number.
    .sort((a, b) =>
      Number(a.mmio) - Number(b.mmio) || a.top - b.top || Number(a.sub ?? -1) - Number(b.sub ?? -1)
    );
  const zones: PowerZone[] = [];
  const seen = new Set<string>();
  for (const z of parsed) {
    const path = `${dir}/${z.zone}`;
    const name = readText(`${path}/name`) ?? "";
    const d = powercapDomain(name);
    if (d === undefined) {
      unknown.push(`${z.zone} (name "${name}")`);
      skipped.push(`${z.zone} (name "${name}" is not a RAPL domain this plugin knows)`);
      continue;
    }
    let pkg = d.package;
    let die = d.die;
    if (pkg === undefined && z.sub !== undefined) {
      const parent = powercapDomain(
        readText(`${dir}/${z.zone.slice(0, z.zone.lastIndexOf(":"))}/name`) ?? "",
      );
      pkg = parent?.package;
      die = parent?.die;
    }
    pkg ??= 0; // psys, or a top-level dram zone: Alumet puts them on socket 0
    // The die is part of the key: die 1 of a package is not a repeat of die 0.
    const key = d.domain === "platform" ? "platform" : `${d.domain}/${pkg}/${die ?? ""}`;
    if (seen.has(key)) {
      skipped.push(
        `${z.zone} ("${name}" repeats a zone already measured${z.mmio ? ": the mmio interface" : ""})`,
      );
      continue;
    }
    seen.add(key);
    const max = Number(readText(`${path}/max_energy_range_uj`));
    const unreadable = unreadableReason(`${path}/energy_uj`) ??
      (Number.isFinite(max) && max > 0
        ? undefined
        : `${path}/max_energy_range_uj is missing or not a number`);
    zones.push({
      kind: "powercap",
      zone: z.zone,
      name,
      path,
      domain: d.domain,
      package: pkg,
      ...(die === undefined ? {} : { die }),
      maxEnergyUj: Number.isFinite(max) && max > 0 ? max : 1,
      ...(unreadable === undefined ? {} : { unreadable }),
    });
  }
  return { dir, present: true, zones, skipped, unknown };
}

/** What the perf `power` PMU offers. */
export interface PerfScan {
  /** `<root>/bus/event_source/devices`. */
  readonly pmuRoot: string;
  /** Whether the `power` PMU exists. */
  readonly present: boolean;
  /** One counter per event and package (platform: one in all), in the order they are read. */
  readonly counters: PerfChannel[];
  /** Events or CPUs left out, with why. */
  readonly skipped: string[];
  /** Why the PMU cannot be used at all (no cpumask, an unreadable type…). */
  readonly error?: string;
}

/**
 * The counters to open on the perf `power` PMU: every `energy-<name>` event whose domain is known, with its
 * scale (it must be in Joules), once on each CPU of `cpumask` (one per package, or per die on packages of
 * several dies), never once per CPU. The platform (psys) event too is opened on every `cpumask` CPU: on
 * machines of several packages it counts only on the "master package", which is not always package 0, and
 * reads 0 on the others (kernel commit "powercap/intel_rapl: enumerate Psys RAPL domain together with
 * package RAPL domain", 2020), so the source sums them into one `platform` point without counting twice.
 *
 * @example
 * ```ts
 * import { planPerf } from "./discovery.ts";
 * import assert from "node:assert/strict";
 * assert.equal(planPerf("/nonexistent").present, false);
 * ```
 */
export function planPerf(root: string): PerfScan {
  const pmuRoot = `${root}/bus/event_source/devices`;
  const skipped: string[] = [];
  if (!isDir(`${pmuRoot}/power`)) return { pmuRoot, present: false, counters: [], skipped };
  let cpus: number[] | undefined;
  try {
    cpus = readPmuCpumask("power", pmuRoot);
  } catch (e) {
    return { pmuRoot, present: true, counters: [], skipped, error: messageOf(e) };
  }
  if (cpus === undefined || cpus.length === 0) {
    return {
      pmuRoot,
      present: true,
      counters: [],
      skipped,
      error: `${pmuRoot}/power/cpumask is missing or empty: cannot tell one CPU per package`,
    };
  }
  const packages = cpus.map((cpu, i) => {
    const id = Number(readText(`${root}/devices/system/cpu/cpu${cpu}/topology/physical_package_id`));
    return Number.isInteger(id) && id >= 0 ? id : i; // Alumet's rule: the i-th CPU of the mask is socket i
  });
  const counters: PerfChannel[] = [];
  for (const name of listPmuEvents("power", pmuRoot)) {
    if (!name.startsWith("energy-")) continue;
    const domain = perfDomain(name);
    if (domain === undefined) {
      skipped.push(`power/${name}/ (not a RAPL domain this plugin knows)`);
      continue;
    }
    const text = `power/${name}/`;
    let scale: number | undefined;
    let unit: string | undefined;
    try {
      const ev = parsePerfEvent(text, { sysfsRoot: pmuRoot });
      scale = ev.scale;
      unit = ev.unit;
    } catch (e) {
      skipped.push(`${text} (${messageOf(e)})`);
      continue;
    }
    if (scale === undefined || !(scale > 0)) {
      skipped.push(`${text} (no ${name}.scale: its counts cannot be turned into joules)`);
      continue;
    }
    if (unit !== undefined && unit !== "Joules") {
      skipped.push(`${text} (unit "${unit}", not Joules)`);
      continue;
    }
    cpus.forEach((cpu, i) =>
      counters.push({ kind: "perf", event: text, pmuRoot, cpu, package: packages[i]!, domain, scale: scale! })
    );
  }
  return { pmuRoot, present: true, counters, skipped };
}

/** The domains of a list of channels, in Alumet's order. */
export function domainsOf(channels: readonly { domain: RaplDomain }[]): RaplDomain[] {
  const set = new Set(channels.map((c) => c.domain));
  return RAPL_DOMAINS.filter((d) => set.has(d));
}

/** The safe subset: the domains both interfaces list (all of one when the other lists none). */
export interface SafeSubset {
  readonly domains: RaplDomain[];
  /** Whether the two interfaces disagreed (the subset is then smaller than one of them). */
  readonly differ: boolean;
  readonly perf: RaplDomain[];
  readonly powercap: RaplDomain[];
}

/**
 * Compares the domains of the two interfaces (Alumet's `check_domains_consistency`): when both list domains
 * and the lists differ, the intersection; when one lists none, the other's.
 *
 * @example
 * ```ts
 * import { safeSubset } from "./discovery.ts";
 * import assert from "node:assert/strict";
 * const s = safeSubset([{ domain: "package" }], [{ domain: "package" }, { domain: "pp0" }]);
 * assert.deepEqual(s.domains, ["package"]);
 * assert.equal(s.differ, true);
 * ```
 */
export function safeSubset(
  perf: readonly { domain: RaplDomain }[],
  powercap: readonly { domain: RaplDomain }[],
): SafeSubset {
  const p = domainsOf(perf);
  const c = domainsOf(powercap);
  if (p.length === 0 || c.length === 0) {
    return { domains: p.length === 0 ? c : p, differ: false, perf: p, powercap: c };
  }
  const differ = p.join() !== c.join();
  return { domains: differ ? p.filter((d) => c.includes(d)) : p, differ, perf: p, powercap: c };
}

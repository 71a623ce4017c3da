/**
 * RAPL domains as Alumet names them (`plugins/rapl/src/domains.rs`): the value of the `domain` attribute, the
 * names each kernel interface gives them, and the resource a domain's energy is reported on.
 *
 * @module
 */
import { Resource } from "../../src/model/resources.ts";

/** A RAPL domain, by Alumet's attribute value. */
export type RaplDomain = "package" | "pp0" | "pp1" | "dram" | "platform";

/** Every domain, in Alumet's order (the order of the `<d>_total` points). */
export const RAPL_DOMAINS: readonly RaplDomain[] = ["package", "pp0", "pp1", "dram", "platform"];

/** powercap zone names (`<zone>/name`) → domain; `package-N` is handled apart. */
const POWERCAP_NAMES: Readonly<Record<string, RaplDomain>> = {
  core: "pp0",
  uncore: "pp1",
  dram: "dram",
  psys: "platform",
};

/** perf `power` PMU event names (`events/energy-<name>`) → domain. */
const PERF_NAMES: Readonly<Record<string, RaplDomain>> = {
  pkg: "package",
  cores: "pp0",
  gpu: "pp1",
  ram: "dram",
  psys: "platform",
};

/**
 * The domain, package and die of a powercap zone name: `package-1` → package 1; `package-0-die-1` → package
 * 0, die 1 (drivers/powercap/intel_rapl_common.c names a zone per die, `package-%d-die-%d`, when a package
 * has more than one die, e.g. Xeon Platinum 9200 / Cascade Lake-AP); `core`, `uncore`, `dram`, `psys` → their
 * domain, without package (it is the parent zone's). Undefined for a name this plugin does not know.
 *
 * @example
 * ```ts
 * import { powercapDomain } from "./domains.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(powercapDomain("package-1"), { domain: "package", package: 1 });
 * assert.deepEqual(powercapDomain("package-0-die-1"), { domain: "package", package: 0, die: 1 });
 * assert.deepEqual(powercapDomain("core"), { domain: "pp0" });
 * assert.equal(powercapDomain("package-0-tile-1"), undefined);
 * ```
 */
export function powercapDomain(
  name: string,
): { domain: RaplDomain; package?: number; die?: number } | undefined {
  const m = /^package-(\d+)(?:-die-(\d+))?$/.exec(name);
  if (m !== null) {
    return m[2] === undefined
      ? { domain: "package", package: Number(m[1]) }
      : { domain: "package", package: Number(m[1]), die: Number(m[2]) };
  }
  const d = POWERCAP_NAMES[name];
  return d === undefined ? undefined : { domain: d };
}

/** The domain of a perf `power` event (`energy-pkg` or `pkg`), or undefined. */
export function perfDomain(event: string): RaplDomain | undefined {
  return PERF_NAMES[event.replace(/^energy-/, "")];
}

/**
 * The resource Alumet reports a domain on: the CPU package for package, pp0 and pp1; the package's DRAM for
 * dram; the local machine for platform (psys).
 */
export function domainResource(domain: RaplDomain, pkg: number): Resource {
  switch (domain) {
    case "dram":
      return Resource.dram(pkg);
    case "platform":
      return Resource.localMachine();
    default:
      return Resource.cpuPackage(pkg);
  }
}

/** The index of a domain in {@linkcode RAPL_DOMAINS} (for per-domain totals in a typed array). */
export function domainIndex(domain: RaplDomain): number {
  return RAPL_DOMAINS.indexOf(domain);
}

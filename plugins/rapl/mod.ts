/**
 * The `rapl` plugin: the energy of CPU packages, their cores (pp0), integrated GPU (pp1), DRAM and the whole
 * platform (psys), from Intel and AMD RAPL counters, as Alumet's `rapl` plugin measures it: metric
 * `rapl_consumed_energy` (J per poll interval), attribute `domain`, and per-domain sums over sockets
 * (`domain = <d>_total`).
 *
 * It prefers the perf `power` PMU (one counter per package, 64-bit counts scaled to joules) and falls back to
 * powercap (`energy_uj`, wrapping at `max_energy_range_uj`). Both are compared at start and only the domains
 * both list are measured (the "safe subset"). A machine without RAPL, or where it cannot be read, gets one
 * warning with the fix, and the agent runs without this source.
 *
 * ```ts
 * import { testPlugin } from "../../src/testing/mod.ts";
 * import rapl from "./mod.ts";
 * import assert from "node:assert/strict";
 * await using h = await testPlugin(rapl, { sysfs_root: "/nonexistent" }); // no RAPL: no source, no throw
 * assert.equal(h.sources.size, 0);
 * ```
 *
 * @module
 */
import { projectModule } from "../../src/plugin/module_url.ts";
import type { Diagnosis, Plugin, StartContext } from "../../src/plugin/plugin.ts";
import { definePlugin } from "../../src/plugin/define.ts";
import { defineMetrics } from "../../src/model/metric_set.ts";
import { unit } from "../../src/model/units.ts";
import { duration, z } from "../../src/plugin/schema.ts";
import { messageOf } from "../../src/errors.ts";
import { HOT_PERIOD_MS } from "../../src/pipeline/sampler.ts";
import { perfEventParanoid } from "../../src/ffi/perf_event.ts";
import { type PerfScan, planPerf, type PowercapScan, safeSubset, scanPowercap } from "./discovery.ts";
import { type RaplChannel, RaplSource, type RaplSourceConfig } from "./source.ts";

export * from "./domains.ts";
export * from "./discovery.ts";
export {
  createSource,
  type PerfChannel,
  type PowercapChannel,
  type RaplChannel,
  RaplSource,
  STILL_MS,
} from "./source.ts";
export type { RaplSourceConfig } from "./source.ts";

/**
 * `[plugins.rapl]`: Alumet's keys, and `sysfs_root` (fixtures stand in for `/sys`).
 *
 * @example
 * ```ts
 * import { raplConfigSchema } from "./mod.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(raplConfigSchema.parse({}), {
 *   poll_interval: 1000, flush_interval: 5000, no_perf_events: false, sysfs_root: "/sys",
 * });
 * ```
 */
export const raplConfigSchema = z.strictObject({
  /** Time between two reads of the counters. Default `"1s"`. */
  poll_interval: duration().prefault("1s"),
  /** Time between two flushes of the measurements. Default `"5s"`. */
  flush_interval: duration().prefault("5s"),
  /** Use powercap only, never the perf `power` PMU. Default false. */
  no_perf_events: z.boolean().prefault(false),
  /** Where sysfs is mounted (powercap, the PMUs, the CPU topology). Default `"/sys"`. */
  sysfs_root: z.string().min(1).prefault("/sys"),
});

/** The validated `[plugins.rapl]` table. */
export type RaplConfig = z.infer<typeof raplConfigSchema>;

/** The plugin's metric, as Alumet declares it. */
export const RAPL_METRICS = defineMetrics({
  energy: {
    name: "rapl_consumed_energy",
    unit: unit("J"),
    valueType: "f64",
    kind: "delta",
    description: "Energy consumed since the previous measurement, as reported by RAPL",
  },
});

/** The fix for an `energy_uj` only root can read (Linux 5.10 and later, CVE-2020-8694). */
export function unreadableFix(dir: string): string {
  return "energy_uj is readable by root only since Linux 5.10 (CVE-2020-8694). Run the agent as root or " +
    "with CAP_DAC_READ_SEARCH (setcap cap_dac_read_search=ep on the deno binary, or " +
    "AmbientCapabilities=CAP_DAC_READ_SEARCH in its systemd unit), or make the counters readable: " +
    `sudo chmod a+r ${dir}/intel-rapl:*/energy_uj ${dir}/intel-rapl:*:*/energy_uj (until reboot; to keep it, ` +
    'a udev rule: ACTION=="add", SUBSYSTEM=="powercap", RUN+="/bin/chmod a+r /sys%p/energy_uj")';
}

/** Said when `no_perf_events` keeps the perf counters closed and nothing else measures. */
export const PERF_DISABLED = "perf_events is disabled (no_perf_events = true): set it to false";

/** The intel-rapl zones found but not understood, said as such (empty when none). */
function notUnderstood(pc: PowercapScan): string {
  return pc.unknown.length === 0 ? "" : `intel-rapl zones found in ${pc.dir} but not understood: ` +
    `${pc.unknown.join(", ")} (this plugin knows package-N, package-N-die-M, core, uncore, dram and psys; ` +
    "a kernel naming it does not know yet: please report it with the names above)";
}

/** The fix when a machine shows no RAPL interface this plugin can use. */
export function noRaplFix(pc: PowercapScan, pf: PerfScan): string {
  if (pc.unknown.length > 0) return `${notUnderstood(pc)}; and no "power" PMU in ${pf.pmuRoot}`;
  return `no "power" PMU in ${pf.pmuRoot} and no intel-rapl zone in ${pc.dir}. On an Intel or AMD x86 ` +
    "machine, load the powercap driver (modprobe intel_rapl_msr; AMD needs Linux 5.11 or later) and use a kernel " +
    "with the RAPL perf PMU (CONFIG_PERF_EVENTS_INTEL_RAPL); in a container, mount the host's /sys so that " +
    "/sys/class/powercap is visible; a virtual machine usually exposes no RAPL";
}

/** The fix when the perf counters do not open. */
function perfFix(why: string, powercapUsed: boolean): string {
  const meanwhile = powercapUsed ? "; powercap is used meanwhile" : "";
  return /EACCES|EPERM/.test(why)
    ? `kernel.perf_event_paranoid is ${perfEventParanoid() ?? "unknown"}: run as root, grant CAP_PERFMON ` +
      `(setcap cap_perfmon=ep on the deno binary), or sysctl -w kernel.perf_event_paranoid=0${meanwhile}`
    : `see the error for why the perf power counters did not open${meanwhile} (perf_events costs less per read)`;
}

/** What the plugin decided at start. */
export interface RaplChoice {
  /** The interface used, or undefined when there is nothing to measure. */
  readonly interface?: "perf" | "powercap";
  readonly channels: readonly RaplChannel[];
}

/** The plugin instance; {@linkcode RaplPlugin.choice} tells what `start` chose. */
export class RaplPlugin implements Plugin {
  readonly #config: RaplConfig;
  #choice: RaplChoice = { channels: [] };

  constructor(config: RaplConfig) {
    this.#config = config;
  }

  /** The interface and counters chosen by the last `start`. */
  get choice(): RaplChoice {
    return this.#choice;
  }

  start(ctx: StartContext): void {
    const c = this.#config;
    const log = ctx.log;
    const pc = scanPowercap(c.sysfs_root);
    const pf = planPerf(c.sysfs_root);
    this.#choice = { channels: [] };
    for (const s of [...pc.skipped, ...pf.skipped]) log.debug(`Left out: ${s}`);
    if (!pf.present && pc.zones.length === 0) {
      log.warn(
        `${
          pc.unknown.length > 0 ? "No RAPL zone this plugin understands" : "No RAPL on this machine"
        }, the ` +
          `rapl source is not added: ${noRaplFix(pc, pf)}`,
      );
      return;
    }
    if (pf.error !== undefined) log.warn(`The perf power PMU cannot be used: ${pf.error}; trying powercap`);
    const subset = safeSubset(pf.counters, pc.zones);
    if (subset.differ) {
      log.warn(
        `powercap and perf_events do not list the same RAPL domains (perf_events: ${
          subset.perf.join(", ")
        }; ` +
          `powercap: ${subset.powercap.join(", ")}): only the domains both list are measured ` +
          `(${subset.domains.join(", ") || "none"}). A newer kernel may fix it; on AMD, only package (and ` +
          "sometimes core) is supported, and Linux before 5.17 lists more events than work",
      );
    }
    const inSubset = <T extends { domain: string }>(xs: T[]) =>
      xs.filter((x) => (subset.domains as string[]).includes(x.domain));
    const perfCounters = inSubset(pf.counters);
    const zones = inSubset(pc.zones);
    const metric = ctx.createMetrics(RAPL_METRICS).energy;

    let chosen: RaplChoice | undefined;
    if (!c.no_perf_events && perfCounters.length > 0) {
      try {
        RaplSource.open({ metric, channels: perfCounters }).close(); // opens, or says why not
        chosen = { interface: "perf", channels: perfCounters };
      } catch (e) {
        log.warn(
          `Cannot open the perf power counters (${messageOf(e)}); falling back to powercap, which costs ` +
            "more per read",
        );
      }
    }
    if (chosen === undefined) {
      const unreadable = zones.filter((z) => z.unreadable !== undefined);
      const readable = zones.filter((z) => z.unreadable === undefined);
      if (unreadable.length > 0) {
        const what = unreadable.map((z) => `${z.path}/energy_uj (${z.unreadable})`).join(", ");
        log.warn(
          `Cannot read ${what}${readable.length > 0 ? "; those domains are not measured" : ""}: ` +
            unreadableFix(pc.dir) +
            (c.no_perf_events && perfCounters.length > 0 ? `; or use perf_events: ${PERF_DISABLED}` : ""),
        );
      }
      if (readable.length > 0) chosen = { interface: "powercap", channels: readable };
    }
    if (chosen === undefined) {
      if (zones.length === 0) {
        const perfWhy = !pf.present
          ? "no power PMU"
          : c.no_perf_events
          ? PERF_DISABLED
          : perfCounters.length === 0
          ? "the power PMU lists no energy event this plugin knows"
          : "the perf power counters did not open";
        const pcWhy = !pc.present
          ? `no ${pc.dir}`
          : pc.unknown.length > 0
          ? notUnderstood(pc)
          : `no usable intel-rapl zone in ${pc.dir}`;
        log.warn(`No RAPL counter can be read here, the rapl source is not added: ${perfWhy}; and ${pcWhy}`);
      } else log.warn("No RAPL counter can be read here: the rapl source is not added");
      return;
    }
    this.#choice = chosen;
    log.info(
      `RAPL domains${subset.differ ? ' ("safe subset")' : ""} through ${chosen.interface}: ` +
        `${subset.domains.join(", ")} (${chosen.channels.length} counters)`,
    );
    const config: RaplSourceConfig = { metric, channels: chosen.channels };
    const trigger = { pollInterval: c.poll_interval, flushInterval: c.flush_interval };
    if (c.poll_interval < HOT_PERIOD_MS) {
      ctx.addSource("in", { module: projectModule("plugins/rapl/source.ts"), config }, trigger);
    } else ctx.addSource("in", RaplSource.open(config, log), trigger);
  }
}

/**
 * `alumet doctor`: what RAPL interfaces are here, whether they can be read, and the fix when not. The checks
 * fail only when this plugin cannot measure here: when one interface measures the safe subset, the other's
 * problem is informational (ok, its fix kept), so that one config across a fleet reads the same everywhere.
 */
export function diagnoseRapl(config: RaplConfig): Diagnosis[] {
  const pc = scanPowercap(config.sysfs_root);
  const pf = planPerf(config.sysfs_root);
  if (!pf.present && pc.zones.length === 0) {
    return [{
      check: "RAPL interfaces",
      ok: false,
      detail: pc.unknown.length > 0 ? notUnderstood(pc) : "none found",
      fix: noRaplFix(pc, pf),
    }];
  }
  const subset = safeSubset(pf.counters, pc.zones);
  const inSubset = <T extends { domain: string }>(xs: T[]) =>
    xs.filter((x) => (subset.domains as string[]).includes(x.domain));
  const perfCounters = inSubset(pf.counters);
  const zones = inSubset(pc.zones);
  // Why perf cannot measure the safe subset here (undefined when it can), as start would find it.
  let perfWhy: string | undefined;
  if (!pf.present) perfWhy = `no "power" PMU in ${pf.pmuRoot}`;
  else if (config.no_perf_events) perfWhy = PERF_DISABLED;
  else if (pf.error !== undefined) perfWhy = pf.error;
  else if (perfCounters.length === 0) perfWhy = "no energy event";
  else {
    try {
      RaplSource.open({ metric: 0, channels: perfCounters }).close();
    } catch (e) {
      perfWhy = messageOf(e);
    }
  }
  const perfOk = perfWhy === undefined;
  const powercapOk = zones.length > 0 && zones.every((z) => z.unreadable === undefined);
  const domains = subset.domains.join(", ");
  const out: Diagnosis[] = [];
  const unreadable = pc.zones.filter((z) => z.unreadable !== undefined);
  if (pc.zones.length > 0) {
    out.push({
      check: "powercap energy_uj readable",
      ok: powercapOk || perfOk,
      detail: unreadable.length === 0
        ? `${pc.zones.length} zones: ${pc.zones.map((z) => `${z.zone} (${z.name})`).join(", ")}`
        : `cannot read ${unreadable.map((z) => `${z.zone}/energy_uj (${z.unreadable})`).join(", ")}` +
          (perfOk ? `; not needed: perf_events measures ${domains}` : ""),
      ...(unreadable.length === 0 ? {} : { fix: unreadableFix(pc.dir) }),
    });
  } else {
    const understood = pc.unknown.length > 0 ? ` (${notUnderstood(pc)})` : "";
    out.push({
      check: "powercap zones",
      ok: perfOk,
      detail: `none in ${pc.dir}${understood}: ${
        perfOk ? "perf_events is used" : `and perf_events cannot measure either: ${perfWhy}`
      }`,
      ...(perfOk ? {} : {
        fix: config.no_perf_events && pf.present
          ? "set no_perf_events = false in [plugins.rapl]"
          : perfFix(perfWhy!, false),
      }),
    });
  }
  if (pf.present && (!config.no_perf_events || pc.zones.length > 0)) {
    out.push({
      check: "perf power PMU",
      ok: perfOk || powercapOk,
      detail: perfOk
        ? `${perfCounters.length} counters (${[...new Set(perfCounters.map((p) => p.event))].join(", ")})`
        : `${perfWhy}${powercapOk ? `; not needed: powercap measures ${domains}` : ""}`,
      ...(perfOk ? {} : {
        fix: config.no_perf_events
          ? "set no_perf_events = false in [plugins.rapl] (perf_events costs less per read)"
          : perfFix(perfWhy!, powercapOk),
      }),
    });
  }
  if (subset.differ) {
    out.push({
      check: "RAPL domains consistent",
      ok: true,
      detail: `perf_events lists ${subset.perf.join(", ")}, powercap ${subset.powercap.join(", ")}: ` +
        `only ${domains || "none"} are measured`,
    });
  }
  return out;
}

/** The rapl plugin's metadata: `[plugins.rapl]`. */
export const raplPlugin = definePlugin({
  name: "rapl",
  version: "0.1.0",
  description:
    "Measures CPU package, core, DRAM and platform energy through RAPL (perf power PMU or powercap)",
  config: raplConfigSchema,
  init: (config) => new RaplPlugin(config),
  diagnose: diagnoseRapl,
});

export default raplPlugin;

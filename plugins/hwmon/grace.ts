/**
 * NVIDIA Grace and Grace Hopper power telemetry, as Alumet's `grace-hopper` plugin reads it
 * (`plugins/grace-hopper/src/{hwmon,probe}.rs` in `alumet-dev/alumet`): the ACPI power meter exposes one hwmon
 * per sensor, whose `device/power1_oem_info` says what it measures (`Module Power Socket 0`, `Grace Power
 * Socket 1`, `CPU Power Socket 0`, `SysIO Power Socket 0`) and whose `device/power1_average` is the power in
 * µW, averaged by the firmware over `power1_average_interval` ms.
 *
 * Each poll gives, with Alumet's names and attributes:
 * - `grace_instant_power` (µW) and `grace_energy_consumption` (mJ, trapezoids between two polls) per sensor,
 *   resource `cpu_package` = the socket, attribute `sensor` = module | grace | cpu | sysio;
 * - `sensor = dram`, resource `dram` = the socket: the estimate grace − cpu − sysio, when the three exist and
 *   cpu + sysio ≤ grace;
 * - resource `local_machine`: `sensor = <kind>_total` per kind (summed over sockets), and `sensor = total`,
 *   the module total on Grace Hopper or the grace total on Grace (no module sensor).
 *
 * @module
 */
import type { Batch } from "../../src/model/batch.ts";
import type { Source } from "../../src/plugin/plugin.ts";
import type { Timestamp } from "../../src/model/timestamp.ts";
import { Resource } from "../../src/model/resources.ts";
import type { GraceMetrics } from "./metrics.ts";
import { IntAttribute, listNames, readTrimmed } from "./sysfs.ts";

/** What a Grace telemetry sensor measures. */
export type GraceKind = "module" | "grace" | "cpu" | "sysio";

/** A sensor found, as plain data. */
export interface GraceSensor {
  readonly kind: GraceKind;
  readonly socket: number;
  /** `…/hwmonN/device/power1_average` (µW). */
  readonly powerFile: string;
  /** The hwmon directory, for messages. */
  readonly hwmon: string;
}

/**
 * Parses `power1_oem_info` (`Grace Power Socket 0`, any case).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseOemInfo } from "./grace.ts";
 * assert.deepEqual(parseOemInfo("SysIO Power Socket 1\n"), { kind: "sysio", socket: 1 });
 * assert.equal(parseOemInfo("Total Power"), undefined);
 * ```
 */
export function parseOemInfo(text: string): { kind: GraceKind; socket: number } | undefined {
  const m = /^(module|grace|cpu|sysio) power socket (\d+)$/.exec(text.trim().toLowerCase());
  return m === null ? undefined : { kind: m[1] as GraceKind, socket: Number(m[2]) };
}

/**
 * Finds the Grace telemetry sensors under `rootPath` (Alumet's `root_path`, `/sys/class/hwmon`): each
 * `hwmon*` whose `device/` (or, failing that, itself) has `power1_oem_info` and `power1_average`.
 *
 * @returns the sensors, and one line per directory that looks like one but cannot be used
 */
export function discoverGrace(rootPath: string): { sensors: GraceSensor[]; problems: string[] } {
  const sensors: GraceSensor[] = [];
  const problems: string[] = [];
  for (const hwmon of listNames(rootPath, true)) {
    for (const dir of [`${rootPath}/${hwmon}/device`, `${rootPath}/${hwmon}`]) {
      const info = readTrimmed(`${dir}/power1_oem_info`);
      if (info === undefined) continue;
      const parsed = parseOemInfo(info);
      if (parsed === undefined) {
        problems.push(`${dir}/power1_oem_info: "${info}" is not "<Module|Grace|CPU|SysIO> Power Socket <n>"`);
        break;
      }
      const powerFile = `${dir}/power1_average`;
      try {
        IntAttribute.open(powerFile).close();
      } catch (e) {
        problems.push(`${powerFile}: ${e instanceof Error ? e.message : String(e)}`);
        break;
      }
      sensors.push({ ...parsed, powerFile, hwmon });
      break;
    }
  }
  return { sensors, problems };
}

interface Probe {
  readonly sensor: GraceSensor;
  readonly file: IntAttribute;
  readonly resource: Resource;
  readonly attrs: Readonly<Record<string, string>>;
  prevPower: number;
  prevTime: Timestamp;
  valid: boolean;
}

const KINDS: readonly GraceKind[] = ["grace", "cpu", "sysio", "module"];
const ATTRS = Object.fromEntries(
  [...KINDS, "dram"].flatMap((k) => [
    [k, Object.freeze({ sensor: k })],
    [`${k}_total`, Object.freeze({ sensor: `${k}_total` })],
  ]),
) as Record<string, Readonly<Record<string, string>>>;
const TOTAL = Object.freeze({ sensor: "total" });

/** What {@linkcode createGraceSource} takes. */
export interface GraceSourceConfig {
  readonly metrics: GraceMetrics;
  readonly sensors: readonly GraceSensor[];
}

/** Reads the Grace sensors; see the module documentation for what it pushes. */
export class GraceSource implements Source {
  readonly #metrics: GraceMetrics;
  /** Probes per socket, sockets in order. */
  readonly #sockets: [number, Probe[]][] = [];

  constructor(config: GraceSourceConfig) {
    this.#metrics = config.metrics;
    const bySocket = new Map<number, Probe[]>();
    try {
      for (const s of config.sensors) {
        const list = bySocket.get(s.socket) ?? [];
        bySocket.set(s.socket, list);
        list.push({
          sensor: s,
          file: IntAttribute.open(s.powerFile),
          resource: Resource.cpuPackage(s.socket),
          attrs: ATTRS[s.kind]!,
          prevPower: 0,
          prevTime: 0n,
          valid: false,
        });
      }
    } finally {
      this.#sockets = [...bySocket].sort((a, b) => a[0] - b[0]);
    }
  }

  poll(batch: Batch, t: Timestamp): void {
    const m = this.#metrics;
    const totalPower = new Map<string, number>();
    const totalEnergy = new Map<string, number>();
    const add = (map: Map<string, number>, k: string, v: number) => map.set(k, (map.get(k) ?? 0) + v);
    for (const [socket, probes] of this.#sockets) {
      const power = new Map<GraceKind, number>();
      const energy = new Map<GraceKind, number>();
      for (const p of probes) {
        const uw = p.file.read();
        let mj: number | undefined;
        if (p.valid) {
          const dt = Number(t - p.prevTime) / 1e9;
          mj = ((uw + p.prevPower) / 2000) * Math.max(dt, 0); // µW·s → mJ
        }
        p.prevPower = uw;
        p.prevTime = t;
        p.valid = true;
        batch.push(m.power, uw, { resource: p.resource, attributes: p.attrs });
        power.set(p.sensor.kind, uw);
        add(totalPower, p.sensor.kind, uw);
        if (mj !== undefined) {
          batch.push(m.energy, mj, { resource: p.resource, attributes: p.attrs });
          energy.set(p.sensor.kind, mj);
          add(totalEnergy, p.sensor.kind, mj);
        }
      }
      const dramPower = dram(power);
      if (dramPower !== undefined) {
        batch.push(m.power, dramPower, { resource: Resource.dram(socket), attributes: ATTRS.dram! });
        add(totalPower, "dram", dramPower);
      }
      const dramEnergy = dram(energy);
      if (dramEnergy !== undefined) {
        batch.push(m.energy, dramEnergy, { resource: Resource.dram(socket), attributes: ATTRS.dram! });
        add(totalEnergy, "dram", dramEnergy);
      }
    }
    const local = Resource.localMachine();
    for (const [metric, totals] of [[m.power, totalPower], [m.energy, totalEnergy]] as const) {
      for (const k of [...KINDS, "dram"]) {
        const v = totals.get(k);
        if (v !== undefined) batch.push(metric, v, { resource: local, attributes: ATTRS[`${k}_total`]! });
      }
      const all = totals.get("module") ?? totals.get("grace");
      if (all !== undefined) batch.push(metric, all, { resource: local, attributes: TOTAL });
    }
  }

  reset(): void {
    for (const [, probes] of this.#sockets) for (const p of probes) p.valid = false;
  }

  close(): void {
    for (const [, probes] of this.#sockets) for (const p of probes) p.file.close();
    this.#sockets.length = 0;
  }
}

/** grace − cpu − sysio, when the three are known and it is not negative (as Alumet's DramComputation). */
function dram(v: Map<GraceKind, number>): number | undefined {
  const g = v.get("grace"), c = v.get("cpu"), s = v.get("sysio");
  if (g === undefined || c === undefined || s === undefined || c + s > g) return undefined;
  return g - c - s;
}

/** The Worker entry. */
export function createGraceSource(config: GraceSourceConfig): GraceSource {
  return new GraceSource(config);
}

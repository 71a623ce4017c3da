/**
 * Finds the power and energy sensors of `<sysfs_root>/class/hwmon/hwmon*` (kernel
 * `Documentation/hwmon/sysfs-interface.rst`):
 *
 * - `power<N>_input` (instantaneous) or `power<N>_average`, in µW, labelled by `power<N>_label`, or by
 *   `power<N>_oem_info` (the ACPI power meter of NVIDIA Grace / Grace Hopper, whose attributes live in the
 *   hwmon's `device/` directory);
 * - `energy<N>_input`, a cumulative counter in µJ, labelled by `energy<N>_label`;
 * - rails that expose only a voltage and a current (`in<N>_input` in mV, `curr<N>_input` in mA, INA3221 on
 *   Jetson), whose power is V×I: a current is paired with the voltage of the same label, or, when the current
 *   has no label of its own, with the voltage of the same index if that voltage is labelled (so the INA3221's
 *   unlabelled shunt voltages `in4..in7` and its sum current `curr4` are not taken for rails).
 *
 * An energy counter and a power reading with the same label (or the same index, both unlabelled) are one
 * sensor: its power comes from the power file and its energy from the counter. A sensor with only a power
 * reading has its energy integrated; one with only a counter has its power derived from the counter.
 *
 * @module
 */
import { exists, listNames, readTrimmed, unreadable } from "./sysfs.ts";

/** How a sensor's power is read. */
export type PowerSource = "power_input" | "power_average" | "voltage_current" | "energy_counter";

/** A sensor found, as plain data (it crosses to the source's Worker). */
export interface HwmonSensor {
  /** The hwmon's `name` (the driver's: `amdgpu`, `ina3221`, `power_meter`…). */
  readonly device: string;
  /** The hwmon directory's name (`hwmon3`; not stable across boots). */
  readonly hwmon: string;
  /** The label, or the attribute's prefix (`power1`) when there is none. */
  readonly sensor: string;
  /** The resource: `[kind, id]` (a GPU by PCI address for GPU drivers, else the local machine). */
  readonly resource: readonly [string, string];
  /** How the power is read. */
  readonly powerSource: PowerSource;
  /** `power*_input` or `power*_average` (µW). */
  readonly powerFile?: string;
  /** `in*_input` (mV) and `curr*_input` (mA) of a rail. */
  readonly voltageFile?: string;
  readonly currentFile?: string;
  /** `energy*_input` (µJ), when the sensor has a counter. */
  readonly energyFile?: string;
}

/** Which devices and labels to keep; empty lists keep all. */
export interface HwmonFilter {
  readonly devices?: readonly string[];
  readonly labels?: readonly string[];
}

/** What {@linkcode discoverHwmon} found. */
export interface HwmonDiscovery {
  /** The sensors to measure. */
  readonly sensors: HwmonSensor[];
  /** The hwmon devices seen (name and directory), with or without sensors. */
  readonly devices: { readonly name: string; readonly hwmon: string; readonly sensors: number }[];
  /** One line per file that exists but cannot be read (permissions), or per filter entry that matched nothing. */
  readonly problems: string[];
  /** The directory listed. */
  readonly classDir: string;
}

/** Drivers whose hwmon is a GPU's: their resource is `gpu` with the PCI address. */
const GPU_DRIVERS = new Set(["amdgpu", "radeon", "nouveau", "i915", "xe"]);
const PCI_ADDRESS = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;

/** The files of one hwmon: those of its directory, then those of `device/` it does not have. */
function attributeFiles(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  for (const sub of [dir, `${dir}/device`]) {
    for (const n of listNames(sub)) if (!files.has(n)) files.set(n, `${sub}/${n}`);
  }
  return files;
}

/** The label of `<prefix><N>`: `_label`, else `_oem_info` (Grace), trimmed; undefined when none. */
function labelOf(files: Map<string, string>, prefix: string): string | undefined {
  for (const suffix of ["_label", "_oem_info"]) {
    const f = files.get(`${prefix}${suffix}`);
    if (f !== undefined) {
      const t = readTrimmed(f);
      if (t !== undefined && t !== "") return t;
    }
  }
  return undefined;
}

/** The indexes N of the files `<kind><N>_<suffix>`. */
function indexes(files: Map<string, string>, kind: string, suffix: string): number[] {
  const re = new RegExp(`^${kind}(\\d+)_${suffix}$`);
  const out = new Set<number>();
  for (const n of files.keys()) {
    const m = re.exec(n);
    if (m !== null) out.add(Number(m[1]));
  }
  return [...out].sort((a, b) => a - b);
}

/** The resource of a hwmon: its GPU when a GPU driver owns it, else the local machine. */
function resourceOf(dir: string, name: string): readonly [string, string] {
  if (GPU_DRIVERS.has(name)) {
    try {
      const real = Deno.realPathSync(`${dir}/device`);
      const bus = real.slice(real.lastIndexOf("/") + 1);
      if (PCI_ADDRESS.test(bus)) return ["gpu", bus];
    } catch {
      // no device link: the machine
    }
  }
  return ["local_machine", ""];
}

/**
 * Lists the power and energy sensors under `<sysfsRoot>/class/hwmon`.
 *
 * @param sysfsRoot `/sys`, or a fixture tree
 * @param filter devices (hwmon names) and labels to keep
 * @returns the sensors, every hwmon seen, and the problems met
 */
export function discoverHwmon(sysfsRoot: string, filter: HwmonFilter = {}): HwmonDiscovery {
  const classDir = `${sysfsRoot}/class/hwmon`;
  const sensors: HwmonSensor[] = [];
  const devices: { name: string; hwmon: string; sensors: number }[] = [];
  const problems: string[] = [];
  const wantDevices = new Set(filter.devices ?? []);
  const wantLabels = new Set(filter.labels ?? []);
  const seenDevices = new Set<string>();
  const seenLabels = new Set<string>();
  for (const hwmon of listNames(classDir, true)) {
    const dir = `${classDir}/${hwmon}`;
    const name = readTrimmed(`${dir}/name`) ?? readTrimmed(`${dir}/device/name`) ?? hwmon;
    seenDevices.add(name);
    const found = sensorsOf(dir, hwmon, name, problems);
    const kept = found.filter((s) => {
      seenLabels.add(s.sensor);
      return (wantDevices.size === 0 || wantDevices.has(name)) &&
        (wantLabels.size === 0 || wantLabels.has(s.sensor));
    });
    devices.push({ name, hwmon, sensors: kept.length });
    sensors.push(...kept);
  }
  for (const d of wantDevices) {
    if (!seenDevices.has(d)) problems.push(`devices: no hwmon named "${d}" under ${classDir}`);
  }
  for (const l of wantLabels) {
    if (!seenLabels.has(l)) problems.push(`labels: no power sensor labelled "${l}" under ${classDir}`);
  }
  return { sensors, devices, problems, classDir };
}

/** The sensors of one hwmon directory. */
function sensorsOf(dir: string, hwmon: string, name: string, problems: string[]): HwmonSensor[] {
  const files = attributeFiles(dir);
  const resource = resourceOf(dir, name);
  const readable = (path: string | undefined): path is string => {
    if (path === undefined) return false;
    const why = unreadable(path);
    if (why !== undefined) problems.push(`${path}: ${why}`);
    return why === undefined;
  };
  type Partial = { sensor: string; labelled: boolean; index: number; power?: string; average?: boolean };
  const powers: Partial[] = [];
  for (const n of indexes(files, "power", "(?:input|average)")) {
    const input = files.get(`power${n}_input`);
    const average = files.get(`power${n}_average`);
    const file = readable(input) ? input : readable(average) ? average : undefined;
    if (file === undefined) continue;
    const label = labelOf(files, `power${n}`);
    powers.push({
      sensor: label ?? `power${n}`,
      labelled: label !== undefined,
      index: n,
      power: file,
      average: file === average,
    });
  }
  const out: HwmonSensor[] = [];
  const usedPower = new Set<Partial>();
  for (const n of indexes(files, "energy", "input")) {
    const file = files.get(`energy${n}_input`);
    if (!readable(file)) continue;
    const label = labelOf(files, `energy${n}`);
    const pair = powers.find((p) =>
      !usedPower.has(p) &&
      (label !== undefined ? p.labelled && p.sensor === label : !p.labelled && p.index === n)
    );
    if (pair !== undefined) usedPower.add(pair);
    out.push({
      device: name,
      hwmon,
      sensor: label ?? `energy${n}`,
      resource,
      powerSource: pair === undefined ? "energy_counter" : pair.average ? "power_average" : "power_input",
      ...(pair !== undefined ? { powerFile: pair.power! } : {}),
      energyFile: file,
    });
  }
  for (const p of powers) {
    if (usedPower.has(p)) continue;
    out.push({
      device: name,
      hwmon,
      sensor: p.sensor,
      resource,
      powerSource: p.average ? "power_average" : "power_input",
      powerFile: p.power!,
    });
  }
  // Rails with a voltage and a current and no power reading of their own.
  const taken = new Set(out.map((s) => s.sensor));
  const voltages = indexes(files, "in", "input").map((n) => ({ n, label: labelOf(files, `in${n}`) }));
  for (const n of indexes(files, "curr", "input")) {
    const own = labelOf(files, `curr${n}`);
    const v = own !== undefined
      ? voltages.find((x) => x.label === own)
      : voltages.find((x) => x.n === n && x.label !== undefined);
    if (v === undefined) continue;
    const label = own ?? v.label!;
    if (taken.has(label)) continue;
    const voltageFile = files.get(`in${v.n}_input`);
    const currentFile = files.get(`curr${n}_input`);
    if (!readable(voltageFile) || !readable(currentFile)) continue;
    taken.add(label);
    out.push({
      device: name,
      hwmon,
      sensor: label,
      resource,
      powerSource: "voltage_current",
      voltageFile,
      currentFile,
    });
  }
  return out;
}

/** Whether `<sysfsRoot>/class/hwmon` exists at all (the driver core's class; absent in some containers). */
export function hasHwmonClass(sysfsRoot: string): boolean {
  return exists(`${sysfsRoot}/class/hwmon`);
}

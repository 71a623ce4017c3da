/**
 * Finding the GPUs and what each one answers, at start (as Alumet's `nvml/features.rs` and `detect.rs`): a
 * query that returns NVML_ERROR_NOT_SUPPORTED, or whose function the library lacks, is a feature the device
 * does not have; NVML_ERROR_NO_PERMISSION is one this user may not read (a MIG-enabled GPU's parent handle
 * refuses its process and memory queries to non-root callers), also skipped but named; an instant-power field
 * that fails in its own nvmlReturn means "no such field" (nvmlDeviceGetPowerUsage is used). Any other error
 * makes the device fail (skipped, or fatal with `skip_failed_devices = false`).
 *
 * Everything here is plain data so that it crosses to the source's Worker in its config.
 *
 * @module
 */
import { type DeviceHandle, NVML, type Nvml, NvmlError, NvmlFieldError } from "./nvml.ts";

/** What a device answers. */
export interface Features {
  energy: boolean;
  /** The instant-power field (NVML_FI_DEV_POWER_INSTANT). */
  powerField: boolean;
  /** nvmlDeviceGetPowerUsage */
  powerUsage: boolean;
  temperature: boolean;
  utilization: boolean;
  memory: boolean;
  clocks: boolean;
  encoder: boolean;
  decoder: boolean;
  processUtilization: boolean;
  compute: boolean;
  graphics: boolean;
}

/** A MIG device (a GPU instance of a MIG-enabled GPU) and what it answers. */
export interface MigInfo {
  /** Its index for nvmlDeviceGetMigDeviceHandleByIndex. */
  readonly index: number;
  readonly gpuInstanceId: number | undefined;
  readonly memory: boolean;
  readonly compute: boolean;
}

/** How `nvml_instant_power` is read on a device; the `power_reading` attribute. */
export type PowerReading = "instant" | "average_1s" | "unknown";

/** A working GPU. */
export interface DeviceInfo {
  readonly index: number;
  /** The PCI bus id NVML reports (`busId`): the resource id. */
  readonly busId: string;
  readonly name: string;
  /** The PCI device id (upper 16 bits of `pciDeviceId`). */
  readonly pciDevice: number;
  readonly architecture: number | undefined;
  readonly features: Features;
  /** What `nvml_instant_power` is on this device. */
  readonly powerReading: PowerReading;
  readonly mig: readonly MigInfo[];
  /** The features NVML refused to this user (NVML_ERROR_NO_PERMISSION), by Alumet's names. */
  readonly denied: readonly string[];
}

/** A device that failed at start. */
export interface DeviceFailure {
  readonly index: number;
  readonly busId: string | undefined;
  readonly error: NvmlError;
}

/**
 * Whether a query is supported: NOT_SUPPORTED, FUNCTION_NOT_FOUND and a field's own error are "no", and so
 * is NO_PERMISSION, which also adds `name` to `denied`; other errors propagate.
 */
function supported(f: () => unknown, name?: string, denied?: string[]): boolean {
  try {
    f();
    return true;
  } catch (e) {
    if (!(e instanceof NvmlError)) throw e;
    if (e instanceof NvmlFieldError) return false;
    if (e.code === NVML.ERROR_NOT_SUPPORTED || e.code === NVML.ERROR_FUNCTION_NOT_FOUND) return false;
    if (e.code === NVML.ERROR_NO_PERMISSION) {
      if (name !== undefined && denied !== undefined && !denied.includes(name)) denied.push(name);
      return false;
    }
    throw e;
  }
}

/** GA100 (A100, A30, A800): PCI device ids 0x2080–0x20FF. Its nvmlDeviceGetPowerUsage stays instantaneous. */
export function isGa100(pciDevice: number): boolean {
  return pciDevice >= 0x2080 && pciDevice <= 0x20ff;
}

/**
 * What nvmlDeviceGetPowerUsage returns on a device (NVML API reference: "On Ampere (except GA100) or newer
 * GPUs, the API returns power averaged over 1 sec interval. On GA100 and older architectures, instantaneous
 * power is returned").
 */
export function powerUsageReading(architecture: number | undefined, pciDevice: number): PowerReading {
  if (architecture === undefined) return "unknown";
  return architecture >= NVML.ARCH_AMPERE && !isGa100(pciDevice) ? "average_1s" : "instant";
}

/**
 * Features of one device.
 *
 * @param denied receives the names of the features NVML refused to this user (NVML_ERROR_NO_PERMISSION)
 */
export function detectFeatures(nvml: Nvml, d: DeviceHandle, denied: string[] = []): Features {
  const clocks = [NVML.CLOCK_GRAPHICS, NVML.CLOCK_SM, NVML.CLOCK_MEM, NVML.CLOCK_VIDEO];
  const has = (name: string, f: () => unknown) => supported(f, name, denied);
  return {
    energy: has("total_energy_consumption", () => nvml.totalEnergy(d)),
    // the field's own nvmlReturn only says "no instant field" (NvmlFieldError); the call's may fail the device
    powerField: has("instant_power(field)", () => nvml.instantPower(d)),
    powerUsage: has("instant_power", () => nvml.powerUsage(d)),
    temperature: has("temperature_gpu", () => nvml.temperature(d)),
    utilization: has("major_utilization", () => nvml.utilization(d)),
    memory: has("memory_info", () => nvml.memoryInfo(d)),
    clocks: clocks.every((c) => has("clock_info", () => nvml.clock(d, c))),
    encoder: has("encoder_utilization", () => nvml.codecUtilization(d, "encoder")),
    decoder: has("decoder_utilization", () => nvml.codecUtilization(d, "decoder")),
    processUtilization: has("process_utilization_stats", () => nvml.processUtilization(d, 0n)),
    compute: has("running_compute_processes", () => nvml.runningProcesses(d, "compute")),
    graphics: has("running_graphics_processes", () => nvml.runningProcesses(d, "graphics")),
  };
}

/** The features a device has, by Alumet's names, for the start-up line. */
export function describeFeatures(f: Features, powerReading: PowerReading): string {
  const names: string[] = [];
  if (f.energy) names.push("total_energy_consumption");
  if (f.powerField) names.push("instant_power(field)");
  else if (f.powerUsage) names.push(`instant_power(nvmlDeviceGetPowerUsage, ${powerReading})`);
  if (f.temperature) names.push("temperature_gpu");
  if (f.utilization) names.push("major_utilization");
  if (f.memory) names.push("memory_info");
  if (f.decoder) names.push("decoder_utilization");
  if (f.encoder) names.push("encoder_utilization");
  if (f.processUtilization) names.push("process_utilization_stats");
  if (f.compute) names.push("running_compute_processes");
  if (f.graphics) names.push("running_graphics_processes");
  if (f.clocks) names.push("clock_info");
  return names.join(", ") || "none";
}

/** Whether a device has anything to measure. */
export function hasAny(f: Features): boolean {
  return Object.values(f).some((v) => v);
}

/** One device: its identity, features and MIG devices; throws an NvmlError when it fails. */
export function probeDevice(nvml: Nvml, index: number): DeviceInfo {
  const d = nvml.handleByIndex(index);
  const { busId, pciDeviceId } = nvml.pciInfo(d);
  const name = nvml.has("nvmlDeviceGetName") ? nvml.name(d) : "";
  let architecture: number | undefined;
  if (nvml.has("nvmlDeviceGetArchitecture")) {
    try {
      architecture = nvml.architecture(d);
    } catch (e) {
      if (!(e instanceof NvmlError) || e.code !== NVML.ERROR_NOT_SUPPORTED) throw e;
    }
  }
  const denied: string[] = [];
  const features = detectFeatures(nvml, d, denied);
  const pciDevice = pciDeviceId >>> 16;
  const mig: MigInfo[] = [];
  if (nvml.migEnabled(d)) {
    for (const m of nvml.migDevices(d)) {
      mig.push({
        index: m.index,
        gpuInstanceId: m.gpuInstanceId,
        memory: supported(() => nvml.memoryInfo(m.handle), "memory_info (MIG)", denied),
        compute: supported(
          () => nvml.runningProcesses(m.handle, "compute"),
          "running_compute_processes (MIG)",
          denied,
        ),
      });
    }
  }
  return {
    index,
    busId,
    name,
    pciDevice,
    architecture,
    features,
    powerReading: features.powerField ? "instant" : powerUsageReading(architecture, pciDevice),
    mig,
    denied,
  };
}

/**
 * Every device: those that work, and those that failed (with the bus id when NVML still gave it).
 *
 * @param onFailure called for each failure; it may throw to stop the detection (`skip_failed_devices = false`)
 */
export function probeDevices(
  nvml: Nvml,
  onFailure: (f: DeviceFailure) => void,
): { devices: DeviceInfo[]; found: number } {
  const found = nvml.deviceCount();
  const devices: DeviceInfo[] = [];
  for (let i = 0; i < found; i++) {
    try {
      devices.push(probeDevice(nvml, i));
    } catch (e) {
      if (!(e instanceof NvmlError)) throw e;
      let busId: string | undefined;
      try {
        busId = nvml.pciInfo(nvml.handleByIndex(i)).busId;
      } catch {
        // the device does not even say where it is
      }
      onFailure({ index: i, busId, error: e });
    }
  }
  return { devices, found };
}

/**
 * The `nvml` plugin: NVIDIA GPUs through NVML (`libnvidia-ml.so.1`, loaded with Deno FFI), Alumet-compatible
 * (`[plugins.nvml]`, `nvml_*` metrics, one source `device_<bus id>` per GPU, resources `gpu` / bus id).
 *
 * At start it opens NVML, finds the GPUs and what each answers (a query that returns "not supported", or whose
 * function the driver's library lacks, is skipped and said so), then adds one **blocking** source per GPU: it
 * runs in a Worker of its own, so an NVML call that takes milliseconds never delays another source. No
 * library, no driver or no GPU: one warning with the fix, and the agent runs without this plugin's sources.
 *
 * @module
 */
import { projectModule } from "../../src/plugin/module_url.ts";
import type { Diagnosis, Plugin, StartContext } from "../../src/plugin/plugin.ts";
import { type DefinedPlugin, definePlugin } from "../../src/plugin/define.ts";
import { duration, z } from "../../src/plugin/schema.ts";
import { AlumetError, messageOf } from "../../src/errors.ts";
import { diagnoseLibrary, LibraryError } from "../../src/ffi/library.ts";
import { NVML, Nvml, NvmlError, nvmlSpec } from "./nvml.ts";
import { describeFeatures, type DeviceFailure, type DeviceInfo, hasAny, probeDevices } from "./device.ts";
import { NVML_ENERGY_METRICS, NVML_FULL_METRICS } from "./metrics.ts";
import type { NvmlMetricIds, NvmlSourceConfig } from "./source.ts";

export * from "./metrics.ts";
export { NVML, Nvml, NVML_ENV, NVML_SYMBOLS, NvmlError, NvmlFieldError, nvmlSpec } from "./nvml.ts";
export { type DeviceInfo, type Features, isGa100, type PowerReading, powerUsageReading } from "./device.ts";
export { createSource, NvmlSource, type NvmlSourceConfig } from "./source.ts";

/**
 * `[plugins.nvml]` and its defaults (Alumet's keys, plus `library_path`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nvmlConfigSchema } from "./mod.ts";
 * assert.deepEqual(nvmlConfigSchema.parse({}), {
 *   poll_interval: 1000,
 *   flush_interval: 5000,
 *   skip_failed_devices: true,
 *   mode: "full",
 * });
 * ```
 */
export const nvmlConfigSchema = z.strictObject({
  poll_interval: duration().prefault("1s"),
  flush_interval: duration().prefault("5s"),
  skip_failed_devices: z.boolean().prefault(true),
  mode: z.enum(["full", "minimal"]).prefault("full"),
  library_path: z.string().min(1).optional(),
});

/** The validated `[plugins.nvml]` table. */
export type NvmlConfig = z.infer<typeof nvmlConfigSchema>;

/** What to do when NVML cannot start, by its error. */
function initFix(e: NvmlError): string {
  switch (e.code) {
    case NVML.ERROR_DRIVER_NOT_LOADED:
      return "load the NVIDIA kernel driver (modprobe nvidia; nvidia-smi should then list the GPUs)";
    case NVML.ERROR_NO_PERMISSION:
      return "give this user access to /dev/nvidia* (the video group on most distributions)";
    case NVML.ERROR_LIB_RM_VERSION_MISMATCH:
      return "the library and the kernel driver differ in version: reboot, or reload the nvidia modules";
    default:
      return "check the NVIDIA driver with nvidia-smi";
  }
}

/** The optional NVML functions this library lacks, and what the plugin skips for each. */
const SKIPS: Readonly<Record<string, string>> = {
  nvmlDeviceGetFieldValues: "instant power (nvml_instant_power comes from nvmlDeviceGetPowerUsage)",
  nvmlDeviceGetArchitecture: "the architecture (power_reading is unknown where the instant field is absent)",
  nvmlDeviceGetMemoryInfo_v2: "reserved memory (nvml_gpu_memory_info kind=reserved)",
  nvmlDeviceGetMigMode: "MIG partitions",
  nvmlDeviceGetComputeRunningProcesses_v3: "nothing (uses _v2)",
  nvmlDeviceGetGraphicsRunningProcesses_v3: "nothing (uses _v2)",
  nvmlDeviceGetPciInfo_v3: "nothing (uses _v2)",
};

/** One line naming the optional functions absent from the library, and what that costs. */
export function describeMissing(missing: readonly string[]): string | undefined {
  if (missing.length === 0) return undefined;
  const parts = missing.map((s) => SKIPS[s] ? `${s} (skipped: ${SKIPS[s]})` : s);
  return `This NVML lacks ${parts.join(", ")}`;
}

class NvmlPlugin implements Plugin {
  readonly #config: NvmlConfig;
  /**
   * The discovery handle, kept open until the sources have started (postStart) or the plugin stops: while one
   * handle is open, the Workers' nvmlInit_v2 only counts a reference, where a last nvmlShutdown would make
   * them initialise the driver again (seconds on an 8-GPU node without persistence mode).
   */
  #discovery: Nvml | undefined;

  constructor(config: NvmlConfig) {
    this.#config = config;
  }

  #closeDiscovery(): void {
    const nvml = this.#discovery;
    this.#discovery = undefined;
    nvml?.close();
  }

  postStart(): void {
    this.#closeDiscovery();
  }

  stop(): void {
    this.#closeDiscovery();
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.#closeDiscovery();
    return Promise.resolve();
  }

  start(ctx: StartContext): void {
    const config = this.#config;
    let nvml: Nvml;
    try {
      nvml = Nvml.open(nvmlSpec(config.library_path));
    } catch (e) {
      if (e instanceof LibraryError) {
        ctx.log.warn(
          `${e.message}; no GPU is measured (the agent goes on without the nvml plugin's sources)`,
        );
        return;
      }
      if (e instanceof NvmlError) {
        ctx.log.warn(`NVML cannot start: ${e.message}; ${initFix(e)}; no GPU is measured`);
        return;
      }
      throw e;
    }
    let devices: DeviceInfo[];
    let keep = false;
    try {
      const missing = describeMissing(nvml.missing);
      if (missing !== undefined) ctx.log.warn(`${missing}; ${nvml.path}`);
      const onFailure = (f: DeviceFailure) => {
        const where = `GPU ${f.index}${f.busId ? ` (${f.busId})` : ""}`;
        if (!config.skip_failed_devices) {
          throw new AlumetError(
            `${where} failed: ${f.error.message}; set skip_failed_devices = true in [plugins.nvml] to measure the other GPUs`,
          );
        }
        ctx.log.warn(`Skipping ${where}: ${f.error.message}`);
      };
      const probed = probeDevices(nvml, onFailure);
      if (probed.found === 0) {
        ctx.log.warn("NVML found no GPU on this machine; no GPU is measured");
        return;
      }
      devices = probed.devices.filter((d) => {
        if (hasAny(d.features)) return true;
        ctx.log.warn(`Skipping GPU ${d.index} (${d.busId}): it supports none of the measured queries`);
        return false;
      });
      if (devices.length === 0) {
        ctx.log.warn(`${probed.found} GPU(s) found by NVML, none working (see above); no GPU is measured`);
        return;
      }
      keep = true;
    } finally {
      // The sources open NVML again in their Workers; this one, for discovery, stays open until they have.
      if (keep) this.#discovery = nvml;
      else nvml.close();
    }
    try {
      this.#addSources(ctx, devices, nvml.path);
    } catch (e) {
      this.#closeDiscovery();
      throw e;
    }
  }

  #addSources(ctx: StartContext, devices: DeviceInfo[], libraryPath: string): void {
    const config = this.#config;
    if (config.mode === "minimal") {
      devices = devices.filter((d) => {
        if (d.features.powerField || d.features.powerUsage) return true;
        ctx.log.warn(
          `Skipping GPU ${d.busId} in minimal mode: it reports no power (nvmlDeviceGetPowerUsage)`,
        );
        return false;
      });
    }
    const energy = ctx.createMetrics(NVML_ENERGY_METRICS);
    const metrics: NvmlMetricIds = config.mode === "full"
      ? { ...energy, ...ctx.createMetrics(NVML_FULL_METRICS) }
      : { ...energy };
    for (const d of devices) {
      const mig = d.mig.length > 0
        ? `; MIG partitions ${
          d.mig.map((m) => m.gpuInstanceId ?? `mig${m.index}`).join(", ")
        } (memory, processes)`
        : "";
      ctx.log.info(
        `Found NVML device ${d.busId} "${d.name}" with features: ${
          describeFeatures(d.features, d.powerReading)
        }${mig}`,
      );
      if (d.denied.length > 0) {
        ctx.log.warn(
          `GPU ${d.busId}: ${d.denied.join(", ")} need root (NVML_ERROR_NO_PERMISSION): ` +
            "run the agent as root to measure them",
        );
      }
      const sourceConfig: NvmlSourceConfig = {
        libraryPath,
        device: d,
        mode: config.mode,
        metrics,
      };
      ctx.addSource(`device_${d.busId}`, {
        module: projectModule("plugins/nvml/source.ts"),
        config: sourceConfig,
        blocking: true,
      }, { pollInterval: config.poll_interval, flushInterval: config.flush_interval });
    }
  }
}

/** `alumet doctor`: does NVML load, start, and which GPUs does it see. */
export function diagnoseNvml(config: NvmlConfig): Diagnosis[] {
  const check = "NVIDIA GPUs (NVML)";
  const spec = nvmlSpec(config.library_path);
  const loads = diagnoseLibrary(check, spec);
  if (!loads.ok) return [loads];
  let nvml: Nvml;
  try {
    nvml = Nvml.open(spec);
  } catch (e) {
    if (e instanceof NvmlError) return [{ check, ok: false, detail: e.message, fix: initFix(e) }];
    return [{ check, ok: false, detail: messageOf(e), fix: "check the NVIDIA driver with nvidia-smi" }];
  }
  try {
    const found: string[] = [];
    const failed: string[] = [];
    const { devices, found: n } = probeDevices(
      nvml,
      (f) => failed.push(`${f.busId ?? `GPU ${f.index}`}: ${f.error.message}`),
    );
    for (const d of devices) found.push(`${d.busId} ${d.name}`.trim());
    const out: Diagnosis[] = [];
    const lacks = describeMissing(nvml.missing);
    if (n === 0) {
      out.push({
        check,
        ok: false,
        detail: `${nvml.path} loads, but NVML finds no GPU`,
        fix: "check nvidia-smi",
      });
    } else {
      out.push({
        check,
        ok: devices.length > 0,
        detail: `${nvml.path}: ${devices.length} of ${n} GPU(s) working${
          found.length ? ` (${found.join(", ")})` : ""
        }${lacks ? `; ${lacks}` : ""}`,
        ...(devices.length > 0 ? {} : { fix: "check nvidia-smi" }),
      });
    }
    for (const f of failed) {
      out.push({
        check: `${check}: failed GPU`,
        ok: false,
        detail: f,
        fix: "check the GPU with nvidia-smi -q",
      });
    }
    return out;
  } finally {
    nvml.close();
  }
}

/** The nvml plugin's metadata: `[plugins.nvml]`. Register it as `nvmlPlugin`. */
export const nvmlPlugin: DefinedPlugin<NvmlConfig> & { readonly configSchema: typeof nvmlConfigSchema } =
  definePlugin({
    name: "nvml",
    version: "0.1.0",
    description: "Measures NVIDIA GPUs through NVML: energy, power, temperature, utilization, memory, clocks",
    config: nvmlConfigSchema,
    init: (config) => new NvmlPlugin(config),
    diagnose: (config) => diagnoseNvml(config),
  });

export default nvmlPlugin;

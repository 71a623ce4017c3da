/**
 * The nvml plugin's source, one per GPU: a module whose {@linkcode createSource} runs in the source's own
 * Worker (the plugin declares it `blocking`), so an NVML call that takes milliseconds never stalls another
 * source. It opens NVML again in that Worker (dlopen and nvmlInit_v2 are reference-counted), finds its GPU by
 * index and checks its bus id, then polls what the device answered at start.
 *
 * Resources: the GPU is `gpu` / its PCI bus id; a MIG device is `gpu_partition` / `<bus id>/<GPU instance id>`.
 *
 * @module
 */
import type { Batch } from "../../src/model/batch.ts";
import type { MetricId } from "../../src/model/metrics.ts";
import type { Timestamp } from "../../src/model/timestamp.ts";
import { Consumer, Resource } from "../../src/model/resources.ts";
import { Counter, NO_DELTA } from "../../src/model/counter.ts";
import { RetryableError } from "../../src/errors.ts";
import type { Source } from "../../src/plugin/plugin.ts";
import { type DeviceHandle, NVML, Nvml, NvmlError } from "./nvml.ts";
import type { DeviceInfo } from "./device.ts";

/** Metric ids, by the keys of NVML_ENERGY_METRICS and NVML_FULL_METRICS. */
export interface NvmlMetricIds {
  energy: MetricId<"f64">;
  power: MetricId<"u64">;
  temperature?: MetricId<"u64">;
  gpuUtilization?: MetricId<"u64">;
  memoryUtilization?: MetricId<"u64">;
  memoryInfo?: MetricId<"u64">;
  encoderUtilization?: MetricId<"u64">;
  encoderPeriod?: MetricId<"u64">;
  decoderUtilization?: MetricId<"u64">;
  decoderPeriod?: MetricId<"u64">;
  computeProcesses?: MetricId<"u64">;
  graphicProcesses?: MetricId<"u64">;
  usedMemory?: MetricId<"u64">;
  smUtilization?: MetricId<"u64">;
  clock?: MetricId<"u64">;
}

/** The source's config: serialisable, as it crosses to the Worker. */
export interface NvmlSourceConfig {
  /** The library path the plugin opened (the Worker opens exactly that one). */
  readonly libraryPath: string;
  readonly device: DeviceInfo;
  readonly mode: "full" | "minimal";
  readonly metrics: NvmlMetricIds;
}

/** Errors after which the GPU will not answer again: the source stops (one line), the others go on. */
const FATAL = new Set<number>([NVML.ERROR_GPU_IS_LOST, NVML.ERROR_RESET_REQUIRED, NVML.ERROR_UNINITIALIZED]);

const CLOCKS = [
  [NVML.CLOCK_SM, "SM"],
  [NVML.CLOCK_MEM, "Memory"],
  [NVML.CLOCK_GRAPHICS, "Graphics"],
  [NVML.CLOCK_VIDEO, "Video"],
] as const;

const MEMORY_KINDS = ["total", "free", "used", "reserved"] as const;

interface Mig {
  readonly handle: DeviceHandle;
  readonly resource: Resource;
  readonly memory: boolean;
  readonly compute: boolean;
}

/** Polls one GPU. */
export class NvmlSource implements Source {
  readonly #nvml: Nvml;
  readonly #d: DeviceHandle;
  readonly #c: NvmlSourceConfig;
  readonly #m: NvmlMetricIds;
  readonly #resource: Resource;
  readonly #energy = new Counter("monotonic");
  readonly #powerAttrs: { readonly power_reading: string };
  readonly #clockAttrs = CLOCKS.map(([, name]) => Object.freeze({ clock_type: name }));
  readonly #memAttrs = MEMORY_KINDS.map((kind) => Object.freeze({ kind }));
  readonly #migs: Mig[] = [];
  /** The previous poll, µs since the epoch (process utilization is asked for the samples since then). */
  #lastSeenUs: bigint | undefined;
  /** Minimal mode: the previous power (mW) and its time (ns). */
  #prevPower: { mw: number; ts: Timestamp } | undefined;

  constructor(nvml: Nvml, config: NvmlSourceConfig) {
    this.#nvml = nvml;
    this.#c = config;
    this.#m = config.metrics;
    const dev = config.device;
    this.#d = nvml.handleByIndex(dev.index);
    const { busId } = nvml.pciInfo(this.#d);
    if (busId !== dev.busId) {
      throw new Error(
        `NVML device ${dev.index} is now ${busId}, not ${dev.busId} (the GPUs changed since start); restart the agent`,
      );
    }
    this.#resource = Resource.gpu(dev.busId);
    this.#powerAttrs = Object.freeze({ power_reading: dev.powerReading });
    if (config.mode === "full" && dev.mig.length > 0) {
      const handles = new Map(nvml.migDevices(this.#d).map((m) => [m.index, m.handle]));
      for (const m of dev.mig) {
        const handle = handles.get(m.index);
        if (handle === undefined) continue;
        const id = `${dev.busId}/${m.gpuInstanceId ?? `mig${m.index}`}`;
        this.#migs.push({
          handle,
          resource: Resource.custom("gpu_partition", id),
          memory: m.memory,
          compute: m.compute,
        });
      }
    }
  }

  poll(batch: Batch, timestamp: Timestamp): void {
    if (this.#c.mode === "minimal") return this.#pollMinimal(batch, timestamp);
    let failed: NvmlError | undefined;
    const f = this.#c.device.features;
    const step = (enabled: boolean, fn: () => void) => {
      if (!enabled) return;
      try {
        fn();
      } catch (e) {
        if (!(e instanceof NvmlError)) throw e;
        if (FATAL.has(e.code)) throw new Error(`GPU ${this.#c.device.busId}: ${e.message}`);
        failed ??= e;
      }
    };
    const n = this.#nvml;
    const d = this.#d;
    const m = this.#m;
    const resource = this.#resource;
    step(f.energy, () => {
      const delta = this.#energy.update(n.totalEnergy(d));
      // 0: NVML has not refreshed the counter since the previous poll (every 20–100 ms): no new information.
      if (delta !== NO_DELTA && delta > 0) batch.push(m.energy, delta, { resource });
    });
    step(f.powerField || f.powerUsage, () => {
      const mw = f.powerField ? n.instantPower(d) : n.powerUsage(d);
      batch.push(m.power, Math.round(mw), { resource, attributes: this.#powerAttrs });
    });
    step(f.temperature, () => batch.push(m.temperature!, n.temperature(d), { resource }));
    step(f.utilization, () => {
      const u = n.utilization(d);
      batch.push(m.gpuUtilization!, u.gpu, { resource });
      batch.push(m.memoryUtilization!, u.memory, { resource });
    });
    step(f.memory, () => this.#pushMemory(batch, d, resource));
    step(f.encoder, () => {
      const u = n.codecUtilization(d, "encoder");
      batch.push(m.encoderUtilization!, u.utilization, { resource });
      batch.push(m.encoderPeriod!, u.periodUs, { resource });
    });
    step(f.decoder, () => {
      const u = n.codecUtilization(d, "decoder");
      batch.push(m.decoderUtilization!, u.utilization, { resource });
      batch.push(m.decoderPeriod!, u.periodUs, { resource });
    });
    step(f.compute, () => this.#pushProcesses(batch, d, resource, "compute"));
    step(f.graphics, () => this.#pushProcesses(batch, d, resource, "graphics"));
    step(f.clocks, () => {
      for (let i = 0; i < CLOCKS.length; i++) {
        batch.push(m.clock!, n.clock(d, CLOCKS[i]![0]) * 1_000_000, {
          resource,
          attributes: this.#clockAttrs[i]!,
        });
      }
    });
    step(f.processUtilization, () => {
      const nowUs = timestamp / 1000n;
      const last = this.#lastSeenUs;
      this.#lastSeenUs = nowUs;
      if (last === undefined) return; // as Alumet: the first poll only sets the window's start
      const latest = new Map<number, ReturnType<Nvml["processUtilization"]>[number]>();
      for (const s of n.processUtilization(d, last)) {
        const prev = latest.get(s.pid);
        if (prev === undefined || s.timeStamp >= prev.timeStamp) latest.set(s.pid, s);
      }
      for (const s of latest.values()) {
        const consumer = Consumer.process(s.pid);
        batch.push(m.smUtilization!, s.smUtil, { resource, consumer });
        batch.push(m.memoryUtilization!, s.memUtil, { resource, consumer });
        batch.push(m.encoderUtilization!, s.encUtil, { resource, consumer });
        batch.push(m.decoderUtilization!, s.decUtil, { resource, consumer });
      }
    });
    for (const mig of this.#migs) {
      step(mig.memory, () => this.#pushMemory(batch, mig.handle, mig.resource));
      step(mig.compute, () => this.#pushProcesses(batch, mig.handle, mig.resource, "compute"));
    }
    if (failed !== undefined) {
      throw new RetryableError(`GPU ${this.#c.device.busId}: ${failed.message}`, { cause: failed });
    }
  }

  #pushMemory(batch: Batch, d: DeviceHandle, resource: Resource): void {
    const mem = this.#nvml.memoryInfo(d);
    const id = this.#m.memoryInfo!;
    batch.push(id, mem.total, { resource, attributes: this.#memAttrs[0]! });
    batch.push(id, mem.free, { resource, attributes: this.#memAttrs[1]! });
    batch.push(id, mem.used, { resource, attributes: this.#memAttrs[2]! });
    if (mem.reserved !== undefined) {
      batch.push(id, mem.reserved, { resource, attributes: this.#memAttrs[3]! });
    }
  }

  #pushProcesses(batch: Batch, d: DeviceHandle, resource: Resource, context: "compute" | "graphics"): void {
    const procs = this.#nvml.runningProcesses(d, context);
    const count = context === "compute" ? this.#m.computeProcesses! : this.#m.graphicProcesses!;
    batch.push(count, procs.length, { resource });
    for (const p of procs) {
      if (p.usedGpuMemory === undefined) continue;
      const attributes: Record<string, string | number> = { context };
      if (p.gpuInstanceId !== 0xffff_ffff) attributes.gpu_instance_id = p.gpuInstanceId;
      if (p.computeInstanceId !== 0xffff_ffff) attributes.compute_instance_id = p.computeInstanceId;
      batch.push(this.#m.usedMemory!, p.usedGpuMemory, {
        resource,
        consumer: Consumer.process(p.pid),
        attributes,
      });
    }
  }

  /** Alumet's minimal mode: the power, and the energy integrated from it (trapezoids between polls). */
  #pollMinimal(batch: Batch, timestamp: Timestamp): void {
    const f = this.#c.device.features;
    let mw: number;
    try {
      mw = f.powerField ? this.#nvml.instantPower(this.#d) : this.#nvml.powerUsage(this.#d);
    } catch (e) {
      if (e instanceof NvmlError && !FATAL.has(e.code)) {
        throw new RetryableError(`GPU ${this.#c.device.busId}: ${e.message}`, { cause: e });
      }
      throw e;
    }
    const resource = this.#resource;
    batch.push(this.#m.power, Math.round(mw), { resource, attributes: this.#powerAttrs });
    const prev = this.#prevPower;
    if (prev !== undefined && timestamp > prev.ts) {
      const seconds = Number(timestamp - prev.ts) / 1e9;
      batch.push(this.#m.energy, (prev.mw + mw) / 2 * seconds, { resource });
    }
    this.#prevPower = { mw, ts: timestamp };
  }

  reset(): void {
    this.#energy.reset();
    this.#lastSeenUs = undefined;
    this.#prevPower = undefined;
  }

  close(): void {
    this.#nvml.close();
  }
}

/** Creates the source of one GPU (in its Worker): opens NVML at `config.libraryPath`. */
export function createSource(config: NvmlSourceConfig): Source {
  const nvml = Nvml.open({ name: "NVML (libnvidia-ml)", candidates: [config.libraryPath] });
  try {
    return new NvmlSource(nvml, config);
  } catch (e) {
    nvml.close();
    throw e;
  }
}

/**
 * NVML (NVIDIA Management Library) through Deno FFI: the symbol table of `libnvidia-ml.so.1` with NVML's real
 * signatures (nvml.h, "NVML API Reference"), the struct layouts the plugin reads, and a small {@linkcode Nvml}
 * wrapper whose calls return values or throw an {@linkcode NvmlError} carrying NVML's return code.
 *
 * Every symbol that an older driver may lack is `optional: true`: it is `null` when the library has no such
 * export, and {@linkcode Nvml.missing} lists those names so the plugin can say what it skipped. Only
 * `nvmlInit_v2`, `nvmlShutdown`, `nvmlDeviceGetCount_v2`, `nvmlDeviceGetHandleByIndex_v2` and
 * `nvmlErrorString` are required (all drivers since R320 have them).
 *
 * Calls are synchronous (not `nonblocking`): the plugin's source runs in a Worker of its own, so a slow NVML
 * call blocks only that Worker, and a direct FFI call costs tens of nanoseconds where a nonblocking one costs
 * tens of microseconds.
 *
 * @module
 */
import { AlumetError } from "../../src/errors.ts";
import { type LibrarySpec, openLibrary } from "../../src/ffi/library.ts";

/** The environment variable whose value, a path, replaces the library's search. */
export const NVML_ENV = "ALUMET_NVML_LIBRARY";

/** Where NVML is looked for; `libraryPath` (the `library_path` key) replaces the default candidates. */
export function nvmlSpec(libraryPath?: string): LibrarySpec {
  return {
    name: "NVML (libnvidia-ml)",
    candidates: libraryPath !== undefined ? [libraryPath] : ["libnvidia-ml.so.1", "libnvidia-ml.so"],
    env: NVML_ENV,
    install: libraryPath !== undefined
      ? "check library_path in [plugins.nvml], or remove it to search for libnvidia-ml.so.1"
      : "install the NVIDIA driver (it ships libnvidia-ml.so.1) on a machine with an NVIDIA GPU",
  };
}

const opt = { optional: true } as const;

/** NVML's symbols, each with its C prototype (nvml.h). */
export const NVML_SYMBOLS = {
  /** nvmlReturn_t nvmlInit_v2(void) */
  nvmlInit_v2: { parameters: [], result: "i32" },
  /** nvmlReturn_t nvmlShutdown(void) */
  nvmlShutdown: { parameters: [], result: "i32" },
  /** const char* nvmlErrorString(nvmlReturn_t result) */
  nvmlErrorString: { parameters: ["i32"], result: "pointer" },
  /** nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *deviceCount) */
  nvmlDeviceGetCount_v2: { parameters: ["buffer"], result: "i32" },
  /** nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) */
  nvmlDeviceGetHandleByIndex_v2: { parameters: ["u32", "buffer"], result: "i32" },
  /** nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci) */
  nvmlDeviceGetPciInfo_v3: { parameters: ["pointer", "buffer"], result: "i32", ...opt },
  /** nvmlReturn_t nvmlDeviceGetPciInfo_v2(nvmlDevice_t device, nvmlPciInfo_t *pci) */
  nvmlDeviceGetPciInfo_v2: { parameters: ["pointer", "buffer"], result: "i32", ...opt },
  /** nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) */
  nvmlDeviceGetName: { parameters: ["pointer", "buffer", "u32"], result: "i32", ...opt },
  /** nvmlReturn_t nvmlDeviceGetArchitecture(nvmlDevice_t device, nvmlDeviceArchitecture_t *arch) */
  nvmlDeviceGetArchitecture: { parameters: ["pointer", "buffer"], result: "i32", ...opt },
  /** nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device, unsigned long long *energy) (mJ) */
  nvmlDeviceGetTotalEnergyConsumption: { parameters: ["pointer", "buffer"], result: "i32", ...opt },
  /** nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power) (mW) */
  nvmlDeviceGetPowerUsage: { parameters: ["pointer", "buffer"], result: "i32", ...opt },
  /** nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t device, int valuesCount, nvmlFieldValue_t *values) */
  nvmlDeviceGetFieldValues: { parameters: ["pointer", "i32", "buffer"], result: "i32", ...opt },
  /** nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t, nvmlTemperatureSensors_t, unsigned int *temp) */
  nvmlDeviceGetTemperature: { parameters: ["pointer", "i32", "buffer"], result: "i32", ...opt },
  /** nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *utilization) */
  nvmlDeviceGetUtilizationRates: { parameters: ["pointer", "buffer"], result: "i32", ...opt },
  /** nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) */
  nvmlDeviceGetMemoryInfo: { parameters: ["pointer", "buffer"], result: "i32", ...opt },
  /** nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory) (R510+) */
  nvmlDeviceGetMemoryInfo_v2: { parameters: ["pointer", "buffer"], result: "i32", ...opt },
  /** nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, nvmlClockType_t type, unsigned int *clock) (MHz) */
  nvmlDeviceGetClockInfo: { parameters: ["pointer", "i32", "buffer"], result: "i32", ...opt },
  /** nvmlReturn_t nvmlDeviceGetEncoderUtilization(nvmlDevice_t, unsigned int *util, unsigned int *periodUs) */
  nvmlDeviceGetEncoderUtilization: { parameters: ["pointer", "buffer", "buffer"], result: "i32", ...opt },
  /** nvmlReturn_t nvmlDeviceGetDecoderUtilization(nvmlDevice_t, unsigned int *util, unsigned int *periodUs) */
  nvmlDeviceGetDecoderUtilization: { parameters: ["pointer", "buffer", "buffer"], result: "i32", ...opt },
  /** nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t, unsigned int *count, nvmlProcessInfo_t *) */
  nvmlDeviceGetComputeRunningProcesses_v3: {
    parameters: ["pointer", "buffer", "buffer"],
    result: "i32",
    ...opt,
  },
  /** nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t, unsigned int *count, nvmlProcessInfo_v2_t *) */
  nvmlDeviceGetComputeRunningProcesses_v2: {
    parameters: ["pointer", "buffer", "buffer"],
    result: "i32",
    ...opt,
  },
  /** nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(nvmlDevice_t, unsigned int *count, nvmlProcessInfo_t *) */
  nvmlDeviceGetGraphicsRunningProcesses_v3: {
    parameters: ["pointer", "buffer", "buffer"],
    result: "i32",
    ...opt,
  },
  /** nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v2(nvmlDevice_t, unsigned int *count, nvmlProcessInfo_v2_t *) */
  nvmlDeviceGetGraphicsRunningProcesses_v2: {
    parameters: ["pointer", "buffer", "buffer"],
    result: "i32",
    ...opt,
  },
  /**
   * nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t, nvmlProcessUtilizationSample_t *utilization,
   * unsigned int *processSamplesCount, unsigned long long lastSeenTimeStamp)
   */
  nvmlDeviceGetProcessUtilization: {
    parameters: ["pointer", "buffer", "buffer", "u64"],
    result: "i32",
    ...opt,
  },
  /**
   * nvmlReturn_t nvmlDeviceGetConfComputeMemSizeInfo(nvmlDevice_t, nvmlConfComputeMemSizeInfo_t *) (R525+):
   * never called, its presence tells the driver branch (see {@linkcode Nvml.processInfoStride}).
   */
  nvmlDeviceGetConfComputeMemSizeInfo: { parameters: ["pointer", "buffer"], result: "i32", ...opt },
  /**
   * nvmlReturn_t nvmlDeviceGetRunningProcessDetailList(nvmlDevice_t, nvmlProcessDetailList_t *) (R535+):
   * never called, its presence tells the driver branch.
   */
  nvmlDeviceGetRunningProcessDetailList: { parameters: ["pointer", "buffer"], result: "i32", ...opt },
  /** nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *currentMode, unsigned int *pendingMode) */
  nvmlDeviceGetMigMode: { parameters: ["pointer", "buffer", "buffer"], result: "i32", ...opt },
  /** nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int *count) */
  nvmlDeviceGetMaxMigDeviceCount: { parameters: ["pointer", "buffer"], result: "i32", ...opt },
  /** nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index, nvmlDevice_t *mig) */
  nvmlDeviceGetMigDeviceHandleByIndex: { parameters: ["pointer", "u32", "buffer"], result: "i32", ...opt },
  /** nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t device, unsigned int *id) */
  nvmlDeviceGetGpuInstanceId: { parameters: ["pointer", "buffer"], result: "i32", ...opt },
} as const satisfies Deno.ForeignLibraryInterface;

type Symbols = Deno.DynamicLibrary<typeof NVML_SYMBOLS>["symbols"];

/** nvmlReturn_t values the plugin tells apart (nvml.h). */
export const NVML = {
  SUCCESS: 0,
  ERROR_UNINITIALIZED: 1,
  ERROR_NOT_SUPPORTED: 3,
  ERROR_NO_PERMISSION: 4,
  ERROR_NOT_FOUND: 6,
  ERROR_INSUFFICIENT_SIZE: 7,
  ERROR_INSUFFICIENT_POWER: 8,
  ERROR_DRIVER_NOT_LOADED: 9,
  ERROR_IRQ_ISSUE: 11,
  ERROR_FUNCTION_NOT_FOUND: 13,
  ERROR_GPU_IS_LOST: 15,
  ERROR_RESET_REQUIRED: 16,
  ERROR_LIB_RM_VERSION_MISMATCH: 18,
  /** nvmlFieldValue_t.fieldId of the instantaneous power (mW), R525+. */
  FI_DEV_POWER_INSTANT: 186,
  /** nvmlClockType_t */
  CLOCK_GRAPHICS: 0,
  CLOCK_SM: 1,
  CLOCK_MEM: 2,
  CLOCK_VIDEO: 3,
  TEMPERATURE_GPU: 0,
  DEVICE_MIG_ENABLE: 1,
  /** nvmlDeviceArchitecture_t */
  ARCH_AMPERE: 7,
  /** "not available" in nvmlProcessInfo_t.usedGpuMemory */
  VALUE_NOT_AVAILABLE: 0xffff_ffff_ffff_ffffn,
} as const;

/** Struct sizes and field offsets (x86-64 / aarch64 LP64 layouts of nvml.h). */
export const LAYOUT = {
  /** nvmlPciInfo_t: busIdLegacy[16], domain, bus, device, pciDeviceId, pciSubSystemId, busId[32] */
  pciInfo: { size: 68, pciDeviceId: 28, busId: 36, busIdLength: 32 },
  /** nvmlUtilization_t: gpu, memory */
  utilization: { size: 8, gpu: 0, memory: 4 },
  /** nvmlMemory_t: total, free, used (u64) */
  memory: { size: 24, total: 0, free: 8, used: 16 },
  /** nvmlMemory_v2_t: version (u32, padded), total, reserved, free, used (u64) */
  memoryV2: { size: 40, version: 0, total: 8, reserved: 16, free: 24, used: 32 },
  /** nvmlFieldValue_t: fieldId, scopeId, timestamp (i64), latencyUsec (i64), valueType, nvmlReturn, value (union) */
  fieldValue: { size: 40, fieldId: 0, valueType: 24, nvmlReturn: 28, value: 32 },
  /**
   * nvmlProcessInfo_v2_t: pid, (pad), usedGpuMemory (u64), gpuInstanceId, computeInstanceId: 24 bytes. The
   * _v3 queries fill nvmlProcessInfo_t, the same 24 bytes since R535, but 32 on R525–R530 (CUDA 12.0/12.1
   * headers: a fourth field, `unsigned long long usedGpuCcProtectedMemory`). The plugin's buffer always has
   * `slot` (32) bytes an entry, so that no driver writes past its end, and reads with the driver's stride.
   */
  processInfo: {
    size: 24,
    sizeR525: 32,
    slot: 32,
    pid: 0,
    usedGpuMemory: 8,
    gpuInstanceId: 16,
    computeInstanceId: 20,
  },
  /** nvmlProcessUtilizationSample_t: pid, (pad), timeStamp (u64 µs), smUtil, memUtil, encUtil, decUtil */
  processSample: { size: 32, pid: 0, timeStamp: 8, smUtil: 16, memUtil: 20, encUtil: 24, decUtil: 28 },
} as const;

/** nvmlMemory_v2 = NVML_STRUCT_VERSION(Memory, 2) = sizeof(nvmlMemory_v2_t) | 2 << 24. */
export const MEMORY_V2_VERSION = LAYOUT.memoryV2.size | (2 << 24);

/** An NVML call that did not return NVML_SUCCESS. */
export class NvmlError extends AlumetError {
  override name = "NvmlError";
  /** The nvmlReturn_t. */
  readonly code: number;
  /** The function that failed. */
  readonly call: string;
  constructor(call: string, code: number, text: string) {
    super(`${call} failed: ${text} (NVML error ${code})`);
    this.call = call;
    this.code = code;
  }
}

/**
 * A field of nvmlDeviceGetFieldValues that came back with an error in its own `nvmlReturn` (the call itself
 * succeeded): the driver does not have that field (pre-R525 drivers answer an unknown field id with
 * NOT_SUPPORTED, or another error).
 */
export class NvmlFieldError extends NvmlError {
  override name = "NvmlFieldError";
}

/** Optional symbols looked up only to tell the driver branch: not "missing" features. */
const PROBE_ONLY = new Set<string>([
  "nvmlDeviceGetConfComputeMemSizeInfo",
  "nvmlDeviceGetRunningProcessDetailList",
]);

/** An opaque nvmlDevice_t. */
export type DeviceHandle = Deno.PointerValue;

/** A process on a GPU (nvmlProcessInfo_t); `usedGpuMemory` is undefined when NVML says not available. */
export interface ProcessInfo {
  readonly pid: number;
  readonly usedGpuMemory: number | undefined;
  /** 0xFFFFFFFF outside MIG. */
  readonly gpuInstanceId: number;
  readonly computeInstanceId: number;
}

/** A per-process utilization sample (nvmlProcessUtilizationSample_t), percentages. */
export interface ProcessSample {
  readonly pid: number;
  /** CPU time of the sample, µs since the epoch. */
  readonly timeStamp: number;
  readonly smUtil: number;
  readonly memUtil: number;
  readonly encUtil: number;
  readonly decUtil: number;
}

/** Memory of a device in bytes; `reserved` only through nvmlDeviceGetMemoryInfo_v2 (R510+). */
export interface MemoryInfo {
  readonly total: number;
  readonly free: number;
  readonly used: number;
  readonly reserved: number | undefined;
}

/**
 * NVML, loaded and initialised. Methods return the value or throw an {@linkcode NvmlError}; an optional
 * symbol the library lacks throws an error with {@linkcode NVML.ERROR_FUNCTION_NOT_FOUND}. Out-parameters
 * are preallocated: a poll allocates only what it returns.
 */
export class Nvml {
  readonly #lib: Deno.DynamicLibrary<typeof NVML_SYMBOLS>;
  readonly #s: Symbols;
  /** The candidate (or path) that opened. */
  readonly path: string;
  /** The optional symbols this library lacks. */
  readonly missing: readonly string[];
  #open = true;
  readonly #u32 = new Uint32Array(2);
  readonly #u32b = new Uint32Array(1);
  readonly #u64 = new BigUint64Array(1);
  readonly #ptr = new BigUint64Array(1);
  readonly #pci = new Uint8Array(LAYOUT.pciInfo.size);
  readonly #name = new Uint8Array(96);
  readonly #mem = new Uint8Array(LAYOUT.memoryV2.size);
  readonly #memView = new DataView(this.#mem.buffer);
  readonly #field = new Uint8Array(LAYOUT.fieldValue.size);
  readonly #fieldView = new DataView(this.#field.buffer);
  #procs = new Uint8Array(LAYOUT.processInfo.slot * 16);
  /** Bytes per entry the _v3 process queries write; `_v2` always writes 24. */
  readonly #v3Stride: number;
  #samples = new Uint8Array(LAYOUT.processSample.size * 16);

  private constructor(lib: Deno.DynamicLibrary<typeof NVML_SYMBOLS>, path: string) {
    this.#lib = lib;
    this.#s = lib.symbols;
    this.path = path;
    this.missing = Object.keys(NVML_SYMBOLS).filter((k) =>
      (this.#s as Record<string, unknown>)[k] === null && !PROBE_ONLY.has(k)
    );
    // nvitop's rule (libnvml.py): _v3 and nvmlDeviceGetConfComputeMemSizeInfo (R525+) without
    // nvmlDeviceGetRunningProcessDetailList (R535+, which moved usedGpuCcProtectedMemory into
    // nvmlProcessDetail_v1_t and gave nvmlProcessInfo_t its 24 bytes back) is an R525–R530 library.
    const s = this.#s;
    this.#v3Stride = s.nvmlDeviceGetComputeRunningProcesses_v3 !== null &&
        s.nvmlDeviceGetConfComputeMemSizeInfo !== null && s.nvmlDeviceGetRunningProcessDetailList === null
      ? LAYOUT.processInfo.sizeR525
      : LAYOUT.processInfo.size;
  }

  /**
   * Opens the library and calls nvmlInit_v2.
   *
   * @param spec where to look ({@linkcode nvmlSpec})
   * @throws {import("../../src/ffi/library.ts").LibraryError} when no candidate loads
   * @throws {NvmlError} when nvmlInit_v2 fails (no driver loaded, no GPU); the library is closed again
   */
  static open(spec: LibrarySpec): Nvml {
    const { library, path } = openLibrary(spec, NVML_SYMBOLS);
    const nvml = new Nvml(library, path);
    const r = library.symbols.nvmlInit_v2();
    if (r !== NVML.SUCCESS) {
      const e = nvml.#error("nvmlInit_v2", r);
      library.close();
      nvml.#open = false;
      throw e;
    }
    return nvml;
  }

  /** nvmlErrorString of `code`. */
  errorString(code: number): string {
    const p = this.#s.nvmlErrorString(code);
    return p === null ? `error ${code}` : Deno.UnsafePointerView.getCString(p);
  }

  #error(call: string, code: number): NvmlError {
    return new NvmlError(call, code, this.errorString(code));
  }

  #check(call: string, code: number): void {
    if (code !== NVML.SUCCESS) throw this.#error(call, code);
  }

  #absent(call: string): NvmlError {
    return new NvmlError(call, NVML.ERROR_FUNCTION_NOT_FOUND, "this driver's library has no such function");
  }

  /** Whether the library exports `symbol`. */
  has(symbol: keyof typeof NVML_SYMBOLS): boolean {
    return this.#s[symbol] !== null;
  }

  /** nvmlDeviceGetCount_v2 */
  deviceCount(): number {
    this.#check("nvmlDeviceGetCount_v2", this.#s.nvmlDeviceGetCount_v2(this.#u32));
    return this.#u32[0]!;
  }

  /** nvmlDeviceGetHandleByIndex_v2 */
  handleByIndex(index: number): DeviceHandle {
    this.#check("nvmlDeviceGetHandleByIndex_v2", this.#s.nvmlDeviceGetHandleByIndex_v2(index, this.#ptr));
    return Deno.UnsafePointer.create(this.#ptr[0]!);
  }

  /** The PCI bus id (`busId`, e.g. `00000000:17:00.0`) and the PCI device id, through _v3 or else _v2. */
  pciInfo(d: DeviceHandle): { busId: string; pciDeviceId: number } {
    const f = this.#s.nvmlDeviceGetPciInfo_v3 ?? this.#s.nvmlDeviceGetPciInfo_v2;
    if (f === null) throw this.#absent("nvmlDeviceGetPciInfo_v3");
    this.#pci.fill(0);
    this.#check("nvmlDeviceGetPciInfo", f(d, this.#pci));
    const L = LAYOUT.pciInfo;
    const raw = this.#pci.subarray(L.busId, L.busId + L.busIdLength);
    const end = raw.indexOf(0);
    const busId = new TextDecoder().decode(raw.subarray(0, end < 0 ? raw.length : end));
    const pciDeviceId = new DataView(this.#pci.buffer).getUint32(L.pciDeviceId, true);
    return { busId, pciDeviceId };
  }

  /** nvmlDeviceGetName */
  name(d: DeviceHandle): string {
    const f = this.#s.nvmlDeviceGetName;
    if (f === null) throw this.#absent("nvmlDeviceGetName");
    this.#name.fill(0);
    this.#check("nvmlDeviceGetName", f(d, this.#name, this.#name.length));
    const end = this.#name.indexOf(0);
    return new TextDecoder().decode(this.#name.subarray(0, end < 0 ? this.#name.length : end));
  }

  /** nvmlDeviceGetArchitecture (nvmlDeviceArchitecture_t: 7 Ampere, 8 Ada, 9 Hopper, 10 Blackwell). */
  architecture(d: DeviceHandle): number {
    const f = this.#s.nvmlDeviceGetArchitecture;
    if (f === null) throw this.#absent("nvmlDeviceGetArchitecture");
    this.#check("nvmlDeviceGetArchitecture", f(d, this.#u32));
    return this.#u32[0]!;
  }

  /** nvmlDeviceGetTotalEnergyConsumption: mJ since the driver was last loaded. */
  totalEnergy(d: DeviceHandle): number {
    const f = this.#s.nvmlDeviceGetTotalEnergyConsumption;
    if (f === null) throw this.#absent("nvmlDeviceGetTotalEnergyConsumption");
    this.#check("nvmlDeviceGetTotalEnergyConsumption", f(d, this.#u64));
    return Number(this.#u64[0]!);
  }

  /** nvmlDeviceGetPowerUsage: mW (a 1 s average on Ampere and newer except GA100; instantaneous before). */
  powerUsage(d: DeviceHandle): number {
    const f = this.#s.nvmlDeviceGetPowerUsage;
    if (f === null) throw this.#absent("nvmlDeviceGetPowerUsage");
    this.#check("nvmlDeviceGetPowerUsage", f(d, this.#u32));
    return this.#u32[0]!;
  }

  /**
   * The instantaneous power (mW) through nvmlDeviceGetFieldValues and NVML_FI_DEV_POWER_INSTANT; the
   * field's own nvmlReturn, when not NVML_SUCCESS (drivers before R525 do not know the field), is thrown as
   * an {@linkcode NvmlFieldError}, the call's own as an {@linkcode NvmlError}.
   */
  instantPower(d: DeviceHandle): number {
    const f = this.#s.nvmlDeviceGetFieldValues;
    if (f === null) throw this.#absent("nvmlDeviceGetFieldValues");
    const v = this.#fieldView;
    const L = LAYOUT.fieldValue;
    this.#field.fill(0);
    v.setUint32(L.fieldId, NVML.FI_DEV_POWER_INSTANT, true);
    this.#check("nvmlDeviceGetFieldValues", f(d, 1, this.#field));
    const fr = v.getInt32(L.nvmlReturn, true);
    if (fr !== NVML.SUCCESS) {
      throw new NvmlFieldError(
        "nvmlDeviceGetFieldValues(NVML_FI_DEV_POWER_INSTANT)",
        fr,
        this.errorString(fr),
      );
    }
    // nvmlValueType_t: 0 double, 1 uint, 2 ulong, 3 ulonglong, 4 sll, 5 int, 6 ushort
    switch (v.getInt32(L.valueType, true)) {
      case 0:
        return v.getFloat64(L.value, true);
      case 2:
      case 3:
        return Number(v.getBigUint64(L.value, true));
      case 4:
        return Number(v.getBigInt64(L.value, true));
      case 5:
        return v.getInt32(L.value, true);
      case 6:
        return v.getUint16(L.value, true);
      default:
        return v.getUint32(L.value, true);
    }
  }

  /** nvmlDeviceGetTemperature(NVML_TEMPERATURE_GPU), °C */
  temperature(d: DeviceHandle): number {
    const f = this.#s.nvmlDeviceGetTemperature;
    if (f === null) throw this.#absent("nvmlDeviceGetTemperature");
    this.#check("nvmlDeviceGetTemperature", f(d, NVML.TEMPERATURE_GPU, this.#u32));
    return this.#u32[0]!;
  }

  /** nvmlDeviceGetUtilizationRates: percent of time the GPU and its memory were busy over the last sample. */
  utilization(d: DeviceHandle): { gpu: number; memory: number } {
    const f = this.#s.nvmlDeviceGetUtilizationRates;
    if (f === null) throw this.#absent("nvmlDeviceGetUtilizationRates");
    this.#check("nvmlDeviceGetUtilizationRates", f(d, this.#u32));
    return { gpu: this.#u32[0]!, memory: this.#u32[1]! };
  }

  /** nvmlDeviceGetMemoryInfo_v2 (with `reserved`), or nvmlDeviceGetMemoryInfo on older drivers. */
  memoryInfo(d: DeviceHandle): MemoryInfo {
    const v = this.#memView;
    const v2 = this.#s.nvmlDeviceGetMemoryInfo_v2;
    this.#mem.fill(0);
    if (v2 !== null) {
      const L = LAYOUT.memoryV2;
      v.setUint32(L.version, MEMORY_V2_VERSION, true);
      this.#check("nvmlDeviceGetMemoryInfo_v2", v2(d, this.#mem));
      return {
        total: Number(v.getBigUint64(L.total, true)),
        free: Number(v.getBigUint64(L.free, true)),
        used: Number(v.getBigUint64(L.used, true)),
        reserved: Number(v.getBigUint64(L.reserved, true)),
      };
    }
    const v1 = this.#s.nvmlDeviceGetMemoryInfo;
    if (v1 === null) throw this.#absent("nvmlDeviceGetMemoryInfo");
    const L = LAYOUT.memory;
    this.#check("nvmlDeviceGetMemoryInfo", v1(d, this.#mem));
    return {
      total: Number(v.getBigUint64(L.total, true)),
      free: Number(v.getBigUint64(L.free, true)),
      used: Number(v.getBigUint64(L.used, true)),
      reserved: undefined,
    };
  }

  /** nvmlDeviceGetClockInfo, MHz */
  clock(d: DeviceHandle, type: number): number {
    const f = this.#s.nvmlDeviceGetClockInfo;
    if (f === null) throw this.#absent("nvmlDeviceGetClockInfo");
    this.#check("nvmlDeviceGetClockInfo", f(d, type, this.#u32));
    return this.#u32[0]!;
  }

  /** nvmlDeviceGet{Encoder,Decoder}Utilization: percent, and the sampling period in µs. */
  codecUtilization(d: DeviceHandle, which: "encoder" | "decoder"): { utilization: number; periodUs: number } {
    const f = which === "encoder"
      ? this.#s.nvmlDeviceGetEncoderUtilization
      : this.#s.nvmlDeviceGetDecoderUtilization;
    const call = which === "encoder" ? "nvmlDeviceGetEncoderUtilization" : "nvmlDeviceGetDecoderUtilization";
    if (f === null) throw this.#absent(call);
    this.#check(call, f(d, this.#u32, this.#u32b));
    return { utilization: this.#u32[0]!, periodUs: this.#u32b[0]! };
  }

  /** Which version of nvmlDeviceGet{Compute,Graphics}RunningProcesses this library has, if any. */
  processesVersion(context: "compute" | "graphics"): "v3" | "v2" | undefined {
    const s = this.#s;
    if (context === "compute") {
      return s.nvmlDeviceGetComputeRunningProcesses_v3 !== null
        ? "v3"
        : s.nvmlDeviceGetComputeRunningProcesses_v2 !== null
        ? "v2"
        : undefined;
    }
    return s.nvmlDeviceGetGraphicsRunningProcesses_v3 !== null
      ? "v3"
      : s.nvmlDeviceGetGraphicsRunningProcesses_v2 !== null
      ? "v2"
      : undefined;
  }

  /**
   * Bytes an entry of the process queries this library has: 32 for the _v3 queries of an R525–R530 library,
   * 24 otherwise.
   */
  processInfoStride(context: "compute" | "graphics"): number {
    return this.processesVersion(context) === "v3" ? this.#v3Stride : LAYOUT.processInfo.size;
  }

  /**
   * The processes running on a device (or a MIG device) in a context: nvmlDeviceGet{Compute,Graphics}
   * RunningProcesses_v3, or _v2, read with {@linkcode processInfoStride}. The buffer has 32 bytes an entry
   * whatever the stride and NVML is told that many entries, so no driver writes past its end; it grows on
   * NVML_ERROR_INSUFFICIENT_SIZE.
   */
  runningProcesses(d: DeviceHandle, context: "compute" | "graphics"): ProcessInfo[] {
    const s = this.#s;
    const f = context === "compute"
      ? s.nvmlDeviceGetComputeRunningProcesses_v3 ?? s.nvmlDeviceGetComputeRunningProcesses_v2
      : s.nvmlDeviceGetGraphicsRunningProcesses_v3 ?? s.nvmlDeviceGetGraphicsRunningProcesses_v2;
    const call = context === "compute"
      ? "nvmlDeviceGetComputeRunningProcesses"
      : "nvmlDeviceGetGraphicsRunningProcesses";
    if (f === null) throw this.#absent(call);
    const L = LAYOUT.processInfo;
    const stride = this.processInfoStride(context);
    for (let attempt = 0;; attempt++) {
      const room = Math.floor(this.#procs.length / L.slot);
      this.#u32[0] = room;
      const r = f(d, this.#u32, this.#procs);
      if (r === NVML.ERROR_INSUFFICIENT_SIZE && attempt < 3) {
        // A process may start between the two calls: room for a few more.
        this.#procs = new Uint8Array(L.slot * (Math.max(this.#u32[0]!, room) + 8));
        continue;
      }
      this.#check(call, r);
      break;
    }
    const n = Math.min(this.#u32[0]!, Math.floor(this.#procs.length / stride));
    const v = new DataView(this.#procs.buffer);
    const out: ProcessInfo[] = [];
    for (let i = 0; i < n; i++) {
      const o = i * stride;
      const mem = v.getBigUint64(o + L.usedGpuMemory, true);
      out.push({
        pid: v.getUint32(o + L.pid, true),
        usedGpuMemory: mem === NVML.VALUE_NOT_AVAILABLE ? undefined : Number(mem),
        gpuInstanceId: v.getUint32(o + L.gpuInstanceId, true),
        computeInstanceId: v.getUint32(o + L.computeInstanceId, true),
      });
    }
    return out;
  }

  /**
   * nvmlDeviceGetProcessUtilization: the samples newer than `lastSeenUs` (µs since the epoch). No sample in
   * that window (NVML_ERROR_NOT_FOUND) gives an empty list.
   */
  processUtilization(d: DeviceHandle, lastSeenUs: bigint): ProcessSample[] {
    const f = this.#s.nvmlDeviceGetProcessUtilization;
    if (f === null) throw this.#absent("nvmlDeviceGetProcessUtilization");
    const L = LAYOUT.processSample;
    let r = 0;
    for (let attempt = 0;; attempt++) {
      this.#u32[0] = this.#samples.length / L.size;
      r = f(d, this.#samples, this.#u32, lastSeenUs);
      if (r === NVML.ERROR_INSUFFICIENT_SIZE && attempt < 3) {
        this.#samples = new Uint8Array(L.size * (this.#u32[0]! + 8));
        continue;
      }
      break;
    }
    if (r === NVML.ERROR_NOT_FOUND) return [];
    this.#check("nvmlDeviceGetProcessUtilization", r);
    const n = this.#u32[0]!;
    const v = new DataView(this.#samples.buffer);
    const out: ProcessSample[] = [];
    for (let i = 0; i < n; i++) {
      const o = i * L.size;
      out.push({
        pid: v.getUint32(o + L.pid, true),
        timeStamp: Number(v.getBigUint64(o + L.timeStamp, true)),
        smUtil: v.getUint32(o + L.smUtil, true),
        memUtil: v.getUint32(o + L.memUtil, true),
        encUtil: v.getUint32(o + L.encUtil, true),
        decUtil: v.getUint32(o + L.decUtil, true),
      });
    }
    return out;
  }

  /** Whether MIG is enabled now (nvmlDeviceGetMigMode's current mode); false when NVML has no MIG. */
  migEnabled(d: DeviceHandle): boolean {
    const f = this.#s.nvmlDeviceGetMigMode;
    if (f === null) return false;
    const r = f(d, this.#u32, this.#u32b);
    if (r === NVML.ERROR_NOT_SUPPORTED) return false;
    this.#check("nvmlDeviceGetMigMode", r);
    return this.#u32[0] === NVML.DEVICE_MIG_ENABLE;
  }

  /**
   * The MIG devices of a MIG-enabled GPU: indexes up to nvmlDeviceGetMaxMigDeviceCount, skipping the empty
   * slots (NVML_ERROR_NOT_FOUND), each with its GPU instance id when NVML gives it.
   */
  migDevices(d: DeviceHandle): { index: number; handle: DeviceHandle; gpuInstanceId: number | undefined }[] {
    const s = this.#s;
    if (s.nvmlDeviceGetMaxMigDeviceCount === null || s.nvmlDeviceGetMigDeviceHandleByIndex === null) {
      return [];
    }
    this.#check("nvmlDeviceGetMaxMigDeviceCount", s.nvmlDeviceGetMaxMigDeviceCount(d, this.#u32));
    const max = this.#u32[0]!;
    const out = [];
    for (let i = 0; i < max; i++) {
      const r = s.nvmlDeviceGetMigDeviceHandleByIndex(d, i, this.#ptr);
      if (r === NVML.ERROR_NOT_FOUND) continue;
      this.#check("nvmlDeviceGetMigDeviceHandleByIndex", r);
      const handle = Deno.UnsafePointer.create(this.#ptr[0]!);
      let gpuInstanceId: number | undefined;
      if (s.nvmlDeviceGetGpuInstanceId !== null && s.nvmlDeviceGetGpuInstanceId(handle, this.#u32b) === 0) {
        gpuInstanceId = this.#u32b[0]!;
      }
      out.push({ index: i, handle, gpuInstanceId });
    }
    return out;
  }

  /** nvmlShutdown, then closes the library. Idempotent. */
  close(): void {
    if (!this.#open) return;
    this.#open = false;
    try {
      this.#s.nvmlShutdown();
    } finally {
      this.#lib.close();
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * The perf_event layer: `struct perf_event_attr` encoded with a DataView into a reusable buffer, the ABI
 * constants of `<linux/perf_event.h>`, `perf_event_open(2)` through libc's `syscall`, and a
 * {@linkcode PerfGroup} whose counters are read together in one `read` into a reusable buffer.
 *
 * Fields keep the kernel's names (`exclude_kernel`, `read_format`…) so that an attribute reads like the C
 * struct, like `perf stat -vv` prints it, and like the man page describes it. Event names are turned into
 * attributes by `perf_events_parse.ts`.
 *
 * ```ts ignore
 * import { PerfGroup, PERF_COUNT_SW_TASK_CLOCK, PERF_TYPE_SOFTWARE } from "./perf_event.ts";
 * using g = PerfGroup.open([{ name: "task-clock", attr: { type: PERF_TYPE_SOFTWARE, config: PERF_COUNT_SW_TASK_CLOCK } }]);
 * const r = g.read(); // one read(2) for the whole group
 * console.log(r.counts[0], r.scaled(0));
 * ```
 *
 * @module
 */
import { AlumetError } from "../errors.ts";
import { LIBC, libc, TOLERATED, unwrap, type UnwrapOptions } from "./libc.ts";
import { openLibrary } from "./library.ts";

// ---------------------------------------------------------------------------------------------------------
// Constants of <linux/perf_event.h>

/** `enum perf_type_id` */
export const PERF_TYPE_HARDWARE = 0;
export const PERF_TYPE_SOFTWARE = 1;
export const PERF_TYPE_TRACEPOINT = 2;
export const PERF_TYPE_HW_CACHE = 3;
export const PERF_TYPE_RAW = 4;
export const PERF_TYPE_BREAKPOINT = 5;

/** `enum perf_hw_id`: generalized hardware events (`PERF_TYPE_HARDWARE`). */
export const PERF_COUNT_HW_CPU_CYCLES = 0;
export const PERF_COUNT_HW_INSTRUCTIONS = 1;
export const PERF_COUNT_HW_CACHE_REFERENCES = 2;
export const PERF_COUNT_HW_CACHE_MISSES = 3;
export const PERF_COUNT_HW_BRANCH_INSTRUCTIONS = 4;
export const PERF_COUNT_HW_BRANCH_MISSES = 5;
export const PERF_COUNT_HW_BUS_CYCLES = 6;
export const PERF_COUNT_HW_STALLED_CYCLES_FRONTEND = 7;
export const PERF_COUNT_HW_STALLED_CYCLES_BACKEND = 8;
export const PERF_COUNT_HW_REF_CPU_CYCLES = 9;

/** `enum perf_hw_cache_id`: the cache of a `PERF_TYPE_HW_CACHE` event (config bits 0-7). */
export const PERF_COUNT_HW_CACHE_L1D = 0;
export const PERF_COUNT_HW_CACHE_L1I = 1;
export const PERF_COUNT_HW_CACHE_LL = 2;
export const PERF_COUNT_HW_CACHE_DTLB = 3;
export const PERF_COUNT_HW_CACHE_ITLB = 4;
export const PERF_COUNT_HW_CACHE_BPU = 5;
export const PERF_COUNT_HW_CACHE_NODE = 6;

/** `enum perf_hw_cache_op_id` (config bits 8-15). */
export const PERF_COUNT_HW_CACHE_OP_READ = 0;
export const PERF_COUNT_HW_CACHE_OP_WRITE = 1;
export const PERF_COUNT_HW_CACHE_OP_PREFETCH = 2;

/** `enum perf_hw_cache_op_result_id` (config bits 16-23). */
export const PERF_COUNT_HW_CACHE_RESULT_ACCESS = 0;
export const PERF_COUNT_HW_CACHE_RESULT_MISS = 1;

/**
 * The config of a `PERF_TYPE_HW_CACHE` event: `cache | op << 8 | result << 16`.
 *
 * @example
 * ```ts
 * import { hwCacheConfig, PERF_COUNT_HW_CACHE_LL, PERF_COUNT_HW_CACHE_OP_READ, PERF_COUNT_HW_CACHE_RESULT_MISS } from "./perf_event.ts";
 * import assert from "node:assert/strict";
 * const llcLoadMisses = hwCacheConfig({
 *   cache: PERF_COUNT_HW_CACHE_LL, op: PERF_COUNT_HW_CACHE_OP_READ, result: PERF_COUNT_HW_CACHE_RESULT_MISS,
 * });
 * assert.equal(llcLoadMisses, 0x10002);
 * ```
 */
export function hwCacheConfig(event: { cache: number; op: number; result: number }): number {
  return event.cache | (event.op << 8) | (event.result << 16);
}

/** `enum perf_sw_ids`: software events (`PERF_TYPE_SOFTWARE`). */
export const PERF_COUNT_SW_CPU_CLOCK = 0;
export const PERF_COUNT_SW_TASK_CLOCK = 1;
export const PERF_COUNT_SW_PAGE_FAULTS = 2;
export const PERF_COUNT_SW_CONTEXT_SWITCHES = 3;
export const PERF_COUNT_SW_CPU_MIGRATIONS = 4;
export const PERF_COUNT_SW_PAGE_FAULTS_MIN = 5;
export const PERF_COUNT_SW_PAGE_FAULTS_MAJ = 6;
export const PERF_COUNT_SW_ALIGNMENT_FAULTS = 7;
export const PERF_COUNT_SW_EMULATION_FAULTS = 8;
export const PERF_COUNT_SW_DUMMY = 9;
export const PERF_COUNT_SW_BPF_OUTPUT = 10;
export const PERF_COUNT_SW_CGROUP_SWITCHES = 11;

/** `enum perf_event_sample_format` bits, by the names `perf stat -vv` prints (`IDENTIFIER` is 1 << 16). */
export const PERF_SAMPLE_BITS: Readonly<Record<string, number>> = {
  IP: 0,
  TID: 1,
  TIME: 2,
  ADDR: 3,
  READ: 4,
  CALLCHAIN: 5,
  ID: 6,
  CPU: 7,
  PERIOD: 8,
  STREAM_ID: 9,
  RAW: 10,
  BRANCH_STACK: 11,
  REGS_USER: 12,
  STACK_USER: 13,
  WEIGHT: 14,
  DATA_SRC: 15,
  IDENTIFIER: 16,
  TRANSACTION: 17,
  REGS_INTR: 18,
  PHYS_ADDR: 19,
  AUX: 20,
  CGROUP: 21,
  DATA_PAGE_SIZE: 22,
  CODE_PAGE_SIZE: 23,
  WEIGHT_STRUCT: 24,
};
/** `PERF_SAMPLE_IDENTIFIER` */
export const PERF_SAMPLE_IDENTIFIER = 1 << 16;

/** `enum perf_event_read_format` */
export const PERF_FORMAT_TOTAL_TIME_ENABLED = 1 << 0;
export const PERF_FORMAT_TOTAL_TIME_RUNNING = 1 << 1;
export const PERF_FORMAT_ID = 1 << 2;
export const PERF_FORMAT_GROUP = 1 << 3;
export const PERF_FORMAT_LOST = 1 << 4;
/** The read_format bits by the names `perf stat -vv` prints. */
export const PERF_FORMAT_BITS: Readonly<Record<string, number>> = {
  TOTAL_TIME_ENABLED: 0,
  TOTAL_TIME_RUNNING: 1,
  ID: 2,
  GROUP: 3,
  LOST: 4,
};

/** `perf_event_open` flags. */
export const PERF_FLAG_FD_NO_GROUP = 1 << 0;
export const PERF_FLAG_FD_OUTPUT = 1 << 1;
/** `pid` is a cgroup directory fd; per-CPU mode only. */
export const PERF_FLAG_PID_CGROUP = 1 << 2;
/** The fd is opened `O_CLOEXEC`. */
export const PERF_FLAG_FD_CLOEXEC = 1 << 3;

/** `_IO('$', 0)` */
export const PERF_EVENT_IOC_ENABLE = 0x2400;
/** `_IO('$', 1)` */
export const PERF_EVENT_IOC_DISABLE = 0x2401;
/** `_IO('$', 3)` */
export const PERF_EVENT_IOC_RESET = 0x2403;
/** `_IOR('$', 7, __u64 *)`: the event id the group read reports. */
export const PERF_EVENT_IOC_ID = 0x80082407;
/** The ioctl argument that applies enable/disable/reset to the whole group of the fd. */
export const PERF_IOC_FLAG_GROUP = 1;

/** `PERF_ATTR_SIZE_VER7` (adds `sig_data`): `sizeof(struct perf_event_attr)` in Linux 5.13–6.2 headers. */
export const PERF_ATTR_SIZE_VER7 = 128;
/** `PERF_ATTR_SIZE_VER8` (adds `config3`, Linux 6.3): the size this module encodes by default. */
export const PERF_ATTR_SIZE_VER8 = 136;
/** Bytes of the encode buffer. */
export const PERF_ATTR_SIZE = PERF_ATTR_SIZE_VER8;

// ---------------------------------------------------------------------------------------------------------
// struct perf_event_attr

/** A u64 field: a number when it fits, a bigint always works. */
export type U64 = number | bigint;

/** The one-bit flags of the bitfield at offset 40, and their bit numbers (`precise_ip` is two bits, 15-16). */
export const ATTR_FLAG_BITS = {
  disabled: 0,
  inherit: 1,
  pinned: 2,
  exclusive: 3,
  exclude_user: 4,
  exclude_kernel: 5,
  exclude_hv: 6,
  exclude_idle: 7,
  mmap: 8,
  comm: 9,
  freq: 10,
  inherit_stat: 11,
  enable_on_exec: 12,
  task: 13,
  watermark: 14,
  mmap_data: 17,
  sample_id_all: 18,
  exclude_host: 19,
  exclude_guest: 20,
  exclude_callchain_kernel: 21,
  exclude_callchain_user: 22,
  mmap2: 23,
  comm_exec: 24,
  use_clockid: 25,
  context_switch: 26,
  write_backward: 27,
  namespaces: 28,
  ksymbol: 29,
  bpf_event: 30,
  aux_output: 31,
  cgroup: 32,
  text_poke: 33,
  build_id: 34,
  inherit_thread: 35,
  remove_on_exec: 36,
  sigtrap: 37,
} as const;
/** First bit and width of `precise_ip`. */
export const PRECISE_IP_BIT = 15;

/** Names of the one-bit flags. */
export type AttrFlag = keyof typeof ATTR_FLAG_BITS;

/** Offset of the flag bitfield. */
export const ATTR_FLAGS_OFFSET = 40;

/** The scalar fields: offset in bytes and C type. Unions are listed under the name this module uses. */
export const ATTR_FIELDS = {
  type: { offset: 0, ctype: "u32" },
  size: { offset: 4, ctype: "u32" },
  config: { offset: 8, ctype: "u64" },
  sample_period: { offset: 16, ctype: "u64" }, // union with sample_freq
  sample_type: { offset: 24, ctype: "u64" },
  read_format: { offset: 32, ctype: "u64" },
  wakeup_events: { offset: 48, ctype: "u32" }, // union with wakeup_watermark
  bp_type: { offset: 52, ctype: "u32" },
  config1: { offset: 56, ctype: "u64" }, // union with bp_addr, kprobe_func, uprobe_path
  config2: { offset: 64, ctype: "u64" }, // union with bp_len, kprobe_addr, probe_offset
  branch_sample_type: { offset: 72, ctype: "u64" },
  sample_regs_user: { offset: 80, ctype: "u64" },
  sample_stack_user: { offset: 88, ctype: "u32" },
  clockid: { offset: 92, ctype: "s32" },
  sample_regs_intr: { offset: 96, ctype: "u64" },
  aux_watermark: { offset: 104, ctype: "u32" },
  sample_max_stack: { offset: 108, ctype: "u16" },
  aux_sample_size: { offset: 112, ctype: "u32" },
  sig_data: { offset: 120, ctype: "u64" },
  config3: { offset: 128, ctype: "u64" },
} as const;

/** Names of the scalar fields. */
export type AttrField = keyof typeof ATTR_FIELDS;

type FieldValue<C> = C extends "u64" ? U64 : number;

/**
 * A `struct perf_event_attr`, field by field, with the kernel's names; every field defaults to 0 / false.
 * `size` defaults to {@linkcode PERF_ATTR_SIZE_VER8}; `sample_freq` and `wakeup_watermark` are the other
 * names of `sample_period` and `wakeup_events` (set one of each pair).
 */
export type PerfEventAttr =
  & { -readonly [K in AttrField]?: FieldValue<(typeof ATTR_FIELDS)[K]["ctype"]> }
  & { -readonly [K in AttrFlag]?: boolean }
  & {
    /** Skid constraint, 0–3. */
    precise_ip?: number;
    sample_freq?: U64;
    wakeup_watermark?: number;
  };

function setU64(v: DataView, offset: number, value: U64, field: string): void {
  if (typeof value === "bigint") {
    if (value < 0n || value > 0xffff_ffff_ffff_ffffn) {
      throw new RangeError(`perf_event_attr.${field} = ${value} is not a u64`);
    }
    v.setBigUint64(offset, value, true);
    return;
  }
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`perf_event_attr.${field} = ${value} is not a u64 (use a bigint beyond 2^53)`);
  }
  v.setUint32(offset, value % 0x1_0000_0000, true);
  v.setUint32(offset + 4, Math.floor(value / 0x1_0000_0000), true);
}

function setSmall(v: DataView, offset: number, ctype: string, value: number, field: string): void {
  const max = ctype === "u16" ? 0xffff : 0xffff_ffff;
  if (ctype === "s32") {
    if (!Number.isInteger(value) || value < -0x8000_0000 || value > 0x7fff_ffff) {
      throw new RangeError(`perf_event_attr.${field} = ${value} is not an s32`);
    }
    v.setInt32(offset, value, true);
  } else {
    if (!Number.isInteger(value) || value < 0 || value > max) {
      throw new RangeError(`perf_event_attr.${field} = ${value} is not a ${ctype}`);
    }
    if (ctype === "u16") v.setUint16(offset, value, true);
    else v.setUint32(offset, value, true);
  }
}

/**
 * Encodes `attr` into `into` (zeroed first; at least {@linkcode PERF_ATTR_SIZE} bytes, reuse it between calls)
 * and returns it. Throws a RangeError for a value that does not fit its field.
 *
 * @example
 * ```ts
 * import { encodePerfEventAttr, PERF_TYPE_SOFTWARE } from "./perf_event.ts";
 * import assert from "node:assert/strict";
 * const b = encodePerfEventAttr({ type: PERF_TYPE_SOFTWARE, config: 1, disabled: true, exclude_kernel: true });
 * const v = new DataView(b.buffer);
 * assert.equal(v.getUint32(0, true), 1); // type
 * assert.equal(v.getUint32(4, true), 136); // size
 * assert.equal(v.getUint32(40, true), 0b100001); // disabled (bit 0), exclude_kernel (bit 5)
 * ```
 */
export function encodePerfEventAttr(
  attr: PerfEventAttr,
  into: Uint8Array<ArrayBuffer> = new Uint8Array(PERF_ATTR_SIZE),
): Uint8Array<ArrayBuffer> {
  if (into.length < PERF_ATTR_SIZE) throw new RangeError(`perf_event_attr needs ${PERF_ATTR_SIZE} bytes`);
  into.fill(0, 0, PERF_ATTR_SIZE);
  const v = new DataView(into.buffer, into.byteOffset, PERF_ATTR_SIZE);
  const values: Partial<Record<AttrField, U64 | undefined>> = { ...attr };
  if (attr.sample_freq !== undefined) {
    if (attr.sample_period !== undefined) throw new TypeError("Set sample_period or sample_freq, not both");
    values.sample_period = attr.sample_freq;
  }
  if (attr.wakeup_watermark !== undefined) {
    if (attr.wakeup_events !== undefined) {
      throw new TypeError("Set wakeup_events or wakeup_watermark, not both");
    }
    values.wakeup_events = attr.wakeup_watermark;
  }
  values.size ??= PERF_ATTR_SIZE_VER8;
  for (const [name, { offset, ctype }] of Object.entries(ATTR_FIELDS)) {
    const value = values[name as AttrField];
    if (value === undefined) continue;
    if (ctype === "u64") setU64(v, offset, value, name);
    else setSmall(v, offset, ctype, Number(value), name);
  }
  let lo = 0;
  let hi = 0;
  for (const [name, bit] of Object.entries(ATTR_FLAG_BITS)) {
    if (attr[name as AttrFlag] !== true) continue;
    if (bit < 32) lo |= 1 << bit;
    else hi |= 1 << (bit - 32);
  }
  const precise = attr.precise_ip ?? 0;
  if (!Number.isInteger(precise) || precise < 0 || precise > 3) {
    throw new RangeError(`perf_event_attr.precise_ip = ${precise} is not 0-3`);
  }
  lo |= precise << PRECISE_IP_BIT;
  v.setUint32(ATTR_FLAGS_OFFSET, lo >>> 0, true);
  v.setUint32(ATTR_FLAGS_OFFSET + 4, hi >>> 0, true);
  return into;
}

/**
 * Decodes an encoded attr into its canonical sparse form: only the non-zero fields, u64 fields as bigints,
 * the others as numbers, flags as `true`; the unions under `sample_period` and `wakeup_events`.
 */
export function decodePerfEventAttr(bytes: Uint8Array): PerfEventAttr {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Record<string, U64 | boolean> = {};
  for (const [name, { offset, ctype }] of Object.entries(ATTR_FIELDS)) {
    if (offset >= bytes.byteLength) continue;
    const value = ctype === "u64"
      ? v.getBigUint64(offset, true)
      : ctype === "u16"
      ? v.getUint16(offset, true)
      : ctype === "s32"
      ? v.getInt32(offset, true)
      : v.getUint32(offset, true);
    if (value !== 0 && value !== 0n) out[name] = value;
  }
  const flags = v.getBigUint64(ATTR_FLAGS_OFFSET, true);
  for (const [name, bit] of Object.entries(ATTR_FLAG_BITS)) {
    if ((flags >> BigInt(bit)) & 1n) out[name] = true;
  }
  const precise = Number((flags >> BigInt(PRECISE_IP_BIT)) & 3n);
  if (precise !== 0) out.precise_ip = precise;
  return out as PerfEventAttr;
}

// ---------------------------------------------------------------------------------------------------------
// Modes: the attribute fields a tool sets around an event

/**
 * The fields a tool sets around the event part of an attribute (what to count is the event's; how to count
 * it is the mode's). Every field defaults to 0 / false.
 */
export interface AttrMode {
  /** `size`; default {@linkcode PERF_ATTR_SIZE_VER8}. */
  readonly size?: number;
  readonly disabled?: boolean;
  readonly inherit?: boolean;
  readonly enable_on_exec?: boolean;
  readonly read_format?: number;
  readonly sample_type?: number;
  /**
   * Set `exclude_guest` on events written without modifiers, as perf's `event_attr_init` does when it is not
   * told it runs in a guest (any modifier then recomputes every exclude bit). Default false.
   */
  readonly excludeGuestByDefault?: boolean;
}

/**
 * What `perf stat -e EVENT -- cmd` (perf 6.1) sets around a single event it counts in a forked command:
 * the mode `perf stat -vv` shows with every event, so golden tests can compare whole attributes.
 */
export const PERF_STAT_MODE: AttrMode = {
  size: PERF_ATTR_SIZE_VER7,
  disabled: true,
  inherit: true,
  enable_on_exec: true,
  read_format: PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING,
  sample_type: PERF_SAMPLE_IDENTIFIER,
  excludeGuestByDefault: true,
};

/** An event to count: its name (for messages) and the event part of its attribute. */
export interface PerfEventInput {
  readonly name: string;
  readonly attr: PerfEventAttr;
  /** Whether the event was written with modifiers (`:u`…); see {@linkcode AttrMode.excludeGuestByDefault}. */
  readonly hasModifiers?: boolean;
}

/** The attribute of `event` counted in `mode`: the event's fields, then the mode's. */
export function attrWithMode(event: PerfEventInput, mode: AttrMode): PerfEventAttr {
  const a: PerfEventAttr = { ...event.attr };
  if (mode.size !== undefined) a.size = mode.size;
  if (mode.disabled) a.disabled = true;
  if (mode.inherit) a.inherit = true;
  if (mode.enable_on_exec) a.enable_on_exec = true;
  if (mode.read_format !== undefined) a.read_format = mode.read_format;
  if (mode.sample_type !== undefined) a.sample_type = mode.sample_type;
  if (mode.excludeGuestByDefault && !event.hasModifiers) a.exclude_guest = true;
  return a;
}

// ---------------------------------------------------------------------------------------------------------
// perf_event_open

/** `SYS_perf_event_open` for this architecture. */
export function perfEventOpenSyscall(arch: string = Deno.build.arch): number {
  if (arch === "x86_64") return 298;
  if (arch === "aarch64") return 241;
  throw new AlumetError(`perf_event_open: unsupported architecture ${arch}`);
}

/** `/proc/sys/kernel/perf_event_paranoid`, or undefined when unreadable. */
export function perfEventParanoid(path = "/proc/sys/kernel/perf_event_paranoid"): number | undefined {
  try {
    const n = Number.parseInt(Deno.readTextFileSync(path).trim(), 10);
    return Number.isNaN(n) ? undefined : n;
  } catch {
    return undefined;
  }
}

/**
 * What to do about a failed `perf_event_open`, by errno name; `paranoid` is the current
 * `kernel.perf_event_paranoid` (read from /proc when not given).
 */
export function perfOpenHint(
  code: string,
  paranoid: number | undefined = perfEventParanoid(),
): string | undefined {
  switch (code) {
    case "EACCES":
    case "EPERM":
      return `not allowed with kernel.perf_event_paranoid = ${paranoid ?? "unknown"}: run as root, grant ` +
        "CAP_PERFMON (setcap cap_perfmon=ep on the binary), count user space only (the :u modifier), or lower " +
        "it (sysctl kernel.perf_event_paranoid=1 to count the kernel in your own processes, 0 for CPU-wide " +
        "counters, -1 for everything)";
    case "ENOENT":
    case "EOPNOTSUPP":
    case "ENODEV":
      return "no such PMU or event on this machine (a virtual machine often has no hardware PMU; " +
        "see /sys/bus/event_source/devices)";
    case "EMFILE":
      return "too many open files: raise the limit (ulimit -n, or LimitNOFILE= in the service unit)";
    case "EINVAL":
      return "an attribute this kernel or PMU does not support (an exclude_* modifier, precise_ip, a " +
        "config bit, or a CPU that does not exist)";
    case "ESRCH":
      return "no such process";
    case "EBADF":
      return "the group leader or cgroup fd is not valid";
    default:
      return undefined;
  }
}

/** Where and how to open an event. */
export interface OpenPerfEventOptions {
  /** Process to count (0 = this process, -1 = every process on `cpu`), or a cgroup fd with `cgroupFd`. Default 0. */
  readonly pid?: number;
  /** CPU to count on, -1 = any CPU the process runs on. Default -1. */
  readonly cpu?: number;
  /** Group leader fd, -1 = a new group. Default -1. */
  readonly groupFd?: number;
  /** A cgroup directory fd: sets `pid` to it and adds `PERF_FLAG_PID_CGROUP` (needs `cpu` >= 0). */
  readonly cgroupFd?: number;
  /** `PERF_FLAG_*`; default {@linkcode PERF_FLAG_FD_CLOEXEC}. */
  readonly flags?: number;
  /** The event name, for messages. Default: the type and config. */
  readonly name?: string;
  /**
   * On EINVAL with `exclude_guest` or `exclude_host` set, retry once without them, as perf does for PMUs
   * that refuse them (msr, power). Default true.
   */
  readonly excludeGuestFallback?: boolean;
}

const scratch = new Uint8Array(PERF_ATTR_SIZE);
let scratchAddress: bigint | undefined; // taken on first use: Deno.UnsafePointer needs --allow-ffi

/** The address of `buf` as a syscall argument. */
function addressOf(buf: BufferSource): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
}

function rawOpen(attr: PerfEventAttr, pid: number, cpu: number, groupFd: number, flags: number): number {
  encodePerfEventAttr(attr, scratch);
  const sys = libc(); // first: a clear error without --allow-ffi
  scratchAddress ??= addressOf(scratch);
  const fd = sys.syscall6(
    BigInt(perfEventOpenSyscall()),
    scratchAddress,
    BigInt(pid),
    BigInt(cpu),
    BigInt(groupFd),
    BigInt(flags),
    0n,
  );
  return Number(fd);
}

/**
 * `perf_event_open(attr, pid, cpu, groupFd, flags)`; returns the fd. Failures throw an
 * `ErrnoError` (libc.ts) whose message names the event and says what to do (see {@linkcode perfOpenHint}).
 */
export function openPerfEvent(attr: PerfEventAttr, options: OpenPerfEventOptions = {}): number {
  let pid = options.pid ?? 0;
  let flags = options.flags ?? PERF_FLAG_FD_CLOEXEC;
  if (options.cgroupFd !== undefined) {
    pid = options.cgroupFd;
    flags |= PERF_FLAG_PID_CGROUP;
  }
  const cpu = options.cpu ?? -1;
  const groupFd = options.groupFd ?? -1;
  const name = options.name ?? `type ${attr.type ?? 0} config 0x${BigInt(attr.config ?? 0).toString(16)}`;
  const call = `perf_event_open("${name}", pid ${pid}, cpu ${cpu})`;
  let fd = rawOpen(attr, pid, cpu, groupFd, flags);
  if (
    fd < 0 && (options.excludeGuestFallback ?? true) && (attr.exclude_guest || attr.exclude_host) &&
    unwrap(fd, call, OPEN_GUEST_FALLBACK) === TOLERATED
  ) {
    fd = rawOpen({ ...attr, exclude_guest: false, exclude_host: false }, pid, cpu, groupFd, flags);
  }
  return unwrap(fd, call, OPEN);
}

/** A failed `perf_event_open` says what to do. */
const OPEN: UnwrapOptions = { hint: (code) => perfOpenHint(code) };
/** The same, but EINVAL is tolerated: the open is retried without `exclude_guest`/`exclude_host`. */
const OPEN_GUEST_FALLBACK: UnwrapOptions = { ...OPEN, tolerate: ["EINVAL"] };

function ioctl(fd: number, request: number, arg: number | bigint, what: string): void {
  unwrap(libc().ioctl(fd, BigInt(request), BigInt(arg)), `ioctl(${what})`);
}

/** Closes a perf event fd (errors ignored: the fd is gone either way). */
export function closePerfEvent(fd: number): void {
  if (fd >= 0) libc().close(fd);
}

// ---------------------------------------------------------------------------------------------------------
// Group reads

const TWO_32 = 0x1_0000_0000;
const SAFE_HI = 0x20_0000; // hi word below 2^21 keeps hi * 2^32 + lo below 2^53

/**
 * The decoded result of a group read with `read_format = GROUP | TOTAL_TIME_ENABLED | TOTAL_TIME_RUNNING |
 * ID`: `{ nr, time_enabled, time_running, { value, id } × nr }`, all u64. Counts are numbers while they are
 * below 2^53, bigints beyond. `decode()` reuses the arrays: copy what you keep.
 *
 * @example
 * ```ts
 * import { PerfGroupReading } from "./perf_event.ts";
 * import assert from "node:assert/strict";
 * const r = new PerfGroupReading(1);
 * new BigUint64Array(r.buffer.buffer).set([1n, 1000n, 250n, 40n, 7n]); // nr, enabled, running, value, id
 * r.decode();
 * assert.equal(r.scaled(0), 160); // 40 counted in a quarter of the time
 * assert.equal(r.runningRatio(), 0.25);
 * ```
 */
export class PerfGroupReading {
  /** Number of counters in the group. */
  readonly size: number;
  /** The bytes `read(2)` fills: `8 × (3 + 2 × size)`. */
  readonly buffer: Uint8Array<ArrayBuffer>;
  readonly #words: Uint32Array;
  /** ns the group was enabled. */
  timeEnabled: number | bigint = 0;
  /** ns the group was on the PMU (less than enabled when the kernel multiplexed it). */
  timeRunning: number | bigint = 0;
  /** Raw counts, in group order. */
  readonly counts: (number | bigint)[];
  /** The kernel's id of each counter (`PERF_EVENT_IOC_ID`). */
  readonly ids: (number | bigint)[];

  constructor(size: number) {
    this.size = size;
    this.buffer = new Uint8Array(8 * (3 + 2 * size));
    this.#words = new Uint32Array(this.buffer.buffer);
    this.counts = new Array<number | bigint>(size).fill(0);
    this.ids = new Array<number | bigint>(size).fill(0);
  }

  #u64(k: number): number | bigint {
    const lo = this.#words[2 * k]!;
    const hi = this.#words[2 * k + 1]!;
    return hi < SAFE_HI ? hi * TWO_32 + lo : (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** Decodes the buffer; throws when the kernel reported another number of counters. */
  decode(): this {
    this.decodeCounts();
    for (let i = 0; i < this.size; i++) this.ids[i] = this.#u64(4 + 2 * i);
    return this;
  }

  /**
   * Decodes the times and the counts, not the ids (a group's ids never change: {@linkcode PerfGroup.read}
   * checks them once, then decodes only what changes); throws when the kernel reported another number of
   * counters.
   */
  decodeCounts(): this {
    const w = this.#words;
    // nr is small: its high word is 0 (a test of both words, no number built).
    if (w[0] !== this.size || w[1] !== 0) {
      throw new AlumetError(`perf group read returned ${this.#u64(0)} counters, expected ${this.size}`);
    }
    this.timeEnabled = this.#u64(1);
    this.timeRunning = this.#u64(2);
    const counts = this.counts;
    for (let i = 0; i < this.size; i++) counts[i] = this.#u64(3 + 2 * i);
    return this;
  }

  /**
   * Count `i` extrapolated to the whole enabled time: `count × enabled / running` (f64), the estimate perf
   * prints for a multiplexed counter; undefined when the group never ran.
   */
  scaled(i: number): number | undefined {
    const running = Number(this.timeRunning);
    if (running === 0) return undefined;
    const c = this.counts[i];
    if (c === undefined) throw new RangeError(`No counter ${i} in a group of ${this.size}`);
    return Number(c) * (Number(this.timeEnabled) / running);
  }

  /** `running / enabled`: 1 when the group was always on the PMU; undefined before it was ever enabled. */
  runningRatio(): number | undefined {
    const enabled = Number(this.timeEnabled);
    return enabled === 0 ? undefined : Number(this.timeRunning) / enabled;
  }
}

/** Where a group counts, and how. */
export interface PerfGroupOptions {
  /** Process to count (0 = this one, -1 = all on `cpu`). Default 0. */
  readonly pid?: number;
  /** CPU, -1 = wherever the process runs. Default -1. */
  readonly cpu?: number;
  /** Count a cgroup: its directory fd (needs `cpu` >= 0; `pid` is then ignored). */
  readonly cgroupFd?: number;
  /** Extra `PERF_FLAG_*` (`PERF_FLAG_FD_CLOEXEC` is always set). Default 0. */
  readonly flags?: number;
  /** Children created after opening are counted too (`inherit`). Default false. */
  readonly inherit?: boolean;
  /**
   * Lead the group with a software `dummy` event, as Alumet does, so that every real event is a member
   * (the dummy is hidden from the reading). Default false: the first event leads.
   */
  readonly dummyLeader?: boolean;
  /** Enable the counters once all are open. Default true (else call `enable()`), false with `enableOnExec`. */
  readonly enable?: boolean;
  /** Let the kernel enable the group when the counted process calls exec (`enable_on_exec`). Default false. */
  readonly enableOnExec?: boolean;
}

const GROUP_READ_FORMAT = PERF_FORMAT_GROUP | PERF_FORMAT_TOTAL_TIME_ENABLED |
  PERF_FORMAT_TOTAL_TIME_RUNNING |
  PERF_FORMAT_ID;

const DUMMY: PerfEventInput = {
  name: "dummy",
  attr: { type: PERF_TYPE_SOFTWARE, config: PERF_COUNT_SW_DUMMY },
};

/**
 * `read(2)` for group reads, bound on its own with an `i32` result: libc's binding returns `ssize_t` as a
 * bigint, one allocation per read at 1 kHz per group. A read of a group returns at most `8 × (3 + 2 × n)`
 * bytes or -1, and on x86-64 and AArch64 the low 32 bits of the return register are that value as an `int`.
 * Bound on the first group opened (after libc(), so that a missing FFI permission fails there first).
 */
function groupRead(): (fd: number, buf: Uint8Array<ArrayBuffer>, count: bigint) => number {
  groupReadFn ??= openLibrary(LIBC, {
    read: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  }).library.symbols.read as (fd: number, buf: Uint8Array<ArrayBuffer>, count: bigint) => number;
  return groupReadFn;
}
let groupReadFn: ((fd: number, buf: Uint8Array<ArrayBuffer>, count: bigint) => number) | undefined;

const groupBackstop = new FinalizationRegistry<number[]>((fds) => {
  for (const fd of fds) closePerfEvent(fd);
});

/**
 * Counters opened as one perf group (they are scheduled on the PMU together, so their ratios are exact) and
 * read together in one `read(2)` into a reusable buffer. Close it with `close()` or `using`; a
 * FinalizationRegistry closes forgotten fds as a backstop only.
 *
 * ```ts ignore
 * import { PerfGroup } from "./perf_event.ts";
 * import { parsePerfEvent } from "./perf_events_parse.ts";
 * using g = PerfGroup.open(["task-clock", "page-faults"].map((e) => parsePerfEvent(e)));
 * const r = g.read();
 * console.log(g.names[0], r.counts[0], r.scaled(0), r.runningRatio());
 * ```
 */
export class PerfGroup implements Disposable {
  /** The event names, in the order of {@linkcode PerfGroupReading.counts}. */
  readonly names: readonly string[];
  readonly #fds: number[];
  readonly #leader: number;
  readonly #hidden: number;
  readonly #reading: PerfGroupReading;
  readonly #view: PerfGroupReading;
  #idsChecked = false;
  readonly #expectedIds: bigint[];
  readonly #length: number;
  readonly #count: bigint;
  readonly #label: string;
  readonly #read = groupRead();

  private constructor(names: string[], fds: number[], hidden: number, ids: bigint[]) {
    this.names = names;
    this.#fds = fds;
    this.#leader = fds[0]!;
    this.#hidden = hidden;
    this.#expectedIds = ids;
    this.#reading = new PerfGroupReading(fds.length);
    this.#length = this.#reading.buffer.length;
    this.#count = BigInt(this.#length);
    this.#label = `perf group "${names.join(",")}"`;
    this.#view = hidden === 0 ? this.#reading : new PerfGroupReading(fds.length - hidden);
    groupBackstop.register(this, fds, this);
  }

  /**
   * Opens `events` (at least one) as a group: disabled, `read_format = GROUP | TOTAL_TIME_ENABLED |
   * TOTAL_TIME_RUNNING | ID`, then enabled together unless `enable: false`. If one fails to open, the ones
   * already open are closed and the error names the one that failed.
   */
  static open(events: readonly PerfEventInput[], options: PerfGroupOptions = {}): PerfGroup {
    if (events.length === 0) throw new TypeError("A perf group needs at least one event");
    const all = options.dummyLeader ? [DUMMY, ...events] : [...events];
    const fds: number[] = [];
    const ids: bigint[] = [];
    const idBuf = new BigUint64Array(1);
    try {
      libc();
      const idAddress = addressOf(idBuf);
      for (const [i, ev] of all.entries()) {
        const attr = attrWithMode(ev, {
          read_format: GROUP_READ_FORMAT,
          disabled: i === 0,
          enable_on_exec: i === 0 && (options.enableOnExec ?? false),
          inherit: options.inherit ?? false,
        });
        const fd = openPerfEvent(attr, {
          pid: options.pid ?? 0,
          cpu: options.cpu ?? -1,
          groupFd: i === 0 ? -1 : fds[0]!,
          flags: PERF_FLAG_FD_CLOEXEC | (options.flags ?? 0),
          name: ev.name,
          ...(options.cgroupFd === undefined ? {} : { cgroupFd: options.cgroupFd }),
        });
        fds.push(fd);
        ioctl(fd, PERF_EVENT_IOC_ID, idAddress, `PERF_EVENT_IOC_ID, "${ev.name}"`);
        ids.push(idBuf[0]!);
      }
    } catch (e) {
      for (const fd of fds) closePerfEvent(fd);
      throw e;
    }
    const g = new PerfGroup(events.map((e) => e.name), fds, options.dummyLeader ? 1 : 0, ids);
    if (options.enable ?? !options.enableOnExec) g.enable();
    return g;
  }

  /** The fds, leader first (the dummy leader included). */
  get fds(): readonly number[] {
    return this.#fds;
  }

  /**
   * Reads every counter of the group in one `read(2)` and returns the decoded reading. The same object is
   * returned (and overwritten) by every call.
   */
  read(): PerfGroupReading {
    const r = this.#reading;
    if (this.#fds.length === 0) throw new AlumetError("Cannot read a closed perf group");
    const n = this.#read(this.#leader, r.buffer, this.#count);
    if (n !== this.#length) {
      unwrap(n, `read(${this.#label})`);
      throw new AlumetError(`Short read of ${this.#label}: ${n} of ${r.buffer.length} bytes`);
    }
    if (this.#idsChecked) r.decodeCounts(); // the ids decoded and checked at the first read stay
    else this.#checkIds(r);
    if (this.#hidden === 0) return r;
    const v = this.#view;
    v.timeEnabled = r.timeEnabled;
    v.timeRunning = r.timeRunning;
    for (let i = 0; i < v.size; i++) v.counts[i] = r.counts[i + this.#hidden]!;
    return v;
  }

  /** The first read: decodes the ids too and checks them against `PERF_EVENT_IOC_ID`'s. */
  #checkIds(r: PerfGroupReading): void {
    r.decode();
    r.ids.forEach((id, i) => {
      if (BigInt(id) !== this.#expectedIds[i]) {
        throw new AlumetError(`perf group read: counter ${i} has id ${id}, expected ${this.#expectedIds[i]}`);
      }
    });
    for (let i = 0; i < this.#view.size && this.#hidden > 0; i++) {
      this.#view.ids[i] = r.ids[i + this.#hidden]!;
    }
    this.#idsChecked = true;
  }

  #groupIoctl(request: number, what: string): void {
    if (this.#fds.length === 0) throw new AlumetError(`Cannot ${what} a closed perf group`);
    ioctl(this.#leader, request, PERF_IOC_FLAG_GROUP, `${what} perf group "${this.names.join(",")}"`);
  }

  /** Starts every counter of the group (`PERF_EVENT_IOC_ENABLE` with `PERF_IOC_FLAG_GROUP`). */
  enable(): void {
    this.#groupIoctl(PERF_EVENT_IOC_ENABLE, "enable");
  }

  /** Stops every counter of the group; they keep their values. */
  disable(): void {
    this.#groupIoctl(PERF_EVENT_IOC_DISABLE, "disable");
  }

  /** Sets every count of the group to 0 (the enabled/running times keep going). */
  reset(): void {
    this.#groupIoctl(PERF_EVENT_IOC_RESET, "reset");
  }

  /** Closes every fd, members first. Idempotent. */
  close(): void {
    if (this.#fds.length === 0) return;
    groupBackstop.unregister(this);
    for (const fd of this.#fds.splice(0).reverse()) closePerfEvent(fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

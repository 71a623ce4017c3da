/**
 * perf's event syntax, turned into the event part of a `perf_event_attr` (see `perf_event.ts`):
 *
 * - generic events by perf's names (`cycles`, `instructions`, `task-clock`, `page-faults`/`faults`, `cs`…)
 *   and by Alumet's (`CPU_CYCLES`, `REF_CPU_CYCLES`, `PAGE_FAULTS`, `LL_READ_MISS`…); perf's names are
 *   case-sensitive, as in perf; Alumet's are not, as in Alumet (`page_faults` is `PAGE_FAULTS`, tried when no
 *   perf name and no PMU event matches);
 * - hardware cache events by perf's rules: `<cache>[-<op>][-<result>]`, e.g. `L1-dcache-load-misses`,
 *   `LLC-loads`, `dTLB-load-misses`, `l1d-read-miss` (op defaults to read, result to access);
 * - raw events `rNNNN` (hex) and `r0xNNNN` (Alumet's form; perf 6.1 refuses it);
 * - PMU events `pmu/term=value,…/` with the terms placed by `<sysfs>/<pmu>/format/<term>`, and named PMU
 *   events `pmu/name/` (or a bare `name` that one PMU defines) from `<sysfs>/<pmu>/events/<name>`, with
 *   their `.scale` and `.unit`;
 * - modifiers after `:` (after the closing `/` of a PMU event): `u k h H G I p pp ppp D e` with perf 6.1's
 *   semantics (the first of `u k h` excludes the other two; `u` and `p` also set `exclude_guest`; `G`/`H`
 *   exclude the host/guest);
 * - Alumet's modifiers after `#`, `:`-separated (`INSTRUCTIONS#u:k`), with Alumet's semantics
 *   (`plugins/perf/src/event/mod.rs`, `Modifiers::excludes`): the listed domains of `u k h` are counted and
 *   the others excluded, `H` excludes the guest, `G` the host, `I` idle.
 *
 * The syntax an event is written in decides its default domain, so that a config keeps the meaning it has
 * where it was written: an event in Alumet's syntax (an Alumet name such as `INSTRUCTIONS` or `LL_READ_MISS`,
 * `pmu/NAME`, `r0xN`, or any event with `#`) without `u k h` counts user space only, as Alumet does; an event
 * in perf's syntax without `u k h` counts every domain, as `perf stat` does.
 *
 * @module
 */
import { AlumetError, closest } from "../errors.ts";
import {
  hwCacheConfig,
  PERF_COUNT_HW_CACHE_BPU as BPU,
  PERF_COUNT_HW_CACHE_DTLB as DTLB,
  PERF_COUNT_HW_CACHE_ITLB as ITLB,
  PERF_COUNT_HW_CACHE_L1D as L1D,
  PERF_COUNT_HW_CACHE_L1I as L1I,
  PERF_COUNT_HW_CACHE_LL as LL,
  PERF_COUNT_HW_CACHE_NODE as NODE,
  PERF_COUNT_HW_CACHE_OP_PREFETCH as PREFETCH,
  PERF_COUNT_HW_CACHE_OP_READ as READ,
  PERF_COUNT_HW_CACHE_OP_WRITE as WRITE,
  PERF_COUNT_HW_CACHE_RESULT_ACCESS as ACCESS,
  PERF_COUNT_HW_CACHE_RESULT_MISS as MISS,
  PERF_TYPE_HARDWARE,
  PERF_TYPE_HW_CACHE,
  PERF_TYPE_RAW,
  PERF_TYPE_SOFTWARE,
  type PerfEventAttr,
  type PerfEventInput,
} from "./perf_event.ts";

/** The default sysfs directory of the PMUs. */
export const SYSFS_PMU_ROOT = "/sys/bus/event_source/devices";

/** What kind of event a name designated. */
export type PerfEventKind = "hardware" | "software" | "hw_cache" | "raw" | "pmu";

/** An event name, parsed: what to put in the attribute, and how to present the counts. */
export interface ParsedPerfEvent extends PerfEventInput {
  /** The text as written (the metric name a caller derives from it). */
  readonly name: string;
  /** The text without Alumet's `#` modifiers (in Alumet, they do not change the metric's name). */
  readonly base: string;
  readonly kind: PerfEventKind;
  /** The event part of the attribute: type, config (config1-3, sample_period) and the modifier bits. */
  readonly attr: PerfEventAttr;
  /** Whether modifiers were written (or given as defaults). */
  readonly hasModifiers: boolean;
  /** The sysfs PMU for `pmu` events. */
  readonly pmu?: string;
  /** Multiply counts by this to get `unit` (from `<event>.scale`); absent when the PMU gives none. */
  readonly scale?: number;
  /** Unit of the scaled counts (from `<event>.unit`, e.g. `Joules`). */
  readonly unit?: string;
  /**
   * The CPUs its PMU counts on, from `<pmu>/cpumask` (see {@linkcode readPmuCpumask}): present for a package or
   * uncore PMU (`power`, `uncore_imc_0`), whose event is opened once on each of these CPUs with `pid = -1` and
   * cannot count a process or a cgroup; absent for core PMUs, `msr` and generic events.
   */
  readonly cpumask?: readonly number[];
}

/** Options of {@linkcode parsePerfEvent}. */
export interface ParsePerfEventOptions {
  /** Where the PMUs are. Default {@linkcode SYSFS_PMU_ROOT}. */
  readonly sysfsRoot?: string;
  /**
   * Modifiers for events written without any, e.g. `"u"` for Alumet's default of user space only.
   * Default `""`: count everything, as perf does.
   */
  readonly defaultModifiers?: string;
}

/**
 * Why an event name cannot be used: `unknown`, a name (event, PMU term) that does not exist; `no-pmu`, a PMU
 * this machine does not have (the event may exist elsewhere); `invalid`, names that exist but a value or a
 * modifier that is wrong.
 */
export type PerfEventErrorReason = "unknown" | "no-pmu" | "invalid";

/**
 * An event name that cannot be used: says which, why, and what exists. The message starts with `Unknown perf
 * event` when a name (event, PMU, term) does not exist, with `Invalid perf event` when a value is wrong.
 */
export class PerfEventError extends AlumetError {
  override name = "PerfEventError";
  /** The event as written. */
  readonly event: string;
  /** Why it cannot be used. */
  readonly reason: PerfEventErrorReason;
  constructor(
    event: string,
    why: string,
    options?: ErrorOptions & { readonly invalid?: boolean; readonly reason?: PerfEventErrorReason },
  ) {
    super(`${options?.invalid ? "Invalid" : "Unknown"} perf event "${event}": ${why}`, options);
    this.event = event;
    this.reason = options?.reason ?? (options?.invalid ? "invalid" : "unknown");
  }

  /** An event whose names exist but whose values or modifiers are wrong. */
  static invalid(event: string, why: string): PerfEventError {
    return new PerfEventError(event, why, { invalid: true });
  }
}

// ---------------------------------------------------------------------------------------------------------
// Generic events

/** perf's names of the generalized hardware and software events (perf 6.1 `event_symbols_hw/sw`). */
const PERF_SYMBOLS: Readonly<Record<string, readonly [type: number, config: number]>> = {
  "cpu-cycles": [PERF_TYPE_HARDWARE, 0],
  "cycles": [PERF_TYPE_HARDWARE, 0],
  "instructions": [PERF_TYPE_HARDWARE, 1],
  "cache-references": [PERF_TYPE_HARDWARE, 2],
  "cache-misses": [PERF_TYPE_HARDWARE, 3],
  "branch-instructions": [PERF_TYPE_HARDWARE, 4],
  "branches": [PERF_TYPE_HARDWARE, 4],
  "branch-misses": [PERF_TYPE_HARDWARE, 5],
  "bus-cycles": [PERF_TYPE_HARDWARE, 6],
  "stalled-cycles-frontend": [PERF_TYPE_HARDWARE, 7],
  "idle-cycles-frontend": [PERF_TYPE_HARDWARE, 7],
  "stalled-cycles-backend": [PERF_TYPE_HARDWARE, 8],
  "idle-cycles-backend": [PERF_TYPE_HARDWARE, 8],
  "ref-cycles": [PERF_TYPE_HARDWARE, 9],
  "cpu-clock": [PERF_TYPE_SOFTWARE, 0],
  "task-clock": [PERF_TYPE_SOFTWARE, 1],
  "page-faults": [PERF_TYPE_SOFTWARE, 2],
  "faults": [PERF_TYPE_SOFTWARE, 2],
  "context-switches": [PERF_TYPE_SOFTWARE, 3],
  "cs": [PERF_TYPE_SOFTWARE, 3],
  "cpu-migrations": [PERF_TYPE_SOFTWARE, 4],
  "migrations": [PERF_TYPE_SOFTWARE, 4],
  "minor-faults": [PERF_TYPE_SOFTWARE, 5],
  "major-faults": [PERF_TYPE_SOFTWARE, 6],
  "alignment-faults": [PERF_TYPE_SOFTWARE, 7],
  "emulation-faults": [PERF_TYPE_SOFTWARE, 8],
  "dummy": [PERF_TYPE_SOFTWARE, 9],
  "bpf-output": [PERF_TYPE_SOFTWARE, 10],
  "cgroup-switches": [PERF_TYPE_SOFTWARE, 11],
};

/** Alumet's names (`plugins/perf/src/native.rs`), hardware and software; cache names are built below. */
const ALUMET_SYMBOLS: Readonly<Record<string, readonly [type: number, config: number]>> = {
  CPU_CYCLES: [PERF_TYPE_HARDWARE, 0],
  INSTRUCTIONS: [PERF_TYPE_HARDWARE, 1],
  CACHE_REFERENCES: [PERF_TYPE_HARDWARE, 2],
  CACHE_MISSES: [PERF_TYPE_HARDWARE, 3],
  BRANCH_INSTRUCTIONS: [PERF_TYPE_HARDWARE, 4],
  BRANCH_MISSES: [PERF_TYPE_HARDWARE, 5],
  BUS_CYCLES: [PERF_TYPE_HARDWARE, 6],
  STALLED_CYCLES_FRONTEND: [PERF_TYPE_HARDWARE, 7],
  STALLED_CYCLES_BACKEND: [PERF_TYPE_HARDWARE, 8],
  REF_CPU_CYCLES: [PERF_TYPE_HARDWARE, 9],
  PAGE_FAULTS: [PERF_TYPE_SOFTWARE, 2],
  CONTEXT_SWITCHES: [PERF_TYPE_SOFTWARE, 3],
  CPU_MIGRATIONS: [PERF_TYPE_SOFTWARE, 4],
  PAGE_FAULTS_MIN: [PERF_TYPE_SOFTWARE, 5],
  PAGE_FAULTS_MAJ: [PERF_TYPE_SOFTWARE, 6],
  ALIGNMENT_FAULTS: [PERF_TYPE_SOFTWARE, 7],
  EMULATION_FAULTS: [PERF_TYPE_SOFTWARE, 8],
  CGROUP_SWITCHES: [PERF_TYPE_SOFTWARE, 11],
};

const ALUMET_CACHES: Readonly<Record<string, number>> = { L1D, L1I, LL, DTLB, ITLB, BPU, NODE };
const ALUMET_OPS: Readonly<Record<string, number>> = { READ, WRITE, PREFETCH };
const ALUMET_RESULTS: Readonly<Record<string, number>> = { ACCESS, MISS };

/** perf's cache names, aliases in order (perf 6.1 `evsel__hw_cache`, `…_op`, `…_result`); matched as written. */
const CACHE_NAMES: readonly (readonly string[])[] = [
  ["L1-dcache", "l1-d", "l1d", "L1-data"],
  ["L1-icache", "l1-i", "l1i", "L1-instruction"],
  ["LLC", "L2"],
  ["dTLB", "d-tlb", "Data-TLB"],
  ["iTLB", "i-tlb", "Instruction-TLB"],
  ["branch", "branches", "bpu", "btb", "bpc"],
  ["node"],
];
const CACHE_OP_NAMES: readonly (readonly string[])[] = [
  ["load", "loads", "read"],
  ["store", "stores", "write"],
  ["prefetch", "prefetches", "speculative-read", "speculative-load"],
];
const CACHE_RESULT_NAMES: readonly (readonly string[])[] = [
  ["refs", "Reference", "ops", "access"],
  ["misses", "miss"],
];
/** Which ops each cache supports (perf 6.1 `evsel__hw_cache_stat`): bit `1 << op`. */
const CACHE_OPS_VALID = [0b111, 0b101, 0b111, 0b111, 0b001, 0b001, 0b111];

function alternation(names: readonly (readonly string[])[]): string {
  return names.flat().sort((a, b) => b.length - a.length).map((n) => n.replace(/-/g, "\\-")).join("|");
}
const CACHE_RE = new RegExp(
  `^(${alternation(CACHE_NAMES)})(?:-(${alternation([...CACHE_OP_NAMES, ...CACHE_RESULT_NAMES])}))?` +
    `(?:-(${alternation([...CACHE_OP_NAMES, ...CACHE_RESULT_NAMES])}))?$`,
);

function indexIn(names: readonly (readonly string[])[], word: string): number {
  return names.findIndex((aliases) => aliases.includes(word));
}

/** perf's hardware cache event rules; undefined when `name` is not one; throws for an invalid op. */
function parseCacheName(event: string, name: string): number | undefined {
  const m = CACHE_RE.exec(name);
  if (m === null) return undefined;
  const cache = indexIn(CACHE_NAMES, m[1]!);
  let op = -1;
  let result = -1;
  for (const part of [m[2], m[3]]) {
    if (part === undefined) continue;
    // perf takes the first op word as the op and the first result word as the result; others are ignored
    if (op === -1) {
      const o = indexIn(CACHE_OP_NAMES, part);
      if (o >= 0) {
        if ((CACHE_OPS_VALID[cache]! & (1 << o)) === 0) {
          throw new PerfEventError(event, `the ${CACHE_NAMES[cache]![0]} cache has no "${part}" events`);
        }
        op = o;
        continue;
      }
    }
    if (result === -1) {
      const r = indexIn(CACHE_RESULT_NAMES, part);
      if (r >= 0) result = r;
    }
  }
  return hwCacheConfig({ cache, op: op === -1 ? READ : op, result: result === -1 ? ACCESS : result });
}

function parseAlumetCacheName(name: string): number | undefined {
  const m = /^([A-Z0-9]+)_([A-Z]+)_([A-Z]+)$/.exec(name);
  if (m === null) return undefined;
  const cache = ALUMET_CACHES[m[1]!];
  const op = ALUMET_OPS[m[2]!];
  const result = ALUMET_RESULTS[m[3]!];
  if (cache === undefined || op === undefined || result === undefined) return undefined;
  return hwCacheConfig({ cache, op, result });
}

/** Every generic name, for "did you mean" (perf's cache names in `perf list`'s form). */
function genericNames(): string[] {
  const names = [...Object.keys(PERF_SYMBOLS), ...Object.keys(ALUMET_SYMBOLS)];
  const opWords = [["loads", "load-misses"], ["stores", "store-misses"], ["prefetches", "prefetch-misses"]];
  CACHE_NAMES.forEach((aliases, c) => {
    opWords.forEach((words, op) => {
      if (CACHE_OPS_VALID[c]! & (1 << op)) { for (const w of words) names.push(`${aliases[0]}-${w}`); }
    });
  });
  for (const c of Object.keys(ALUMET_CACHES)) {
    for (const o of Object.keys(ALUMET_OPS)) {
      for (const r of Object.keys(ALUMET_RESULTS)) names.push(`${c}_${o}_${r}`);
    }
  }
  return names;
}

// ---------------------------------------------------------------------------------------------------------
// Modifiers

/** Applies perf 6.1's `get_event_modifier` to `attr` (every exclude bit is recomputed from zero). */
function applyModifiers(event: string, mods: string, attr: PerfEventAttr): void {
  let [eu, ek, eh, eH, eG, eI] = [false, false, false, false, false, false];
  let exclude = false;
  let excludeGH = false;
  let precise = 0;
  for (const ch of mods) {
    switch (ch) {
      case "u":
        if (!exclude) {
          exclude =
            eu =
            ek =
            eh =
              true;
        }
        if (!excludeGH) eG = true; // perf: not running as a guest
        eu = false;
        break;
      case "k":
        if (!exclude) {
          exclude =
            eu =
            ek =
            eh =
              true;
        }
        ek = false;
        break;
      case "h":
        if (!exclude) {
          exclude =
            eu =
            ek =
            eh =
              true;
        }
        eh = false;
        break;
      case "G":
        if (!excludeGH) excludeGH = eG = eH = true;
        eG = false;
        break;
      case "H":
        if (!excludeGH) excludeGH = eG = eH = true;
        eH = false;
        break;
      case "I":
        eI = true;
        break;
      case "p":
        precise++;
        if (!excludeGH) eG = true; // precise sampling requires exclude_guest
        break;
      case "D":
        attr.pinned = true;
        break;
      case "e":
        attr.exclusive = true;
        break;
      default:
        throw PerfEventError.invalid(
          event,
          `unknown modifier "${ch}" in ":${mods}" (modifiers: u user, k kernel, h hypervisor, H host, G guest, ` +
            "I exclude idle, p/pp/ppp precise, D pinned, e exclusive)",
        );
    }
  }
  if (precise > 3) {
    throw PerfEventError.invalid(event, `":${mods}" asks for more than 3 levels of precision (ppp)`);
  }
  const set = (k: keyof PerfEventAttr, on: boolean) => {
    if (on) (attr as Record<string, unknown>)[k] = true;
    else delete attr[k];
  };
  set("exclude_user", eu);
  set("exclude_kernel", ek);
  set("exclude_hv", eh);
  set("exclude_host", eH);
  set("exclude_guest", eG);
  set("exclude_idle", eI);
  if (precise > 0) attr.precise_ip = precise;
}

/** Alumet's modifier tokens (`plugins/perf/src/spec.rs`, `Modifiers::parse`). */
const ALUMET_MODIFIERS = "u k h H G I";

/**
 * Applies Alumet's `#` modifiers (`u:k`, `:`-separated tokens) to `attr`: the listed domains among `u k h` are
 * counted and the others excluded; `H` excludes the guest and `G` the host (unless both are given); `I`
 * excludes idle. An empty or unknown token is refused, as Alumet does.
 */
function applyAlumetModifiers(event: string, mods: string, attr: PerfEventAttr): void {
  const tokens = new Set<string>();
  for (const token of mods === "" ? [] : mods.split(":")) {
    if (token === "") {
      throw PerfEventError.invalid(event, `empty modifier in "#${mods}" (check the ':' separators)`);
    }
    if (!ALUMET_MODIFIERS.split(" ").includes(token)) {
      throw PerfEventError.invalid(
        event,
        `unknown modifier "${token}" in "#${mods}" (Alumet's modifiers, ':'-separated: u user, k kernel, ` +
          "h hypervisor, H host, G guest, I exclude idle)",
      );
    }
    tokens.add(token);
  }
  const has = (t: string) => tokens.has(t);
  const domains = has("u") || has("k") || has("h");
  const set = (k: keyof PerfEventAttr, on: boolean) => {
    if (on) (attr as Record<string, unknown>)[k] = true;
    else delete attr[k];
  };
  // Without a domain, Alumet's default: user space only (kernel and hypervisor excluded).
  set("exclude_user", domains && !has("u"));
  set("exclude_kernel", domains ? !has("k") : true);
  set("exclude_hv", domains ? !has("h") : true);
  set("exclude_host", has("G") && !has("H"));
  set("exclude_guest", has("H") && !has("G"));
  set("exclude_idle", has("I"));
}

// ---------------------------------------------------------------------------------------------------------
// sysfs PMUs

function readTrimmed(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return undefined;
    throw e;
  }
}

function listDir(path: string): string[] {
  try {
    return [...Deno.readDirSync(path)].map((e) => e.name).sort();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return [];
    throw e;
  }
}

/** The PMU names under `root`. */
export function listPmus(root: string = SYSFS_PMU_ROOT): string[] {
  return listDir(root);
}

/** The named events a PMU defines (`<pmu>/events/*` without the `.scale`/`.unit`… companions). */
export function listPmuEvents(pmu: string, root: string = SYSFS_PMU_ROOT): string[] {
  return listDir(`${root}/${pmu}/events`).filter((n) => !n.includes("."));
}

/**
 * The CPUs a PMU counts on (`<root>/<pmu>/cpumask`, a cpu list such as `0,24` or `0-3`): an uncore or package
 * PMU (`power`, `uncore_imc_0`, `cstate_pkg`) lists one CPU per package, and an event of it is opened once on
 * each of those CPUs (`pid = -1`), never once per CPU. Undefined when the PMU has no `cpumask` (core PMUs such
 * as `cpu`, and `msr`), whose events count wherever they are opened.
 *
 * @example
 * ```ts
 * import { readPmuCpumask } from "./perf_events_parse.ts";
 * import assert from "node:assert/strict";
 * const root = Deno.makeTempDirSync();
 * Deno.mkdirSync(`${root}/power`);
 * Deno.writeTextFileSync(`${root}/power/cpumask`, "0,24\n");
 * assert.deepEqual(readPmuCpumask("power", root), [0, 24]);
 * assert.equal(readPmuCpumask("msr", root), undefined);
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export function readPmuCpumask(pmu: string, root: string = SYSFS_PMU_ROOT): number[] | undefined {
  const text = readTrimmed(`${root}/${pmu}/cpumask`);
  if (text === undefined || text === "") return undefined;
  const cpus: number[] = [];
  for (const part of text.split(",")) {
    const [a, b] = part.trim().split("-").map((x) => Number.parseInt(x, 10));
    if (a === undefined || Number.isNaN(a) || (b !== undefined && Number.isNaN(b))) {
      throw new TypeError(`${root}/${pmu}/cpumask: "${text}" is not a cpu list`);
    }
    for (let c = a; c <= (b ?? a); c++) cpus.push(c);
  }
  return cpus;
}

const CONFIG_FIELDS = ["config", "config1", "config2", "config3"] as const;
type ConfigField = (typeof CONFIG_FIELDS)[number];

/** A format term: the config word and the bit numbers its value is spread over, low bits first. */
interface Format {
  readonly field: ConfigField;
  readonly bits: readonly number[];
}

/** Parses a format file: `config:0-7`, `config1:0-63`, `config:0-7,32-35`, `config:21`. */
export function parseFormat(text: string): { field: ConfigField; bits: number[] } {
  const m = /^(config[123]?):([\d,\-\s]+)$/.exec(text.trim());
  if (m === null) throw new TypeError(`Unsupported PMU format "${text.trim()}"`);
  const bits: number[] = [];
  for (const range of m[2]!.split(",")) {
    const [a, b] = range.trim().split("-").map((x) => Number.parseInt(x, 10));
    if (a === undefined || Number.isNaN(a) || (b !== undefined && Number.isNaN(b))) {
      throw new TypeError(`Unsupported PMU format "${text.trim()}"`);
    }
    for (let bit = a; bit <= (b ?? a); bit++) bits.push(bit);
  }
  if (bits.some((b) => b > 63)) throw new TypeError(`PMU format "${text.trim()}" goes beyond bit 63`);
  return { field: m[1] as ConfigField, bits };
}

/** Spreads `value` over the bits of `format` into `word` (perf's `pmu_format_value`: those bits replaced). */
function placeBits(word: bigint, format: Format, value: bigint): bigint {
  let out = word;
  format.bits.forEach((bit, i) => {
    const mask = 1n << BigInt(bit);
    out = (value >> BigInt(i)) & 1n ? out | mask : out & ~mask;
  });
  return out;
}

function parseNumber(s: string): bigint | undefined {
  const t = s.trim();
  if (!/^(0x[0-9a-fA-F]+|\d+)$/.test(t)) return undefined;
  return BigInt(t);
}

class Pmu {
  readonly name: string;
  readonly root: string;
  readonly dir: string;
  readonly type: number;
  readonly formats = new Map<string, Format>();

  constructor(root: string, name: string, event: string) {
    this.name = name;
    this.root = root;
    this.dir = `${root}/${name}`;
    const type = readTrimmed(`${this.dir}/type`);
    if (type === undefined || !/^\d+$/.test(type)) {
      throw PerfEventError.invalid(event, `PMU "${name}" has no readable type (${this.dir}/type)`);
    }
    this.type = Number(type);
    for (const term of listDir(`${this.dir}/format`)) {
      const text = readTrimmed(`${this.dir}/format/${term}`);
      if (text !== undefined) this.formats.set(term, parseFormat(text));
    }
  }

  events(): string[] {
    return listPmuEvents(this.name, this.root);
  }
}

/** A term of a PMU event: `key=value`, a bare `key` (a flag format term or a named event), or `key=?`. */
interface Term {
  readonly key: string;
  readonly value?: string;
}

function parseTerms(text: string): Term[] {
  if (text.trim() === "") return [];
  return text.split(",").map((t) => {
    const i = t.indexOf("=");
    return i < 0 ? { key: t.trim() } : { key: t.slice(0, i).trim(), value: t.slice(i + 1).trim() };
  });
}

interface PmuEventParts {
  attr: PerfEventAttr;
  scale?: number;
  unit?: string;
}

/** Builds the attribute of `pmu/terms/`. */
function pmuEvent(event: string, pmu: Pmu, terms: readonly Term[]): PmuEventParts {
  const words: Record<ConfigField, bigint> = { config: 0n, config1: 0n, config2: 0n, config3: 0n };
  const out: PmuEventParts = { attr: { type: pmu.type } };
  const pending = new Set<string>(); // terms a named event leaves to the user (`chan=?`)
  const apply = (term: Term, fromAlias: string | undefined) => {
    if (term.value === "?") {
      pending.add(term.key);
      return;
    }
    const format = pmu.formats.get(term.key);
    const isConfig = (CONFIG_FIELDS as readonly string[]).includes(term.key);
    if (term.value === undefined && format === undefined && !isConfig && fromAlias === undefined) {
      expandAlias(term.key);
      return;
    }
    if (term.key === "name") return; // perf's display name, not part of the attribute
    const value = term.value === undefined ? 1n : parseNumber(term.value);
    if (value === undefined) {
      throw PerfEventError.invalid(
        event,
        `term ${term.key}=${term.value} of PMU "${pmu.name}" is not a number`,
      );
    }
    pending.delete(term.key);
    if (term.key === "period") {
      out.attr.sample_period = value;
    } else if (format !== undefined) {
      const max = (1n << BigInt(format.bits.length)) - 1n;
      if (value > max) {
        throw PerfEventError.invalid(
          event,
          `value ${term.value} is too big for term "${term.key}" of PMU "${pmu.name}" (${format.bits.length} bits, ` +
            `maximum 0x${max.toString(16)})`,
        );
      }
      words[format.field] = placeBits(words[format.field], format, value);
    } else if (isConfig) {
      if (value > 0xffff_ffff_ffff_ffffn) {
        throw PerfEventError.invalid(event, `${term.key}=${term.value} is not a u64`);
      }
      words[term.key as ConfigField] = value;
    } else {
      const where = fromAlias === undefined ? "" : ` (used by its event "${fromAlias}")`;
      const known = [...pmu.formats.keys(), ...CONFIG_FIELDS, "period"];
      const hint = closest(term.key, [...known, ...pmu.events()]);
      throw new PerfEventError(
        event,
        `PMU "${pmu.name}" has no term "${term.key}"${where} (terms: ${known.join(", ")}; events: ` +
          `${pmu.events().join(", ") || "none"})${hint ? `; did you mean "${hint}"?` : ""}`,
      );
    }
  };
  const expandAlias = (name: string) => {
    const text = readTrimmed(`${pmu.dir}/events/${name}`);
    if (text === undefined || name.includes(".") || name.includes("/")) {
      const events = pmu.events();
      const hint = closest(name, [...events, ...pmu.formats.keys()]);
      throw new PerfEventError(
        event,
        `PMU "${pmu.name}" has no event or term "${name}" (events: ${events.join(", ") || "none"}; terms: ` +
          `${[...pmu.formats.keys()].join(", ") || "none"})${hint ? `; did you mean "${hint}"?` : ""}`,
      );
    }
    for (const t of parseTerms(text)) apply(t, name);
    const scale = readTrimmed(`${pmu.dir}/events/${name}.scale`);
    if (scale !== undefined) {
      const s = Number(scale);
      if (!Number.isFinite(s)) {
        throw PerfEventError.invalid(event, `${pmu.dir}/events/${name}.scale is not a number`);
      }
      out.scale = s;
    }
    const unit = readTrimmed(`${pmu.dir}/events/${name}.unit`);
    if (unit !== undefined && unit !== "") out.unit = unit;
  };
  for (const t of terms) apply(t, undefined);
  if (pending.size > 0) {
    throw PerfEventError.invalid(
      event,
      `PMU "${pmu.name}" needs a value for ${[...pending].map((k) => `"${k}"`).join(", ")} (add ${
        [...pending].map((k) => `${k}=N`).join(",")
      } to the terms)`,
    );
  }
  for (const f of CONFIG_FIELDS) if (words[f] !== 0n) out.attr[f] = words[f];
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// The parser

/** Splits `name:mods` for a non-PMU event. */
function splitModifiers(text: string): [name: string, mods: string | undefined] {
  const m = /^(.*?):([A-Za-z]*)$/.exec(text);
  return m === null ? [text, undefined] : [m[1]!, m[2]!];
}

/**
 * Whether `text` is written as a libpfm4 event, as Alumet's perf plugin takes them (`RESOURCE_STALLS:ANY`,
 * `ix86arch::INSTRUCTION_RETIRED`, `MEM_LOAD_RETIRED:L3_MISS#u`): a name with a `pmu::` prefix, or with unit
 * masks after `:` (in any case, libpfm4's names being case-insensitive, unless they read as perf's modifiers
 * on a misspelled generic name: `cycels:u`), or an upper-case name that is not a misspelling of a generic one. Such a name is
 * resolved by libpfm4 for the CPU it runs on; this project does not resolve them.
 *
 * @example
 * ```ts
 * import { isLibpfmStyle } from "./perf_events_parse.ts";
 * import assert from "node:assert/strict";
 * assert.equal(isLibpfmStyle("RESOURCE_STALLS:ANY"), true);
 * assert.equal(isLibpfmStyle("UOPS_RETIRED"), true);
 * assert.equal(isLibpfmStyle("CPU_CYCLE"), false); // a misspelling of CPU_CYCLES
 * assert.equal(isLibpfmStyle("task-clok"), false);
 * ```
 */
export function isLibpfmStyle(text: string): boolean {
  const body = text.trim().split("#")[0]!;
  const m = /^(?:([A-Za-z0-9_]+)::)?([A-Za-z][A-Za-z0-9_]*)((?::[A-Za-z0-9_=]+)*)$/.exec(body);
  if (m === null) return false;
  const [, pmu, name, masks] = m as unknown as [string, string | undefined, string, string];
  if (pmu !== undefined) return true; // `pmu::NAME`, any case (libpfm4 names are case-insensitive)
  const upperCase = name === name.toUpperCase();
  if (masks !== "" && upperCase) return true;
  if (masks === "" && !upperCase) return false; // a bare lower-case name: perf's syntax
  // `name:masks` in lower or mixed case: a libpfm4 event with unit masks (`resource_stalls:any`), unless the
  // masks read as perf's modifiers on a misspelled name (`cycels:u`).
  const perfMods = masks.slice(1).split(":").every((x) => /^[ukhHGIpDe]+$/.test(x));
  if (masks !== "" && !perfMods) return true;
  return closest(name, genericNames()) === undefined &&
    closest(name.toUpperCase(), genericNames()) === undefined;
}

function unknown(event: string, name: string, root: string): PerfEventError {
  const pmus = listPmus(root);
  const candidates = [...genericNames(), ...pmus.flatMap((p) => listPmuEvents(p, root))];
  const hint = closest(name, candidates);
  const pmuList = pmus.length === 0 ? `none found in ${root}` : pmus.join(", ");
  return new PerfEventError(
    event,
    `not a generic event, and no PMU here defines it (PMUs: ${pmuList})${
      hint ? `; did you mean "${hint}"?` : ""
    }`,
  );
}

/**
 * Parses one event name (see the module doc for the syntax) into its attribute part.
 *
 * @example
 * ```ts
 * import { parsePerfEvent } from "./perf_events_parse.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parsePerfEvent("cycles:u").attr, {
 *   type: 0, config: 0n, exclude_kernel: true, exclude_hv: true, exclude_guest: true,
 * });
 * assert.deepEqual(parsePerfEvent("L1-dcache-load-misses").attr, { type: 3, config: 0x10000n });
 * assert.deepEqual(parsePerfEvent("r01c2").attr, { type: 4, config: 0x1c2n });
 * ```
 */
export function parsePerfEvent(text: string, options: ParsePerfEventOptions = {}): ParsedPerfEvent {
  const root = options.sysfsRoot ?? SYSFS_PMU_ROOT;
  const event = text.trim();
  if (event === "") throw PerfEventError.invalid(text, "the name is empty");
  // Alumet's `<event>#<modifiers>`.
  const hash = event.indexOf("#");
  const body = hash < 0 ? event : event.slice(0, hash);
  const alumetMods = hash < 0 ? undefined : event.slice(hash + 1);
  if (body === "") throw PerfEventError.invalid(event, "the name before '#' is empty");

  let kind: PerfEventKind;
  let attr: PerfEventAttr;
  let mods: string | undefined;
  let pmuName: string | undefined;
  let extra: Omit<PmuEventParts, "attr"> = {};
  /** Written in Alumet's syntax (see the module's doc): without `u k h`, user space only, as in Alumet. */
  let alumetSyntax = alumetMods !== undefined;

  const slash = /^([^/:]+)\/(.*)\/(?::?([A-Za-z]*))$/.exec(body);
  if (slash !== null) {
    pmuName = slash[1]!;
    mods = slash[3] === "" ? undefined : slash[3];
    const pmus = listPmus(root);
    if (!pmus.includes(pmuName)) {
      const hint = closest(pmuName, pmus);
      throw new PerfEventError(
        event,
        `no PMU "${pmuName}" here (PMUs: ${pmus.join(", ") || `none found in ${root}`})${
          hint ? `; did you mean "${hint}"?` : ""
        }`,
        { reason: "no-pmu" },
      );
    }
    const parts = pmuEvent(event, new Pmu(root, pmuName, event), parseTerms(slash[2]!));
    kind = "pmu";
    attr = parts.attr;
    extra = parts;
  } else if (/^[^/:]+\/[^/]+$/.test(body)) {
    // Alumet's `pmu/NAME` (a generic event pinned to one core PMU of a hybrid CPU, `cpu_core/INSTRUCTIONS`)
    // and `pmu/rN` (a raw code on that PMU).
    const [pmu, term] = body.split("/") as [string, string];
    const pmus = listPmus(root);
    if (!pmus.includes(pmu)) {
      throw new PerfEventError(
        event,
        `no PMU "${pmu}" here (PMUs: ${pmus.join(", ") || `none found in ${root}`})`,
        { reason: "no-pmu" },
      );
    }
    const type = new Pmu(root, pmu, event).type;
    const raw = /^r(?:0x)?([0-9a-fA-F]{1,16})$/.exec(term);
    const generic = raw === null ? parsePerfEvent(term.split(":")[0]!, { sysfsRoot: root }) : undefined;
    if (raw !== null) {
      kind = "raw";
      attr = { type, config: BigInt(`0x${raw[1]}`) };
    } else if (generic !== undefined && (generic.kind === "hardware" || generic.kind === "hw_cache")) {
      // perf's extended type: the PMU's type in the config's upper 32 bits (PERF_PMU_TYPE_SHIFT).
      kind = generic.kind;
      attr = {
        type: generic.attr.type ?? PERF_TYPE_HARDWARE,
        config: BigInt(generic.attr.config ?? 0n) | (BigInt(type) << 32n),
      };
    } else {
      throw PerfEventError.invalid(
        event,
        `only hardware and cache events can be pinned to a PMU ("${term}")`,
      );
    }
    pmuName = pmu;
    alumetSyntax = true;
  } else {
    const [name, m] = splitModifiers(body);
    mods = m === "" ? undefined : m;
    const symbol = PERF_SYMBOLS[name] ?? ALUMET_SYMBOLS[name];
    const cache = symbol === undefined
      ? parseCacheName(event, name) ?? parseAlumetCacheName(name)
      : undefined;
    const raw = /^r(?:0x)?([0-9a-fA-F]+)$/.exec(name);
    alumetSyntax ||= PERF_SYMBOLS[name] === undefined && ALUMET_SYMBOLS[name] !== undefined ||
      symbol === undefined && cache !== undefined && parseCacheName(event, name) === undefined ||
      raw !== null && /^r0x/.test(name);
    if (symbol !== undefined) {
      kind = symbol[0] === PERF_TYPE_HARDWARE ? "hardware" : "software";
      attr = { type: symbol[0], config: BigInt(symbol[1]) };
    } else if (cache !== undefined) {
      kind = "hw_cache";
      attr = { type: PERF_TYPE_HW_CACHE, config: BigInt(cache) };
    } else if (raw !== null) {
      const config = BigInt(`0x${raw[1]}`);
      if (config > 0xffff_ffff_ffff_ffffn) {
        throw PerfEventError.invalid(event, "a raw event config is 64 bits at most");
      }
      kind = "raw";
      attr = { type: PERF_TYPE_RAW, config };
    } else {
      // A bare name one PMU defines (perf resolves `tsc` to `msr/tsc/`).
      const owners = listPmus(root).filter((p) => listPmuEvents(p, root).includes(name));
      // Then Alumet's names in any case, as Alumet matches them (`event/native.rs` upper-cases the name).
      const upper = name.toUpperCase();
      const alumetSymbol = owners.length === 0 ? ALUMET_SYMBOLS[upper] : undefined;
      const alumetCache = owners.length === 0 && alumetSymbol === undefined
        ? parseAlumetCacheName(upper)
        : undefined;
      if (owners.length === 0 && alumetSymbol === undefined && alumetCache === undefined) {
        throw unknown(event, name, root);
      }
      if (owners.length > 1) {
        throw PerfEventError.invalid(
          event,
          `several PMUs define it (${owners.join(", ")}): write ${
            owners.map((p) => `${p}/${name}/`).join(" or ")
          }`,
        );
      }
      if (alumetSymbol !== undefined) {
        kind = alumetSymbol[0] === PERF_TYPE_HARDWARE ? "hardware" : "software";
        attr = { type: alumetSymbol[0], config: BigInt(alumetSymbol[1]) };
        alumetSyntax = true;
      } else if (alumetCache !== undefined) {
        kind = "hw_cache";
        attr = { type: PERF_TYPE_HW_CACHE, config: BigInt(alumetCache) };
        alumetSyntax = true;
      } else {
        pmuName = owners[0]!;
        const parts = pmuEvent(event, new Pmu(root, pmuName, event), [{ key: name }]);
        kind = "pmu";
        attr = parts.attr;
        extra = parts;
      }
    }
  }

  let hasModifiers: boolean;
  if (alumetMods !== undefined && mods !== undefined) {
    throw PerfEventError.invalid(
      event,
      `modifiers are written twice: after ':' (perf's "${mods}") and after '#' (Alumet's "${alumetMods}"); keep one`,
    );
  }
  if (alumetMods !== undefined || (alumetSyntax && mods === undefined)) {
    applyAlumetModifiers(event, alumetMods ?? "", attr);
    hasModifiers = true; // Alumet sets every exclude bit itself (no perf-style exclude_guest default)
  } else {
    const effective = mods ?? (options.defaultModifiers || undefined);
    if (effective !== undefined) applyModifiers(event, effective, attr);
    hasModifiers = effective !== undefined;
  }
  const cpumask = pmuName === undefined ? undefined : readPmuCpumask(pmuName, root);
  return {
    name: event,
    base: body,
    kind,
    attr,
    hasModifiers,
    ...(pmuName === undefined ? {} : { pmu: pmuName }),
    ...(cpumask === undefined ? {} : { cpumask }),
    ...(extra.scale === undefined ? {} : { scale: extra.scale }),
    ...(extra.unit === undefined ? {} : { unit: extra.unit }),
  };
}

/**
 * Parses a comma-separated list as perf's `-e` takes it (`cycles,msr/event=0x0,name=x/,task-clock:u`):
 * commas inside `pmu/…/` belong to the PMU terms.
 */
export function parsePerfEvents(list: string, options: ParsePerfEventOptions = {}): ParsedPerfEvent[] {
  const out: string[] = [];
  let cur = "";
  let slashes = 0;
  for (const ch of list) {
    if (ch === "/") slashes++;
    if (ch === "," && slashes % 2 === 0) {
      out.push(cur);
      cur = "";
    } else cur += ch;
  }
  out.push(cur);
  return out.filter((s) => s.trim() !== "").map((s) => parsePerfEvent(s, options));
}

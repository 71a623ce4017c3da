/**
 * The RAPL source: one channel per counter (a powercap zone's `energy_uj`, or a perf `power` counter opened on
 * one CPU of a package or die), each turned into joules per poll and summed per domain and package, plus Alumet's per-domain sums over sockets
 * (`domain = <d>_total`, on the local machine; `plugins/rapl/src/total.rs`).
 *
 * The source is described by a serialisable {@linkcode RaplSourceConfig}, so that {@linkcode createSource} can
 * open it in the sampling Worker for periods under 10 ms, or in the main thread otherwise.
 *
 * @module
 */
import type { Batch } from "../../src/model/batch.ts";
import type { MetricId } from "../../src/model/metrics.ts";
import { Resource } from "../../src/model/resources.ts";
import type { Source, SourceContext, SourceLog } from "../../src/plugin/plugin.ts";
import { Counter, NO_DELTA } from "../../src/model/counter.ts";
import { ProcFile } from "../../src/ffi/proc_file.ts";
import { PerfGroup } from "../../src/ffi/perf_event.ts";
import { parsePerfEvent } from "../../src/ffi/perf_events_parse.ts";
import { AlumetError } from "../../src/errors.ts";
import { domainIndex, domainResource, RAPL_DOMAINS, type RaplDomain } from "./domains.ts";

/** What every channel has: its domain and package. */
interface ChannelBase {
  readonly domain: RaplDomain;
  /** The package (socket) id; ignored for `platform`, which is the whole machine. */
  readonly package: number;
}

/** A powercap zone: `<path>/energy_uj` (µJ), wrapping at `max_energy_range_uj`. */
export interface PowercapChannel extends ChannelBase {
  readonly kind: "powercap";
  /** The zone's directory, e.g. `/sys/class/powercap/intel-rapl:0`. */
  readonly path: string;
  /** `max_energy_range_uj`: the counter's modulus. */
  readonly maxEnergyUj: number;
}

/** A perf `power` PMU counter opened with `pid = -1` on one CPU of the package. */
export interface PerfChannel extends ChannelBase {
  readonly kind: "perf";
  /** The event in perf's syntax, e.g. `power/energy-pkg/`. */
  readonly event: string;
  /** Where the PMUs are (`<sysfs_root>/bus/event_source/devices`). */
  readonly pmuRoot: string;
  readonly cpu: number;
  /** Joules per count (`events/energy-<name>.scale`, 2^-32 on Intel and AMD). */
  readonly scale: number;
}

/** One counter of the source. */
export type RaplChannel = PowercapChannel | PerfChannel;

/** The serialisable description of a RAPL source. */
export interface RaplSourceConfig {
  /** The id of `rapl_consumed_energy` (f64). */
  readonly metric: number;
  readonly channels: readonly RaplChannel[];
}

/** A channel, open: it reads its counter and returns the joules since the previous read, or -1 (baseline). */
interface OpenChannel {
  joules(): number;
  reset(): void;
  close(): void;
}

const ZERO = 48;

/** A powercap zone kept open and re-read with one `pread` per poll. */
function openPowercap(ch: PowercapChannel): OpenChannel {
  const file = ProcFile.open(`${ch.path}/energy_uj`, 32);
  const counter = new Counter({ wrapsAt: ch.maxEnergyUj });
  const path = `${ch.path}/energy_uj`;
  return {
    joules() {
      const n = file.read();
      if (n < 0) throw new AlumetError(`${path} is gone (was the intel_rapl driver unloaded?)`);
      const b = file.buffer;
      let v = 0;
      let i = 0;
      for (; i < n; i++) {
        const c = b[i]! - ZERO;
        if (c < 0 || c > 9) break;
        v = v * 10 + c;
      }
      if (i === 0) throw new AlumetError(`${path} does not hold a number`);
      const d = counter.update(v);
      return d === NO_DELTA ? -1 : d * 1e-6;
    },
    reset: () => counter.reset(),
    close: () => file.close(),
  };
}

const TWO_64 = 1n << 64n;

/** A perf counter: a one-event group on one CPU, read in one `read(2)`; 64-bit counts times the scale. */
function openPerf(ch: PerfChannel): OpenChannel {
  const event = parsePerfEvent(ch.event, { sysfsRoot: ch.pmuRoot });
  const group = PerfGroup.open([event], { pid: -1, cpu: ch.cpu });
  let prev: number | bigint | undefined;
  return {
    joules() {
      const v = group.read().counts[0]!;
      const p = prev;
      prev = v;
      if (p === undefined) return -1;
      let d: number;
      if (typeof v === "number" && typeof p === "number") d = v - p;
      else {
        let big = BigInt(v) - BigInt(p);
        if (big < 0n) big += TWO_64;
        d = Number(big);
      }
      // A power-of-two scale only changes the exponent: no precision is lost.
      return d < 0 ? 0 : d * ch.scale;
    },
    reset: () => void (prev = undefined),
    close: () => group.close(),
  };
}

/** How long RAPL counters may read the same before the source says that they do not count, ms. */
export const STILL_MS = 1000;

/** One output point per poll: the channels of one domain and package (several on multi-die packages). */
interface Slot {
  readonly domain: number;
  readonly resource: Resource;
  readonly attributes: Readonly<Record<string, string>>;
}

/**
 * The source: per poll, one point per domain and package (`rapl_consumed_energy`, J since the previous poll,
 * attribute `domain`): the sum of its channels, which are several for the dies of a multi-die package and
 * for psys opened on every package; then one `<d>_total` point per domain present, on the local machine.
 * The first poll (and the first after `reset`) only sets the baselines.
 */
export class RaplSource implements Source {
  readonly #metric: MetricId<"f64">;
  readonly #channels: OpenChannel[];
  /** The slot of each channel. */
  readonly #slotOf: Int32Array;
  readonly #slots: Slot[];
  readonly #sums: Float64Array;
  readonly #has: Uint8Array;
  readonly #totals = new Float64Array(RAPL_DOMAINS.length);
  readonly #present = new Uint8Array(RAPL_DOMAINS.length);
  readonly #totalAttributes = RAPL_DOMAINS.map((d) => Object.freeze({ domain: `${d}_total` }));
  readonly #local = Resource.localMachine();
  readonly #log: SourceLog | undefined;
  /** Watching for counters that never move: since when (the first measured poll), and which slots moved. */
  #watch: { since: number; polls: number; moved: Uint8Array } | "done" | undefined;

  private constructor(
    metric: MetricId<"f64">,
    channels: OpenChannel[],
    config: readonly RaplChannel[],
    log: SourceLog | undefined,
  ) {
    this.#metric = metric;
    this.#channels = channels;
    this.#log = log;
    const keys = new Map<string, number>();
    this.#slots = [];
    this.#slotOf = new Int32Array(config.length);
    config.forEach((ch, i) => {
      const key = ch.domain === "platform" ? "platform" : `${ch.domain}/${ch.package}`;
      let slot = keys.get(key);
      if (slot === undefined) {
        slot = this.#slots.length;
        keys.set(key, slot);
        this.#slots.push({
          domain: domainIndex(ch.domain),
          resource: domainResource(ch.domain, ch.package),
          attributes: Object.freeze({ domain: ch.domain }),
        });
      }
      this.#slotOf[i] = slot;
    });
    this.#sums = new Float64Array(this.#slots.length);
    this.#has = new Uint8Array(this.#slots.length);
  }

  /**
   * Opens every channel (all or none: the ones already open are closed when one fails). `log` receives one
   * warning when counters have not moved over the first second of polls (see {@linkcode STILL_MS}).
   */
  static open(config: RaplSourceConfig, log?: SourceLog): RaplSource {
    const open: OpenChannel[] = [];
    try {
      for (const ch of config.channels) open.push(ch.kind === "powercap" ? openPowercap(ch) : openPerf(ch));
    } catch (e) {
      for (const o of open) o.close();
      throw e;
    }
    return new RaplSource(config.metric as MetricId<"f64">, open, config.channels, log);
  }

  /** Number of counters read per poll. */
  get size(): number {
    return this.#channels.length;
  }

  poll(batch: Batch): void {
    const sums = this.#sums;
    const has = this.#has;
    has.fill(0);
    const channels = this.#channels;
    for (let i = 0; i < channels.length; i++) {
      const j = channels[i]!.joules();
      if (j < 0) continue;
      const s = this.#slotOf[i]!;
      if (has[s] === 0) {
        has[s] = 1;
        sums[s] = j;
      } else sums[s]! += j;
    }
    this.#watchStill(sums, has);
    const totals = this.#totals;
    const present = this.#present;
    present.fill(0);
    for (let s = 0; s < sums.length; s++) {
      if (has[s] === 0) continue;
      const slot = this.#slots[s]!;
      const j = sums[s]!;
      batch.push(this.#metric, j, { resource: slot.resource, attributes: slot.attributes });
      if (present[slot.domain] === 0) {
        present[slot.domain] = 1;
        totals[slot.domain] = j;
      } else totals[slot.domain]! += j;
    }
    for (let d = 0; d < totals.length; d++) {
      if (present[d] === 1) {
        batch.push(this.#metric, totals[d]!, {
          resource: this.#local,
          attributes: this.#totalAttributes[d]!,
        });
      }
    }
  }

  /**
   * A package's RAPL counter moves every millisecond (a package uses watts even idle): when no counter has
   * moved over the first second of polls (two measured polls at least {@linkcode STILL_MS} apart), RAPL is
   * listed but does not count, and one warning says so. Seen on a virtual machine (Firecracker, 2026-11-30)
   * whose perf `power` PMU lists energy-psys and reads 0, as `perf stat` does there. Some domains only may
   * read 0 on real hardware (an idle or absent integrated GPU's pp1, an unreported DRAM domain): one info line
   * names them.
   */
  #watchStill(sums: Float64Array, has: Uint8Array): void {
    const watch = this.#watch;
    if (watch === "done" || !has.includes(1)) return; // done, or a baseline poll: nothing measured yet
    const w = watch ??
      (this.#watch = { since: performance.now(), polls: 0, moved: new Uint8Array(sums.length) });
    w.polls++;
    for (let s = 0; s < sums.length; s++) if (has[s] === 1 && sums[s]! > 0) w.moved[s] = 1;
    const seconds = (performance.now() - w.since) / 1000;
    if (w.polls < 2 || seconds * 1000 < STILL_MS) return;
    this.#watch = "done";
    const still = this.#slots.filter((_, s) => w.moved[s] === 0).map((slot) => {
      const where = slot.resource.id === "" ? "" : ` (${slot.resource.kind} ${slot.resource.id})`;
      return `${RAPL_DOMAINS[slot.domain]}${where}`;
    });
    if (still.length === 0) return;
    const list = `${still.join(", ")} did not move in ${seconds.toFixed(1)} s of polls`;
    if (still.length < this.#slots.length) {
      this.#log?.info(
        `RAPL: ${list}; their energy reads 0 (an idle or absent integrated GPU, an unreported domain)`,
      );
      return;
    }
    this.#log?.warn(
      `No RAPL counter moves: ${list}. A package's RAPL counter moves every millisecond: this machine lists ` +
        "RAPL but does not count (seen in virtual machines), and the energy reads 0, which is not a " +
        "measurement. Disable the rapl plugin here, or estimate with energy-estimation-tdp.",
    );
  }

  reset(): void {
    for (const ch of this.#channels) ch.reset();
  }

  close(): void {
    for (const ch of this.#channels) ch.close();
    this.#channels.length = 0;
  }
}

/** The module entry the sampling Worker calls (`SourceModule`): opens the source described by `config`. */
export function createSource(config: RaplSourceConfig, context?: SourceContext): Source {
  return RaplSource.open(config, context?.log);
}

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
import type { Source } from "../../src/plugin/plugin.ts";
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

  private constructor(metric: MetricId<"f64">, channels: OpenChannel[], config: readonly RaplChannel[]) {
    this.#metric = metric;
    this.#channels = channels;
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

  /** Opens every channel (all or none: the ones already open are closed when one fails). */
  static open(config: RaplSourceConfig): RaplSource {
    const open: OpenChannel[] = [];
    try {
      for (const ch of config.channels) open.push(ch.kind === "powercap" ? openPowercap(ch) : openPerf(ch));
    } catch (e) {
      for (const o of open) o.close();
      throw e;
    }
    return new RaplSource(config.metric as MetricId<"f64">, open, config.channels);
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

  reset(): void {
    for (const ch of this.#channels) ch.reset();
  }

  close(): void {
    for (const ch of this.#channels) ch.close();
    this.#channels.length = 0;
  }
}

/** The module entry the sampling Worker calls (`SourceModule`): opens the source described by `config`. */
export function createSource(config: RaplSourceConfig): Source {
  return RaplSource.open(config);
}

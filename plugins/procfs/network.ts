/**
 * The `network` source: bytes, packets, drops and errors received and sent per interface, from
 * `/proc/net/dev`.
 *
 * @module
 */
import type { Batch, PointContext } from "../../src/model/batch.ts";
import type { Source } from "../../src/plugin/plugin.ts";
import { ProcFile } from "../../src/ffi/proc_file.ts";
import { Counter, NO_DELTA } from "../../src/model/counter.ts";
import type { MetricId } from "../../src/model/metrics.ts";
import type { NetworkMetrics } from "./metrics.ts";
import { ByteScanner, rescan } from "../../src/sys/scan.ts";

/** Counters per line of `/proc/net/dev`: 8 received, then 8 transmitted. */
const N_COUNTERS = 16;
/** Columns used: bytes, packets, errs, drop (receive at 0…3, transmit at 8…11). */
const RX_BYTES = 0, RX_PACKETS = 1, RX_ERRS = 2, RX_DROP = 3;
const TX = 8;
/** The columns kept, in the order of an interface's {@linkcode InterfaceSlot.counters}. */
const USED = [
  RX_BYTES,
  RX_PACKETS,
  RX_DROP,
  RX_ERRS,
  TX + RX_BYTES,
  TX + RX_PACKETS,
  TX + RX_DROP,
  TX + RX_ERRS,
];

/** One interface, as seen in the previous poll. */
interface InterfaceSlot {
  /** The name's bytes, to recognise the line without decoding it. */
  readonly name: Uint8Array;
  /** One counter per column of {@linkcode USED}; they reset to zero when the interface is created again. */
  readonly counters: readonly Counter[];
  seen: boolean;
  readonly rx: PointContext;
  readonly tx: PointContext;
}

/** Options of a {@linkcode NetworkSource}. */
export interface NetworkSourceOptions {
  /** The procfs root. Default `/proc`. */
  readonly root?: string;
}

const decoder = new TextDecoder();

/**
 * Reads `<root>/net/dev` (kept open) and pushes, per interface and direction (`rx`, `tx`), the difference
 * since the previous poll of `network_bytes`, `network_packets`, `network_packet_drops` and
 * `network_errors`, with the attributes `interface` and `direction`.
 *
 * - The first poll (and the first after `reset`) only sets the baseline.
 * - An interface that appears after that reports its whole counters: it did not exist at the previous poll,
 *   so everything it counted happened since (Alumet does the same).
 * - A counter that goes down was reset (the interface was deleted and created again between two polls): its
 *   new value, counted from zero since then, is the delta. Counters are u64 on 64-bit kernels, so a wrap
 *   is not a realistic cause (Deno only runs on 64-bit kernels).
 * - Counters are parsed exactly beyond 2^53 (as two parts), so deltas stay exact.
 * - An interface that disappears is forgotten; if it comes back, it is new again.
 */
export class NetworkSource implements Source {
  readonly path: string;
  /** The metric of each counter of a slot (in {@linkcode USED} order). */
  readonly #perCounter: readonly MetricId<"u64">[];
  readonly #scan = new ByteScanner();
  #file: ProcFile | undefined;
  #slots: InterfaceSlot[] = [];
  #polled = false;
  readonly #hi = new Float64Array(N_COUNTERS);
  readonly #lo = new Float64Array(N_COUNTERS);

  /** Opens `<root>/net/dev`; throws when it cannot be opened. */
  constructor(metrics: NetworkMetrics, options: NetworkSourceOptions = {}) {
    const m = metrics;
    this.#perCounter = [m.bytes, m.packets, m.drops, m.errors, m.bytes, m.packets, m.drops, m.errors];
    this.path = `${options.root ?? "/proc"}/net/dev`;
    this.#file = ProcFile.open(this.path, 4096);
  }

  poll(batch: Batch): void {
    const s = rescan(this.#scan, this.#file, this.path);
    const slots = this.#slots;
    for (const slot of slots) slot.seen = false;
    s.skipLine(); // "Inter-|   Receive …"
    s.skipLine(); // " face |bytes …"
    let line = 0;
    while (!s.done) {
      s.skipBlanks();
      const start = s.pos;
      const colon = s.buf.indexOf(58, start);
      const eol = s.buf.indexOf(10, start);
      if (colon < 0 || colon >= s.end || (eol >= 0 && eol < colon)) {
        s.skipLine();
        continue;
      }
      const slot = this.#slotFor(start, colon, line++);
      s.pos = colon + 1;
      const hi = this.#hi;
      const lo = this.#lo;
      let complete = true;
      for (let c = 0; c < N_COUNTERS; c++) {
        if (s.uint() < 0) {
          complete = false;
          break;
        }
        hi[c] = s.hi;
        lo[c] = s.lo;
      }
      s.skipLine();
      if (!complete) continue;
      slot.seen = true;
      this.#push(batch, slot);
    }
    this.#polled = true;
    let gone = false;
    for (const slot of slots) if (!slot.seen) gone = true;
    if (gone) this.#slots = slots.filter((slot) => slot.seen);
  }

  /** Updates the slot's counters with this poll's values; pushes their deltas unless they were baselines. */
  #push(batch: Batch, slot: InterfaceSlot): void {
    const metrics = this.#perCounter;
    const hi = this.#hi;
    const lo = this.#lo;
    for (let i = 0; i < USED.length; i++) {
      const c = USED[i]!;
      const d = slot.counters[i]!.updateSplit(hi[c]!, lo[c]!);
      if (d !== NO_DELTA) batch.push(metrics[i]!, d, i < USED.length / 2 ? slot.rx : slot.tx);
    }
  }

  /** The slot of the interface named by `buf[start, end)`; `hint` is its line number (same order as before). */
  #slotFor(start: number, end: number, hint: number): InterfaceSlot {
    const slots = this.#slots;
    const guess = slots[hint];
    if (guess !== undefined && this.#named(guess, start, end)) return guess;
    for (const slot of slots) if (this.#named(slot, start, end)) return slot;
    const buf = this.#scan.buf;
    const name = buf.slice(start, end);
    const text = decoder.decode(name);
    // After the first poll, an interface that appears counted from zero since it was created: its first
    // reading is a delta from zero (its whole counters).
    const baseline = this.#polled ? "zero" : "next";
    const slot: InterfaceSlot = {
      name,
      counters: USED.map(() => new Counter("resets", baseline)),
      seen: false,
      rx: Object.freeze({ attributes: Object.freeze({ interface: text, direction: "rx" }) }),
      tx: Object.freeze({ attributes: Object.freeze({ interface: text, direction: "tx" }) }),
    };
    slots.push(slot);
    return slot;
  }

  #named(slot: InterfaceSlot, start: number, end: number): boolean {
    const name = slot.name;
    if (name.length !== end - start) return false;
    const buf = this.#scan.buf;
    for (let i = 0; i < name.length; i++) if (buf[start + i] !== name[i]) return false;
    return true;
  }

  /** Forgets the previous values: the next poll is a baseline. */
  reset(): void {
    this.#slots = [];
    this.#polled = false;
  }

  /** Closes the file. Idempotent. */
  close(): void {
    this.#file?.close();
    this.#file = undefined;
  }
}

/** Creates a {@linkcode NetworkSource} from a serialisable config, for the sampling Worker (short periods). */
export function createNetworkSource(
  config: { metrics: NetworkMetrics; options: NetworkSourceOptions },
): NetworkSource {
  return new NetworkSource(config.metrics, config.options);
}

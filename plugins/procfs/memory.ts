/**
 * The `memory` source: chosen entries of `/proc/meminfo`, in bytes.
 *
 * @module
 */
import type { Batch } from "../../src/model/batch.ts";
import type { MetricId } from "../../src/model/metrics.ts";
import type { Source } from "../../src/plugin/plugin.ts";
import { ProcFile } from "../../src/ffi/proc_file.ts";
import { ascii, ByteScanner, rescan } from "../../src/sys/scan.ts";

/** A `/proc/meminfo` key and the metric its value goes to. */
export interface MeminfoEntry {
  /** The key as the file writes it, without the colon: `MemTotal`, `Active(anon)`. */
  readonly key: string;
  readonly metric: MetricId<"u64">;
}

/** Options of a {@linkcode MemorySource}. */
export interface MemorySourceOptions {
  /** The procfs root. Default `/proc`. */
  readonly root?: string;
}

const KB = ascii("kB");

/**
 * Reads `<root>/meminfo` (kept open) and pushes one gauge per entry, for the local machine. A value
 * followed by `kB` (KiB, in fact) is multiplied by 1024; a value with no unit (`HugePages_Total`, a page
 * count) is pushed as it is, as Alumet does. Keys absent from the file push nothing (see
 * {@linkcode MemorySource.missingKeys}).
 */
export class MemorySource implements Source {
  readonly path: string;
  readonly #keys: Uint8Array[];
  readonly #metrics: MetricId<"u64">[];
  readonly #found: Uint8Array;
  readonly #scan = new ByteScanner();
  #file: ProcFile | undefined;

  /** Opens `<root>/meminfo`; throws when it cannot be opened. */
  constructor(entries: readonly MeminfoEntry[], options: MemorySourceOptions = {}) {
    this.path = `${options.root ?? "/proc"}/meminfo`;
    const unique = new Map(entries.map((e) => [e.key, e.metric]));
    this.#keys = [...unique.keys()].map((k) => ascii(`${k}:`));
    this.#metrics = [...unique.values()];
    this.#found = new Uint8Array(this.#keys.length);
    this.#file = ProcFile.open(this.path, 8192);
  }

  poll(batch: Batch): void {
    const s = rescan(this.#scan, this.#file, this.path);
    const keys = this.#keys;
    const found = this.#found;
    found.fill(0);
    let left = keys.length;
    while (!s.done && left > 0) {
      for (let k = 0; k < keys.length; k++) {
        if (found[k] === 1 || !s.matches(keys[k]!)) continue;
        s.pos += keys[k]!.length;
        let v = s.uint();
        if (v >= 0) {
          s.skipBlanks();
          if (s.matches(KB)) v *= 1024;
          batch.push(this.#metrics[k]!, v);
          found[k] = 1;
          left--;
        }
        break;
      }
      s.skipLine();
    }
  }

  /** The keys the last poll did not find in the file (misspelt, or absent on this kernel). */
  missingKeys(): string[] {
    const out: string[] = [];
    const decoder = new TextDecoder();
    for (let k = 0; k < this.#keys.length; k++) {
      if (this.#found[k] === 0) out.push(decoder.decode(this.#keys[k]!.subarray(0, -1)));
    }
    return out;
  }

  /** Closes the file. Idempotent. */
  close(): void {
    this.#file?.close();
    this.#file = undefined;
  }
}

/** Creates a {@linkcode MemorySource} from a serialisable config, for the sampling Worker (short periods). */
export function createMemorySource(
  config: { entries: readonly MeminfoEntry[]; options: MemorySourceOptions },
): MemorySource {
  return new MemorySource(config.entries, config.options);
}

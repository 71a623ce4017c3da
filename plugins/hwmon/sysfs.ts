/**
 * Small sysfs helpers shared by the hwmon, grace-hopper and jetson sources: an attribute file kept open and
 * re-read as an integer (one `pread` a poll, no decoding), and listings that follow sysfs's symlinks.
 *
 * @module
 */
import { ProcFile } from "../../src/ffi/proc_file.ts";

/**
 * One sysfs attribute holding an integer (`power1_average`, `in1_input`…), kept open and re-read from offset
 * 0 at each poll.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { IntAttribute } from "./sysfs.ts";
 * const dir = Deno.makeTempDirSync();
 * Deno.writeTextFileSync(`${dir}/power1_average`, "35000000\n");
 * using a = IntAttribute.open(`${dir}/power1_average`);
 * assert.equal(a.read(), 35_000_000);
 * Deno.writeTextFileSync(`${dir}/power1_average`, "-12\n");
 * assert.equal(a.read(), -12);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export class IntAttribute implements Disposable {
  readonly #file: ProcFile;

  private constructor(file: ProcFile) {
    this.#file = file;
  }

  /** The file's path. */
  get path(): string {
    return this.#file.path;
  }

  /** Opens `path` (throws a clear error when it cannot be opened). */
  static open(path: string): IntAttribute {
    return new IntAttribute(ProcFile.open(path, 64));
  }

  /**
   * Reads the value now.
   *
   * @throws {Error} when the file cannot be read or holds no integer (a driver answering with an error)
   */
  read(): number {
    const n = this.#file.read();
    if (n < 0) throw new Error(`${this.path} is gone`);
    const b = this.#file.buffer;
    let i = 0;
    while (i < n && (b[i] === 0x20 || b[i] === 0x09)) i++;
    let sign = 1;
    if (b[i] === 0x2d) {
      sign = -1;
      i++;
    }
    let v = 0;
    const start = i;
    for (; i < n; i++) {
      const c = b[i]! - 0x30;
      if (c < 0 || c > 9) break;
      v = v * 10 + c;
    }
    if (i === start) {
      const text = new TextDecoder().decode(b.subarray(0, Math.min(n, 40))).trim();
      throw new Error(`${this.path} holds no integer ("${text}")`);
    }
    return sign * v;
  }

  /** Closes the file. Idempotent. */
  close(): void {
    this.#file.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** The trimmed text of a small sysfs file, or undefined when it does not exist or cannot be read. */
export function readTrimmed(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch {
    return undefined;
  }
}

/** Whether `path` exists (following symlinks). */
export function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * The names in a directory, sorted naturally (`hwmon2` before `hwmon10`); `[]` when it cannot be listed.
 *
 * @param dir the directory
 * @param onlyDirs keep only entries that are directories, following symlinks (sysfs's class links)
 */
export function listNames(dir: string, onlyDirs = false): string[] {
  let names: string[];
  try {
    names = [...Deno.readDirSync(dir)].map((e) => e.name);
  } catch {
    return [];
  }
  if (onlyDirs) {
    names = names.filter((n) => {
      try {
        return Deno.statSync(`${dir}/${n}`).isDirectory;
      } catch {
        return false;
      }
    });
  }
  return names.sort(naturalCompare);
}

/** Compares `hwmon2` and `hwmon10` as a person would. */
export function naturalCompare(a: string, b: string): number {
  return a.localeCompare(b, "en", { numeric: true });
}

/** Why a file cannot be opened for reading, or undefined when it can (it is opened and closed). */
export function unreadable(path: string): string | undefined {
  try {
    IntAttribute.open(path).close();
    return undefined;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

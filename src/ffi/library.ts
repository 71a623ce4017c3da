/**
 * The one native-library loader: `Deno.dlopen` of a library by candidate names (`libnvidia-ml.so.1`, then
 * `libnvidia-ml.so`), or by the path an environment variable gives (`ALUMET_NVML_LIBRARY`), with one clear
 * error when none loads: a {@linkcode LibraryError} naming what was tried, the loader's message for each, and
 * what to do. {@linkcode diagnoseLibrary} turns the same attempt into a line of `alumet doctor`, so that a
 * plugin's `diagnose` is one call.
 *
 * Nothing is opened when this module is imported, and a library with no environment variable costs one
 * `dlopen` per candidate tried: libc, on the start-up path, costs what a direct `Deno.dlopen` costs.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LibraryError, openLibrary } from "./library.ts";
 * const { library, path } = openLibrary({ name: "libc", candidates: ["libc.so.6"] }, {
 *   getpid: { parameters: [], result: "i32" },
 * });
 * assert.equal(path, "libc.so.6");
 * assert.equal(library.symbols.getpid(), Deno.pid);
 * library.close();
 * assert.throws(
 *   () => openLibrary({ name: "Foo", candidates: ["libfoo-none.so.1"], install: "install foo" }, {}),
 *   (e) => e instanceof LibraryError && /^Cannot load Foo: tried libfoo-none\.so\.1 \(/.test(e.message),
 * );
 * ```
 *
 * @module
 */
import { AlumetError } from "../errors.ts";
import type { Diagnosis } from "../plugin/plugin.ts";

/** A native library and where to look for it. */
export interface LibrarySpec {
  /** What the library is, for messages: `libc`, `NVML (libnvidia-ml)`. */
  readonly name: string;
  /**
   * File names (searched by the system's loader: `LD_LIBRARY_PATH`, the ld.so cache, the default directories)
   * or paths, tried in order; the first that opens with every symbol is used.
   */
  readonly candidates: readonly string[];
  /**
   * An environment variable whose value, a path, replaces the candidates when it is set and not empty (e.g.
   * `ALUMET_NVML_LIBRARY`). It is read only when reading it is already allowed: never a permission prompt.
   */
  readonly env?: string;
  /** What to do when no candidate loads, e.g. `install the NVIDIA driver (it ships libnvidia-ml.so.1)`. */
  readonly install?: string;
}

/** One failed `dlopen`: what was tried, and the loader's message. */
export interface LoadAttempt {
  /** The candidate name or path. */
  readonly candidate: string;
  /** The loader's message (`cannot open shared object file: No such file or directory`…). */
  readonly message: string;
}

/** A library that no candidate could provide. `fix` says what to do; `attempts` what was tried. */
export class LibraryError extends AlumetError {
  override name = "LibraryError";
  /** {@linkcode LibrarySpec.name} */
  readonly library: string;
  /** Every candidate tried, in order, with the loader's message; empty when native calls are not allowed. */
  readonly attempts: readonly LoadAttempt[];
  /** True when Deno runs without `--allow-ffi` (for this library): no candidate was tried. */
  readonly denied: boolean;
  /** What was tried, one clause (`tried libx.so.1 (…), libx.so (…)`). */
  readonly detail: string;
  /** What to do. */
  readonly fix: string;

  /**
   * @param library what the library is
   * @param attempts what was tried, in order
   * @param detail what was tried, as text
   * @param fix what to do
   * @param options `denied` when native calls are not allowed; `cause`, the last loader error
   */
  constructor(
    library: string,
    attempts: readonly LoadAttempt[],
    detail: string,
    fix: string,
    options: { denied?: boolean; cause?: unknown } = {},
  ) {
    super(
      options.denied ? `Native calls are not allowed: ${fix}` : `Cannot load ${library}: ${detail}; ${fix}`,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.library = library;
    this.attempts = attempts;
    this.denied = options.denied ?? false;
    this.detail = detail;
    this.fix = fix;
  }
}

/** A library opened by {@linkcode openLibrary}, and the candidate (or path) that opened. */
export interface LoadedLibrary<S extends Deno.ForeignLibraryInterface> {
  readonly library: Deno.DynamicLibrary<S>;
  readonly path: string;
}

const DENIED_FIX = "run Deno with --allow-ffi (the alumet task does)";

/** The environment override of `spec`, when it is set and may be read without a prompt. */
function override(spec: LibrarySpec): string | undefined {
  if (spec.env === undefined) return undefined;
  try {
    if (Deno.permissions.querySync({ name: "env", variable: spec.env }).state !== "granted") return undefined;
    return Deno.env.get(spec.env) || undefined;
  } catch {
    return undefined;
  }
}

/** The loader's message without Deno's repeated prefix and the candidate's name in front. */
function loaderMessage(candidate: string, e: unknown): string {
  let text = (e instanceof Error ? e.message : String(e)).split("\n")[0]!;
  text = text.replace(/^(Could not open library: )+/, "");
  if (text.startsWith(`${candidate}: `)) text = text.slice(candidate.length + 2);
  return text;
}

/**
 * Opens the first candidate of `spec` that loads with `symbols` (or the path of `spec.env` when it is set).
 *
 * @param spec the library and where to look for it
 * @param symbols the symbols to bind, as for `Deno.dlopen` (`{}` to only check that the library loads)
 * @returns the library and the candidate that opened; close it with `library.close()`
 * @throws {LibraryError} when no candidate loads, or native calls are not allowed
 */
export function openLibrary<const S extends Deno.ForeignLibraryInterface>(
  spec: LibrarySpec,
  symbols: S,
): LoadedLibrary<S> {
  const path = override(spec);
  const candidates = path === undefined ? spec.candidates : [path];
  const attempts: LoadAttempt[] = [];
  let last: unknown;
  for (const candidate of candidates) {
    try {
      return { library: Deno.dlopen(candidate, symbols), path: candidate };
    } catch (e) {
      if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
        throw new LibraryError(spec.name, [], "Deno runs without --allow-ffi", DENIED_FIX, {
          denied: true,
          cause: e,
        });
      }
      attempts.push({ candidate, message: loaderMessage(candidate, e) });
      last = e;
    }
  }
  const tried = attempts.length === 0
    ? "no candidate to try"
    : `tried ${
      attempts.map((a) => `${path === undefined ? "" : `${spec.env}=`}${a.candidate} (${a.message})`)
        .join(", ")
    }`;
  const fix = path !== undefined
    ? `check ${spec.env}, or unset it to try ${spec.candidates.join(", ")}`
    : [spec.install, spec.env && `set ${spec.env} to the library's path`].filter(Boolean).join(", or ") ||
      "install it";
  throw new LibraryError(spec.name, attempts, tried, fix, { cause: last });
}

/**
 * A line of `alumet doctor` for a library: does it load here, and if not, what was tried and what to do.
 * The library is opened and closed again. A plugin's `diagnose` is then one line, as NVML's will be:
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { diagnoseLibrary, type LibrarySpec } from "./library.ts";
 * const NVML: LibrarySpec = {
 *   name: "NVML (libnvidia-ml)",
 *   candidates: ["libnvidia-ml.so.1", "libnvidia-ml.so"],
 *   env: "ALUMET_NVML_LIBRARY",
 *   install: "install the NVIDIA driver (it ships libnvidia-ml.so.1) on a machine with a GPU",
 * };
 * const diagnose = () => [diagnoseLibrary("NVIDIA GPUs (NVML)", NVML)];
 * const [line] = diagnose();
 * assert.equal(line!.check, "NVIDIA GPUs (NVML)");
 * if (!line!.ok) assert.match(line!.fix!, /^install the NVIDIA driver.*, or set ALUMET_NVML_LIBRARY to the library's path$/);
 * assert.deepEqual(diagnoseLibrary("C library", { name: "libc", candidates: ["libc.so.6"] }), {
 *   check: "C library",
 *   ok: true,
 *   detail: "libc.so.6 loads",
 * });
 * ```
 *
 * @param check the line's title, e.g. `NVIDIA GPUs (NVML)`
 * @param spec the library and where to look for it
 * @param symbols the symbols the plugin binds (default none: only that the library loads)
 */
export function diagnoseLibrary(
  check: string,
  spec: LibrarySpec,
  symbols: Deno.ForeignLibraryInterface = {},
): Diagnosis {
  try {
    const { library, path } = openLibrary(spec, symbols);
    library.close();
    return { check, ok: true, detail: `${path} loads` };
  } catch (e) {
    if (!(e instanceof LibraryError)) throw e;
    return { check, ok: false, detail: e.detail, fix: e.fix };
  }
}

/**
 * The CLI runs from a bundle of its own sources when it can: plain JavaScript in a few chunks under
 * `.build/cli-<id>/` in the project, made with `deno bundle` and remade when a source changes.
 *
 * Why: Deno 2.9 hands V8 each TypeScript module with an inline source map that embeds the module's source
 * again, about three times its size, and its code cache does little for them. `alumet exec -- true` spent
 * some 50 ms loading 75 modules (720 KB of TypeScript); from the bundle, the same code loads in about half
 * that and takes some 6 MiB less memory (figures in CHANGELOG.md, issue 12; `deno task bench exec`).
 *
 * What the bundle changes, and what does not change:
 * - Sources are the truth: every run checks that each file the bundle was made from has the size, mtime and
 *   ctime it had then (some 130 `stat` calls, 1–3 ms), and a changed, added or removed source makes a new bundle
 *   before anything runs (about 1 s, once; bounded: a `deno bundle` that has not finished within 60 s, such
 *   as one waiting on a network that never answers, is killed). When bundling fails (`deno bundle` fetches
 *   esbuild from npm the first time: offline, it cannot), the sources run, quietly, and bundling is not tried
 *   again until a source changes or `deno task bundle` asks for it.
 * - Modules a Worker imports are loaded from the sources, by {@linkcode projectModule} (src/plugin/module_url.ts).
 * - The sources run instead when `ALUMET_NO_BUNDLE=1` is set (stack traces with TypeScript line numbers),
 *   when the project is not a local directory (imported by URL) or not writable, and when the config or the
 *   command line names an external plugin `module`: such a plugin imports this framework from its sources,
 *   and must share its modules (error classes, log level) with the agent that runs it.
 * - Concurrent runs: one bundles (an exclusive `flock` on `.build/cli.lock`, released by the kernel if it
 *   dies), the others run the sources meanwhile. Each run holds a shared `flock` on its bundle's `users.lock`
 *   for its lifetime: an old bundle is removed only when no live process runs from it (an agent imports
 *   chunks after its start).
 *
 * `deno run -A src/agent/bundle.ts` makes the bundle now (`deno task test` does it first, so that the tests
 * that spawn the CLI never make one concurrently).
 *
 * @module
 */

/** The project's root: this module is `src/agent/bundle.ts`. */
const ROOT = new URL("../../", import.meta.url);

/** The bundled entry point and the sources' one. */
const ENTRY = "src/agent/cli.ts";

/** Where the bundles and their record are, under the root. Bundles are two levels down, as the sources are. */
const BUILD_DIR = ".build";
const RECORD = `${BUILD_DIR}/cli.json`;
const LOCK = `${BUILD_DIR}/cli.lock`;
const FAILED = `${BUILD_DIR}/cli-failed.json`;

/** Bundles made longer ago than this, not the current one and not in use, are removed at the next build. */
const KEEP_OLD_MS = 3_600_000;
/** How long `deno info` and `deno bundle` may take before they are killed (bundling then counts as failed). */
const INFO_LIMIT_MS = 20_000;
const BUNDLE_LIMIT_MS = 60_000;

/**
 * What a bundle was made from: `[path under the root, size, mtime, ctime (ms)]` per source, and the Deno
 * version. The ctime catches what keeps an old mtime (`cp -p`, `rsync -a`, `tar x`): nothing can set it back
 * (Deno gives it to the second: a copy within the second of the last bundling could still pass).
 */
export interface BundleRecord {
  readonly deno: string;
  readonly dir: string;
  readonly files: readonly Stamp[];
}

/** A source's path under the root, size, mtime and ctime (ms). */
export type Stamp = readonly [string, number, number, number];

/** The stamp of the file at `path` under `root`. Throws when it cannot be read. */
export function stampOf(root: string, path: string): Stamp {
  const info = Deno.statSync(`${root}/${path}`);
  return [path, info.size, info.mtime?.getTime() ?? 0, info.ctime?.getTime() ?? 0];
}

/** Which module the CLI runs from, and why not the bundle when it is the sources. */
export interface CliModule {
  readonly url: string;
  /** Undefined when it is the bundle. */
  readonly whySources: string | undefined;
}

/** A name of `module` as a key (`module =`, `"module" =`, `x.module=`): an external plugin's module. */
const MODULE_KEY = /\bmodule["']?\s*=/;

/** Why the sources run instead of the bundle, or undefined when the bundle may be used. */
export function sourcesWanted(
  args: readonly string[],
  env: (name: string) => string | undefined,
  readText: (path: string) => string | undefined,
): string | undefined {
  const off = env("ALUMET_NO_BUNDLE");
  if (off !== undefined && off !== "" && off !== "0") return "ALUMET_NO_BUNDLE is set";
  if (ROOT.protocol !== "file:") return "the project is not a local directory";
  const own = args.includes("--") ? args.slice(0, args.indexOf("--")) : args; // not the program's
  if (own.some((a) => MODULE_KEY.test(a))) return "the command line names a plugin module";
  const config = configPath(own, env);
  for (const base of new Set([env("INIT_CWD"), Deno.cwd()])) {
    if (base === undefined) continue;
    // Loosely: a false match costs start-up time only; a missed one would run a plugin against copies.
    const text = readText(config.startsWith("/") ? config : `${base}/${config}`);
    if (text !== undefined && MODULE_KEY.test(text)) return "the config names a plugin module";
  }
  return undefined;
}

/** The config file the command line or ALUMET_CONFIG names, else the default one. */
function configPath(args: readonly string[], env: (name: string) => string | undefined): string {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--config" && i + 1 < args.length) return args[i + 1]!;
    if (a.startsWith("--config=")) return a.slice("--config=".length);
  }
  return env("ALUMET_CONFIG") || "alumet-config.toml";
}

/** True when every source of `record` has the size, mtime and ctime recorded, and Deno is the same version. */
export function isFresh(record: BundleRecord, root: string = rootPath()): boolean {
  if (record.deno !== Deno.version.deno) return false;
  for (const recorded of record.files) {
    let now: Stamp;
    try {
      now = stampOf(root, recorded[0]);
    } catch {
      return false;
    }
    if (now[1] !== recorded[1] || now[2] !== recorded[2] || now[3] !== recorded[3]) return false;
  }
  return true;
}

function rootPath(): string {
  return decodeURIComponent(ROOT.pathname).replace(/\/$/, "");
}

function readJson<T>(path: string): T | undefined {
  try {
    return JSON.parse(Deno.readTextFileSync(path)) as T;
  } catch {
    return undefined;
  }
}

function readText(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/**
 * The module the CLI runs from: the bundle's entry when it is (or can be made) up to date with the sources,
 * else the sources' entry, with the reason. Never throws.
 */
export async function cliModule(args: readonly string[]): Promise<CliModule> {
  const sources = (whySources: string): CliModule => ({ url: new URL(ENTRY, ROOT).href, whySources });
  try {
    const why = sourcesWanted(args, env, readText);
    if (why !== undefined) return sources(why);
    const root = rootPath();
    const record = readJson<BundleRecord>(`${root}/${RECORD}`);
    if (record !== undefined && isFresh(record, root)) return entryOf(root, record.dir);
    // Bundling these very sources failed before (offline, say): not again until one changes.
    const failed = readJson<BundleRecord & { message: string }>(`${root}/${FAILED}`);
    if (failed !== undefined && isFresh(failed, root)) return sources(`bundling failed: ${failed.message}`);
    const made = await buildCli(root);
    return typeof made === "string" ? sources(made) : entryOf(root, made.dir);
  } catch (e) {
    return sources(`the bundle cannot be used: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** Files kept open for the process's lifetime: the shared locks that mark the bundles in use. */
const held: Deno.FsFile[] = [];

/** The entry of bundle `dir`, marked in use by this process (a shared lock held until it exits). */
function entryOf(root: string, dir: string): CliModule {
  try {
    const users = Deno.openSync(`${root}/${BUILD_DIR}/${dir}/users.lock`, { read: true });
    if (users.tryLockSync(false)) held.push(users);
    else users.close();
  } catch {
    // not marked (a read-only checkout): nothing removes it either
  }
  return { url: new URL(`${BUILD_DIR}/${dir}/cli.js`, ROOT).href, whySources: undefined };
}

/** Runs `deno ARGS…` in the root, killed after `limitMs`; stdout, or an error message. */
async function deno(root: string, args: string[], limitMs: number): Promise<Uint8Array | string> {
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args,
      cwd: root,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
      signal: AbortSignal.timeout(limitMs),
    }).output();
    if (out.success) return out.stdout;
    const text = new TextDecoder().decode(out.stderr).trim().split("\n").slice(0, 5).join("\n");
    return out.signal !== null
      ? `deno ${args[0]} did not finish within ${limitMs / 1000} s (killed)`
      : text || `deno ${args[0]} exited with ${out.code}`;
  } catch (e) {
    return `deno ${args[0]}: ${e instanceof Error ? e.message : String(e)}`;
  }
}

/** The sources of the CLI (every local module its graph reaches, and deno.json), stamped. */
async function sourcesOf(root: string): Promise<Stamp[] | string> {
  const out = await deno(root, ["info", "--json", "--no-lock", ENTRY], INFO_LIMIT_MS);
  if (typeof out === "string") return out;
  const graph = JSON.parse(new TextDecoder().decode(out)) as { modules: { specifier: string }[] };
  const prefix = ROOT.href;
  const paths = graph.modules.map((m) => m.specifier).filter((s) => s.startsWith(prefix))
    .map((s) => decodeURIComponent(s.slice(prefix.length)));
  return [...new Set([...paths, "deno.json"])].sort().map((path) => stampOf(root, path));
}

/**
 * Makes a bundle of the CLI and records it. When it cannot (another process is bundling, the project is not
 * writable, bundling failed: then recorded in `.build/cli-failed.json` with the sources it failed for), says
 * why: the caller runs the sources.
 */
export async function buildCli(root: string = rootPath()): Promise<BundleRecord | string> {
  const build = `${root}/${BUILD_DIR}`;
  let lock: Deno.FsFile;
  try {
    Deno.mkdirSync(build, { recursive: true });
    lock = Deno.openSync(`${root}/${LOCK}`, { write: true, create: true });
  } catch {
    return "the project is not writable";
  }
  try {
    if (!lock.tryLockSync(true)) return "another process is bundling";
    const files = await sourcesOf(root);
    if (typeof files === "string") return files;
    const dir = `cli-${Date.now().toString(36)}-${Deno.pid}`;
    const args = ["bundle", "--quiet", "--no-lock", "--platform=deno", "--format=esm", "--code-splitting"];
    const out = await deno(root, [...args, `--outdir=${build}/${dir}`, ENTRY], BUNDLE_LIMIT_MS);
    if (typeof out === "string") {
      const failed: BundleRecord & { message: string } = {
        deno: Deno.version.deno,
        dir: "",
        files,
        message: out,
      };
      Deno.writeTextFileSync(`${root}/${FAILED}`, JSON.stringify(failed));
      removeQuietly(`${build}/${dir}`);
      return `bundling failed: ${out}`;
    }
    // A source edited while it was bundled: this bundle may hold the edit and not the record, or the reverse.
    const after = await sourcesOf(root);
    if (typeof after === "string" || JSON.stringify(after) !== JSON.stringify(files)) {
      removeQuietly(`${build}/${dir}`);
      return "a source changed while it was bundled";
    }
    hideChunkImports(`${build}/${dir}`);
    Deno.writeFileSync(`${build}/${dir}/users.lock`, new Uint8Array());
    const record: BundleRecord = { deno: Deno.version.deno, dir, files };
    const tmp = `${root}/${RECORD}.${Deno.pid}`;
    Deno.writeTextFileSync(tmp, JSON.stringify(record));
    Deno.renameSync(tmp, `${root}/${RECORD}`);
    removeQuietly(`${root}/${FAILED}`);
    removeOld(build, dir);
    return record;
  } finally {
    lock.close(); // and its lock with it
  }
}

/**
 * Makes the chunks' dynamic imports (`import("./exec-X.js")`) computed ones: Deno loads the whole graph that a
 * module's literal dynamic imports reach before it runs it, which would read the whole bundle (1 MB) for
 * `alumet --version`; a command's chunks are then loaded when it runs, as in the sources.
 */
function hideChunkImports(dir: string): void {
  for (const e of Deno.readDirSync(dir)) {
    if (!e.isFile || !e.name.endsWith(".js")) continue;
    const path = `${dir}/${e.name}`;
    const text = Deno.readTextFileSync(path);
    const hidden = text.replace(/\bimport\("(\.\/[\w.-]+\.js)"\)/g, 'import(`$1` + "")');
    if (hidden !== text) Deno.writeTextFileSync(path, hidden);
  }
}

/**
 * Removes the bundles made more than an hour ago, but `keep` (the current one) and those a live process runs
 * from (its shared lock on their `users.lock`: an agent started from an older bundle imports chunks later).
 */
export function removeOld(build: string, keep: string): void {
  for (const e of Deno.readDirSync(build)) {
    if (!e.isDirectory || !e.name.startsWith("cli-") || e.name === keep) continue;
    const dir = `${build}/${e.name}`;
    try {
      const age = Date.now() - (Deno.statSync(dir).mtime?.getTime() ?? 0);
      if (age > KEEP_OLD_MS && !inUse(dir)) Deno.removeSync(dir, { recursive: true });
    } catch {
      // another process removed it
    }
  }
}

/** True when a live process holds its shared lock on bundle `dir`'s `users.lock`. */
function inUse(dir: string): boolean {
  let users: Deno.FsFile;
  try {
    users = Deno.openSync(`${dir}/users.lock`, { read: true });
  } catch {
    return false; // not a bundle that records its users
  }
  try {
    return !users.tryLockSync(true);
  } finally {
    users.close();
  }
}

function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path, { recursive: true });
  } catch {
    // already gone
  }
}

if (import.meta.main) {
  const root = rootPath();
  const record = readJson<BundleRecord>(`${root}/${RECORD}`);
  if (record === undefined || !isFresh(record, root)) {
    removeQuietly(`${root}/${FAILED}`); // asked for: try again
    const made = await buildCli(root);
    if (typeof made === "string") {
      // deno-lint-ignore no-console
      console.error(`alumet: the CLI was not bundled (it runs from its sources): ${made}`);
    }
  }
}

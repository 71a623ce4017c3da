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
 * - Sources are the truth: every run checks that each file the bundle was made from has the size and mtime it
 *   had then (some 130 `stat` calls, 2–3 ms), and a changed, added or removed source makes a new bundle
 *   before anything runs (about 1 s, once). When bundling fails (`deno bundle` fetches esbuild from npm the
 *   first time: offline, it cannot), the sources run, quietly, and bundling is not tried again until a source
 *   changes or `deno task bundle` asks for it.
 * - Modules a Worker imports are loaded from the sources, by {@linkcode projectModule} (src/plugin/module_url.ts).
 * - The sources run instead when `ALUMET_NO_BUNDLE=1` is set (stack traces with TypeScript line numbers),
 *   when the project is not a local directory (imported by URL) or not writable, and when the config or the
 *   command line names an external plugin `module`: such a plugin imports this framework from its sources,
 *   and must share its modules (error classes, log level) with the agent that runs it.
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

/** A lock older than this is a crashed build's. */
const LOCK_STALE_MS = 120_000;
/** Bundles older than this, and not the current one, are removed at the next build. */
const KEEP_OLD_MS = 3_600_000;

/** What a bundle was made from: `[path under the root, size, mtime in ms]` per source, and the Deno version. */
export interface BundleRecord {
  readonly deno: string;
  readonly dir: string;
  readonly files: readonly (readonly [string, number, number])[];
}

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
  if (own.some((a) => /(^|\.)module\s*=/.test(a))) return "the command line names a plugin module";
  const config = configPath(args, env);
  for (const base of new Set([env("INIT_CWD"), Deno.cwd()])) {
    if (base === undefined) continue;
    const text = readText(config.startsWith("/") ? config : `${base}/${config}`);
    if (text !== undefined && /^\s*module\s*=/m.test(text)) return "the config names a plugin module";
  }
  return undefined;
}

/** The config file the command line or ALUMET_CONFIG names, else the default one. */
function configPath(args: readonly string[], env: (name: string) => string | undefined): string {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") break;
    if (a === "--config" && i + 1 < args.length) return args[i + 1]!;
    if (a.startsWith("--config=")) return a.slice("--config=".length);
  }
  return env("ALUMET_CONFIG") || "alumet-config.toml";
}

/** True when every source of `record` has the size and mtime recorded, and Deno is the same version. */
export function isFresh(record: BundleRecord, root: string = rootPath()): boolean {
  if (record.deno !== Deno.version.deno) return false;
  for (const [path, size, mtime] of record.files) {
    let info: Deno.FileInfo;
    try {
      info = Deno.statSync(`${root}/${path}`);
    } catch {
      return false;
    }
    if (info.size !== size || info.mtime?.getTime() !== mtime) return false;
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
 * else the sources' entry. Never throws.
 */
export function cliModule(args: readonly string[]): string {
  const sources = new URL(ENTRY, ROOT).href;
  try {
    if (sourcesWanted(args, env, readText) !== undefined) return sources;
    const root = rootPath();
    const record = readJson<BundleRecord>(`${root}/${RECORD}`);
    if (record !== undefined && isFresh(record, root)) return entryOf(root, record.dir);
    // Bundling these very sources failed before (offline, say): not again until one changes.
    const failed = readJson<BundleRecord>(`${root}/${FAILED}`);
    if (failed !== undefined && isFresh(failed, root)) return sources;
    const made = buildCli(root);
    return made === undefined ? sources : entryOf(root, made.dir);
  } catch {
    return sources;
  }
}

/**
 * The entry of bundle `dir`, marked as used by this process (`users/<pid>`): a bundle a live process may
 * still import chunks from is not removed.
 */
function entryOf(root: string, dir: string): string {
  try {
    Deno.writeFileSync(`${root}/${BUILD_DIR}/${dir}/users/${Deno.pid}`, new Uint8Array());
  } catch {
    // not writable: it is then not removed either
  }
  return new URL(`${BUILD_DIR}/${dir}/cli.js`, ROOT).href;
}

/** The sources of the CLI (every local module its graph reaches, and deno.json) with their size and mtime. */
function sourcesOf(root: string): [string, number, number][] | undefined {
  const out = new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "--no-lock", ENTRY],
    cwd: root,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).outputSync();
  if (!out.success) return undefined;
  const graph = JSON.parse(new TextDecoder().decode(out.stdout)) as { modules: { specifier: string }[] };
  const prefix = ROOT.href;
  const paths = graph.modules.map((m) => m.specifier).filter((s) => s.startsWith(prefix))
    .map((s) => decodeURIComponent(s.slice(prefix.length)));
  const files: [string, number, number][] = [];
  for (const path of [...new Set([...paths, "deno.json"])].sort()) {
    const info = Deno.statSync(`${root}/${path}`);
    files.push([path, info.size, info.mtime?.getTime() ?? 0]);
  }
  return files;
}

/**
 * Makes a bundle of the CLI and records it. Undefined when another process is making one, or the project is not
 * writable, or bundling failed (recorded in `.build/cli-failed.json` with the sources it failed for): the
 * caller runs the sources.
 */
export function buildCli(root: string = rootPath()): BundleRecord | undefined {
  const build = `${root}/${BUILD_DIR}`;
  try {
    Deno.mkdirSync(build, { recursive: true });
  } catch {
    return undefined; // not writable: the sources run
  }
  if (!takeLock(`${root}/${LOCK}`)) return undefined;
  try {
    const files = sourcesOf(root);
    if (files === undefined) return undefined;
    const dir = `cli-${Date.now().toString(36)}-${Deno.pid}`;
    const out = new Deno.Command(Deno.execPath(), {
      args: [
        "bundle",
        "--quiet",
        "--no-lock",
        "--platform=deno",
        "--format=esm",
        "--code-splitting",
        `--outdir=${build}/${dir}`,
        ENTRY,
      ],
      cwd: root,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).outputSync();
    if (!out.success) {
      const message = new TextDecoder().decode(out.stderr).trim().split("\n").slice(0, 5).join("\n");
      const failed: BundleRecord & { message: string } = { deno: Deno.version.deno, dir: "", files, message };
      Deno.writeTextFileSync(`${root}/${FAILED}`, JSON.stringify(failed));
      removeQuietly(`${build}/${dir}`);
      return undefined;
    }
    hideChunkImports(`${build}/${dir}`);
    Deno.mkdirSync(`${build}/${dir}/users`);
    const record: BundleRecord = { deno: Deno.version.deno, dir, files };
    const tmp = `${root}/${RECORD}.${Deno.pid}`;
    Deno.writeTextFileSync(tmp, JSON.stringify(record));
    Deno.renameSync(tmp, `${root}/${RECORD}`);
    removeQuietly(`${root}/${FAILED}`);
    removeOld(build, dir);
    for (const e of Deno.readDirSync(build)) {
      if (e.isDirectory && e.name.startsWith("cli-")) inUse(`${build}/${e.name}`); // forgets ended users
    }
    return record;
  } finally {
    removeQuietly(`${root}/${LOCK}`);
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

/** Creates the lock file; false when another build holds it (a lock left by a crash is taken over). */
function takeLock(path: string): boolean {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      Deno.openSync(path, { write: true, createNew: true }).close();
      return true;
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) return false;
      const age = Date.now() - (Deno.statSync(path).mtime?.getTime() ?? 0);
      if (age < LOCK_STALE_MS) return false;
      removeQuietly(path);
    }
  }
  return false;
}

/**
 * Removes the bundles made more than an hour ago, but the current one and those a live process runs from (an
 * agent started from an older bundle imports chunks later: a plugin, its summary); forgets the ended users.
 */
export function removeOld(build: string, keep: string): void {
  for (const e of Deno.readDirSync(build)) {
    if (!e.isDirectory || !e.name.startsWith("cli-") || e.name === keep) continue;
    try {
      const age = Date.now() - (Deno.statSync(`${build}/${e.name}`).mtime?.getTime() ?? 0);
      if (age > KEEP_OLD_MS && !inUse(`${build}/${e.name}`)) {
        Deno.removeSync(`${build}/${e.name}`, { recursive: true });
      }
    } catch {
      // another process removed it
    }
  }
}

/** True when a process that ran from bundle `dir` is still alive; the marks of ended ones are removed. */
function inUse(dir: string): boolean {
  let used = false;
  try {
    for (const e of Deno.readDirSync(`${dir}/users`)) {
      try {
        Deno.statSync(`/proc/${e.name}`);
        used = true;
      } catch {
        removeQuietly(`${dir}/users/${e.name}`);
      }
    }
  } catch {
    // no users directory
  }
  return used;
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
  if (record !== undefined && isFresh(record, root)) Deno.exit(0);
  removeQuietly(`${root}/${FAILED}`); // asked for: try again
  const made = buildCli(root);
  if (made === undefined) {
    const failed = readJson<{ message: string }>(`${root}/${FAILED}`);
    // deno-lint-ignore no-console
    console.error(
      `alumet: the CLI was not bundled (it runs from its sources)${failed ? `: ${failed.message}` : ""}`,
    );
  }
}

/**
 * `alumet exec -- true` end to end (default config: procfs + csv into a temporary directory, warm cache),
 * against a bare `deno run` of an empty script and against `perf stat -- true`, and the same from the
 * sources (`ALUMET_NO_BUNDLE=1`, src/agent/bundle.ts). Wall time of each command, spawned from here, median of
 * `runs`, in rotated rounds. And the resident memory of `exec -- sleep` with the defaults against a bare
 * `deno run` of a script that sleeps as long (VmRSS, read from /proc once both have settled).
 */
import { alumetTaskArgs } from "./memory.ts";

async function wall(
  cmd: string,
  args: string[],
  cwd: string,
  env: Record<string, string> = {},
): Promise<number> {
  const t = performance.now();
  const out = await new Deno.Command(cmd, {
    args,
    cwd,
    stdout: "null",
    stderr: "null",
    env: { ALUMET_LOG: "warn", ...env },
  })
    .output();
  const ms = performance.now() - t;
  if (out.code !== 0) throw new Error(`${cmd} ${args.join(" ")} exited with ${out.code}`);
  return ms;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function runExec(
  runs = 11,
): Promise<{
  bareMs: number;
  execMs: number;
  sourcesMs: number;
  perfMs: number | undefined;
  eagerCopyMs: number;
  lazyCopyMs: number;
}> {
  const dir = await Deno.makeTempDir({ prefix: "alumet-exec-bench-" });
  let copies: BundleCopies | undefined;
  try {
    await Deno.writeTextFile(`${dir}/empty.ts`, "");
    const deno = Deno.execPath();
    const bare = ["run", "-A", `${dir}/empty.ts`];
    const exec = [...alumetTaskArgs(), "exec", "--", "true"]; // as `deno task alumet` runs it
    await wall(deno, bare, dir); // warm the caches
    await wall(deno, exec, dir);
    let hasPerf = true;
    try {
      await wall("perf", ["stat", "-o", "/dev/null", "--", "true"], dir);
    } catch {
      hasPerf = false;
    }
    const sources = { ALUMET_NO_BUNDLE: "1" };
    await wall(deno, exec, dir, sources);
    await expectOrigin(dir, {}, "the bundle");
    await expectOrigin(dir, sources, "the sources");
    copies = bundleCopies();
    await wall(deno, copies.eager, dir); // each copy's code cache, made with its own flags
    await wall(deno, copies.lazy, dir);
    const b: number[] = [];
    const e: number[] = [];
    const s: number[] = [];
    const p: number[] = [];
    const ce: number[] = [];
    const cl: number[] = [];
    for (let i = 0; i < runs; i++) {
      b.push(await wall(deno, bare, dir));
      e.push(await wall(deno, exec, dir));
      s.push(await wall(deno, exec, dir, sources));
      if (hasPerf) p.push(await wall("perf", ["stat", "-o", "/dev/null", "--", "true"], dir));
      ce.push(await wall(deno, copies.eager, dir));
      cl.push(await wall(deno, copies.lazy, dir));
    }
    return {
      bareMs: median(b),
      execMs: median(e),
      sourcesMs: median(s),
      perfMs: hasPerf ? median(p) : undefined,
      eagerCopyMs: median(ce),
      lazyCopyMs: median(cl),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
    if (copies !== undefined) await Deno.remove(copies.dir, { recursive: true });
  }
}

/** `deno` arguments that run `exec -- true` from two copies of the current bundle. */
interface BundleCopies {
  /** With the `alumet` task's V8 flags. */
  readonly eager: string[];
  /** With the task's V8 flags less `--no-lazy`: V8's default, lazy compilation. */
  readonly lazy: string[];
  /** Where the copies are (to remove). */
  readonly dir: string;
}

/**
 * What the task's `--no-lazy` saves, the same code in the same rounds: two copies of the current bundle (under
 * `.build/`, two levels below the root as the bundle is), each run through the same small entry, one with the
 * task's flags and one without `--no-lazy`. Two copies, because Deno keeps one code cache entry per module and
 * writes it again when it was made under other V8 flags: runs alternating the flags on the same files would each
 * compile everything.
 */
function bundleCopies(): BundleCopies {
  const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  const record = JSON.parse(Deno.readTextFileSync(`${root}/.build/cli.json`)) as { dir: string };
  const dir = Deno.makeTempDirSync({ dir: `${root}/.build`, prefix: "bench-copies-" });
  const run = (name: string, flags: (word: string) => string) => {
    Deno.mkdirSync(`${dir}/${name}`);
    const entry = `${dir}/${name}/entry.js`; // one per copy too: a module shared by both would be cached twice
    Deno.writeTextFileSync(
      entry,
      "const [url, ...args] = Deno.args;\nconst { main } = await import(url);\n" +
        "Deno.exit(await main(args, { url, whySources: undefined }));\n",
    );
    for (const e of Deno.readDirSync(`${root}/.build/${record.dir}`)) {
      if (e.isFile && e.name.endsWith(".js")) {
        Deno.copyFileSync(`${root}/.build/${record.dir}/${e.name}`, `${dir}/${name}/${e.name}`);
      }
    }
    const task = alumetTaskArgs();
    return [...task.slice(0, -1).map(flags), entry, `file://${dir}/${name}/cli.js`, "exec", "--", "true"];
  };
  const withoutNoLazy = (w: string) =>
    w.startsWith("--v8-flags=")
      ? w.replace(/,--no-lazy\b|--no-lazy,?/, "").replace(/^--v8-flags=$/, "--v8-flags=--lazy")
      : w;
  return { eager: run("eager", (w) => w), lazy: run("lazy", withoutNoLazy), dir };
}

/** Checks that the CLI runs from `origin` with `env` (a comparison of the bundle with itself would be void). */
async function expectOrigin(dir: string, env: Record<string, string>, origin: string): Promise<void> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [...alumetTaskArgs(), "--log-level", "debug", "plugins", "list"],
    cwd: dir,
    stdout: "null",
    stderr: "piped",
    env,
  }).output();
  const text = new TextDecoder().decode(out.stderr);
  if (!text.includes(`Running from ${origin}`)) {
    throw new Error(`The CLI did not run from ${origin}: ${/Running from [^\n]*/.exec(text)?.[0] ?? text}`);
  }
}

/**
 * The resident memory of `pid` (the sum of its mappings' Rss, as VmRSS), and the part of it that is pages of
 * the deno executable itself (its code and read-only data, file-backed and shared between Deno processes: the
 * features a program uses page in their part of the binary), MiB, from /proc/<pid>/smaps.
 */
function rssMiB(pid: number): { total: number; binary: number } {
  const exe = Deno.realPathSync(Deno.execPath());
  let total = 0;
  let binary = 0;
  let inBinary = false;
  for (const line of Deno.readTextFileSync(`/proc/${pid}/smaps`).split("\n")) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) {
      inBinary = line.trimEnd().endsWith(` ${exe}`);
    } else if (line.startsWith("Rss:")) {
      const kib = Number(line.split(/\s+/)[1]);
      total += kib;
      if (inBinary) binary += kib;
    }
  }
  return { total: total / 1024, binary: binary / 1024 };
}

/** VmRSS of `deno args…` (which must live longer than `settleMs`), read after `settleMs`, MiB. */
async function settledRss(args: string[], cwd: string, settleMs: number, env: Record<string, string> = {}) {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd,
    stdin: "null",
    stdout: "null",
    stderr: "null",
    env: { ALUMET_LOG: "warn", ...env },
  }).spawn();
  await new Promise((r) => setTimeout(r, settleMs));
  const rss = rssMiB(child.pid);
  await child.status;
  return rss;
}

/**
 * VmRSS of `alumet exec -- sleep S` with the defaults (procfs, csv, the TDP estimate and its attribution), of
 * the same from the sources, and of a bare `deno run` of a script that waits as long, MiB (read 2 s in).
 */
export async function runExecRss(): Promise<{
  bareMiB: number;
  execMiB: number;
  sourcesMiB: number;
  bareBinaryMiB: number;
  execBinaryMiB: number;
}> {
  const dir = await Deno.makeTempDir({ prefix: "alumet-exec-rss-" });
  try {
    await Deno.writeTextFile(
      `${dir}/wait.ts`,
      'await new Promise((r) => AbortSignal.timeout(3000).addEventListener("abort", r));\n',
    );
    const exec = [...alumetTaskArgs(), "exec", "--", "sleep", "3"];
    await expectOrigin(dir, {}, "the bundle");
    const bare = await settledRss(["run", "-A", `${dir}/wait.ts`], dir, 2000);
    const exe = await settledRss(exec, dir, 2000);
    const sources = await settledRss(exec, dir, 2000, { ALUMET_NO_BUNDLE: "1" });
    return {
      bareMiB: bare.total,
      execMiB: exe.total,
      sourcesMiB: sources.total,
      bareBinaryMiB: bare.binary,
      execBinaryMiB: exe.binary,
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

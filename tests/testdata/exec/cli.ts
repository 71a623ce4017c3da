/**
 * Helpers of the `alumet exec` tests that run the CLI as a subprocess: `alumet(dir, args)` runs
 * `src/agent/main.ts` in `dir` (warnings only, no colour) and gives its exit code and output; `inTempDir` runs
 * a test in a fresh directory, removed afterwards.
 *
 * @module
 */

const ROOT = new URL("../../..", import.meta.url).pathname.replace(/\/$/, "");

/** What a run of the CLI gave. */
export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `alumet ARGS…` in `dir`: this project's, or the copy of it at `options.root`, with `options.env` added.
 */
export async function alumet(
  dir: string,
  args: string[],
  options: { root?: string; env?: Record<string, string> } = {},
): Promise<CliRun> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--no-lock", "-A", `${options.root ?? ROOT}/src/agent/main.ts`, ...args],
    cwd: dir,
    env: { ALUMET_LOG: "warn", NO_COLOR: "1", ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

/** Runs `f` in a new temporary directory (named `alumet-<name>-…`), removed afterwards. */
export async function inTempDir<T>(name: string, f: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: `alumet-${name}-` });
  try {
    return await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

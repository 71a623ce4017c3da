/**
 * Helpers of the `alumet exec` tests that run the CLI as a subprocess: `alumet(dir, args)` runs
 * `src/agent/main.ts` in `dir` (warnings only, no colour) and gives its exit code and output; `inTempDir` runs
 * a test in a fresh directory, removed afterwards.
 *
 * @module
 */

const ROOT = new URL("../../..", import.meta.url).pathname.replace(/\/$/, "");

/**
 * The `alumet` task's command line from deno.json (`deno run … src/agent/main.ts`, the entry made absolute), to
 * run the agent as the task does but without `deno task` in between: a signal sent to the process group then
 * reaches the agent alone, and the exit code is the agent's own (`deno task` exits 143 when a SIGTERM sent to
 * the group reaches it after its child has already ended, which an agent with little to drain can do).
 */
export function alumetRunLine(): string[] {
  const config = JSON.parse(Deno.readTextFileSync(`${ROOT}/deno.json`)) as { tasks: { alumet: string } };
  const [deno, ...rest] = config.tasks.alumet.split(/\s+/);
  if (deno !== "deno") throw new Error(`Unexpected alumet task: ${config.tasks.alumet}`);
  return [Deno.execPath(), ...rest.map((w) => (w.endsWith(".ts") && !w.startsWith("/") ? `${ROOT}/${w}` : w))];
}

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

/**
 * `alumet exec -- true` end to end (default config: procfs + csv into a temporary directory, warm cache),
 * against a bare `deno run` of an empty script and against `perf stat -- true`. Wall time of each command,
 * spawned from here, median of `runs`.
 */
import { alumetTaskArgs } from "./memory.ts";

async function wall(cmd: string, args: string[], cwd: string): Promise<number> {
  const t = performance.now();
  const out = await new Deno.Command(cmd, {
    args,
    cwd,
    stdout: "null",
    stderr: "null",
    env: { ALUMET_LOG: "warn" },
  })
    .output();
  const ms = performance.now() - t;
  if (out.code !== 0) throw new Error(`${cmd} ${args.join(" ")} exited with ${out.code}`);
  return ms;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function runExec(
  runs = 11,
): Promise<{ bareMs: number; execMs: number; perfMs: number | undefined }> {
  const dir = await Deno.makeTempDir({ prefix: "alumet-exec-bench-" });
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
    const b: number[] = [];
    const e: number[] = [];
    const p: number[] = [];
    for (let i = 0; i < runs; i++) {
      b.push(await wall(deno, bare, dir));
      e.push(await wall(deno, exec, dir));
      if (hasPerf) p.push(await wall("perf", ["stat", "-o", "/dev/null", "--", "true"], dir));
    }
    return { bareMs: median(b), execMs: median(e), perfMs: hasPerf ? median(p) : undefined };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

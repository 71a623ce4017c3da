/**
 * The same 4 events as perf (`task-clock,page-faults,context-switches,msr/tsc/`), system-wide, every 1 ms, to
 * csv, for `seconds`; next to `perf stat -I 1 -a -x,` with those events for the same time. Reports the agent's
 * CPU per delivered tick (its whole process, from getrusage) and perf's CPU per printed interval (from the
 * kernel's rusage of children), and the agent's ticks on time. Needs root (system-wide counters).
 */
import { Agent, definePlugin } from "../mod.ts";
import { perfPlugin } from "../plugins/perf/mod.ts";
import csv from "../plugins/csv/mod.ts";
import procfs from "../plugins/procfs/mod.ts";
import { getrusage, RUSAGE_CHILDREN, RUSAGE_SELF } from "../src/ffi/libc.ts";

export const EVENTS = ["task-clock", "page-faults", "context-switches", "msr/tsc/"];

export async function runPerfBench(seconds: number, withProcfsKernel = false): Promise<
  {
    agentUsPerTick: number;
    perfUsPerInterval: number;
    perfIntervals: number;
    onTimePct: number;
    ticks: number;
  }
> {
  const dir = await Deno.makeTempDir({ prefix: "alumet-perf-bench-" });
  try {
    const agent = new Agent({
      plugins: [
        {
          plugin: perfPlugin,
          config: { events: EVENTS, system_wide: true, poll_interval: "1ms", flush_interval: "100ms" },
        },
        { plugin: csv, config: { output_path: `${dir}/perf.csv` } },
        ...(withProcfsKernel
          ? [{
            plugin: procfs,
            config: {
              kernel: { poll_interval: "1ms" },
              memory: { enabled: false },
              network: { enabled: false },
              processes: { enabled: false },
            },
          }]
          : []),
        definePlugin({ name: "noop", start() {} }),
      ],
      selfInterval: 3_600_000,
    });
    await agent.start();
    await new Promise((r) => setTimeout(r, 300));
    const s0 = { ...agent.stats()!.sources.get("source/perf/machine")! };
    const r0 = getrusage(RUSAGE_SELF);
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    await agent.control.flushNow("source/perf/machine");
    await new Promise((r) => setTimeout(r, 50));
    const r1 = getrusage(RUSAGE_SELF);
    const s1 = agent.stats()!.sources.get("source/perf/machine")!;
    void t0;
    await agent.stop();
    await agent[Symbol.asyncDispose]();
    const ticks = s1.polls - s0.polls;
    const late = s1.late - s0.late;
    const missed = s1.missed - s0.missed;
    const agentUs = r1.userUs + r1.systemUs - r0.userUs - r0.systemUs;

    const c0 = getrusage(RUSAGE_CHILDREN);
    await new Deno.Command("perf", {
      args: [
        "stat",
        "-I",
        "1",
        "-a",
        "-x,",
        "-e",
        EVENTS.join(","),
        "-o",
        `${dir}/perf.txt`,
        "--",
        "sleep",
        String(seconds),
      ],
      stdout: "null",
      stderr: "null",
    }).output();
    const c1 = getrusage(RUSAGE_CHILDREN);
    const lines = (await Deno.readTextFile(`${dir}/perf.txt`)).split("\n").filter((l) =>
      /^\s*\d+\.\d+,/.test(l)
    );
    const perfIntervals = lines.length / EVENTS.length;
    const perfUs = c1.userUs + c1.systemUs - c0.userUs - c0.systemUs;
    return {
      agentUsPerTick: agentUs / ticks,
      perfUsPerInterval: perfUs / perfIntervals,
      perfIntervals,
      onTimePct: 100 * (ticks - late) / (ticks + missed),
      ticks,
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Sampling benchmarks: a hot source in the sampling Worker for a fixed time, into a null output.
 * Reports the share of ticks on time (polled within one period of their deadline; missed ticks count as not
 * on time), p50/p99 lateness, and the agent's CPU (getrusage of the whole process) in % of one core.
 */
import { Agent, type Batch, definePlugin, unit } from "../mod.ts";
import { getrusage, RUSAGE_SELF } from "../src/ffi/libc.ts";

export interface SamplingResult {
  onTimePct: number;
  p50Us: number;
  p99Us: number;
  cpuPct: number;
  polls: number;
}

export async function runSampling(
  exportName: "procStat" | "nothing",
  period: string,
  seconds: number,
): Promise<SamplingResult> {
  const plugin = definePlugin({
    name: "bench",
    start(ctx) {
      const m = ctx.createMetric({ name: "bench_ticks", unit: unit("1"), valueType: "u64", kind: "counter" });
      ctx.addSource("hot", {
        module: new URL("./sources/proc_stat.ts", import.meta.url),
        export: exportName,
        config: { metric: m },
      }, { pollInterval: period, flushInterval: "1s" });
      ctx.addOutput("null", { write(_b: Batch) {} });
    },
  });
  const agent = new Agent({ plugins: [plugin], selfInterval: 3_600_000 });
  await agent.start();
  await new Promise((r) => setTimeout(r, 300)); // let the Worker settle
  const before = agent.stats()!.sources.get("source/bench/hot")!;
  const b = { ...before };
  const ru0 = getrusage(RUSAGE_SELF);
  const t0 = performance.now();
  await agent.control.flushNow("source/bench/hot");
  const task = () => agent.stats()!.sources.get("source/bench/hot")!;
  const lateness = agent.latenessOf("source/bench/hot")!;
  lateness.clear(); // the window starts now
  await new Promise((r) => setTimeout(r, seconds * 1000));
  await agent.control.flushNow("source/bench/hot");
  const ru1 = getrusage(RUSAGE_SELF);
  const wall = performance.now() - t0;
  const a = task();
  await agent.stop();
  await agent[Symbol.asyncDispose]();
  const polls = a.polls - b.polls;
  const late = a.late - b.late;
  const missed = a.missed - b.missed;
  const cpuUs = ru1.userUs + ru1.systemUs - ru0.userUs - ru0.systemUs;
  return {
    onTimePct: 100 * (polls - late) / (polls + missed),
    p50Us: lateness.percentileUs(50),
    p99Us: lateness.percentileUs(99),
    cpuPct: 100 * cpuUs / 1000 / wall,
    polls,
  };
}

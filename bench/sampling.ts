/**
 * Sampling benchmarks: a hot source in the sampling Worker for a fixed time, into a null output.
 * Reports the share of ticks on time (polled within one period of their deadline; missed ticks count as not
 * on time), p50/p99 lateness, and the agent's CPU (getrusage of the whole process) in % of one core.
 */
import { Agent, type Batch, definePlugin, unit } from "../mod.ts";
import { getrusage, RUSAGE_CHILDREN, RUSAGE_SELF } from "../src/ffi/libc.ts";

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

/**
 * The reference: a C loop sleeping with `clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)` at the same period,
 * polling nothing, built here with gcc; its CPU in % of one core (from the kernel's rusage of children), and its
 * ticks on time as the agent counts them (woken within one period of the deadline; a deadline already past
 * when it wakes is missed, skipped, and not on time): what this machine allows a thread at normal priority.
 * Undefined when gcc is missing.
 */
export async function runCLoop(
  periodUs: number,
  seconds: number,
): Promise<{ cpuPct: number; onTimePct: number } | undefined> {
  const dir = await Deno.makeTempDir({ prefix: "alumet-cloop-" });
  try {
    const src = `#include <time.h>
#include <stdio.h>
#include <stdlib.h>
static long long ns(struct timespec *t) { return t->tv_sec * 1000000000LL + t->tv_nsec; }
int main(int c, char **v) {
  long long p = atol(v[1]) * 1000LL, n = atol(v[2]), polls = 0, late = 0, missed = 0;
  struct timespec t, now; clock_gettime(CLOCK_MONOTONIC, &t);
  long long next = ns(&t) + p, end = next + n * p;
  while (next < end) {
    t.tv_sec = next / 1000000000LL; t.tv_nsec = next % 1000000000LL;
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, 0);
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long lateness = ns(&now) - next;
    polls++;
    if (lateness > p) late++;
    next += p;
    while (next < ns(&now) && next < end) { missed++; next += p; }
  }
  printf("%lld %lld %lld\\n", polls, late, missed);
  return 0;
}`;
    await Deno.writeTextFile(`${dir}/loop.c`, src);
    const cc = await new Deno.Command("gcc", { args: ["-O2", "-o", `${dir}/loop`, `${dir}/loop.c`] }).output()
      .catch(() => undefined);
    if (cc === undefined || cc.code !== 0) return undefined;
    const before = getrusage(RUSAGE_CHILDREN);
    const t = performance.now();
    const out = await new Deno.Command(`${dir}/loop`, {
      args: [String(periodUs), String(Math.round(seconds * 1e6 / periodUs))],
      stdout: "piped",
    })
      .output();
    const wall = performance.now() - t;
    const after = getrusage(RUSAGE_CHILDREN);
    const [polls, late, missed] = new TextDecoder().decode(out.stdout).trim().split(" ").map(Number) as [
      number,
      number,
      number,
    ];
    return {
      cpuPct: 100 * (after.userUs + after.systemUs - before.userUs - before.systemUs) / 1000 / wall,
      onTimePct: 100 * (polls - late) / (polls + missed),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

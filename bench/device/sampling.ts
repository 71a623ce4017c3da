/**
 * The 1 ms sampling figures of `deno task bench sampling`, shortened to fit a lent machine's minutes: ROUNDS
 * rounds (default 3) of the Worker reading /proc/stat at 1 ms for SECONDS (default 5), each followed by the C
 * loop at the same period: ticks on time, p50/p99 lateness and CPU, with the per-round difference.
 *
 *     deno run -A bench/device/sampling.ts [ROUNDS] [SECONDS]
 */
import { runCLoop, runSampling } from "../sampling.ts";

// deno-lint-ignore no-console
const say = console.log;
const rounds = Number(Deno.args[0] ?? 3), seconds = Number(Deno.args[1] ?? 5);
for (let r = 0; r < rounds; r++) {
  const a = await runSampling("procStat", "1ms", seconds);
  const c = await runCLoop(1000, seconds);
  say(
    `round ${r + 1}: Worker ${a.onTimePct.toFixed(2)} % on time (p50 ${a.p50Us.toFixed(0)} µs, p99 ` +
      `${a.p99Us.toFixed(0)} µs, CPU ${a.cpuPct.toFixed(2)} %); C loop ` +
      (c
        ? `${c.onTimePct.toFixed(2)} % (CPU ${c.cpuPct.toFixed(2)} %); diff ${
          (a.onTimePct - c.onTimePct).toFixed(2)
        }`
        : "not run (no gcc)"),
  );
}

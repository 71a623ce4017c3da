// A probe plugin for tests/signals_test.ts: counts the points it produces, so that a test can check that every
// point measured reached the csv.
//
// Two sources push the numbers 1, 2, 3… (one point per poll, metric `probe_points`, attribute `source`):
// `main`, polled on the main thread, and `hot`, polled in the sampling Worker (given as a module, see
// hot_counter.ts). Each writes how many points it has pushed to `<count_dir>/<source>.count` after every poll
// and once more when it closes, so the count is right even when the agent is killed without a drain.
// `<count_dir>/ready` appears once both sources have polled a few times.
//
// Config: count_dir (required), poll_interval_ms (main source, default 10), hot_poll_interval_ms (default 5),
// flush_interval_ms (both, default 200: a drain that is skipped loses the points not flushed yet),
// close_delay_ms (how long the main source takes to close, default 0: a long drain), broken_output (1: add
// an output whose every write fails, so that the run loses points; default 0), stray_error_at (the hot
// source throws an error nobody catches, in a timer, after this poll; default 0: never), hot_stuck_at (the hot
// source's poll of that number never returns, see hot_counter.ts; default 0: never).
import { unit } from "../../../mod.ts";
import type { Batch, MetricId } from "../../../mod.ts";

interface Config {
  count_dir: string;
  poll_interval_ms: number;
  hot_poll_interval_ms: number;
  flush_interval_ms: number;
  close_delay_ms: number;
  broken_output: number;
  stray_error_at: number;
  hot_stuck_at: number;
}

export default {
  name: "probe",
  version: "1.0.0",
  defaultConfig: () => ({
    count_dir: "",
    poll_interval_ms: 10,
    hot_poll_interval_ms: 5,
    flush_interval_ms: 200,
  }),
  init: (config: Config) => ({
    start(ctx: {
      createMetric(d: object): MetricId<"u64">;
      addSource(name: string, source: object, trigger: object): unknown;
      addOutput(name: string, output: object): unknown;
    }) {
      if (config.count_dir === "") throw new Error("probe: count_dir is required");
      const metric = ctx.createMetric({
        name: "probe_points",
        unit: unit("1"),
        valueType: "u64",
        kind: "counter",
        description: "The poll number (1, 2, 3…)",
      });
      let n = 0;
      const countFile = `${config.count_dir}/main.count`;
      ctx.addSource("main", {
        poll(b: Batch) {
          n++;
          b.push(metric, n, { attributes: { source: "main" } });
          Deno.writeTextFileSync(countFile, String(n));
          if (n === 5) Deno.writeTextFileSync(`${config.count_dir}/main.ready`, "");
        },
        async close() {
          Deno.writeTextFileSync(countFile, String(n));
          if (config.close_delay_ms > 0) await new Promise((r) => setTimeout(r, config.close_delay_ms));
        },
      }, { pollInterval: config.poll_interval_ms, flushInterval: config.flush_interval_ms });
      if (config.broken_output === 1) {
        ctx.addOutput("broken", {
          write() {
            throw new Error("the probe's broken output fails every write");
          },
        });
      }
      ctx.addSource("hot", {
        module: new URL("./hot_counter.ts", import.meta.url),
        config: {
          metric,
          countDir: config.count_dir,
          strayAt: config.stray_error_at,
          stuckAt: config.hot_stuck_at,
        },
      }, { pollInterval: config.hot_poll_interval_ms, flushInterval: config.flush_interval_ms });
    },
  }),
};

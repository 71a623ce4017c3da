/**
 * A whole plugin in one short file: three config keys, two metrics, one source.
 *
 * Run it as a script (it measures for a second and prints what it saw):
 *
 *     deno run --allow-read --allow-ffi examples/loadavg_plugin.ts
 *
 * or load it into the agent from `alumet-config.toml`:
 *
 *     [plugins.loadavg]
 *     module = "./examples/loadavg_plugin.ts"
 *     poll_interval = "2s"
 *
 * The schema is the only place each default is written: `alumet config regen` writes them, `init` receives
 * them validated (the duration in ms), and a typo in the TOML gets one line naming the key.
 */
import {
  Agent,
  type Batch,
  Counter,
  defineMetrics,
  definePlugin,
  duration,
  NO_DELTA,
  ProcFile,
  unit,
  z,
} from "../mod.ts";

// #region plugin
const METRICS = defineMetrics({
  load: {
    name: "load_average",
    unit: unit("1"),
    valueType: "f64",
    kind: "gauge",
    description: "Runnable and uninterruptible tasks, averaged over the window (attribute `window`)",
  },
  forks: {
    name: "forks",
    unit: unit("1"),
    valueType: "u64",
    kind: "delta",
    description: "Processes and threads created since the previous measurement",
  },
});

const WINDOWS = ["1m", "5m", "15m"] as const;

const loadavg = definePlugin({
  name: "loadavg",
  version: "0.1.0",
  description: "Load averages and forks, from /proc/loadavg and /proc/stat",
  config: z.strictObject({
    poll_interval: duration().prefault("1s"),
    windows: z.array(z.enum(WINDOWS)).prefault(["1m"]),
    proc_root: z.string().prefault("/proc"),
  }),
  init: (config) => ({
    start(ctx) {
      const m = ctx.createMetrics(METRICS);
      const forks = new Counter("monotonic"); // cumulative in /proc/stat; the first reading is the baseline
      // Kept open and re-read with one pread each poll (through FFI when allowed).
      const loadavg = ProcFile.open(`${config.proc_root}/loadavg`);
      const stat = ProcFile.open(`${config.proc_root}/stat`);
      ctx.addSource("proc", {
        poll(batch: Batch) {
          const loads = (loadavg.readText() ?? "").split(" ").map(Number);
          for (const w of config.windows) {
            batch.push(m.load, loads[WINDOWS.indexOf(w)]!, { attributes: { window: w } });
          }
          const d = forks.update(Number(/^processes (\d+)/m.exec(stat.readText() ?? "")?.[1]));
          if (d !== NO_DELTA) batch.push(m.forks, d);
        },
        close() {
          loadavg.close();
          stat.close();
        },
      }, { pollInterval: config.poll_interval });
    },
  }),
});
export default loadavg;
// #endregion plugin

if (import.meta.main) {
  let points = 0;
  const print = definePlugin({
    name: "print",
    start(ctx) {
      ctx.addOutput("stdout", {
        write(b: Batch, e) {
          for (const p of b) {
            points++;
            // deno-lint-ignore no-console
            console.log(e.metric(p.metric).name, p.attributes.window ?? "", p.value);
          }
        },
      });
    },
  });
  {
    await using agent = new Agent({
      plugins: [{ plugin: loadavg, config: { poll_interval: "100ms", windows: ["1m", "15m"] } }, print],
    });
    await agent.start();
    await new Promise((r) => setTimeout(r, 350));
  }
  if (points === 0) throw new Error("the loadavg plugin measured nothing");
}

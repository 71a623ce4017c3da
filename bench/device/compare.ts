/**
 * Compares what the nvml plugin wrote during `gpu.sh`'s `alumet exec` with readings taken beside it by other
 * means: NVML's energy counter and power read through Python's ctypes (`nvml_ref.py`), and `nvidia-smi`'s
 * own queries of the GPU and of its compute processes. Prints each comparison with its figures.
 *
 *     deno run -A bench/device/compare.ts DIR   # DIR holds nvml.csv, ref.csv, smi.csv, apps.csv, marks.txt
 */
// deno-lint-ignore no-console
const say = console.log;
const dir = Deno.args[0] ?? ".";
const read = (f: string) => {
  try {
    return Deno.readTextFileSync(`${dir}/${f}`);
  } catch {
    return undefined;
  }
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

/** Seconds since the epoch of an RFC 3339 timestamp with up to nanoseconds. */
function seconds(iso: string): number {
  const m = /^(.{19})(?:\.(\d+))?Z$/.exec(iso);
  if (!m) throw new Error(`not a timestamp: ${iso}`);
  return Date.parse(`${m[1]}Z`) / 1000 + Number(`0.${m[2] ?? "0"}`);
}

interface Point {
  metric: string;
  t: number;
  value: number;
  consumer: string;
  fields: Record<string, string>;
}
const csv = read("nvml.csv");
if (csv === undefined) {
  say("compare: no nvml.csv");
  Deno.exit(1);
}
const [header, ...lines] = csv.trim().split("\n");
const cols = header!.split(";");
const points: Point[] = lines.map((l) => {
  const f = l.split(";");
  const fields = Object.fromEntries(cols.map((c, i) => [c, f[i] ?? ""]));
  return {
    metric: fields.metric!,
    t: seconds(fields.timestamp!),
    value: Number(fields.value),
    consumer: `${fields.consumer_kind}:${fields.consumer_id}`,
    fields,
  };
});
const of = (prefix: string) => points.filter((p) => p.metric.startsWith(prefix));

const marks = Object.fromEntries(
  (read("marks.txt") ?? "").trim().split("\n").filter(Boolean).map((l) => {
    const [k, ns, extra] = l.split(" ");
    return [k!, { t: Number(ns) / 1e9, extra }];
  }),
);
const inLoad = (t: number) =>
  marks.load_start !== undefined && marks.load_end !== undefined && t > marks.load_start.t + 1 &&
  t < marks.load_end.t - 0.5;
say(`load: ${marks.load_start?.extra ?? "?"} from ${marks.load_start?.t} to ${marks.load_end?.t}`);

// 1. Energy: the plugin's deltas summed, against NVML's counter read by ctypes at the same instants.
const ref = (read("ref.csv") ?? "").trim().split("\n").slice(1).map((l) => l.split(",").map(Number))
  .filter((r) => r.length === 3 && !Number.isNaN(r[1])) as [number, number, number][];
const refAt = (t: number): number | undefined => {
  const ns = t * 1e9;
  for (let i = 1; i < ref.length; i++) {
    const [t0, e0] = ref[i - 1]!, [t1, e1] = ref[i]!;
    if (t0 <= ns && ns <= t1) return e0 + (e1 - e0) * (ns - t0) / (t1 - t0);
  }
  return undefined;
};
const energyByGpu = Map.groupBy(of("nvml_energy_consumption"), (p) => p.fields.resource_id!);
for (const [gpu, energy] of energyByGpu) {
  // ref.csv reads NVML's GPU 0; on a machine with several GPUs, the one that matches is GPU 0.
  if (energy.length < 2 || ref.length < 2) {
    say(
      `energy of ${gpu}: ${energy.length} plugin points, ${ref.length} reference readings: nothing to compare`,
    );
    continue;
  }
  const first = energy[0]!, last = energy[energy.length - 1]!;
  const ours = energy.slice(1).reduce((s, p) => s + p.value, 0) / 1000;
  const a = refAt(first.t), b = refAt(last.t);
  if (a === undefined || b === undefined) {
    say(`energy of ${gpu}: the reference does not cover the plugin's points`);
    continue;
  }
  const theirs = (b - a) / 1000;
  const diff = 100 * (ours - theirs) / theirs;
  const steps = energy.slice(1).map((p, i) => p.t - energy[i]!.t);
  say(
    `energy of ${gpu} from ${first.t.toFixed(3)} to ${last.t.toFixed(3)} (${
      (last.t - first.t).toFixed(2)
    } s, ` +
      `${energy.length} points, median interval ${(median(steps) * 1000).toFixed(0)} ms): plugin ${
        ours.toFixed(1)
      } J, ` +
      `NVML's counter read by ctypes ${theirs.toFixed(1)} J, difference ${diff.toFixed(2)} % → ` +
      `${Math.abs(diff) <= 2 ? "PASS" : "FAIL"} (±2 %)`,
  );
}
if (energyByGpu.size === 0) say("energy: the plugin wrote no energy point");

// 2. Power during the load: the plugin's reading, NVML's nvmlDeviceGetPowerUsage (ctypes), nvidia-smi.
const power = of("nvml_instant_power").filter((p) => inLoad(p.t));
const refPower = ref.filter((r) => inLoad(r[0] / 1e9)).map((r) => r[2]);
const smi = (read("smi.csv") ?? "").trim().split("\n");
const smiCols = (smi[0] ?? "").split(",").map((s) => s.trim());
const smiRows = smi.slice(1).map((l) => l.split(",").map((s) => s.trim()));
const smiTime = (s: string) => Date.parse(s.replace(/\//g, "-").replace(" ", "T") + "Z") / 1000;
const smiIn = smiRows.filter((r) => !Number.isNaN(smiTime(r[0]!)) && inLoad(smiTime(r[0]!)));
const smiCol = (name: string) => {
  const i = smiCols.findIndex((c) => c.startsWith(name));
  return i < 0 ? [] : smiIn.map((r) => Number(r[i])).filter((x) => !Number.isNaN(x));
};
say(
  `power during the load (medians): plugin ${(median(power.map((p) => p.value)) / 1000).toFixed(1)} W ` +
    `(power_reading=${power[0]?.fields.power_reading ?? "?"}, ${power.length} points); ` +
    `nvmlDeviceGetPowerUsage via ctypes ${(median(refPower) / 1000).toFixed(1)} W; ` +
    `nvidia-smi power.draw.instant ${median(smiCol("power.draw.instant")).toFixed(1)} W, ` +
    `power.draw.average ${median(smiCol("power.draw.average")).toFixed(1)} W`,
);
for (
  const [ours, theirs, unit] of [
    ["nvml_gpu_utilization", "utilization.gpu", "%"],
    ["nvml_temperature_gpu", "temperature.gpu", "°C"],
  ] as const
) {
  say(
    `${ours} during the load (median): plugin ${
      median(of(ours).filter((p) => inLoad(p.t)).map((p) => p.value))
    } ` +
      `${unit}, nvidia-smi ${theirs} ${median(smiCol(theirs))} ${unit}`,
  );
}
const sm = of("nvml_clock_info").filter((p) => p.fields.clock_type === "SM" && inLoad(p.t));
say(
  `SM clock during the load (median): plugin ${(median(sm.map((p) => p.value)) / 1e6).toFixed(0)} MHz, ` +
    `nvidia-smi clocks.sm ${median(smiCol("clocks.current.sm"))} MHz`,
);

// 3. The program's process: memory against nvidia-smi's compute apps, and its SM utilization.
const apps = (read("apps.csv") ?? "").trim().split("\n").slice(1).map((l) =>
  l.split(",").map((s) => s.trim())
);
const pids = new Set(apps.map((r) => r[0]!).filter((p) => /^\d+$/.test(p)));
for (const pid of pids) {
  const smiMiB = median(apps.filter((r) => r[0] === pid).map((r) => Number(r[1])));
  const mem = of("nvml_used_gpu_memory").filter((p) => p.consumer === `process:${pid}`);
  const util = of("nvml_sm_utilization").filter((p) => p.consumer === `process:${pid}` && inLoad(p.t));
  const oursMiB = median(mem.map((p) => p.value)) / 2 ** 20;
  say(
    `process ${pid}: GPU memory plugin ${oursMiB.toFixed(0)} MiB (${mem.length} points), nvidia-smi ` +
      `${smiMiB} MiB → ${mem.length > 0 && Math.abs(oursMiB - smiMiB) <= 2 ? "PASS" : "FAIL"}; ` +
      `SM utilization during the load (median) ${median(util.map((p) => p.value))} % (${util.length} points)`,
  );
}
if (pids.size === 0) say("processes: nvidia-smi listed no compute process");
say(`metrics written: ${[...new Set(points.map((p) => p.metric))].join(", ")}`);

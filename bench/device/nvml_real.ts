/**
 * The nvml plugin against the machine's own NVIDIA driver (run by `gpu.sh` on a machine with a GPU; on a
 * machine without one it says so and exits 0): the time NVML takes to initialise and to probe the GPUs, one
 * full poll printed point by point, and the cost of a poll in full and minimal mode (median and p99 of 300
 * polls, 10 ms apart, as a 100 Hz source would poll).
 *
 *     deno run -A bench/device/nvml_real.ts
 */
import { Batch } from "../../src/model/batch.ts";
import { now } from "../../src/model/timestamp.ts";
import { testPlugin } from "../../src/testing/mod.ts";
import { Nvml, nvmlPlugin, nvmlSpec } from "../../plugins/nvml/mod.ts";

// deno-lint-ignore no-console
const say = console.log;
const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * p / 100)]!;

for (const mode of ["full", "minimal"] as const) {
  const t0 = performance.now();
  await using h = await testPlugin(nvmlPlugin, { mode });
  const startMs = performance.now() - t0;
  const names = [...h.sources.keys()];
  say(`${mode}: init + probe + start ${startMs.toFixed(1)} ms; sources: ${names.join(", ") || "none"}`);
  if (names.length === 0) {
    say("no GPU source: nothing to measure here");
    Deno.exit(0);
  }
  const { source } = h.sources.get(names[0]!)!;
  const first = new Batch(256);
  await source.poll(first, now());
  if (mode === "full") {
    await new Promise((r) => setTimeout(r, 200));
    first.clear();
    await source.poll(first, now());
    for (const p of first) {
      const attrs = Object.entries(p.attributes).map(([k, v]) => `${k}=${v}`).join(",");
      say(
        `  ${h.metrics.get(p.metric).name} = ${p.value}  ${p.resource.kind}:${p.resource.id} ` +
          `${p.consumer.kind}:${p.consumer.id} ${attrs}`,
      );
    }
  }
  const us: number[] = [];
  for (let i = 0; i < 300; i++) {
    await new Promise((r) => setTimeout(r, 10));
    const b = new Batch(256);
    const s = performance.now();
    await source.poll(b, now());
    us.push((performance.now() - s) * 1000);
  }
  say(
    `${mode}: cost of one poll over 300 polls 10 ms apart: median ${pct(us, 50).toFixed(0)} µs, ` +
      `p99 ${pct(us, 99).toFixed(0)} µs, max ${Math.max(...us).toFixed(0)} µs`,
  );
}

// Each NVML call of a full poll, timed alone on GPU 0 (median and max of 50 calls, 10 ms apart): which of
// them makes a full poll cost what it does.
{
  const nvml = Nvml.open(nvmlSpec());
  try {
    const d = nvml.handleByIndex(0);
    const calls: [string, () => unknown][] = [
      ["nvmlDeviceGetTotalEnergyConsumption", () => nvml.totalEnergy(d)],
      ["nvmlDeviceGetFieldValues (instant power)", () => nvml.instantPower(d)],
      ["nvmlDeviceGetPowerUsage", () => nvml.powerUsage(d)],
      ["nvmlDeviceGetTemperature", () => nvml.temperature(d)],
      ["nvmlDeviceGetUtilizationRates", () => nvml.utilization(d)],
      ["nvmlDeviceGetMemoryInfo_v2", () => nvml.memoryInfo(d)],
      ["nvmlDeviceGetEncoderUtilization", () => nvml.codecUtilization(d, "encoder")],
      ["nvmlDeviceGetDecoderUtilization", () => nvml.codecUtilization(d, "decoder")],
      ["nvmlDeviceGetComputeRunningProcesses", () => nvml.runningProcesses(d, "compute")],
      ["nvmlDeviceGetGraphicsRunningProcesses", () => nvml.runningProcesses(d, "graphics")],
      ["nvmlDeviceGetClockInfo (SM)", () => nvml.clock(d, 1)],
      [
        "nvmlDeviceGetProcessUtilization",
        () => nvml.processUtilization(d, BigInt(Date.now() - 1000) * 1000n),
      ],
    ];
    for (const [name, call] of calls) {
      const us: number[] = [];
      let error = "";
      for (let i = 0; i < 50; i++) {
        await new Promise((r) => setTimeout(r, 10));
        const s = performance.now();
        try {
          call();
        } catch (e) {
          error = ` (fails: ${(e as Error).message})`;
        }
        us.push((performance.now() - s) * 1000);
      }
      say(`  ${name}: median ${pct(us, 50).toFixed(0)} µs, max ${Math.max(...us).toFixed(0)} µs${error}`);
    }
  } finally {
    nvml.close();
  }
}

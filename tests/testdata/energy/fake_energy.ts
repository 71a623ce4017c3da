/**
 * A stand-in energy plugin for `tests/exec_energy_test.ts`, loaded through the config's `module` key. These
 * machines have no RAPL, no GPU and no power sensor, so nothing here is read from hardware: the counters are
 * computed from the poll timestamps, so that every value the summary prints can be checked by hand.
 *
 * It models the series the real plugins give (shapes from Alumet's `plugins/rapl` and `plugins/nvidia`):
 * - `rapl_consumed_energy`, delta, J, attribute `domain`, on resources `cpu_package 0` and `cpu_package 1`
 *   (domains `package` and `dram`), plus the sums over sockets on the whole machine (`package_total`,
 *   `dram_total`): a two-socket server with DRAM domains, polled on the main thread every `poll_interval`;
 * - `nvml_energy_consumption`, delta, mJ, on resource `gpu 00000000:3B:00.0` (the PCI bus id as NVML writes
 *   it), polled in a Worker of its own (`blocking: true`, as NVML's calls are) every `gpu_poll_interval`.
 *
 * Each series draws a constant power (below, in W): its counter at time t is `P × (t − t0) + 1000 J`, where t0 is
 * when the plugin started (the baseline, read at start) and the 1000 J model energy spent before the program
 * (during the agent's start-up): the delta reported at the first poll holds them, and a summary that counted the
 * baseline interval would be off by 1000 J. Over the program's run, the sum of the deltas is `P × interval`
 * exactly, and the mean power `P`.
 *
 * Its `diagnose` reports what a real energy plugin reports: with `present = false`, a missing
 * `/sys/class/powercap` and its fix.
 *
 * @module
 */
import { definePlugin } from "../../../src/plugin/define.ts";
import { duration, z } from "../../../src/plugin/schema.ts";
import { unit } from "../../../src/model/units.ts";
import { Resource } from "../../../src/model/resources.ts";
import type { Batch } from "../../../src/model/batch.ts";
import type { Timestamp } from "../../../src/model/timestamp.ts";
import { now } from "../../../src/model/timestamp.ts";

/** Constant power of each RAPL series, W. The totals are the sums over the two sockets. */
export const RAPL_WATTS = [
  { pkg: 0, domain: "package", watts: 35 },
  { pkg: 1, domain: "package", watts: 45 },
  { pkg: 0, domain: "dram", watts: 4 },
  { pkg: 1, domain: "dram", watts: 6 },
  { pkg: undefined, domain: "package_total", watts: 80 },
  { pkg: undefined, domain: "dram_total", watts: 10 },
] as const;

/** Constant power of the GPU, W (reported in mJ). */
export const GPU_WATTS = 150;

/** Energy before the program, J: in the first delta of every series, never in the summary. */
export const BEFORE_JOULES = 1000;

/** A counter `watts × (t − t0) + BEFORE_JOULES`, in joules, read as deltas. */
export function fakeCounter(watts: number, t0: Timestamp): (ts: Timestamp) => number {
  let last = t0;
  let first = true;
  return (ts) => {
    const j = watts * Number(ts - last) / 1e9 + (first ? BEFORE_JOULES : 0);
    first = false;
    last = ts;
    return j;
  };
}

export default definePlugin({
  name: "fake_energy",
  version: "0.1.0",
  description: "Deterministic energy series for tests (no hardware read)",
  config: z.strictObject({
    poll_interval: duration().prefault("1s"),
    gpu_poll_interval: duration().prefault("100ms"),
    present: z.boolean().default(true),
  }),
  init: (config) => ({
    start(ctx) {
      if (!config.present) {
        ctx.log.warn(
          "No /sys/class/powercap (fake): running without RAPL; fix: mount /sys into the container (-v /sys:/sys:ro)",
        );
        return;
      }
      const rapl = ctx.createMetric({
        name: "rapl_consumed_energy",
        unit: unit("J"),
        valueType: "f64",
        kind: "delta",
        description: "Energy consumed per RAPL domain since the previous poll (fake)",
      });
      const gpu = ctx.createMetric({
        name: "nvml_energy_consumption",
        unit: unit("J", "milli"),
        valueType: "f64",
        kind: "delta",
        description: "GPU energy since the previous poll (fake)",
      });
      const t0 = now();
      const series = RAPL_WATTS.map((s) => ({
        read: fakeCounter(s.watts, t0),
        resource: s.pkg === undefined ? Resource.localMachine() : Resource.cpuPackage(s.pkg),
        attributes: Object.freeze({ domain: s.domain }),
      }));
      ctx.addSource("rapl", {
        poll(batch: Batch, ts: Timestamp) {
          for (const s of series) {
            batch.push(rapl, s.read(ts), { resource: s.resource, attributes: s.attributes });
          }
        },
      }, { pollInterval: config.poll_interval });
      ctx.addSource("gpu", {
        module: new URL("./fake_gpu_source.ts", import.meta.url),
        config: { metric: gpu, watts: GPU_WATTS, busId: "00000000:3B:00.0" },
        blocking: true,
      }, { pollInterval: config.gpu_poll_interval });
    },
  }),
  diagnose: (config) =>
    config.present ? [{ check: "RAPL (fake)", ok: true, detail: "2 packages: package, dram" }] : [{
      check: "RAPL (fake)",
      ok: false,
      detail: "no /sys/class/powercap (a container without it?)",
      fix:
        "mount /sys read-only into the container (-v /sys:/sys:ro), or load the module: modprobe intel_rapl_common",
    }],
});

/**
 * `alumet doctor`: for each source, can it work on this machine, and if not, exactly why and the fix.
 *
 * Plugins diagnose themselves through `PluginMetadata.diagnose(config)` (a plugin that needs a native
 * library checks it with `diagnoseLibrary` of `src/ffi/library.ts`); the doctor adds generic checks of the
 * machine, reported for information: native calls, perf_event access, PMUs and hardware counters. It names no
 * plugin.
 *
 * @module
 */
import { diagnoseLibrary } from "../ffi/library.ts";
import { CLOCK_MONOTONIC, LIBC, libc, LIBC_SYMBOLS, TIMER_ABSTIME } from "../ffi/libc.ts";
import { capEff, realtimeGranted } from "../pipeline/realtime.ts";
import type { Diagnosis, PluginMetadata } from "../plugin/plugin.ts";
import { messageOf } from "../errors.ts";

/** One line of the report. */
export interface DoctorLine extends Diagnosis {
  /** The plugin (or `machine` for the general checks). */
  readonly plugin: string;
  /** Whether the plugin is enabled by the current config (only enabled plugins decide the exit code). */
  readonly enabled: boolean;
}

function readText(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}

function listDir(path: string): string[] {
  try {
    return [...Deno.readDirSync(path)].map((e) => e.name).sort();
  } catch {
    return [];
  }
}

const CAP_SYS_ADMIN = 21n;
const CAP_PERFMON = 38n;

/** What {@linkcode measureTicks} found. */
export interface TickBurst {
  /** Ticks slept through. */
  readonly ticks: number;
  /** Ticks woken more than one period after their deadline (the sampler's `late`). */
  readonly late: number;
  /** The 99th percentile of the wake-up lateness, µs. */
  readonly p99Us: number;
}

/**
 * Sleeps `ticks` times to absolute deadlines `periodMs` apart, at this thread's priority, as the sampling Worker
 * does (`clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)`), and counts the wake-ups later than one period: the
 * sampler's own definition of a late tick. Half a second at 1 ms, nearly no CPU.
 */
export function measureTicks(periodMs = 1, ticks = 500): TickBurst {
  const c = libc();
  const ts = new BigInt64Array(2);
  const halves = new Int32Array(ts.buffer);
  c.clock_gettime(CLOCK_MONOTONIC, ts);
  const offsetMs = Number(ts[0]) * 1000 + Number(ts[1]) / 1e6 - performance.now();
  const lateness: number[] = [];
  let late = 0;
  let deadline = performance.now() + periodMs;
  for (let i = 0; i < ticks; i++) {
    const ms = offsetMs + deadline;
    const sec = Math.floor(ms / 1000);
    halves[0] = sec;
    halves[1] = 0;
    halves[2] = Math.round((ms - sec * 1000) * 1e6);
    halves[3] = 0;
    c.clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, ts, null);
    const t = performance.now();
    const l = t - deadline;
    lateness.push(l);
    if (l > periodMs) late++;
    deadline += periodMs;
    if (deadline < t) deadline += Math.ceil((t - deadline) / periodMs) * periodMs; // as the sampler skips
  }
  lateness.sort((a, b) => a - b);
  const p99 = lateness[Math.min(lateness.length - 1, Math.floor(lateness.length * 0.99))] ?? 0;
  return { ticks, late, p99Us: Math.round(p99 * 1000) };
}

/** Below this share of ticks on time (%), `doctor` suggests realtime sampling. */
export const ON_TIME_TARGET_PCT = 99.5;

/**
 * Whether realtime sampling would help here, from a burst of 1 ms ticks at normal priority (see
 * {@linkcode measureTicks}): fine when at least {@linkcode ON_TIME_TARGET_PCT} % are on time; else a loaded
 * machine, where `sampling_realtime = true` keeps ticks on time at the measured program's expense.
 *
 * @param burst the ticks measured; default: measured now (half a second)
 * @param mayRealtime whether the kernel gives this process SCHED_FIFO; default: tried
 *   ({@linkcode realtimeGranted}), only when ticks are late
 *
 * @example
 * ```ts
 * import { realtimeCheck } from "./doctor.ts";
 * import assert from "node:assert/strict";
 * assert.equal(realtimeCheck({ ticks: 500, late: 1, p99Us: 180 }, true).ok, true);
 * const loaded = realtimeCheck({ ticks: 500, late: 40, p99Us: 4200 }, false);
 * assert.equal(loaded.ok, false);
 * assert.match(loaded.fix!, /sampling_realtime = true/);
 * assert.match(loaded.fix!, /root or CAP_SYS_NICE/);
 * ```
 */
export function realtimeCheck(burst: TickBurst = measureTicks(), mayRealtime?: boolean): Diagnosis {
  const onTime = 100 * (burst.ticks - burst.late) / burst.ticks;
  const ok = onTime >= ON_TIME_TARGET_PCT;
  const detail = `${onTime.toFixed(1)} % of ${burst.ticks} ticks at 1 ms woke on time (within a period) at ` +
    `normal priority, p99 lateness ${(burst.p99Us / 1000).toFixed(2)} ms; ` +
    (ok
      ? "realtime sampling (sampling_realtime) would not help and would slow the measured program"
      : `below ${ON_TIME_TARGET_PCT} %: this machine is loaded, sources polled every few ms will miss ticks`);
  if (ok) return { check: "sampling at 1 ms without realtime", ok, detail };
  return {
    check: "sampling at 1 ms without realtime",
    ok,
    detail,
    fix:
      "set sampling_realtime = true at the top of the config (SCHED_FIFO for sources polled every 3 ms or " +
      "less): ticks stay on time, but the sampling thread preempts the measured program (+7 % slowdown of a " +
      "CPU-bound program at 1 kHz, against +1.3 % without)" +
      ((mayRealtime ?? realtimeGranted())
        ? ""
        : "; the kernel refuses it to this process: it needs root or CAP_SYS_NICE and, with RT group " +
          "scheduling, a cgroup with a realtime budget (run the agent in the root cgroup)") +
      "; or poll less often",
  };
}

/**
 * The general checks of the machine: native calls (FFI), perf_event access, PMUs, hardware counters, and
 * whether 1 ms sampling keeps its ticks without realtime (half a second of ticks, see {@linkcode realtimeCheck}).
 */
export function machineChecks(): Diagnosis[] {
  const out: Diagnosis[] = [];
  const ffi = diagnoseLibrary("native calls (FFI)", LIBC, LIBC_SYMBOLS);
  out.push(ffi.ok ? { ...ffi, detail: "libc is loaded" } : ffi);
  const paranoid = readText("/proc/sys/kernel/perf_event_paranoid")?.trim();
  const caps = capEff();
  const privileged = Deno.uid() === 0 || (caps >> CAP_PERFMON & 1n) === 1n ||
    (caps >> CAP_SYS_ADMIN & 1n) === 1n;
  if (paranoid === undefined) {
    out.push({
      check: "perf_event",
      ok: false,
      detail: "no /proc/sys/kernel/perf_event_paranoid: this kernel has no perf_event support",
      fix: "use a kernel built with CONFIG_PERF_EVENTS",
    });
  } else {
    const level = Number(paranoid);
    const ok = privileged || level <= 1;
    out.push({
      check: "perf_event access",
      ok,
      detail: `perf_event_paranoid = ${level}${
        privileged ? ", and this process is privileged (root or CAP_PERFMON)" : ""
      }`,
      ...(ok ? {} : {
        fix:
          "run as root, or `setcap cap_perfmon=ep` on the deno binary, or `sysctl kernel.perf_event_paranoid=1` " +
          "(0 or -1 for system-wide and cgroup counters)",
      }),
    });
    if (!privileged && level > 0) {
      out.push({
        check: "system-wide and cgroup counters",
        ok: false,
        detail: `perf_event_paranoid = ${level} allows only per-process counters without privileges`,
        fix: "run as root or with CAP_PERFMON, or `sysctl kernel.perf_event_paranoid=0`",
      });
    }
  }
  const pmus = listDir("/sys/bus/event_source/devices");
  out.push({ check: "PMUs", ok: pmus.length > 0, detail: pmus.length > 0 ? pmus.join(", ") : "none listed" });
  const hardware = pmus.includes("cpu") || pmus.includes("cpu_core") || pmus.includes("armv8_pmuv3_0");
  out.push({
    check: "hardware counters (cycles, instructions)",
    ok: hardware,
    detail: hardware
      ? "a CPU PMU is present"
      : "no CPU PMU (typical in a virtual machine without a virtual PMU)",
    ...(hardware
      ? {}
      : { fix: "on a VM, enable the virtual PMU (e.g. KVM `-cpu host,pmu=on`); software events still work" }),
  });
  if (ffi.ok) {
    try {
      out.push(realtimeCheck());
    } catch (e) {
      out.push({
        check: "sampling at 1 ms without realtime",
        ok: false,
        detail: `not measured: ${messageOf(e)}`,
      });
    }
  }
  return out;
}

/** How long one plugin's diagnosis may take (a vendor library's init can hang on a wedged device). */
export const DIAGNOSE_TIMEOUT_MS = 15_000;

/** What {@linkcode diagnoseAll} takes for each plugin. */
export interface DoctorPlugin {
  readonly meta: PluginMetadata<unknown>;
  /** Its validated config (its defaults when the config does not enable it). */
  readonly config: unknown;
  /** Whether the config enables it. */
  readonly enabled: boolean;
}

/**
 * Runs every plugin's own diagnosis (with its validated config), enabled or not, then the machine checks. A
 * diagnosis that throws, or does not finish within `timeoutMs`, is one failed line that says so.
 *
 * @param plugins the built-in plugins and the config's external ones
 * @param options `timeoutMs`: per plugin, default {@linkcode DIAGNOSE_TIMEOUT_MS}
 *
 * @example
 * ```ts
 * import { diagnoseAll } from "./doctor.ts";
 * import assert from "node:assert/strict";
 * const hangs = { name: "gpu", version: "0.0.0", description: "", defaultConfig: () => ({}), init: () => ({ start() {} }),
 *   diagnose: () => new Promise<never>(() => {}) };
 * const lines = await diagnoseAll([{ meta: hangs, config: {}, enabled: true }], { timeoutMs: 10 });
 * assert.deepEqual(lines[0], {
 *   plugin: "gpu", enabled: true, check: "diagnosis", ok: false,
 *   detail: "the check itself failed: it did not finish within 0.01 s",
 * });
 * ```
 */
export async function diagnoseAll(
  plugins: readonly DoctorPlugin[],
  options: { readonly timeoutMs?: number } = {},
): Promise<DoctorLine[]> {
  const timeoutMs = options.timeoutMs ?? DIAGNOSE_TIMEOUT_MS;
  const lines: DoctorLine[] = [];
  for (const { meta, config, enabled } of plugins) {
    let ds: readonly Diagnosis[];
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      if (meta.diagnose === undefined) ds = [{ check: "no check needed", ok: true, detail: "" }];
      else {
        const late = new Promise<never>((_, reject) =>
          timer = setTimeout(
            () => reject(new Error(`it did not finish within ${timeoutMs / 1000} s`)),
            timeoutMs,
          )
        );
        ds = await Promise.race([Promise.resolve(meta.diagnose(config)), late]);
      }
    } catch (e) {
      ds = [{ check: "diagnosis", ok: false, detail: `the check itself failed: ${messageOf(e)}` }];
    } finally {
      clearTimeout(timer);
    }
    for (const d of ds) lines.push({ plugin: meta.name, enabled, ...d });
  }
  for (const d of machineChecks()) lines.push({ plugin: "machine", enabled: false, ...d });
  return lines;
}

/**
 * The report as text, one line per check: `✓` works, `✗` fails in a plugin the config enables, `·` fails in
 * one it does not enable; a plugin's checks say `(not enabled)` when the config does not enable it. Each
 * failure's fix is indented below it.
 */
export function formatReport(lines: readonly DoctorLine[]): string {
  const out: string[] = [];
  const width = Math.max(...lines.map((l) => l.plugin.length));
  for (const l of lines) {
    const mark = l.ok ? "✓" : l.enabled ? "✗" : "·";
    const state = l.plugin === "machine" ? "" : l.enabled ? "" : " (not enabled)";
    out.push(`${mark} ${l.plugin.padEnd(width)}  ${l.check}${state}${l.detail ? `: ${l.detail}` : ""}`);
    if (!l.ok && l.fix) out.push(`  ${" ".repeat(width)}  fix: ${l.fix}`);
  }
  return out.join("\n");
}

/**
 * The report's conclusion: whether everything the config enables can run (the exit code: 0 or 1), and which
 * plugins the config does not enable could run here.
 *
 * @param lines the report's lines
 * @param enabled the plugins the config enables, in its order
 *
 * @example
 * ```ts
 * import { conclusion } from "./doctor.ts";
 * import assert from "node:assert/strict";
 * const lines = [
 *   { plugin: "rapl", enabled: true, check: "powercap", ok: false, detail: "energy_uj is root-only" },
 *   { plugin: "procfs", enabled: false, check: "kernel", ok: true, detail: "" },
 *   { plugin: "nvml", enabled: false, check: "library", ok: false, detail: "no libnvidia-ml.so.1" },
 *   { plugin: "machine", enabled: false, check: "PMUs", ok: false, detail: "none" },
 * ];
 * assert.deepEqual(conclusion(lines, ["rapl"]), {
 *   code: 1,
 *   text: "1 check(s) of enabled plugins fail: see the fixes above.\nCould run here too, not enabled: procfs.",
 * });
 * assert.equal(conclusion(lines.slice(1), ["procfs"]).code, 0); // failures of plugins not enabled do not count
 * ```
 */
export function conclusion(lines: readonly DoctorLine[], enabled: readonly string[]): {
  readonly code: 0 | 1;
  readonly text: string;
} {
  const failing = lines.filter((l) => l.enabled && !l.ok);
  const plugins = [...new Set(lines.filter((l) => l.plugin !== "machine").map((l) => l.plugin))];
  const available = plugins.filter((p) => !enabled.includes(p) && lines.every((l) => l.plugin !== p || l.ok));
  const text = [
    failing.length === 0
      ? `Everything enabled can run here (${enabled.length ? enabled.join(", ") : "no plugin enabled"}).`
      : `${failing.length} check(s) of enabled plugins fail: see the fixes above.`,
    ...(available.length ? [`Could run here too, not enabled: ${available.join(", ")}.`] : []),
  ].join("\n");
  return { code: failing.length === 0 ? 0 : 1, text };
}

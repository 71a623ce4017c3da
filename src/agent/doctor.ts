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
import { LIBC, LIBC_SYMBOLS } from "../ffi/libc.ts";
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

/** Effective capabilities of this process, from /proc/self/status (`CapEff`). */
function capEff(): bigint {
  const m = /CapEff:\s*([0-9a-f]+)/.exec(readText("/proc/self/status") ?? "");
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

const CAP_SYS_ADMIN = 21n;
const CAP_PERFMON = 38n;

/** The general checks of the machine: native calls (FFI), perf_event access, PMUs, hardware counters. */
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
  return out;
}

/** Runs every plugin's own diagnosis (with its validated config) and the machine checks. */
export async function diagnoseAll(
  plugins: readonly { meta: PluginMetadata<unknown>; config: unknown; enabled: boolean }[],
): Promise<DoctorLine[]> {
  const lines: DoctorLine[] = [];
  for (const { meta, config, enabled } of plugins) {
    let ds: readonly Diagnosis[];
    try {
      ds = meta.diagnose ? await meta.diagnose(config) : [{ check: "no check needed", ok: true, detail: "" }];
    } catch (e) {
      ds = [{ check: "diagnosis", ok: false, detail: `the check itself failed: ${messageOf(e)}` }];
    }
    for (const d of ds) lines.push({ plugin: meta.name, enabled, ...d });
  }
  for (const d of machineChecks()) lines.push({ plugin: "machine", enabled: false, ...d });
  return lines;
}

/** The report as text, one line per check (`✓`/`✗`), fixes indented below failures. */
export function formatReport(lines: readonly DoctorLine[]): string {
  const out: string[] = [];
  const width = Math.max(...lines.map((l) => l.plugin.length));
  for (const l of lines) {
    const mark = l.ok ? "✓" : l.enabled ? "✗" : "·";
    const state = l.plugin === "machine" ? "" : l.enabled ? "" : " (disabled)";
    out.push(`${mark} ${l.plugin.padEnd(width)}  ${l.check}${state}${l.detail ? `: ${l.detail}` : ""}`);
    if (!l.ok && l.fix) out.push(`  ${" ".repeat(width)}  fix: ${l.fix}`);
  }
  return out.join("\n");
}

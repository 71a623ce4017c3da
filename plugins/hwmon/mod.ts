/**
 * Power and energy from the Linux hwmon sensors, in three plugins:
 *
 * - {@linkcode hwmonPlugin} (`[plugins.hwmon]`): every power, energy and voltage×current sensor under
 *   `/sys/class/hwmon`, as `hwmon_power` (W) and `hwmon_energy` (J per poll interval, from the sensor's
 *   counter or integrated from its power: the attribute `source` says which);
 * - {@linkcode graceHopperPlugin} (`[plugins.grace-hopper]`): NVIDIA Grace / Grace Hopper telemetry with
 *   Alumet's keys and metric names (`grace_instant_power`, `grace_energy_consumption`);
 * - {@linkcode jetsonPlugin} (`[plugins.jetson]`): NVIDIA Jetson INA3221 rails with Alumet's keys and metric
 *   names (`input_current`, `input_voltage`, `input_power`).
 *
 * A machine without the sensors gets one warning at start, with the fix, and the agent runs without the
 * source, so one config serves a mixed fleet.
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { testPlugin } from "../../src/testing/mod.ts";
 * import { hwmonPlugin } from "./mod.ts";
 * const root = new URL("./testdata/amd_desktop", import.meta.url).pathname;
 * await using h = await testPlugin(hwmonPlugin, { sysfs_root: root });
 * assert.ok(h.sources.has("sensors"));
 * ```
 *
 * @module
 */
import { projectModule } from "../../src/plugin/module_url.ts";
import type { Diagnosis, Plugin, StartContext } from "../../src/plugin/plugin.ts";
import { definePlugin } from "../../src/plugin/define.ts";
import { duration, z } from "../../src/plugin/schema.ts";
import { GRACE_METRICS, HWMON_METRICS, JETSON_METRICS } from "./metrics.ts";
import { discoverHwmon, hasHwmonClass, type HwmonDiscovery } from "./discover.ts";
import { discoverGrace } from "./grace.ts";
import { discoverIna, inaRoots } from "./jetson.ts";

export * from "./metrics.ts";
export {
  discoverHwmon,
  type HwmonDiscovery,
  type HwmonFilter,
  type HwmonSensor,
  type PowerSource,
} from "./discover.ts";
export { createHwmonSource, HwmonSource, type HwmonSourceConfig } from "./source.ts";
export {
  createGraceSource,
  discoverGrace,
  type GraceKind,
  type GraceSensor,
  GraceSource,
  type GraceSourceConfig,
  parseOemInfo,
} from "./grace.ts";
export {
  createJetsonSource,
  discoverIna,
  type InaChannel,
  type InaLayout,
  inaRoots,
  JetsonSource,
  type JetsonSourceConfig,
} from "./jetson.ts";
export { IntAttribute } from "./sysfs.ts";

const MODULES = {
  hwmon: projectModule("plugins/hwmon/source.ts").href,
  grace: projectModule("plugins/hwmon/grace.ts").href,
  jetson: projectModule("plugins/hwmon/jetson.ts").href,
} as const;

/** How many unreadable files are named one by one at start. */
const LISTED_PROBLEMS = 5;

/** Logs the problems of a discovery, one line each, the rest counted. */
function warnProblems(ctx: StartContext, problems: readonly string[]): void {
  for (const p of problems.slice(0, LISTED_PROBLEMS)) ctx.log.warn(p);
  if (problems.length > LISTED_PROBLEMS) {
    ctx.log.warn(`… and ${problems.length - LISTED_PROBLEMS} more files that cannot be read`);
  }
}

// ---------------------------------------------------------------------------------------------- hwmon

/**
 * The schema of `[plugins.hwmon]` (unknown keys are errors) and its defaults.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { hwmonConfigSchema } from "./mod.ts";
 * const c = hwmonConfigSchema.parse({ devices: ["amdgpu"] });
 * assert.equal(c.poll_interval, 1000);
 * assert.equal(c.sysfs_root, "/sys");
 * ```
 */
export const hwmonConfigSchema = z.strictObject({
  poll_interval: duration().prefault("1s"),
  flush_interval: duration().prefault("5s"),
  sysfs_root: z.string().prefault("/sys"),
  devices: z.array(z.string()).prefault([]),
  labels: z.array(z.string()).prefault([]),
});

/** The validated `[plugins.hwmon]` table (durations in ms). */
export type HwmonConfig = z.infer<typeof hwmonConfigSchema>;

/** Why nothing was found, and the fix: one line. */
export function hwmonNothingFound(root: string, d: HwmonDiscovery | undefined): string {
  if (d === undefined) {
    return `No ${root}/class/hwmon here (sysfs not mounted, or a container without /sys): hwmon measures ` +
      "nothing. Fix: run on the host, or give the container the host's /sys (docker run -v /sys:/sys:ro)";
  }
  const seen = d.devices.map((x) => x.name);
  return `No power, energy or voltage/current sensor under ${d.classDir}` +
    (seen.length > 0 ? ` (hwmon devices: ${[...new Set(seen)].join(", ")})` : " (no hwmon device)") +
    ": hwmon measures nothing. Fix: load the driver of your board's power sensors (run sensors-detect, then " +
    "modprobe what it names: amdgpu, acpi_power_meter, ina3221, ina2xx…), check devices/labels, or remove " +
    "[plugins.hwmon] on this machine";
}

/** The hwmon plugin instance: discovery in `start`, then the source `sensors`. */
export class HwmonPlugin implements Plugin {
  readonly #config: HwmonConfig;

  constructor(config: HwmonConfig) {
    this.#config = config;
  }

  start(ctx: StartContext): void {
    const c = this.#config;
    if (!hasHwmonClass(c.sysfs_root)) {
      ctx.log.warn(hwmonNothingFound(c.sysfs_root, undefined));
      return;
    }
    const d = discoverHwmon(c.sysfs_root, { devices: c.devices, labels: c.labels });
    warnProblems(ctx, d.problems);
    if (d.sensors.length === 0) {
      ctx.log.warn(hwmonNothingFound(c.sysfs_root, d));
      return;
    }
    ctx.log.debug(
      `Sensors: ${d.sensors.map((s) => `${s.device}/${s.sensor} (${s.hwmon}, ${s.powerSource})`).join(", ")}`,
    );
    const metrics = ctx.createMetrics(HWMON_METRICS);
    ctx.addSource(
      "sensors",
      {
        module: MODULES.hwmon,
        export: "createHwmonSource",
        config: { metrics, sensors: d.sensors },
        blocking: true,
      },
      { pollInterval: c.poll_interval, flushInterval: c.flush_interval },
    );
  }
}

/** `alumet doctor`: the sensors found, or why none. */
function diagnoseHwmon(c: HwmonConfig): Diagnosis[] {
  const check = "hwmon power sensors";
  if (!hasHwmonClass(c.sysfs_root)) {
    const [detail, fix] = hwmonNothingFound(c.sysfs_root, undefined).split(" Fix: ");
    return [{ check, ok: false, detail: detail!, fix: fix! }];
  }
  const d = discoverHwmon(c.sysfs_root, { devices: c.devices, labels: c.labels });
  const out: Diagnosis[] = [];
  if (d.sensors.length === 0) {
    const [detail, fix] = hwmonNothingFound(c.sysfs_root, d).split(" Fix: ");
    out.push({ check, ok: false, detail: detail!, fix: fix! });
  } else {
    out.push({
      check,
      ok: true,
      detail: d.sensors.map((s) => `${s.device} ${s.sensor} (${s.powerSource})`).join(", "),
    });
  }
  if (d.problems.length > 0) {
    out.push({
      check: "hwmon files readable",
      ok: false,
      detail: d.problems.join("; "),
      fix: 'run the agent as root, or make the files readable (a udev rule: MODE="0444")',
    });
  }
  return out;
}

/** The hwmon plugin's metadata: `[plugins.hwmon]`. */
export const hwmonPlugin = definePlugin({
  name: "hwmon",
  version: "0.1.0",
  description: "Power and energy of the hwmon sensors (GPUs, power meters, INA rails)",
  config: hwmonConfigSchema,
  init: (config) => new HwmonPlugin(config),
  diagnose: diagnoseHwmon,
});

// --------------------------------------------------------------------------------------- grace-hopper

/** The schema of `[plugins.grace-hopper]`: Alumet's keys and defaults. */
export const graceHopperConfigSchema = z.strictObject({
  poll_interval: duration().prefault("1s"),
  root_path: z.string().prefault("/sys/class/hwmon"),
});

/** The validated `[plugins.grace-hopper]` table. */
export type GraceHopperConfig = z.infer<typeof graceHopperConfigSchema>;

// Telemetry needs only the acpi_power_meter driver bound to the ACPI000D meters and its files readable:
// its force_cap_on parameter enables power *capping* (kernel Documentation/hwmon/acpi_power_meter.rst,
// "Forcefully enable the power capping feature"), not the power1_average readings.
const GRACE_FIX = "on a Grace or Grace Hopper machine, load the ACPI power meter driver (modprobe " +
  "acpi_power_meter; kernel CONFIG_SENSORS_ACPI_POWER) and check that hwmon*/device/power1_average is " +
  "readable by this user; elsewhere, remove [plugins.grace-hopper]";

/** The grace-hopper plugin instance. */
export class GraceHopperPlugin implements Plugin {
  readonly #config: GraceHopperConfig;

  constructor(config: GraceHopperConfig) {
    this.#config = config;
  }

  start(ctx: StartContext): void {
    const c = this.#config;
    const { sensors, problems } = discoverGrace(c.root_path);
    warnProblems(ctx, problems);
    if (sensors.length === 0) {
      ctx.log.warn(
        `No Grace telemetry sensor (hwmon*/device/power1_oem_info) under ${c.root_path}: grace-hopper ` +
          `measures nothing. Fix: ${GRACE_FIX}`,
      );
      return;
    }
    const metrics = ctx.createMetrics(GRACE_METRICS);
    ctx.addSource(
      "hwmon",
      { module: MODULES.grace, export: "createGraceSource", config: { metrics, sensors }, blocking: true },
      { pollInterval: c.poll_interval },
    );
  }
}

/** The grace-hopper plugin's metadata: `[plugins.grace-hopper]`. */
export const graceHopperPlugin = definePlugin({
  name: "grace-hopper",
  version: "0.1.0",
  description: "Power and energy of NVIDIA Grace / Grace Hopper superchips (Alumet's grace-hopper)",
  config: graceHopperConfigSchema,
  init: (config) => new GraceHopperPlugin(config),
  diagnose: (c) => {
    const { sensors, problems } = discoverGrace(c.root_path);
    const ok = sensors.length > 0 && problems.length === 0;
    return [{
      check: "Grace telemetry sensors",
      ok,
      detail: sensors.length > 0
        ? sensors.map((s) => `${s.kind} socket ${s.socket} (${s.hwmon})`).join(", ") +
          (problems.length > 0 ? `; ${problems.join("; ")}` : "")
        : `none under ${c.root_path}${problems.length > 0 ? `: ${problems.join("; ")}` : ""}`,
      ...(ok ? {} : { fix: GRACE_FIX }),
    }];
  },
});

// --------------------------------------------------------------------------------------------- jetson

/** The schema of `[plugins.jetson]`: Alumet's keys and defaults, plus `sysfs_root`. */
export const jetsonConfigSchema = z.strictObject({
  poll_interval: duration().prefault("1s"),
  flush_interval: duration().prefault("5s"),
  sysfs_root: z.string().prefault("/sys"),
});

/** The validated `[plugins.jetson]` table. */
export type JetsonConfig = z.infer<typeof jetsonConfigSchema>;

function jetsonNothingFound(root: string): string {
  const r = inaRoots(root);
  return `No INA3221 sensor: neither ${r.modern} nor ${r.old} exists: jetson measures nothing. ` +
    "Fix: run on an NVIDIA Jetson with its INA3221 driver loaded (modprobe ina3221), or remove [plugins.jetson]";
}

/** The jetson plugin instance. */
export class JetsonPlugin implements Plugin {
  readonly #config: JetsonConfig;

  constructor(config: JetsonConfig) {
    this.#config = config;
  }

  start(ctx: StartContext): void {
    const c = this.#config;
    const { layout, channels, problems } = discoverIna(c.sysfs_root);
    warnProblems(ctx, problems);
    if (layout === undefined) {
      ctx.log.warn(jetsonNothingFound(c.sysfs_root));
      return;
    }
    if (channels.length === 0) {
      ctx.log.warn(
        `No INA3221 channel could be read under ${
          inaRoots(c.sysfs_root)[layout]
        }: jetson measures nothing. ` +
          "Fix: run the agent as root, or make the channel files readable",
      );
      return;
    }
    const metrics = ctx.createMetrics(JETSON_METRICS);
    ctx.addSource(
      "builtin_ina_sensor",
      { module: MODULES.jetson, export: "createJetsonSource", config: { metrics, channels }, blocking: true },
      { pollInterval: c.poll_interval, flushInterval: c.flush_interval },
    );
  }
}

/** The jetson plugin's metadata: `[plugins.jetson]`. */
export const jetsonPlugin = definePlugin({
  name: "jetson",
  version: "0.1.0",
  description: "Voltage, current and power of NVIDIA Jetson INA3221 rails (Alumet's jetson)",
  config: jetsonConfigSchema,
  init: (config) => new JetsonPlugin(config),
  diagnose: (c) => {
    const { layout, channels, problems } = discoverIna(c.sysfs_root);
    if (layout === undefined) {
      const [detail, fix] = jetsonNothingFound(c.sysfs_root).split(" Fix: ");
      return [{ check: "INA3221 sensors", ok: false, detail: detail!, fix: fix! }];
    }
    const ok = channels.length > 0 && problems.length === 0;
    return [{
      check: "INA3221 sensors",
      ok,
      detail: `${layout} layout: ` +
        (channels.map((ch) => `${ch.label} (0x${ch.i2cAddress.toString(16)} channel ${ch.channel})`).join(
          ", ",
        ) ||
          "no channel") +
        (problems.length > 0 ? `; ${problems.join("; ")}` : ""),
      ...(ok ? {} : { fix: "run the agent as root, or make the channel files readable" }),
    }];
  },
});

export default hwmonPlugin;

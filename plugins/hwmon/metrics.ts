/**
 * The metrics of the three plugins of this folder, declared once: the plugins create them in `start`, and the
 * README's metrics tables are checked against them.
 *
 * - `hwmon`: `hwmon_energy` (J, delta, f64) and `hwmon_power` (W, gauge, f64), for every power, energy and
 *   voltage×current sensor;
 * - `grace-hopper`: Alumet's `grace_instant_power` (µW, u64) and `grace_energy_consumption` (mJ, f64);
 * - `jetson`: Alumet's `input_current` (mA), `input_voltage` (mV) and `input_power` (mW), all u64.
 *
 * @module
 */
import { defineMetrics, type MetricIds } from "../../src/model/metric_set.ts";
import { unit } from "../../src/model/units.ts";

/**
 * The metrics of `[plugins.hwmon]`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HWMON_METRICS } from "./metrics.ts";
 * assert.equal(HWMON_METRICS.energy.unit.code, "J");
 * assert.equal(HWMON_METRICS.energy.kind, "delta");
 * ```
 */
export const HWMON_METRICS = defineMetrics({
  energy: {
    name: "hwmon_energy",
    unit: unit("J"),
    valueType: "f64",
    kind: "delta",
    description:
      "Energy used since the previous measurement (attribute source: counter = the sensor's energy counter, integrated = power integrated over time)",
  },
  power: {
    name: "hwmon_power",
    unit: unit("W"),
    valueType: "f64",
    kind: "gauge",
    description:
      "Power (attribute source: power_input, power_average, voltage_current = V×I of the rail, energy_counter = energy delta over time)",
  },
});

/** The ids of {@linkcode HWMON_METRICS}. */
export type HwmonMetrics = MetricIds<typeof HWMON_METRICS>;

/** The metrics of `[plugins.grace-hopper]`, as Alumet names them. */
export const GRACE_METRICS = defineMetrics({
  power: {
    name: "grace_instant_power",
    unit: unit("W", "micro"),
    valueType: "u64",
    kind: "gauge",
    description: "Power of a Grace / Grace Hopper telemetry sensor (power1_average), or a sum or estimate",
  },
  energy: {
    name: "grace_energy_consumption",
    unit: unit("J", "milli"),
    valueType: "f64",
    kind: "delta",
    description: "Energy since the previous measurement, integrated from the power (trapezoids)",
  },
});

/** The ids of {@linkcode GRACE_METRICS}. */
export type GraceMetrics = MetricIds<typeof GRACE_METRICS>;

/** The metrics of `[plugins.jetson]`, as Alumet names them. */
export const JETSON_METRICS = defineMetrics({
  current: {
    name: "input_current",
    unit: unit("A", "milli"),
    valueType: "u64",
    kind: "gauge",
    description: "Current on an INA3221 channel",
  },
  voltage: {
    name: "input_voltage",
    unit: unit("V", "milli"),
    valueType: "u64",
    kind: "gauge",
    description: "Bus voltage on an INA3221 channel",
  },
  power: {
    name: "input_power",
    unit: unit("W", "milli"),
    valueType: "u64",
    kind: "gauge",
    description: "Power on an INA3221 channel (the driver's on the old layout, V×I on the modern one)",
  },
});

/** The ids of {@linkcode JETSON_METRICS}. */
export type JetsonMetrics = MetricIds<typeof JETSON_METRICS>;

/**
 * The source of `[plugins.hwmon]`: at each poll, every sensor's power (W, gauge) and its energy since the
 * previous poll (J, delta). Energy comes from the sensor's `energy*_input` counter through the
 * {@linkcode Counter} helper (the first read only sets the baseline), or, without a counter, from the power
 * integrated over the poll interval with trapezoids, `(P_prev + P_now) / 2 × Δt`; the attribute `source` says
 * which (`counter` or `integrated`). Files are opened once and re-read with `pread`.
 *
 * A sensor that fails to read (a GPU reset, a driver unloaded) is logged once, skipped, and its baseline
 * forgotten; it is read again at the next poll.
 *
 * @module
 */
import type { Batch } from "../../src/model/batch.ts";
import type { Source } from "../../src/plugin/plugin.ts";
import type { Timestamp } from "../../src/model/timestamp.ts";
import { Counter, NO_DELTA } from "../../src/model/counter.ts";
import { Resource } from "../../src/model/resources.ts";
import { Logger } from "../../src/log.ts";
import { messageOf } from "../../src/errors.ts";
import type { HwmonMetrics } from "./metrics.ts";
import type { HwmonSensor } from "./discover.ts";
import { IntAttribute } from "./sysfs.ts";

/** One sensor, opened. */
interface Open {
  readonly sensor: HwmonSensor;
  readonly resource: Resource;
  readonly powerAttrs: Readonly<Record<string, string>>;
  readonly energyAttrs: Readonly<Record<string, string>>;
  readonly power?: IntAttribute;
  readonly voltage?: IntAttribute;
  readonly current?: IntAttribute;
  readonly energy?: IntAttribute;
  readonly counter: Counter;
  /** Previous power (W) and its time, for integration; NaN before the first read. */
  prevPower: number;
  prevTime: Timestamp;
  failing: boolean;
}

/** What {@linkcode createHwmonSource} takes: plain data, so that it can cross to a Worker. */
export interface HwmonSourceConfig {
  readonly metrics: HwmonMetrics;
  readonly sensors: readonly HwmonSensor[];
}

/**
 * Reads hwmon sensors.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HwmonSource } from "./source.ts";
 * import { Batch } from "../../src/model/batch.ts";
 * import type { MetricId } from "../../src/model/metrics.ts";
 * const dir = Deno.makeTempDirSync();
 * Deno.writeTextFileSync(`${dir}/power1_average`, "20000000\n"); // 20 W
 * const metrics = { energy: 0 as MetricId<"f64">, power: 2 as MetricId<"f64"> };
 * const s = new HwmonSource({ metrics, sensors: [{ device: "amdgpu", hwmon: "hwmon0", sensor: "PPT",
 *   resource: ["local_machine", ""], powerSource: "power_average", powerFile: `${dir}/power1_average` }] });
 * s.poll(new Batch(), 0n);
 * Deno.writeTextFileSync(`${dir}/power1_average`, "40000000\n"); // 40 W
 * const b = new Batch();
 * s.poll(b, 2_000_000_000n); // 2 s later: (20 + 40) / 2 × 2 = 60 J
 * assert.deepEqual([b.valueAt(0), b.valueAt(1)], [40, 60]);
 * s.close();
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export class HwmonSource implements Source {
  readonly #metrics: HwmonMetrics;
  readonly #open: Open[] = [];
  readonly #log = new Logger("hwmon");

  constructor(config: HwmonSourceConfig) {
    this.#metrics = config.metrics;
    try {
      for (const s of config.sensors) this.#open.push(openSensor(s));
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** How many sensors are read. */
  get size(): number {
    return this.#open.length;
  }

  poll(batch: Batch, timestamp: Timestamp): void {
    const m = this.#metrics;
    for (const o of this.#open) {
      let watts: number;
      let joules = NO_DELTA;
      try {
        const dt = Number(timestamp - o.prevTime) / 1e9;
        if (o.energy !== undefined) {
          const d = o.counter.update(o.energy.read());
          if (d !== NO_DELTA) joules = d / 1e6;
        }
        if (o.power !== undefined) watts = o.power.read() / 1e6;
        else if (o.voltage !== undefined) watts = (o.voltage.read() * o.current!.read()) / 1e6;
        else watts = joules !== NO_DELTA && dt > 0 ? joules / dt : NaN;
        if (o.energy === undefined && !Number.isNaN(o.prevPower) && dt > 0) {
          joules = ((o.prevPower + watts) / 2) * dt;
        }
        if (o.failing) {
          o.failing = false;
          this.#log.info(`${describe(o.sensor)} reads again`);
        }
      } catch (e) {
        if (!o.failing) {
          this.#log.warn(`Cannot read ${describe(o.sensor)}: ${messageOf(e)}; skipped until it reads`);
        }
        o.failing = true;
        o.counter.reset();
        o.prevPower = NaN;
        continue;
      }
      o.prevPower = watts;
      o.prevTime = timestamp;
      const ctx = { resource: o.resource, attributes: o.powerAttrs };
      if (!Number.isNaN(watts)) batch.push(m.power, watts, ctx);
      if (joules !== NO_DELTA) {
        batch.push(m.energy, joules, { resource: o.resource, attributes: o.energyAttrs });
      }
    }
  }

  reset(): void {
    for (const o of this.#open) {
      o.counter.reset();
      o.prevPower = NaN;
    }
  }

  close(): void {
    for (const o of this.#open) {
      o.power?.close();
      o.voltage?.close();
      o.current?.close();
      o.energy?.close();
    }
    this.#open.length = 0;
  }
}

/** `amdgpu PPT (hwmon2)`. */
function describe(s: HwmonSensor): string {
  return `${s.device} ${s.sensor} (${s.hwmon})`;
}

function openSensor(s: HwmonSensor): Open {
  const base = { device: s.device, hwmon: s.hwmon, sensor: s.sensor };
  const [kind, id] = s.resource;
  return {
    sensor: s,
    resource: kind === "local_machine" ? Resource.localMachine() : Resource.custom(kind, id),
    powerAttrs: Object.freeze({ ...base, source: s.powerSource }),
    energyAttrs: Object.freeze({ ...base, source: s.energyFile !== undefined ? "counter" : "integrated" }),
    ...(s.powerFile !== undefined ? { power: IntAttribute.open(s.powerFile) } : {}),
    ...(s.voltageFile !== undefined ? { voltage: IntAttribute.open(s.voltageFile) } : {}),
    ...(s.currentFile !== undefined ? { current: IntAttribute.open(s.currentFile) } : {}),
    ...(s.energyFile !== undefined ? { energy: IntAttribute.open(s.energyFile) } : {}),
    counter: new Counter("monotonic"),
    prevPower: NaN,
    prevTime: 0n,
    failing: false,
  };
}

/** The Worker entry: a {@linkcode HwmonSource} from its plain config. */
export function createHwmonSource(config: HwmonSourceConfig): HwmonSource {
  return new HwmonSource(config);
}

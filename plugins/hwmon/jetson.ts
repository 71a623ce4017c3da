/**
 * The INA3221 power monitors of NVIDIA Jetson boards, found as Alumet's `jetson` plugin finds them
 * (`plugins/nvidia-jetson/src/ina/{modern,old}.rs` in `alumet-dev/alumet`):
 *
 * - modern layout (JetPack 5+, mainline `ina3221` driver):
 *   `<sysfs>/bus/i2c/drivers/ina3221/<bus>-<addr>/hwmon/hwmon<N>/` with `in<C>_label`, `in<C>_input` (bus
 *   voltage, mV) and `curr<C>_input` (mA), channels 1–3. The driver's `in4..in6` (shunt voltages, µV),
 *   `in7` (their sum) and `curr4` (sum current) are not rails and are not reported (Alumet reports them as
 *   channels 4–7 with the units of a rail); power is V×I, rounded to the mW;
 * - old layout (JetPack 4, NVIDIA's `ina3221x` IIO driver, Nano / TX1 / TX2 / Xavier):
 *   `<sysfs>/bus/i2c/drivers/ina3221x/<bus>-<addr>/iio:device<N>/` with `rail_name_<C>`,
 *   `in_voltage<C>_input` (mV), `in_current<C>_input` (mA) and `in_power<C>_input` (mW), channels 0–2.
 *
 * The modern layout is used when its driver directory exists, else the old one, as in Alumet. Points have
 * the resource `local_machine` and Alumet's attributes `ina_device_number` (N), `ina_i2c_address` (addr),
 * `ina_channel_id` (C) and `ina_channel_label` (the label, or `channel_<C>`).
 *
 * @module
 */
import type { Batch } from "../../src/model/batch.ts";
import type { Source } from "../../src/plugin/plugin.ts";
import type { JetsonMetrics } from "./metrics.ts";
import { IntAttribute, listNames, readTrimmed, unreadable } from "./sysfs.ts";

/** Which sysfs layout a channel comes from. */
export type InaLayout = "modern" | "old";

/** One INA3221 channel, as plain data. */
export interface InaChannel {
  readonly layout: InaLayout;
  readonly deviceNumber: number;
  readonly i2cAddress: number;
  readonly channel: number;
  readonly label: string;
  /** mV, mA, and (old layout) mW files; a missing one is not read. */
  readonly voltageFile?: string;
  readonly currentFile?: string;
  readonly powerFile?: string;
}

/** The driver directories Alumet looks at, under a sysfs root. */
export function inaRoots(sysfsRoot: string): { modern: string; old: string } {
  return { modern: `${sysfsRoot}/bus/i2c/drivers/ina3221`, old: `${sysfsRoot}/bus/i2c/drivers/ina3221x` };
}

/** `1-0040` → 0x40; undefined for other names (`bind`, `uevent`, `module`). */
function i2cAddress(name: string): number | undefined {
  const m = /^\d+-([0-9a-fA-F]{4})$/.exec(name);
  return m === null ? undefined : parseInt(m[1]!, 16);
}

/**
 * Finds the INA3221 channels under a sysfs root.
 *
 * @returns the layout used (undefined when neither driver directory exists), the channels, and one line per
 *   file that exists but cannot be read
 */
export function discoverIna(sysfsRoot: string): {
  layout: InaLayout | undefined;
  channels: InaChannel[];
  problems: string[];
} {
  const roots = inaRoots(sysfsRoot);
  const problems: string[] = [];
  const channels: InaChannel[] = [];
  const layout: InaLayout | undefined = listable(roots.modern)
    ? "modern"
    : listable(roots.old)
    ? "old"
    : undefined;
  if (layout === undefined) return { layout, channels, problems };
  const root = layout === "modern" ? roots.modern : roots.old;
  const ok = (f: string | undefined): f is string => {
    if (f === undefined) return false;
    const why = unreadable(f);
    if (why !== undefined) problems.push(`${f}: ${why}`);
    return why === undefined;
  };
  for (const client of listNames(root, true)) {
    const addr = i2cAddress(client);
    if (addr === undefined) continue;
    const devDirs = layout === "modern"
      ? listNames(`${root}/${client}/hwmon`, true).filter((n) => /^hwmon\d+$/.test(n)).map((n) => ({
        dir: `${root}/${client}/hwmon/${n}`,
        number: Number(n.slice(5)),
      }))
      : listNames(`${root}/${client}`, true).filter((n) => /^iio:device\d+$/.test(n)).map((n) => ({
        dir: `${root}/${client}/${n}`,
        number: Number(n.slice(10)),
      }));
    for (const { dir, number } of devDirs) {
      const files = new Set(listNames(dir));
      const has = (n: string) => (files.has(n) ? `${dir}/${n}` : undefined);
      const ids = new Set<number>();
      const re = layout === "modern"
        ? /^(?:in|curr)(\d+)_input$/
        : /^(?:in_voltage|in_current|in_power)(\d+)_input$/;
      for (const f of files) {
        const m = re.exec(f);
        if (m !== null) ids.add(Number(m[1]));
      }
      for (const c of [...ids].sort((a, b) => a - b)) {
        if (layout === "modern" && c > 3) continue; // shunt voltages and sums, not rails
        const label = readTrimmed(`${dir}/${layout === "modern" ? `in${c}_label` : `rail_name_${c}`}`) ??
          `channel_${c}`;
        const [v, i, p] = layout === "modern"
          ? [has(`in${c}_input`), has(`curr${c}_input`), undefined]
          : [has(`in_voltage${c}_input`), has(`in_current${c}_input`), has(`in_power${c}_input`)];
        const channel: InaChannel = {
          layout,
          deviceNumber: number,
          i2cAddress: addr,
          channel: c,
          label,
          ...(ok(v) ? { voltageFile: v } : {}),
          ...(ok(i) ? { currentFile: i } : {}),
          ...(ok(p) ? { powerFile: p } : {}),
        };
        if (channel.voltageFile || channel.currentFile || channel.powerFile) channels.push(channel);
      }
    }
  }
  channels.sort((a, b) =>
    a.i2cAddress - b.i2cAddress || a.deviceNumber - b.deviceNumber || a.channel - b.channel
  );
  return { layout, channels, problems };
}

function listable(dir: string): boolean {
  try {
    return Deno.statSync(dir).isDirectory;
  } catch {
    return false;
  }
}

/** What {@linkcode createJetsonSource} takes. */
export interface JetsonSourceConfig {
  readonly metrics: JetsonMetrics;
  readonly channels: readonly InaChannel[];
}

interface OpenChannel {
  readonly attrs: Readonly<Record<string, string | number>>;
  readonly voltage?: IntAttribute;
  readonly current?: IntAttribute;
  readonly power?: IntAttribute;
}

/** Reads the INA3221 channels: `input_voltage`, `input_current` and `input_power` per channel. */
export class JetsonSource implements Source {
  readonly #metrics: JetsonMetrics;
  readonly #channels: OpenChannel[] = [];

  constructor(config: JetsonSourceConfig) {
    this.#metrics = config.metrics;
    try {
      for (const c of config.channels) {
        this.#channels.push({
          attrs: Object.freeze({
            ina_device_number: c.deviceNumber,
            ina_i2c_address: c.i2cAddress,
            ina_channel_id: c.channel,
            ina_channel_label: c.label,
          }),
          ...(c.voltageFile !== undefined ? { voltage: IntAttribute.open(c.voltageFile) } : {}),
          ...(c.currentFile !== undefined ? { current: IntAttribute.open(c.currentFile) } : {}),
          ...(c.powerFile !== undefined ? { power: IntAttribute.open(c.powerFile) } : {}),
        });
      }
    } catch (e) {
      this.close();
      throw e;
    }
  }

  poll(batch: Batch): void {
    const m = this.#metrics;
    for (const c of this.#channels) {
      const ctx = { attributes: c.attrs };
      const mv = c.voltage !== undefined ? Math.max(0, c.voltage.read()) : undefined;
      const ma = c.current !== undefined ? Math.max(0, c.current.read()) : undefined;
      if (ma !== undefined) batch.push(m.current, ma, ctx);
      if (mv !== undefined) batch.push(m.voltage, mv, ctx);
      if (c.power !== undefined) batch.push(m.power, Math.max(0, c.power.read()), ctx);
      else if (mv !== undefined && ma !== undefined) batch.push(m.power, Math.round((mv * ma) / 1000), ctx);
    }
  }

  close(): void {
    for (const c of this.#channels) {
      c.voltage?.close();
      c.current?.close();
      c.power?.close();
    }
    this.#channels.length = 0;
  }
}

/** The Worker entry. */
export function createJetsonSource(config: JetsonSourceConfig): JetsonSource {
  return new JetsonSource(config);
}

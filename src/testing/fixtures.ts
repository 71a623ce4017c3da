/**
 * Helpers for fixture-driven plugin tests: batches as plain points to compare with a scenario's expected
 * points, sums, and the files of a fixture tree.
 *
 * @module
 */
import type { Batch } from "../model/batch.ts";
import type { MetricRegistry } from "../model/metrics.ts";

/** A point as the fixture scenarios write it: metric name, value, `[kind, id]` pairs, attributes. */
export interface ScenarioPoint {
  readonly metric: string;
  readonly value: number;
  readonly resource?: readonly [string, string];
  readonly consumer?: readonly [string, string];
  readonly attributes?: Readonly<Record<string, string | number | boolean>>;
}

/** A point with every field present. */
export interface PlainPoint extends ScenarioPoint {
  readonly resource: readonly [string, string];
  readonly consumer: readonly [string, string];
  readonly attributes: Readonly<Record<string, string | number | boolean>>;
}

/** The points of `batch`, with metric names from `registry` and values as numbers. */
export function pointsOf(batch: Batch, registry: MetricRegistry): PlainPoint[] {
  const out: PlainPoint[] = [];
  for (let i = 0; i < batch.length; i++) {
    const r = batch.resourceAt(i);
    const c = batch.consumerAt(i);
    out.push({
      metric: registry.get(batch.metricAt(i)).name,
      value: Number(batch.valueAt(i)),
      resource: [r.kind, r.id],
      consumer: [c.kind, c.id],
      attributes: batch.attributesAt(i) as Record<string, string | number | boolean>,
    });
  }
  return out;
}

/** The sum of the values of the points that `keep` selects. */
export function sumOf(points: readonly PlainPoint[], keep: (p: PlainPoint) => boolean): number {
  let sum = 0;
  for (const p of points) if (keep(p)) sum += p.value;
  return sum;
}

/**
 * The relative paths of the files under `dir`, `.keep` excluded (a fixture tree's files).
 *
 * @param dir the tree's root
 * @param prefix the sub-directory to list (relative to `dir`); default: all of it
 * @returns the paths, `a/b/c` style
 */
export function filesUnder(dir: string, prefix = ""): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(`${dir}/${prefix}`)) {
    const rel = prefix === "" ? e.name : `${prefix}/${e.name}`;
    if (e.isDirectory) out.push(...filesUnder(dir, rel));
    else if (e.name !== ".keep") out.push(rel);
  }
  return out;
}

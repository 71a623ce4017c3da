/**
 * Metrics declared once: {@linkcode defineMetrics} names a plugin's metrics by key, with everything a metric
 * has (name, unit, value type, kind, description); `ctx.createMetrics(set)` registers them and returns their
 * typed ids by the same keys. The same set is what the plugin's README metrics table is checked against
 * (`src/testing/readme.ts`), so the code, the registry and the documentation cannot drift apart.
 *
 * @example
 * ```ts
 * import { defineMetrics, registerMetrics } from "./metric_set.ts";
 * import { MetricRegistry } from "./metrics.ts";
 * import { unit } from "./units.ts";
 * import assert from "node:assert/strict";
 * const METRICS = defineMetrics({
 *   temperature: { name: "board_temperature", unit: unit("Cel"), valueType: "f64", kind: "gauge", description: "Board temperature" },
 *   resets: { name: "board_resets", unit: unit("1"), valueType: "u64", kind: "counter", description: "Resets since boot" },
 * });
 * const ids = registerMetrics(new MetricRegistry(), "board", METRICS);
 * assert.equal(typeof ids.temperature, "number");
 * assert.notEqual(ids.temperature, ids.resets);
 * ```
 *
 * @module
 */
import type { MetricId, MetricKind, MetricRegistry, MetricSpec, ValueType } from "./metrics.ts";

/** One metric of a set: every field is given, so that the README table can be checked against it. */
export interface MetricDefinition<T extends ValueType = ValueType> extends MetricSpec<T> {
  readonly kind: MetricKind;
  readonly description: string;
}

/** A plugin's metrics, by key. */
export type MetricDefinitions = { readonly [key: string]: MetricDefinition };

/** The typed ids of a set, by the same keys. */
export type MetricIds<D extends MetricDefinitions> = {
  readonly [K in keyof D]: D[K] extends MetricDefinition<infer T> ? MetricId<T> : never;
};

/**
 * Declares a plugin's metrics once. The value types are kept as literal types, so the ids are typed.
 *
 * @param definitions the metrics, by key
 * @returns the same definitions, frozen
 */
export function defineMetrics<const D extends MetricDefinitions>(definitions: D): D {
  for (const d of Object.values(definitions)) Object.freeze(d);
  return Object.freeze(definitions);
}

/**
 * Registers every metric of a set for a plugin.
 *
 * @param registry the agent's registry
 * @param plugin the plugin that registers them
 * @param definitions the set
 * @returns the ids, by key
 */
export function registerMetrics<D extends MetricDefinitions>(
  registry: MetricRegistry,
  plugin: string,
  definitions: D,
): MetricIds<D> {
  const out: Record<string, MetricId> = {};
  for (const [key, spec] of Object.entries(definitions)) out[key] = registry.register(plugin, spec);
  return Object.freeze(out) as MetricIds<D>;
}

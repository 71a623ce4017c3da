/**
 * Metric definitions and the registry that hands out their ids.
 *
 * @module
 */
import { AlumetError } from "../errors.ts";
import { sameUnit, type Unit } from "./units.ts";

/** How values are stored: `f64`, or `u64` (exact beyond 2^53, as a bigint there). */
export type ValueType = "f64" | "u64";

/**
 * What a value means over time, so that outputs export it correctly:
 * - `gauge`: a level at the instant (power, memory used, temperature);
 * - `delta`: an amount accumulated since the previous point of the same series (energy per interval);
 * - `counter`: a cumulative total since some start (a perf counter, total CPU time).
 */
export type MetricKind = "gauge" | "delta" | "counter";

/**
 * A metric id; its type parameter records the value type for `push`. The id's parity is its value type at run
 * time (odd: `u64`, even: `f64`), so that a batch checks u64 values without a lookup, also in a sampling
 * Worker that only has the number.
 */
export type MetricId<T extends ValueType = ValueType> = number & { readonly __metric: T };

/** A metric as registered. */
export interface Metric {
  readonly id: MetricId;
  readonly name: string;
  readonly unit: Unit;
  readonly valueType: ValueType;
  readonly kind: MetricKind;
  readonly description: string;
  /** Name of the plugin that created it first. */
  readonly plugin: string;
}

/** What a plugin gives to create a metric. */
export interface MetricSpec<T extends ValueType = ValueType> {
  readonly name: string;
  readonly unit: Unit;
  readonly valueType: T;
  /** Default: `gauge`. */
  readonly kind?: MetricKind;
  /** Default: empty. */
  readonly description?: string;
}

/** Two plugins asked for the same metric name with different unit, value type or kind. */
export class DuplicateMetricError extends AlumetError {
  override name = "DuplicateMetricError";
}

/** Letters, digits and `_`, and the parentheses of Alumet's meminfo metric names (`active(anon)`). */
const NAME_RE = /^[a-zA-Z_][a-zA-Z0-9_()]*$/;

/**
 * The metric registry: ids are small numbers, even for `f64` metrics and odd for `u64` ones, handed out in
 * sequence for each type (so an array indexed by id stays at most about twice the number of metrics).
 * Registering the same name with the same unit, value type and kind returns the existing id, so plugins can
 * share generic metrics (`cpu_time_delta`); an incompatible duplicate is an error naming both plugins.
 *
 * @example
 * ```ts
 * import { MetricRegistry } from "./metrics.ts";
 * import { unit } from "./units.ts";
 * import assert from "node:assert/strict";
 * const r = new MetricRegistry();
 * const a = r.register("p1", { name: "energy", unit: unit("J"), valueType: "f64", kind: "delta" });
 * assert.deepEqual(r.register("p2", { name: "energy", unit: unit("J"), valueType: "f64", kind: "delta" }), a);
 * assert.throws(() => r.register("p3", { name: "energy", unit: unit("W"), valueType: "f64" }));
 * ```
 */
export class MetricRegistry {
  readonly #byId: Metric[] = [];
  readonly #all: Metric[] = [];
  #nextF64 = 0;
  #nextU64 = 1;
  readonly #byName = new Map<string, Metric>();
  readonly #listeners = new Set<(m: Metric) => void>();

  /** Registers a metric for `plugin`, or returns the id of an identical one. */
  register<T extends ValueType>(plugin: string, spec: MetricSpec<T>): MetricId<T> {
    if (!NAME_RE.test(spec.name)) {
      throw new RangeError(
        `Metric name "${spec.name}" (plugin ${plugin}) must be snake_case letters, digits, "_" (and "(", ")")`,
      );
    }
    const kind = spec.kind ?? "gauge";
    const existing = this.#byName.get(spec.name);
    if (existing) {
      if (
        sameUnit(existing.unit, spec.unit) && existing.valueType === spec.valueType && existing.kind === kind
      ) {
        return existing.id as MetricId<T>;
      }
      const mine = `${spec.valueType} ${kind} in "${spec.unit.code}"`;
      const theirs = `${existing.valueType} ${existing.kind} in "${existing.unit.code}"`;
      throw new DuplicateMetricError(
        `Metric "${spec.name}" from plugin "${plugin}" (${mine}) conflicts with the one plugin ` +
          `"${existing.plugin}" registered (${theirs}); rename one of them`,
      );
    }
    let id: number;
    if (spec.valueType === "u64") {
      id = this.#nextU64;
      this.#nextU64 += 2;
    } else {
      id = this.#nextF64;
      this.#nextF64 += 2;
    }
    const m: Metric = Object.freeze({
      id: id as MetricId,
      name: spec.name,
      unit: spec.unit,
      valueType: spec.valueType,
      kind,
      description: spec.description ?? "",
      plugin,
    });
    this.#byId[id] = m;
    this.#all.push(m);
    this.#byName.set(m.name, m);
    for (const l of this.#listeners) l(m);
    return m.id as MetricId<T>;
  }

  /** The metric with this id. Throws a RangeError for an unknown id. */
  get(id: number): Metric {
    const m = this.#byId[id];
    if (m === undefined) throw new RangeError(`Unknown metric id ${id}`);
    return m;
  }

  /** The metric with this name, if any. */
  byName(name: string): Metric | undefined {
    return this.#byName.get(name);
  }

  /** All metrics, in the order they were registered (look one up by id with {@linkcode MetricRegistry.get}). */
  get all(): readonly Metric[] {
    return this.#all;
  }

  /** Calls `listener` for each metric registered from now on (late metrics). Returns an unsubscribe. */
  onRegister(listener: (m: Metric) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

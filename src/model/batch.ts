/**
 * A batch of measurement points, stored by column so that a poll at 1 kHz creates little or no garbage.
 *
 * Metric ids, timestamps and values live in typed arrays; resources, consumers and attribute sets are
 * references to objects the source created once. A `u64` value above 2^53 is kept exactly, as a `bigint`,
 * in a side table.
 *
 * @module
 */
import type { MetricId, ValueType } from "./metrics.ts";
import { Consumer, Resource } from "./resources.ts";
import type { Timestamp } from "./timestamp.ts";

/** An attribute value. */
export type AttributeValue = string | number | boolean | bigint;

/** A set of attributes. Reuse the same object across polls: batches store the reference. */
export type Attributes = Readonly<Record<string, AttributeValue>>;

/** The value of a point: a number, or a bigint for a u64 beyond 2^53. */
export type Value = number | bigint;

/** Where a point comes from and what it describes, beyond its metric and value. */
export interface PointContext {
  /** Default: the local machine. */
  readonly resource?: Resource;
  /** Default: the local machine. */
  readonly consumer?: Consumer;
  /** Default: none. */
  readonly attributes?: Attributes;
  /** Default: the batch's current {@linkcode Batch.timestamp} (the poll's time). */
  readonly timestamp?: Timestamp;
}

/** A batch as plain data, for `postMessage` between a sampling Worker and the pipeline. */
export interface BatchData {
  readonly length: number;
  readonly metrics: Uint32Array<ArrayBuffer>;
  readonly timestamps: BigInt64Array<ArrayBuffer>;
  readonly values: Float64Array<ArrayBuffer>;
  readonly resources: Resource[];
  readonly consumers: Consumer[];
  readonly attributes: Attributes[];
  readonly big?: [number, bigint][];
}

/** A batch's columns, as {@linkcode Batch.columns} gives them (read-only). */
export interface BatchColumns {
  readonly metrics: Uint32Array<ArrayBuffer>;
  readonly timestamps: BigInt64Array<ArrayBuffer>;
  readonly values: Float64Array<ArrayBuffer>;
  readonly big: ReadonlyMap<number, bigint> | undefined;
}

/** One measurement point, as the friendly view of a batch row. */
export interface MeasurementPoint {
  readonly metric: MetricId;
  readonly timestamp: Timestamp;
  readonly value: Value;
  readonly resource: Resource;
  readonly consumer: Consumer;
  readonly attributes: Attributes;
}

const NO_ATTRIBUTES: Attributes = Object.freeze({});
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const U64_MAX = 2n ** 64n - 1n;
const LOCAL_R = Resource.localMachine();
const LOCAL_C = Consumer.localMachine();
const EMPTY_U32 = new Uint32Array(0);
const EMPTY_I64 = new BigInt64Array(0);
const EMPTY_F64 = new Float64Array(0);
/** True while {@linkcode Batch.fromData} constructs: the constructor then allocates no column. */
let adopting = false;

/**
 * A growable, columnar batch of points.
 *
 * @example
 * ```ts
 * import { Batch } from "./batch.ts";
 * import { Resource } from "./resources.ts";
 * import type { MetricId } from "./metrics.ts";
 * import assert from "node:assert/strict";
 * const energy = 0 as MetricId<"f64">;
 * const b = new Batch();
 * b.timestamp = 1_000n;
 * const pkg0 = Resource.cpuPackage(0);
 * b.push(energy, 12.5, { resource: pkg0, attributes: { domain: "package" } });
 * assert.deepEqual(b.length, 1);
 * assert.deepEqual(b.valueAt(0), 12.5);
 * assert.deepEqual([...b][0]?.resource, pkg0);
 * ```
 */
export class Batch implements Iterable<MeasurementPoint> {
  #metrics: Uint32Array<ArrayBuffer>;
  #timestamps: BigInt64Array<ArrayBuffer>;
  #values: Float64Array<ArrayBuffer>;
  // The object columns are sized from the capacity too (a flush of 1000 rows would otherwise grow them by
  // copying, a few times per batch); entries past `#length` are undefined.
  #resources: Resource[];
  #consumers: Consumer[];
  #attributes: Attributes[];
  #big: Map<number, bigint> | undefined;
  #length = 0;
  /** Timestamp given to points pushed without one; managed sources set it to the poll's time. */
  timestamp: Timestamp = 0n;

  /** @param capacity initial number of rows before the columns grow (default 64) */
  constructor(capacity = 64) {
    if (adopting) {
      // fromData: the columns come from the data; allocate none here.
      this.#metrics = EMPTY_U32;
      this.#timestamps = EMPTY_I64;
      this.#values = EMPTY_F64;
      this.#resources = this.#consumers = this.#attributes = [];
      return;
    }
    const c = Math.max(1, capacity | 0);
    this.#metrics = new Uint32Array(c);
    this.#timestamps = new BigInt64Array(c);
    this.#values = new Float64Array(c);
    this.#resources = new Array<Resource>(c);
    this.#consumers = new Array<Consumer>(c);
    this.#attributes = new Array<Attributes>(c);
  }

  /** Number of points. */
  get length(): number {
    return this.#length;
  }

  /**
   * Adds a point. A `bigint` value is stored exactly; small ones are stored as numbers.
   *
   * @throws {RangeError} for a `u64` metric given a negative, fractional, infinite or NaN value, a number
   *   beyond 2^53 (it could not be exact: pass a bigint), or a bigint outside 0…2^64-1
   */
  push<T extends ValueType>(
    metric: MetricId<T>,
    value: T extends "u64" ? Value : number,
    ctx?: PointContext,
  ): void {
    const i = this.#length;
    if (i === this.#metrics.length) this.#grow(Math.max(8, i * 2));
    this.#metrics[i] = metric;
    this.#timestamps[i] = ctx?.timestamp ?? this.timestamp;
    if (typeof value === "bigint") {
      if ((metric & 1) === 1 && (value < 0n || value > U64_MAX)) throw badU64(metric, value);
      if (value > MAX_SAFE || value < -MAX_SAFE) {
        (this.#big ??= new Map()).set(i, value);
        this.#values[i] = Number(value);
      } else {
        this.#values[i] = Number(value);
      }
    } else {
      // An odd id is a u64 metric: one integer test on the hot path, the value test only for those.
      if ((metric & 1) === 1 && !(value >= 0 && value <= Number.MAX_SAFE_INTEGER && value % 1 === 0)) {
        throw badU64(metric, value);
      }
      this.#values[i] = value;
    }
    this.#resources[i] = ctx?.resource ?? LOCAL_R;
    this.#consumers[i] = ctx?.consumer ?? LOCAL_C;
    this.#attributes[i] = ctx?.attributes ?? NO_ATTRIBUTES;
    this.#length = i + 1;
  }

  /** Appends every point of `other`. */
  append(other: Batch): void {
    const n = other.#length;
    if (n === 0) return;
    const start = this.#length;
    if (start + n > this.#metrics.length) this.#grow(Math.max(start + n, this.#metrics.length * 2));
    this.#metrics.set(other.#metrics.subarray(0, n), start);
    this.#timestamps.set(other.#timestamps.subarray(0, n), start);
    this.#values.set(other.#values.subarray(0, n), start);
    for (let j = 0; j < n; j++) {
      this.#resources[start + j] = other.#resources[j]!;
      this.#consumers[start + j] = other.#consumers[j]!;
      this.#attributes[start + j] = other.#attributes[j]!;
    }
    if (other.#big) { for (const [j, v] of [...other.#big]) (this.#big ??= new Map()).set(start + j, v); }
    this.#length = start + n;
  }

  /**
   * The batch as plain data and the buffers to transfer with it. The batch must not be used afterwards: its
   * columns move to the receiver.
   */
  toData(): { data: BatchData; transfer: ArrayBuffer[] } {
    const n = this.#length;
    // The object columns may be longer than the batch (sized from the capacity): the data's are exactly n.
    if (this.#resources.length !== n) this.#truncate(n);
    const data: BatchData = {
      length: n,
      metrics: this.#metrics,
      timestamps: this.#timestamps,
      values: this.#values,
      resources: this.#resources,
      consumers: this.#consumers,
      attributes: this.#attributes,
      ...(this.#big ? { big: [...this.#big] } : {}),
    };
    return {
      data,
      transfer: [this.#metrics.buffer, this.#timestamps.buffer, this.#values.buffer] as ArrayBuffer[],
    };
  }

  /** A batch from {@linkcode Batch.toData}'s data (after `postMessage`). */
  static fromData(data: BatchData): Batch {
    adopting = true;
    let b: Batch;
    try {
      b = new Batch();
    } finally {
      adopting = false;
    }
    b.#metrics = data.metrics;
    b.#timestamps = data.timestamps;
    b.#values = data.values;
    b.#resources = data.resources;
    b.#consumers = data.consumers;
    b.#attributes = data.attributes;
    b.#big = data.big ? new Map(data.big) : undefined;
    b.#length = data.length;
    return b;
  }

  /**
   * The columns themselves, for a reader that goes over every row (an output's formatter): the first
   * {@linkcode Batch.length} entries of each typed array are the rows; `big` holds the exact value of a row
   * whose `u64` value is beyond 2^53 (its `values` entry is then only close). Read-only: the arrays are the
   * batch's own, valid until the batch changes.
   */
  columns(): BatchColumns {
    return {
      metrics: this.#metrics,
      timestamps: this.#timestamps,
      values: this.#values,
      big: this.#big,
    };
  }

  /** Metric id of row `i`. */
  metricAt(i: number): MetricId {
    return this.#metrics[i] as MetricId;
  }
  /** Timestamp of row `i`. */
  timestampAt(i: number): Timestamp {
    return this.#timestamps[i]!;
  }
  /** Value of row `i`: a number, or the exact bigint of a u64 beyond 2^53. */
  valueAt(i: number): Value {
    if (this.#big !== undefined) {
      const b = this.#big.get(i);
      if (b !== undefined) return b;
    }
    return this.#values[i]!;
  }
  /** Resource of row `i`. */
  resourceAt(i: number): Resource {
    return this.#resources[i]!;
  }
  /** Consumer of row `i`. */
  consumerAt(i: number): Consumer {
    return this.#consumers[i]!;
  }
  /** Attributes of row `i` (a shared empty object when none). */
  attributesAt(i: number): Attributes {
    return this.#attributes[i]!;
  }

  /** Row `i` as an object. */
  at(i: number): MeasurementPoint {
    if (i < 0 || i >= this.#length) {
      throw new RangeError(`Row ${i} is outside the batch (length ${this.#length})`);
    }
    return {
      metric: this.metricAt(i),
      timestamp: this.timestampAt(i),
      value: this.valueAt(i),
      resource: this.#resources[i]!,
      consumer: this.#consumers[i]!,
      attributes: this.#attributes[i]!,
    };
  }

  /** Iterates over the points as objects (convenient; the column accessors allocate less). */
  *[Symbol.iterator](): Iterator<MeasurementPoint> {
    for (let i = 0; i < this.#length; i++) yield this.at(i);
  }

  /**
   * Keeps only the rows for which `keep(batch, i)` is true, in order, in place. If `keep` throws, the batch is
   * left as it was.
   */
  retain(keep: (batch: Batch, i: number) => boolean): void {
    const mask = new Uint8Array(this.#length);
    for (let r = 0; r < this.#length; r++) mask[r] = keep(this, r) ? 1 : 0;
    let w = 0;
    const big = this.#big;
    const newBig = big ? new Map<number, bigint>() : undefined;
    for (let r = 0; r < this.#length; r++) {
      if (mask[r] === 0) continue;
      if (w !== r) {
        this.#metrics[w] = this.#metrics[r]!;
        this.#timestamps[w] = this.#timestamps[r]!;
        this.#values[w] = this.#values[r]!;
        this.#resources[w] = this.#resources[r]!;
        this.#consumers[w] = this.#consumers[r]!;
        this.#attributes[w] = this.#attributes[r]!;
      }
      const b = big?.get(r);
      if (b !== undefined) newBig!.set(w, b);
      w++;
    }
    this.#release(w);
    this.#big = newBig && newBig.size > 0 ? newBig : undefined;
  }

  /** Removes every point, keeping the allocated capacity. */
  clear(): void {
    this.#release(0);
    this.#big = undefined;
  }

  /** Keeps the first `n` rows; the object columns keep their room, holding no reference past `n`. */
  #release(n: number): void {
    const end = this.#length;
    this.#length = n;
    if (n < end) {
      this.#resources.fill(undefined as unknown as Resource, n, end);
      this.#consumers.fill(undefined as unknown as Consumer, n, end);
      this.#attributes.fill(undefined as unknown as Attributes, n, end);
    }
  }

  #truncate(n: number): void {
    this.#length = n;
    this.#resources.length = n;
    this.#consumers.length = n;
    this.#attributes.length = n;
  }

  #grow(capacity: number): void {
    const m = new Uint32Array(capacity);
    m.set(this.#metrics);
    const t = new BigInt64Array(capacity);
    t.set(this.#timestamps);
    const v = new Float64Array(capacity);
    v.set(this.#values);
    this.#metrics = m;
    this.#timestamps = t;
    this.#values = v;
  }
}

/**
 * A value a u64 metric cannot hold, rejected at the push: the message gives the value as pushed, why, and what
 * to do. The batch knows only the metric's id: a caller that knows its name (the source that polled, with the
 * registry) can rethrow {@linkcode U64ValueError.named}.
 *
 * @example
 * ```ts
 * import { U64ValueError } from "./batch.ts";
 * import assert from "node:assert/strict";
 * assert.equal(
 *   new U64ValueError(3, -1).named("procfs_mem").message,
 *   "Invalid value -1 for the u64 metric procfs_mem: a u64 cannot be negative; " +
 *     "check how it was computed (a difference of two counters?), or declare the metric f64",
 * );
 * ```
 */
export class U64ValueError extends RangeError {
  override name = "U64ValueError";
  /** The metric's id. */
  readonly metric: number;
  /** The value as pushed. */
  readonly value: number | bigint;
  constructor(metric: number, value: number | bigint, metricName?: string) {
    const shown = typeof value === "bigint" ? `${value}n` : String(value);
    const which = metricName === undefined ? `a u64 metric (id ${metric})` : `the u64 metric ${metricName}`;
    super(`Invalid value ${shown} for ${which}: ${u64Why(value)}`);
    this.metric = metric;
    this.value = value;
  }

  /** The same error, naming the metric. */
  named(metricName: string): U64ValueError {
    return new U64ValueError(this.metric, this.value, metricName);
  }
}

function u64Why(value: number | bigint): string {
  if (value < 0) {
    return "a u64 cannot be negative; check how it was computed (a difference of two counters?), or declare " +
      "the metric f64";
  }
  if (typeof value === "bigint") {
    return "beyond 2^64-1, the largest u64; declare the metric f64 for such values";
  }
  if (Number.isNaN(value)) {
    return "not a number; check the computation that gave it (a division by 0, a parse)";
  }
  if (!Number.isFinite(value)) {
    return "not a finite number; check the computation that gave it (a division by 0)";
  }
  if (value % 1 !== 0) {
    return "a u64 is a whole number; round it (Math.round) or declare the metric f64 for fractional values";
  }
  return "beyond 2^53 (Number.MAX_SAFE_INTEGER) a number is not exact; pass the value as a bigint";
}

/** The error of a u64 metric given a value it cannot hold. */
function badU64(metric: number, value: number | bigint): U64ValueError {
  return new U64ValueError(metric, value);
}

/**
 * A batch as it crosses `postMessage` from the sampling Worker: the typed columns (transferred, not copied) and,
 * instead of one object reference per row and column — which the structured clone would walk row by row, and
 * which would arrive as new objects —, three indices per row into tables that the receiver keeps for the whole
 * life of the source; only the objects it has not seen yet travel. See {@linkcode BatchEncoder} and
 * {@linkcode BatchDecoder}.
 */
export interface EncodedBatch {
  readonly length: number;
  readonly metrics: Uint32Array<ArrayBuffer>;
  readonly timestamps: BigInt64Array<ArrayBuffer>;
  readonly values: Float64Array<ArrayBuffer>;
  /** Per row: the index of its resource, of its consumer (both in the targets' table), of its attributes. */
  readonly refs: Uint32Array<ArrayBuffer>;
  /** Targets (resources and consumers) new to the receiver, appended to its table in this order. */
  readonly targets: readonly { readonly kind: string; readonly id: string }[];
  /** Attribute sets new to the receiver, appended to its table in this order. */
  readonly attributes: readonly Attributes[];
  /** True when the sender started its tables afresh (they had grown too big): the receiver must too. */
  readonly reset: boolean;
  readonly big?: [number, bigint][];
}

/** Entries of one table after which an encoder starts afresh (processes come and go). */
const TABLE_LIMIT = 65_536;

/**
 * The sender's side of {@linkcode EncodedBatch}: gives each distinct resource, consumer and attribute set an
 * index, once. One encoder per stream of batches (one source), paired with one {@linkcode BatchDecoder}.
 *
 * @example
 * ```ts
 * import { Batch, BatchDecoder, BatchEncoder } from "./batch.ts";
 * import { Resource } from "./resources.ts";
 * import type { MetricId } from "./metrics.ts";
 * import assert from "node:assert/strict";
 * const encoder = new BatchEncoder();
 * const decoder = new BatchDecoder();
 * const attributes = { domain: "package" };
 * for (let i = 0; i < 2; i++) {
 *   const b = new Batch();
 *   b.push(0 as MetricId<"f64">, i, { resource: Resource.cpuPackage(0), attributes });
 *   const { data, transfer } = encoder.encode(b);
 *   assert.equal(data.attributes.length, i === 0 ? 1 : 0, "sent once");
 *   const got = decoder.decode(structuredClone(data, { transfer }));
 *   assert.equal(got.resourceAt(0), Resource.cpuPackage(0));
 *   assert.deepEqual(got.attributesAt(0), { domain: "package" });
 * }
 * ```
 */
export class BatchEncoder {
  #targets = new Map<object, number>();
  #attributes = new Map<object, number>();

  /**
   * The batch encoded, and the buffers to transfer with it. The batch must not be used afterwards: its columns
   * move to the receiver.
   */
  encode(batch: Batch): { data: EncodedBatch; transfer: ArrayBuffer[] } {
    const { data, transfer } = batch.toData();
    const n = data.length;
    let reset = false;
    if (this.#targets.size + 2 * n > TABLE_LIMIT || this.#attributes.size + n > TABLE_LIMIT) {
      this.#targets.clear();
      this.#attributes.clear();
      reset = true;
    }
    const refs = new Uint32Array(3 * n);
    const targets: { kind: string; id: string }[] = [];
    const attributes: Attributes[] = [];
    const targetIds = this.#targets;
    const attributeIds = this.#attributes;
    let lastR: object | undefined, lastRi = 0, lastC: object | undefined, lastCi = 0;
    let lastA: object | undefined, lastAi = 0;
    for (let i = 0; i < n; i++) {
      const r = data.resources[i]!;
      if (r !== lastR) {
        let k = targetIds.get(r);
        if (k === undefined) {
          targetIds.set(r, k = targetIds.size);
          targets.push(r);
        }
        lastR = r;
        lastRi = k;
      }
      const c = data.consumers[i]!;
      if (c !== lastC) {
        let k = targetIds.get(c);
        if (k === undefined) {
          targetIds.set(c, k = targetIds.size);
          targets.push(c);
        }
        lastC = c;
        lastCi = k;
      }
      const a = data.attributes[i]!;
      if (a !== lastA) {
        let k = attributeIds.get(a);
        if (k === undefined) {
          attributeIds.set(a, k = attributeIds.size);
          attributes.push(a);
        }
        lastA = a;
        lastAi = k;
      }
      refs[3 * i] = lastRi;
      refs[3 * i + 1] = lastCi;
      refs[3 * i + 2] = lastAi;
    }
    const encoded: EncodedBatch = {
      length: n,
      metrics: data.metrics,
      timestamps: data.timestamps,
      values: data.values,
      refs,
      targets,
      attributes,
      reset,
      ...(data.big ? { big: data.big } : {}),
    };
    return { data: encoded, transfer: [...transfer, refs.buffer] };
  }
}

/**
 * The receiver's side of {@linkcode EncodedBatch}: keeps the tables, gives every object a stable identity
 * (resources and consumers are the interned ones of `resources.ts`; equal attribute sets are one frozen object),
 * so that what outputs cache per object (the csv's cells) works across batches.
 */
export class BatchDecoder {
  #targets: Resource[] = [];
  #attributes: Attributes[] = [];
  /** Attribute sets by content, so that one sent again after a reset keeps its identity (bounded). */
  readonly #attributeSets = new Map<string, Attributes>();

  /** The batch `data` encodes. */
  decode(data: EncodedBatch): Batch {
    if (data.reset) {
      this.#targets = [];
      this.#attributes = [];
    }
    for (const t of data.targets) {
      this.#targets.push(t.kind === "local_machine" && t.id === "" ? LOCAL_R : Resource.custom(t.kind, t.id));
    }
    for (const a of data.attributes) this.#attributes.push(this.#canonicalAttributes(a));
    const n = data.length;
    const resources = new Array<Resource>(n);
    const consumers = new Array<Consumer>(n);
    const attributes = new Array<Attributes>(n);
    const targets = this.#targets;
    const attributeSets = this.#attributes;
    const refs = data.refs;
    for (let i = 0; i < n; i++) {
      resources[i] = targets[refs[3 * i]!]!;
      consumers[i] = targets[refs[3 * i + 1]!]! as Consumer;
      attributes[i] = attributeSets[refs[3 * i + 2]!]!;
    }
    return Batch.fromData({
      length: n,
      metrics: data.metrics,
      timestamps: data.timestamps,
      values: data.values,
      resources,
      consumers,
      attributes,
      ...(data.big ? { big: data.big } : {}),
    });
  }

  #canonicalAttributes(a: Attributes): Attributes {
    let key = "";
    for (const k in a) key += `${k}\u0000${typeof a[k]}\u0000${String(a[k])}\u0000`;
    let c = this.#attributeSets.get(key);
    if (c === undefined) {
      c = Object.freeze(a);
      if (this.#attributeSets.size < 4096) this.#attributeSets.set(key, c);
    }
    return c;
  }
}

import assert from "node:assert/strict";
import { Batch, U64ValueError } from "./batch.ts";
import { type MetricId, MetricRegistry } from "./metrics.ts";
import { unit } from "./units.ts";
import { Consumer, Resource } from "./resources.ts";

const F = 0 as MetricId<"f64">;
const U = 1 as MetricId<"u64">;

Deno.test("Batch grows past its initial capacity and keeps every column", () => {
  const b = new Batch(2);
  const attrs = { i: 1 };
  for (let i = 0; i < 100; i++) {
    b.push(F, i / 2, { resource: Resource.cpuCore(i % 4), attributes: attrs, timestamp: BigInt(i) });
  }
  assert.equal(b.length, 100);
  assert.equal(b.valueAt(99), 49.5);
  assert.equal(b.timestampAt(42), 42n);
  assert.equal(b.resourceAt(7), Resource.cpuCore(3));
  assert.equal(b.attributesAt(5), attrs);
  assert.equal(b.consumerAt(0), Consumer.localMachine());
});

Deno.test("Batch keeps u64 values beyond 2^53 exact, through append and retain", () => {
  const b = new Batch();
  const big = 2n ** 64n - 1n;
  b.push(U, 5n);
  b.push(U, big);
  b.push(U, 7);
  assert.equal(b.valueAt(0), 5, "a small bigint is stored as a number");
  assert.equal(b.valueAt(1), big);
  const c = new Batch();
  c.push(U, 1);
  c.append(b);
  assert.equal(c.valueAt(2), big);
  c.retain((x, i) => x.valueAt(i) !== 5);
  assert.deepEqual([...c].map((p) => p.value), [1, big, 7]);
  c.retain((x, i) => x.valueAt(i) !== 1);
  assert.equal(c.valueAt(0), big);
  c.retain(() => false);
  assert.equal(c.length, 0);
});

Deno.test("Batch uses its timestamp for points pushed without one", () => {
  const b = new Batch();
  b.timestamp = 123n;
  b.push(F, 1);
  b.push(F, 2, { timestamp: 456n });
  assert.deepEqual([b.timestampAt(0), b.timestampAt(1)], [123n, 456n]);
});

Deno.test("Batch.at rejects a row outside the batch; clear keeps capacity", () => {
  const b = new Batch();
  b.push(F, 1);
  assert.throws(() => b.at(1), RangeError);
  b.clear();
  assert.equal(b.length, 0);
  b.push(F, 3);
  assert.equal(b.at(0).value, 3);
});

Deno.test("Batch.retain leaves the batch as it was when the predicate throws", () => {
  const b = new Batch();
  for (const v of [1, 2, 3, 4]) b.push(F, v);
  assert.throws(() =>
    b.retain((x, i) => {
      if (i === 2) throw new Error("lookup failed");
      return x.valueAt(i) !== 1;
    })
  );
  assert.deepEqual([...b].map((p) => p.value), [1, 2, 3, 4]);
});

Deno.test("Batch.append of itself keeps exact u64 values", () => {
  const b = new Batch();
  b.push(U, 2n ** 60n + 1n);
  b.append(b);
  assert.deepEqual([b.valueAt(0), b.valueAt(1)], [2n ** 60n + 1n, 2n ** 60n + 1n]);
});

Deno.test("Batch rejects at the push a u64 value that is negative, fractional, NaN or an inexact number", async (t) => {
  const b = new Batch();
  for (const bad of [-1, 0.5, NaN, Infinity, -0.25, 2 ** 53, 1e300]) {
    await t.step(String(bad), () => {
      assert.throws(
        () => b.push(U, bad),
        (e: unknown) => e instanceof RangeError && /u64 metric/.test(e.message),
      );
    });
  }
  assert.throws(() => b.push(U, 2 ** 60), /pass the value as a bigint/);
  assert.throws(() => b.push(U, -1n), /cannot be negative/);
  assert.throws(() => b.push(U, 2n ** 64n), /beyond 2\^64-1/);
  assert.equal(b.length, 0, "nothing was pushed");
  b.push(U, 0);
  b.push(U, Number.MAX_SAFE_INTEGER);
  b.push(U, 2n ** 64n - 1n);
  b.push(F, -0.5, {});
  b.push(F, NaN);
  assert.equal(b.length, 5);
  assert.equal(b.valueAt(1), Number.MAX_SAFE_INTEGER);
});

Deno.test("a rejected u64 value says, in one line, the value as pushed, why, and what to do", () => {
  const message = (value: number | bigint) => {
    try {
      new Batch().push(U, value);
    } catch (e) {
      assert.ok(e instanceof U64ValueError && e.metric === U && Object.is(e.value, value));
      assert.ok(!e.message.includes("\n"), e.message);
      return e.message;
    }
    throw new Error(`${value} was accepted`);
  };
  const cases: [number | bigint, RegExp][] = [
    [-1, /^Invalid value -1 for a u64 metric \(id 1\): a u64 cannot be negative; .*f64/],
    [0.5, /^Invalid value 0\.5 for a u64 metric \(id 1\): a u64 is a whole number; round it .*f64/],
    [NaN, /^Invalid value NaN for a u64 metric \(id 1\): not a number; /],
    [Infinity, /^Invalid value Infinity .*: not a finite number; /],
    [2 ** 60, /^Invalid value 1152921504606847000 .*beyond 2\^53 .*pass the value as a bigint/],
    [-1n, /^Invalid value -1n .*: a u64 cannot be negative; /],
    [2n ** 64n, /^Invalid value 18446744073709551616n .*: beyond 2\^64-1, the largest u64; /],
  ];
  for (const [value, pattern] of cases) {
    const m = message(value);
    assert.match(m, pattern);
    if (typeof value === "number" && !(value > Number.MAX_SAFE_INTEGER)) assert.ok(!/2\^53/.test(m), m);
  }
  const e = new U64ValueError(U, -1).named("perf_cycles");
  assert.match(e.message, /^Invalid value -1 for the u64 metric perf_cycles: a u64 cannot be negative/);
});

Deno.test("MetricRegistry gives u64 metrics odd ids and f64 metrics even ids, which push checks", () => {
  const r = new MetricRegistry();
  const f = r.register("p", { name: "a", unit: unit("1"), valueType: "f64" });
  const u = r.register("p", { name: "b", unit: unit("1"), valueType: "u64" });
  const f2 = r.register("p", { name: "c", unit: unit("1"), valueType: "f64" });
  assert.deepEqual([f % 2, u % 2, f2 % 2], [0, 1, 0]);
  assert.deepEqual(r.all.map((m) => m.name), ["a", "b", "c"]);
  assert.equal(r.get(u).name, "b");
  const b = new Batch();
  b.push(f, -3);
  assert.throws(() => b.push(u, -3 as unknown as bigint), RangeError);
});

Deno.test("Batch sized from its capacity: toData's columns are exactly its rows; clear, retain and reuse", () => {
  const b = new Batch(8);
  const attrs = { k: "v" };
  for (let i = 0; i < 3; i++) b.push(F, i, { resource: Resource.cpuCore(i), attributes: attrs });
  b.retain((_, i) => i !== 1);
  assert.deepEqual([...b].map((p) => [p.value, p.resource]), [[0, Resource.cpuCore(0)], [
    2,
    Resource.cpuCore(2),
  ]]);
  b.clear();
  assert.equal(b.length, 0);
  assert.deepEqual([...b], []);
  for (let i = 0; i < 20; i++) b.push(F, i, { resource: Resource.cpuCore(i % 2) });
  const { data } = b.toData();
  assert.equal(data.length, 20);
  assert.equal(data.resources.length, 20, "no row past the batch's length");
  assert.equal(data.consumers.length, 20);
  assert.equal(data.attributes.length, 20);
  assert.equal(data.resources[19], Resource.cpuCore(1));
  const copy = Batch.fromData(structuredClone(data));
  assert.equal(copy.length, 20);
  assert.equal(copy.valueAt(19), 19);
});

Deno.test("Batch.fromData of an empty batch can be pushed to", () => {
  const b = Batch.fromData({
    length: 0,
    metrics: new Uint32Array(0),
    timestamps: new BigInt64Array(0),
    values: new Float64Array(0),
    resources: [],
    consumers: [],
    attributes: [],
  });
  b.push(F, 4);
  b.push(F, 5);
  assert.deepEqual([b.length, b.valueAt(0), b.valueAt(1)], [2, 4, 5]);
  assert.equal(b.resourceAt(1), Resource.localMachine());
});

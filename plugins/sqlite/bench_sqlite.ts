/**
 * Points per second through the sqlite output, in batches of 1000 points (procfs-like: f64 and u64 metrics,
 * process consumers, one attribute set per metric), into a fresh file in a temporary directory.
 *
 * `deno run -A plugins/sqlite/bench_sqlite.ts [batches=200] [batch size=1000]`
 *
 * @module
 */
import { SqliteOutput } from "./mod.ts";
import { Batch } from "../../src/model/batch.ts";
import { MetricRegistry } from "../../src/model/metrics.ts";
import { Consumer, Resource } from "../../src/model/resources.ts";
import { unit } from "../../src/model/units.ts";

const batches = Number(Deno.args[0] ?? 200);
const size = Number(Deno.args[1] ?? 1000);
const registry = new MetricRegistry();
const cpu = registry.register("bench", { name: "cpu_time_delta", unit: unit("s", "nano"), valueType: "u64" });
const mem = registry.register("bench", { name: "memory_usage", unit: unit("By"), valueType: "u64" });
const pct = registry.register("bench", { name: "cpu_percent", unit: unit("%"), valueType: "f64" });
const ctx = { metric: (id: number) => registry.get(id as never) };
const user = { kind: "user" };
const resident = { kind: "resident" };
const consumers = Array.from({ length: 100 }, (_, i) => Consumer.process(1000 + i));
const list: Batch[] = [];
let t = 1_714_564_800_000_000_000n;
for (let b = 0; b < batches; b++) {
  const batch = new Batch(size);
  batch.timestamp = t;
  for (let i = 0; i < size; i++) {
    const c = consumers[i % consumers.length]!;
    const k = i % 3;
    if (k === 0) batch.push(cpu, 10_000_000 + i, { consumer: c, attributes: user });
    else if (k === 1) batch.push(mem, 123_456_789 + i, { consumer: c, attributes: resident });
    else batch.push(pct, i / 7, { consumer: c, resource: Resource.localMachine() });
  }
  list.push(batch);
  t += 1_000_000_000n;
}
const dir = await Deno.makeTempDir({ prefix: "alumet_sqlite_bench_" });
try {
  const output = new SqliteOutput(`${dir}/bench.sqlite`);
  output.open();
  const t0 = performance.now();
  for (const batch of list) output.write(batch, ctx);
  const t1 = performance.now();
  output.close();
  const t2 = performance.now();
  const points = batches * size;
  const bytes = Deno.statSync(`${dir}/bench.sqlite`).size;
  // deno-lint-ignore no-console
  console.log(
    `${points} points in ${batches} batches of ${size}: ${(t1 - t0).toFixed(0)} ms, ` +
      `${Math.round(points / ((t1 - t0) / 1000))} points/s; close (checkpoint) ${(t2 - t1).toFixed(0)} ms; ` +
      `${(bytes / points).toFixed(1)} bytes/point`,
  );
} finally {
  await Deno.remove(dir, { recursive: true });
}

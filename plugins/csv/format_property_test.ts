/**
 * The csv output writes its lines byte by byte into a reused buffer; this property test compares it, on random
 * batches, with a reference that builds each line as a string the straightforward way (the formatter the output
 * had before: each cell formatted, escaped and joined), under random delimiters and flushing modes.
 */
import assert from "node:assert/strict";
import { CsvOutput, type CsvOutputOptions, formatNumber, formatTimestamp, unitUniqueName } from "./mod.ts";
import { type Attributes, Batch } from "../../src/model/batch.ts";
import { type MetricId, MetricRegistry } from "../../src/model/metrics.ts";
import { Consumer, Resource } from "../../src/model/resources.ts";
import { customUnit, unit } from "../../src/model/units.ts";

/** A small deterministic generator (mulberry32), so that a failure can be replayed from its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The reference: the lines as strings, joined, with the same rules (Alumet's csv format). */
function referenceCsv(
  registry: MetricRegistry,
  batches: readonly Batch[],
  o: Required<CsvOutputOptions>,
): string {
  const d = o.delimiter;
  const special = (s: string) => s.includes(d) || s.includes('"') || s.includes("\n") || s.includes("\r");
  const esc = (s: string) => special(s) ? '"' + s.replaceAll('"', '""') + '"' : s;
  const lateEsc = (s: string) =>
    s.replaceAll("\\", "\\\\").replaceAll(o.lateDelimiter, "\\" + o.lateDelimiter);
  const text = (v: unknown) => typeof v === "number" ? formatNumber(v) : String(v);
  let columns: string[] | undefined;
  let out = "";
  for (const b of batches) {
    if (b.length === 0) continue;
    if (columns === undefined) {
      const keys = new Set<string>();
      for (let i = 0; i < b.length; i++) for (const k in b.attributesAt(i)) keys.add(k);
      columns = [...keys].sort();
      out += ["metric", "timestamp", "value", "resource_kind", "resource_id", "consumer_kind", "consumer_id"]
        .concat(columns, ["__late_attributes"]).map(esc).join(d) + "\n";
    }
    for (let i = 0; i < b.length; i++) {
      const m = registry.get(b.metricAt(i));
      let name = m.name;
      if (o.appendUnitToMetricName) {
        const u = o.useUnitDisplayName ? m.unit.display : unitUniqueName(m.unit);
        if (u !== "") name += "_" + u;
      }
      const a = b.attributesAt(i);
      const late = Object.keys(a).filter((k) => !columns!.includes(k))
        .map((k) => lateEsc(k) + "=" + lateEsc(text(a[k]))).join(o.lateDelimiter);
      const r = b.resourceAt(i);
      const c = b.consumerAt(i);
      const v = b.valueAt(i);
      out += [
        name,
        formatTimestamp(b.timestampAt(i)),
        typeof v === "number" ? formatNumber(v) : v.toString(),
        r.kind,
        r.id,
        c.kind,
        c.id,
        ...columns.map((k) => a[k] === undefined ? "" : text(a[k])),
        late,
      ].map(esc).join(d) + "\n";
    }
  }
  return out;
}

const NUMBERS = [
  0,
  -0,
  1,
  -1,
  0.5,
  12.5,
  1e21,
  -1e21,
  1.5e-7,
  5e-324,
  1e300,
  Number.NaN,
  Infinity,
  -Infinity,
  Number.MAX_SAFE_INTEGER,
  -Number.MAX_SAFE_INTEGER,
  2 ** 53 + 2,
  2 ** 60,
  123456789012,
  0.1 + 0.2,
  1e-6,
  9.999e20,
];

function randomNumber(r: () => number): number {
  const k = r();
  if (k < 0.3) return NUMBERS[Math.floor(r() * NUMBERS.length)]!;
  if (k < 0.6) return Math.floor(r() * 2 ** (1 + Math.floor(r() * 53))) * (r() < 0.2 ? -1 : 1);
  if (k < 0.8) return (r() - 0.5) * 10 ** Math.floor(r() * 40 - 20);
  return Math.floor(r() * 1e6) / 1000;
}

const STRINGS = [
  "",
  "a",
  "x;y",
  'q"uote',
  "line\nbreak",
  "back\\slash",
  "c,d",
  "é§→",
  "1.5",
  "-",
  "t\tab",
  "=",
];

function randomString(r: () => number): string {
  return r() < 0.5 ? STRINGS[Math.floor(r() * STRINGS.length)]! : `s${Math.floor(r() * 5)}`;
}

const DELIMITERS = [";", ",", "\t", "|", ".", "1", "-", ":", "§", "Z", "e"];

function randomTimestamp(r: () => number, base: bigint): bigint {
  const k = r();
  if (k < 0.05) return -BigInt(Math.floor(r() * 1e15)); // before 1970
  if (k < 0.1) return BigInt(Math.floor(r() * 2 ** 62)) * 2n; // far ahead (year > 9999 included)
  if (k < 0.2) return base - (base % 1_000_000_000n); // a whole second
  return base + BigInt(Math.floor(r() * 3e9));
}

Deno.test("CsvOutput writes the same bytes as the straightforward string formatter on random batches", async () => {
  const dir = await Deno.makeTempDir({ prefix: "alumet_csv_property_" });
  try {
    for (let seed = 1; seed <= 60; seed++) {
      const r = rng(seed);
      const registry = new MetricRegistry();
      const units = [unit("W"), unit("J", "milli"), unit("1"), unit("By", "kilo"), customUnit("x", "X")];
      const metrics: MetricId[] = [];
      for (let i = 0; i < 6; i++) {
        metrics.push(registry.register("p", {
          name: `m${i}${r() < 0.3 ? "_(x)" : ""}`,
          unit: units[i % units.length]!,
          valueType: i % 3 === 0 ? "u64" : "f64",
        }));
      }
      const resources = [Resource.localMachine(), Resource.cpuCore(1), Resource.custom("k;", 'i"d')];
      const consumers = [Consumer.localMachine(), Consumer.process(42), Consumer.custom("c\n", "é")];
      const attributeSets: Attributes[] = [{}];
      for (let i = 0; i < 5; i++) {
        const a: Record<string, string | number | boolean | bigint> = {};
        for (let j = Math.floor(r() * 3); j > 0; j--) {
          const v = r();
          a[randomString(r) || "k"] = v < 0.4
            ? randomString(r)
            : v < 0.7
            ? randomNumber(r)
            : v < 0.85
            ? true
            : 7n;
        }
        attributeSets.push(Object.freeze(a));
      }
      const base = 1_764_400_000_000_000_000n + BigInt(seed) * 1_000_000_007n;
      const batches: Batch[] = [];
      for (let n = 1 + Math.floor(r() * 5); n > 0; n--) {
        const b = new Batch(4);
        let ts = randomTimestamp(r, base);
        for (let i = Math.floor(r() * 40); i > 0; i--) {
          if (r() < 0.3) ts = randomTimestamp(r, base);
          const id = metrics[Math.floor(r() * metrics.length)]!;
          const ctx = {
            timestamp: ts,
            resource: resources[Math.floor(r() * resources.length)]!,
            consumer: consumers[Math.floor(r() * consumers.length)]!,
            attributes: attributeSets[Math.floor(r() * attributeSets.length)]!,
          };
          if ((id & 1) === 1) {
            // u64: whole numbers, and bigints beyond 2^53
            const v = r() < 0.2 ? 2n ** 53n + BigInt(Math.floor(r() * 1e9)) : Math.floor(r() * 2 ** 40);
            b.push(id as MetricId<"u64">, v, ctx);
          } else {
            b.push(id as MetricId<"f64">, randomNumber(r), ctx);
          }
        }
        batches.push(b);
      }
      const delimiter = DELIMITERS[Math.floor(r() * DELIMITERS.length)]!;
      const options: Required<CsvOutputOptions> = {
        forceFlush: r() < 0.5,
        appendUnitToMetricName: r() < 0.8,
        useUnitDisplayName: r() < 0.5,
        delimiter,
        lateDelimiter: r() < 0.3 ? delimiter : DELIMITERS[Math.floor(r() * DELIMITERS.length)]!,
      };
      const path = `${dir}/out${seed}.csv`;
      const output = new CsvOutput(path, options);
      output.open();
      for (const b of batches) output.write(b, { metric: (id) => registry.get(id) });
      output.close();
      const expected = referenceCsv(registry, batches, options);
      assert.equal(Deno.readTextFileSync(path), expected, `seed ${seed}, options ${JSON.stringify(options)}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CsvOutput formats a large batch in pieces with the same bytes as the reference", async () => {
  const dir = await Deno.makeTempDir({ prefix: "alumet_csv_property_" });
  try {
    const registry = new MetricRegistry();
    const m = registry.register("p", { name: "power", unit: unit("W"), valueType: "f64" });
    const r = rng(7);
    for (const forceFlush of [true, false]) {
      const batches: Batch[] = [];
      for (let k = 0; k < 3; k++) {
        const b = new Batch();
        for (let i = 0; i < 9000; i++) {
          b.push(m, randomNumber(r), {
            timestamp: 1_764_400_000_000_000_000n + BigInt(i * 1_000_003 + k),
            attributes: { pid: i % 97, name: `proc${i % 13}` },
          });
        }
        batches.push(b);
      }
      const path = `${dir}/big${forceFlush}.csv`;
      const output = new CsvOutput(path, { forceFlush });
      output.open();
      for (const b of batches) output.write(b, { metric: (id) => registry.get(id) });
      output.close();
      const expected = referenceCsv(registry, batches, {
        forceFlush,
        appendUnitToMetricName: true,
        useUnitDisplayName: true,
        delimiter: ";",
        lateDelimiter: ",",
      });
      assert.equal(Deno.readTextFileSync(path), expected);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

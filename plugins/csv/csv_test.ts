import assert from "node:assert/strict";
import { type PluginHarness, runOutputContract, testPlugin } from "../../src/testing/mod.ts";
import { CsvOutput, type CsvOutputOptions, csvPlugin, formatNumber, formatTimestamp } from "./mod.ts";
import { Batch } from "../../src/model/batch.ts";
import { type MetricId, MetricRegistry, type ValueType } from "../../src/model/metrics.ts";
import { Consumer, Resource } from "../../src/model/resources.ts";
import { customUnit, parseUnit, type Unit, unit } from "../../src/model/units.ts";
import type { ElementContext, Output } from "../../src/plugin/plugin.ts";
import { AlumetError } from "../../src/errors.ts";
import { OutputBlockedError } from "../../src/pipeline/output.ts";
import { checkConfigBlock } from "../../src/testing/readme.ts";
import { parseToml } from "../../src/deps.ts";

const HEADER = "metric;timestamp;value;resource_kind;resource_id;consumer_kind;consumer_id";
const T0 = 1_714_564_800_123_456_789n; // 2024-05-01T12:00:00.123456789Z

function contextOf(registry: MetricRegistry): ElementContext {
  return { metric: (id) => registry.get(id) };
}

/** The plugin's only element: its output `out` (no source, transform or task). */
function onlyOutput(h: PluginHarness): Output {
  assert.deepEqual([...h.outputs.keys()], ["out"]);
  assert.equal(h.sources.size + h.autonomous.size + h.transforms.size + h.tasks.size, 0, "only an output");
  assert.equal(h.metrics.all.length, 0, "no metric");
  return h.outputs.get("out")!.output;
}

/** Runs `fn` with a fresh temporary directory, removed afterwards. */
async function inTempDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "alumet_csv_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Writes `batches` through a new CsvOutput and returns the file's content. */
async function writeCsv(
  registry: MetricRegistry,
  batches: Batch[],
  options: CsvOutputOptions = {},
): Promise<string> {
  let text = "";
  await inTempDir(async (dir) => {
    const output = new CsvOutput(`${dir}/out.csv`, options);
    output.open();
    for (const b of batches) output.write(b, contextOf(registry));
    output.close();
    text = await Deno.readTextFile(`${dir}/out.csv`);
  });
  return text;
}

function metric<T extends ValueType>(
  registry: MetricRegistry,
  name: string,
  u: Unit,
  valueType: T,
): MetricId<T> {
  return registry.register("test", { name, unit: u, valueType });
}

Deno.test("CsvOutput writes the header and one line per point", async () => {
  const registry = new MetricRegistry();
  const energy = metric(registry, "rapl_consumed_energy", unit("J"), "f64");
  const mem = metric(registry, "mem_total", unit("By"), "u64");
  const batch = new Batch();
  batch.timestamp = T0;
  batch.push(energy, 12.5, { resource: Resource.cpuPackage(0), attributes: { domain: "package" } });
  batch.push(mem, 16_459_247_616);
  batch.push(energy, 0.75, { resource: Resource.dram(0), consumer: Consumer.process(42), timestamp: 0n });
  assert.equal(
    await writeCsv(registry, [batch]),
    `${HEADER};domain;__late_attributes\n` +
      "rapl_consumed_energy_J;2024-05-01T12:00:00.123456789Z;12.5;cpu_package;0;local_machine;;package;\n" +
      "mem_total_B;2024-05-01T12:00:00.123456789Z;16459247616;local_machine;;local_machine;;;\n" +
      "rapl_consumed_energy_J;1970-01-01T00:00:00Z;0.75;dram;0;process;42;;\n",
  );
});

Deno.test("CsvOutput appends the unit to the metric name as Alumet does", async (t) => {
  const cases: [string, Unit, CsvOutputOptions, string][] = [
    ["display name", unit("s", "micro"), {}, "m_μs"],
    ["display name of bytes", unit("By", "kilo"), {}, "m_kB"],
    // Alumet's unique name: the prefix's name, then the base unit's UCUM code (alumet/src/units.rs).
    ["unique name", unit("s", "micro"), { useUnitDisplayName: false }, "m_micros"],
    ["unique name of milliseconds", unit("s", "milli"), { useUnitDisplayName: false }, "m_millis"],
    ["unique name of kilobytes", unit("By", "kilo"), { useUnitDisplayName: false }, "m_kiloBy"],
    ["unique name of nanojoules", unit("J", "nano"), { useUnitDisplayName: false }, "m_nanoJ"],
    ["unique name of a plain unit", unit("W"), { useUnitDisplayName: false }, "m_W"],
    ["unique name of watt-hours", unit("W.h", "mega"), { useUnitDisplayName: false }, "m_megaW.h"],
    ["no suffix for the unit 1 (empty display name)", unit("1"), {}, "m"],
    ["suffix _1 for the unit 1 with UCUM codes", unit("1"), { useUnitDisplayName: false }, "m_1"],
    ["custom unit display name", customUnit("packets", "pkt"), {}, "m_pkt"],
    ["custom unit name", customUnit("packets", "pkt"), { useUnitDisplayName: false }, "m_packets"],
    ["no suffix when disabled", unit("J"), { appendUnitToMetricName: false }, "m"],
  ];
  for (const [what, u, options, expected] of cases) {
    await t.step(what, async () => {
      const registry = new MetricRegistry();
      const batch = new Batch();
      batch.push(metric(registry, "m", u, "f64"), 1, { timestamp: 0n });
      const text = await writeCsv(registry, [batch], options);
      assert.equal(text.split("\n")[1]?.split(";")[0], expected);
    });
  }
});

Deno.test("CsvOutput puts attributes without a column into __late_attributes", async () => {
  const registry = new MetricRegistry();
  const m = metric(registry, "m", unit("1"), "u64");
  const first = new Batch();
  first.push(m, 1, { timestamp: 0n, attributes: { domain: "package" } });
  const later = new Batch();
  later.push(m, 2, { timestamp: 0n, attributes: { domain: "dram", socket: 1, cpus: "0,1", up: true } });
  later.push(m, 3, { timestamp: 0n, attributes: { only: "late" } });
  assert.equal(
    await writeCsv(registry, [first, later]),
    `${HEADER};domain;__late_attributes\n` +
      "m;1970-01-01T00:00:00Z;1;local_machine;;local_machine;;package;\n" +
      "m;1970-01-01T00:00:00Z;2;local_machine;;local_machine;;dram;socket=1,cpus=0\\,1,up=true\n" +
      "m;1970-01-01T00:00:00Z;3;local_machine;;local_machine;;;only=late\n",
  );
});

Deno.test("CsvOutput sorts the attribute columns and leaves a missing attribute's cell empty", async () => {
  const registry = new MetricRegistry();
  const m = metric(registry, "m", unit("1"), "u64");
  const batch = new Batch();
  batch.timestamp = 0n;
  batch.push(m, 1, { attributes: { zone: "a", domain: "package" } });
  batch.push(m, 2, { attributes: { kind: "user" } });
  batch.push(m, 3);
  assert.equal(
    await writeCsv(registry, [batch]),
    `${HEADER};domain;kind;zone;__late_attributes\n` +
      "m;1970-01-01T00:00:00Z;1;local_machine;;local_machine;;package;;a;\n" +
      "m;1970-01-01T00:00:00Z;2;local_machine;;local_machine;;;user;;\n" +
      "m;1970-01-01T00:00:00Z;3;local_machine;;local_machine;;;;;\n",
  );
});

Deno.test("CsvOutput quotes a cell that contains the delimiter or a quote", async () => {
  const registry = new MetricRegistry();
  const m = metric(registry, "m", unit("1"), "u64");
  const batch = new Batch();
  batch.push(m, 1, {
    timestamp: 0n,
    resource: Resource.custom("disk", 'a;"b"'),
    attributes: { label: "x\ny", late: "n/a" },
  });
  const other = new Batch();
  other.push(m, 2, { timestamp: 0n, attributes: { say: 'he said "hi"; bye' } });
  assert.equal(
    await writeCsv(registry, [batch, other]),
    `${HEADER};label;late;__late_attributes\n` +
      'm;1970-01-01T00:00:00Z;1;disk;"a;""b""";local_machine;;"x\ny";n/a;\n' +
      'm;1970-01-01T00:00:00Z;2;local_machine;;local_machine;;;;"say=he said ""hi""; bye"\n',
  );
});

Deno.test("CsvOutput quotes numbers and timestamps when the delimiter can occur in them", async () => {
  const registry = new MetricRegistry();
  const m = metric(registry, "m", unit("1"), "f64");
  const batch = new Batch();
  batch.push(m, 2.5, { timestamp: 1_500_000_000n });
  assert.equal(
    await writeCsv(registry, [batch], { delimiter: "." }),
    "metric.timestamp.value.resource_kind.resource_id.consumer_kind.consumer_id.__late_attributes\n" +
      'm."1970-01-01T00:00:01.5Z"."2.5".local_machine..local_machine..\n',
  );
});

Deno.test("CsvOutput writes a u64 beyond 2^53 exactly", async () => {
  const registry = new MetricRegistry();
  const m = metric(registry, "counter", unit("1"), "u64");
  const batch = new Batch();
  batch.push(m, 2n ** 64n - 1n, { timestamp: 0n });
  batch.push(m, 2n ** 53n + 1n, { timestamp: 0n });
  const lines = (await writeCsv(registry, [batch])).split("\n");
  assert.equal(lines[1]?.split(";")[2], "18446744073709551615");
  assert.equal(lines[2]?.split(";")[2], "9007199254740993");
});

Deno.test("CsvOutput without forceFlush writes everything on close", async () => {
  await inTempDir(async (dir) => {
    const registry = new MetricRegistry();
    const m = metric(registry, "m", unit("W"), "f64");
    const path = `${dir}/out.csv`;
    const output = new CsvOutput(path, { forceFlush: false });
    output.open();
    const batch = new Batch();
    for (let i = 0; i < 10; i++) batch.push(m, i, { timestamp: BigInt(i) });
    output.write(batch, contextOf(registry));
    output.write(batch, contextOf(registry));
    assert.equal((await Deno.stat(path)).size, 0, "nothing is written before 64 KiB are pending");
    output.close();
    const lines = (await Deno.readTextFile(path)).split("\n");
    assert.equal(lines.length, 1 + 20 + 1);
    assert.equal(lines[20], "m_W;1970-01-01T00:00:00.000000009Z;9;local_machine;;local_machine;;");
    assert.equal(lines[21], "");
  });
});

Deno.test("CsvOutput without forceFlush writes once about 64 KiB are pending", async () => {
  await inTempDir(async (dir) => {
    const registry = new MetricRegistry();
    const m = metric(registry, "m", unit("W"), "f64");
    const path = `${dir}/out.csv`;
    const output = new CsvOutput(path, { forceFlush: false });
    output.open();
    const batch = new Batch();
    for (let i = 0; i < 2000; i++) batch.push(m, i, { timestamp: 0n }); // ~100 KiB
    output.write(batch, contextOf(registry));
    assert.ok((await Deno.stat(path)).size > 64 * 1024);
    output.close();
    assert.equal((await Deno.readTextFile(path)).split("\n").length, 1 + 2000 + 1);
  });
});

Deno.test("CsvOutput with forceFlush writes each batch when it arrives", async () => {
  await inTempDir(async (dir) => {
    const registry = new MetricRegistry();
    const m = metric(registry, "m", unit("W"), "f64");
    const path = `${dir}/out.csv`;
    const output = new CsvOutput(path);
    output.open();
    assert.equal(await Deno.readTextFile(path), "", "open creates the file");
    const empty = new Batch();
    output.write(empty, contextOf(registry));
    assert.equal(await Deno.readTextFile(path), "", "no header before a non-empty batch");
    const batch = new Batch();
    batch.push(m, 1, { timestamp: 0n });
    output.write(batch, contextOf(registry));
    assert.equal((await Deno.readTextFile(path)).split("\n").length, 3);
    output.close();
    output.close(); // idempotent
  });
});

Deno.test("CsvOutput opened again after close appends, without a second header", async () => {
  await inTempDir(async (dir) => {
    const registry = new MetricRegistry();
    const m = metric(registry, "m", unit("W"), "f64");
    const path = `${dir}/out.csv`;
    await Deno.writeTextFile(path, "old content\n");
    const output = new CsvOutput(path);
    const batch = new Batch();
    batch.push(m, 1, { timestamp: 0n });
    output.open();
    output.write(batch, contextOf(registry));
    output.close();
    output.open();
    output.write(batch, contextOf(registry));
    output.close();
    const row = "m_W;1970-01-01T00:00:00Z;1;local_machine;;local_machine;;\n";
    assert.equal(await Deno.readTextFile(path), `${HEADER};__late_attributes\n${row}${row}`);
  });
});

Deno.test("kernel_cpu_time in milliseconds is kernel_cpu_time_millis with use_unit_display_name = false, as in Alumet", async () => {
  const registry = new MetricRegistry();
  const batch = new Batch();
  batch.push(metric(registry, "kernel_cpu_time", unit("s", "milli"), "u64"), 10, { timestamp: 0n });
  const text = await writeCsv(registry, [batch], { useUnitDisplayName: false });
  assert.equal(
    text.split("\n")[1],
    "kernel_cpu_time_millis;1970-01-01T00:00:00Z;10;local_machine;;local_machine;;",
  );
});

/**
 * Reads a file this output wrote: RFC 4180 cells (quoted cells, doubled quotes, line breaks inside quotes), and
 * the `__late_attributes` cell split on unescaped late delimiters, `\x` read as `x`, each pair at its first `=`.
 */
function readCsv(text: string, delimiter: string, late: string): Record<string, string>[] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = "";
  let quoted = false;
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (cell += '"'), (i += 2);
      else if (c === '"') (quoted = false), i++;
      else (cell += c), i++;
    } else if (c === '"' && cell === "") (quoted = true), i++;
    else if (c === delimiter) row.push(cell), (cell = ""), i++;
    else if (c === "\n") row.push(cell), rows.push(row), (row = []), (cell = ""), i++;
    else (cell += c), i++;
  }
  assert.equal(cell + row.join(""), "", "the file ends with a line break");
  const [header, ...lines] = rows;
  return lines.map((cells) => {
    assert.equal(cells.length, header!.length, `one cell per column: ${JSON.stringify(cells)}`);
    const out: Record<string, string> = {};
    header!.forEach((h, k) => {
      if (h !== "__late_attributes") {
        if (cells[k] !== "") out[h] = cells[k]!;
        return;
      }
      let pair = "";
      const pairs: string[] = [];
      const v = cells[k]!;
      for (let j = 0; j < v.length; j++) {
        if (v[j] === "\\") pair += v[++j] ?? "";
        else if (v[j] === late) pairs.push(pair), (pair = "");
        else pair += v[j];
      }
      if (v !== "") pairs.push(pair);
      for (const p of pairs) out[`late:${p.slice(0, p.indexOf("="))}`] = p.slice(p.indexOf("=") + 1);
    });
    return out;
  });
}

Deno.test("An attribute value with the escape character, quotes or delimiters is written unambiguously and reads back", async (t) => {
  const nasty = [
    "C:\\temp\\",
    "ends with a backslash \\",
    "a\\,b",
    "x=y",
    'say "hi"',
    "semi;colon",
    "comma,here",
    "pipe|and\ttab",
    "two\nlines",
    "\\\\",
  ];
  for (const [delimiter, late] of [[";", ","], [",", ","], [",", ";"], ["\t", "|"]] as const) {
    await t.step(
      `csv_delimiter ${JSON.stringify(delimiter)}, csv_late_delimiter ${JSON.stringify(late)}`,
      async () => {
        const registry = new MetricRegistry();
        const m = metric(registry, "m", unit("1"), "u64");
        const first = new Batch();
        first.push(m, 0, { timestamp: 0n, attributes: { col: "plain" } });
        const batch = new Batch();
        nasty.forEach((v, i) =>
          batch.push(m, i + 1, { timestamp: 0n, attributes: { col: v, late: v, other: i } })
        );
        const rows = readCsv(
          await writeCsv(registry, [first, batch], { delimiter, lateDelimiter: late }),
          delimiter,
          late,
        );
        assert.equal(rows.length, nasty.length + 1);
        nasty.forEach((v, i) => {
          assert.deepEqual(rows[i + 1], {
            metric: "m",
            timestamp: "1970-01-01T00:00:00Z",
            value: String(i + 1),
            resource_kind: "local_machine",
            consumer_kind: "local_machine",
            col: v,
            "late:late": v,
            "late:other": String(i),
          }, `value ${JSON.stringify(v)}`);
        });
      },
    );
  }
});

Deno.test("A second csv output on the same file refuses to start and leaves the first one's file intact", async () => {
  await inTempDir(async (dir) => {
    const registry = new MetricRegistry();
    const m = metric(registry, "m", unit("W"), "f64");
    const path = `${dir}/out.csv`;
    const first = new CsvOutput(path);
    first.open();
    const batch = new Batch();
    batch.push(m, 1, { timestamp: 0n });
    first.write(batch, contextOf(registry));
    const before = await Deno.readTextFile(path);
    const second = new CsvOutput(path);
    assert.throws(() => second.open(), (e: unknown) => {
      assert.ok(e instanceof AlumetError);
      assert.match(e.message, /^Cannot write csv output ".*out\.csv": another agent is writing it/);
      assert.doesNotMatch(e.message, /\n/, "one line");
      return true;
    });
    assert.equal(await Deno.readTextFile(path), before, "not truncated");
    first.write(batch, contextOf(registry));
    first.close();
    assert.equal((await Deno.readTextFile(path)).split("\n").length, 4, "the first one went on writing");
    // Once the first one is done, the file can be written again.
    second.open();
    second.close();
    assert.equal(await Deno.readTextFile(path), "");
  });
});

Deno.test("A write on a full device throws an OutputBlockedError (ENOSPC): the output is paused, not failed", () => {
  try {
    Deno.statSync("/dev/full");
  } catch {
    // deno-lint-ignore no-console
    console.warn("ignored: no /dev/full here");
    return;
  }
  const registry = new MetricRegistry();
  const batch = new Batch();
  batch.push(metric(registry, "m", unit("W"), "f64"), 1, { timestamp: 0n });
  const output = new CsvOutput("/dev/full");
  output.open();
  try {
    assert.throws(() => output.write(batch, contextOf(registry)), (e: unknown) => {
      assert.ok(e instanceof OutputBlockedError, String(e));
      assert.equal(e.code, "ENOSPC");
      assert.match(e.message, /^Cannot write csv output "\/dev\/full": No space left on device/);
      return true;
    });
  } finally {
    output.close();
  }
});

Deno.test({
  name: "A close on a full device says how many points it could not write, not counting the header",
  // A close that cannot flush keeps the file open so that the pipeline can retry it: /dev/full stays open.
  sanitizeResources: false,
}, () => {
  try {
    Deno.statSync("/dev/full");
  } catch {
    // deno-lint-ignore no-console
    console.warn("ignored: no /dev/full here");
    return;
  }
  const registry = new MetricRegistry();
  const m = metric(registry, "m", unit("W"), "f64");
  const batch = new Batch();
  for (let i = 0; i < 3; i++) batch.push(m, i, { timestamp: BigInt(i) });
  const output = new CsvOutput("/dev/full", { forceFlush: false });
  output.open();
  output.write(batch, contextOf(registry)); // kept pending, with the header
  try {
    assert.throws(() => output.close(), (e: unknown) => {
      assert.ok(e instanceof OutputBlockedError, String(e));
      assert.equal(e.code, "ENOSPC");
      assert.equal(e.unwrittenPoints, 3, "3 points; the header line is not a point");
      return true;
    });
  } finally {
    assert.throws(() => output.close(), OutputBlockedError, "still full");
  }
});

Deno.test("CsvOutput refuses to write before open", () => {
  const registry = new MetricRegistry();
  const batch = new Batch();
  batch.push(metric(registry, "m", unit("W"), "f64"), 1);
  const output = new CsvOutput("never-opened.csv");
  assert.throws(() => output.write(batch, contextOf(registry)), /not open/);
});

Deno.test("formatNumber writes numbers as Rust's f64 Display does", () => {
  const cases: [number, string][] = [
    [0, "0"],
    [-0, "-0"],
    [1, "1"],
    [12.5, "12.5"],
    [0.1 + 0.2, "0.30000000000000004"],
    [1e-6, "0.000001"],
    [1.5e-7, "0.00000015"],
    [-2.5e-10, "-0.00000000025"],
    [1e21, "1000000000000000000000"],
    [1.2345e22, "12345000000000000000000"],
    [-1e21, "-1000000000000000000000"],
    [Number.MAX_SAFE_INTEGER, "9007199254740991"],
    [Infinity, "inf"],
    [-Infinity, "-inf"],
    [NaN, "NaN"],
  ];
  for (const [v, expected] of cases) assert.equal(formatNumber(v), expected, `formatNumber(${v})`);
});

Deno.test("formatTimestamp trims trailing zeros of the fraction as Alumet does", () => {
  assert.equal(formatTimestamp(T0), "2024-05-01T12:00:00.123456789Z");
  assert.equal(formatTimestamp(1_714_564_800_100_000_000n), "2024-05-01T12:00:00.1Z");
  assert.equal(formatTimestamp(1_714_564_800_000_001_000n), "2024-05-01T12:00:00.000001Z");
  assert.equal(formatTimestamp(1_714_564_800_000_000_000n), "2024-05-01T12:00:00Z");
  assert.equal(formatTimestamp(0n), "1970-01-01T00:00:00Z");
});

Deno.test("csvPlugin config schema", async (t) => {
  const defaults = csvPlugin.defaultConfig();
  const parse = (overrides: Record<string, unknown>) =>
    csvPlugin.configSchema.safeParse({ ...defaults, ...overrides });
  const expected = {
    output_path: "alumet-output.csv",
    force_flush: true,
    append_unit_to_metric_name: true,
    use_unit_display_name: true,
    csv_delimiter: ";",
    csv_late_delimiter: ",",
  };

  await t.step("accepts the default config", () => {
    assert.deepEqual(parse({}).data, expected);
  });
  await t.step("derives the defaults from the schema, in the order config regen writes them", () => {
    assert.deepEqual(Object.entries(defaults), Object.entries(expected));
    assert.deepEqual(csvPlugin.configSchema.parse({}), expected, "the schema alone gives every default");
  });
  await t.step("accepts a one-character delimiter beyond ASCII", () => {
    assert.equal(parse({ csv_delimiter: "¦" }).success, true);
  });
  await t.step("accepts a csv_delimiter equal to csv_late_delimiter, as Alumet does", () => {
    assert.equal(parse({ csv_delimiter: ",", csv_late_delimiter: "," }).success, true);
  });
  const rejected: [string, Record<string, unknown>, string][] = [
    ["a two-character delimiter", { csv_delimiter: ";;" }, "csv_delimiter"],
    ["an empty delimiter", { csv_delimiter: "" }, "csv_delimiter"],
    ["a quote as late delimiter", { csv_late_delimiter: '"' }, "csv_late_delimiter"],
    ["a line break as delimiter", { csv_delimiter: "\n" }, "csv_delimiter"],
    ["an empty output path", { output_path: "" }, "output_path"],
    ["a non-boolean force_flush", { force_flush: "yes" }, "force_flush"],
    ["an unknown key", { csv_escaped_quote: '""' }, ""],
  ];
  for (const [what, overrides, key] of rejected) {
    await t.step(`rejects ${what}`, () => {
      const result = parse(overrides);
      assert.equal(result.success, false);
      assert.equal(result.error?.issues[0]?.path.join("."), key);
    });
  }
});

Deno.test("csv README shows the default config", async () => {
  checkConfigBlock(await Deno.readTextFile(new URL("./README.md", import.meta.url)), csvPlugin);
});

Deno.test("csvPlugin start creates the file and adds the output out", async () => {
  await inTempDir(async (dir) => {
    const path = `${dir}/out.csv`;
    await Deno.writeTextFile(path, "stale content\n");
    await using h = await testPlugin(csvPlugin, { output_path: path });
    const output = onlyOutput(h);
    assert.equal(output.describe?.(), path);
    await h.stop();
    assert.equal(await Deno.readTextFile(path), "", "an empty run leaves an empty file");
  });
});

Deno.test("the csv output describes its path as it was given, relative or not", () => {
  assert.equal(new CsvOutput("out.csv").describe(), "out.csv");
  assert.equal(new CsvOutput("results/run 1.csv").describe(), "results/run 1.csv");
  assert.equal(new CsvOutput("/tmp/a.csv").describe(), "/tmp/a.csv");
});

Deno.test("csvPlugin: --output-file sets output_path", () => {
  assert.equal(csvPlugin.outputFileKey, "output_path");
  assert.ok(Object.hasOwn(csvPlugin.defaultConfig(), csvPlugin.outputFileKey));
});

Deno.test("csvPlugin start fails with the path when the file cannot be opened", async () => {
  await inTempDir(async (dir) => {
    const path = `${dir}/no/such/dir/out.csv`;
    await assert.rejects(
      async () => await testPlugin(csvPlugin, { output_path: path }),
      (e: unknown) => {
        assert.ok(e instanceof AlumetError);
        assert.ok(e.message.startsWith(`Cannot open csv output "${path}": `), e.message);
        assert.match(e.message, /No such file or directory/);
        return true;
      },
    );
  });
});

// Golden scenarios: testdata/<case>/input.json goes through the plugin, the file must equal expected.csv.

interface ScenarioPoint {
  metric: string;
  timestamp: string;
  value: number | string;
  resource?: [string, string];
  consumer?: [string, string];
  attributes?: Record<string, string | number | boolean>;
}
interface Scenario {
  /** The `[plugins.csv]` keys; taken from `alumet-config.toml` instead when the folder has one. */
  config?: Record<string, unknown>;
  metrics: { name: string; unit: string; value_type: ValueType; kind?: "gauge" | "delta" | "counter" }[];
  batches: ScenarioPoint[][];
}

const TESTDATA = new URL("./testdata/", import.meta.url);

for (
  const entry of [...Deno.readDirSync(TESTDATA)].filter((e) => e.isDirectory).sort((a, b) =>
    a.name < b.name ? -1 : 1
  )
) {
  Deno.test(`csvPlugin writes the golden file of testdata/${entry.name}`, async () => {
    const folder = new URL(`${entry.name}/`, TESTDATA);
    const scenario: Scenario = JSON.parse(await Deno.readTextFile(new URL("input.json", folder)));
    let config = scenario.config ?? {};
    try {
      // An Alumet config file, as Alumet documents or ships it: its [plugins.csv] section, less the agent's own
      // `enable` key (which the agent's config loader handles), must be accepted with Alumet's meaning.
      const toml = parseToml(await Deno.readTextFile(new URL("alumet-config.toml", folder)));
      const { enable: _enable, ...section } = (toml.plugins as Record<string, Record<string, unknown>>).csv!;
      const parsed = csvPlugin.configSchema.safeParse(section);
      assert.ok(
        parsed.success,
        `testdata/${entry.name}/alumet-config.toml is rejected: ${parsed.error?.message}`,
      );
      config = section;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    const expected = await Deno.readTextFile(new URL("expected.csv", folder));
    const registry = new MetricRegistry();
    for (const m of scenario.metrics) {
      registry.register("test", {
        name: m.name,
        unit: parseUnit(m.unit),
        valueType: m.value_type,
        ...(m.kind ? { kind: m.kind } : {}),
      });
    }
    const batches = scenario.batches.map((points) => {
      const batch = new Batch();
      for (const p of points) {
        const id = registry.byName(p.metric)?.id;
        if (id === undefined) throw new Error(`Unknown metric ${p.metric} in testdata/${entry.name}`);
        batch.push(id, typeof p.value === "string" ? BigInt(p.value) : p.value, {
          timestamp: BigInt(p.timestamp),
          resource: p.resource ? Resource.custom(...p.resource) : Resource.localMachine(),
          consumer: p.consumer ? Consumer.custom(...p.consumer) : Consumer.localMachine(),
          attributes: p.attributes ?? {},
        });
      }
      return batch;
    });
    await inTempDir(async (dir) => {
      const path = `${dir}/out.csv`;
      await using h = await testPlugin(csvPlugin, { ...config, output_path: path });
      const output = onlyOutput(h);
      for (const b of batches) await output.write(b, contextOf(registry));
      await h.stop();
      assert.equal(await Deno.readTextFile(path), expected);
    });
  });
}

Deno.test("csv honours the output contract", async (t) => {
  const dir = await Deno.makeTempDir();
  try {
    await runOutputContract(t, { plugin: csvPlugin, config: { output_path: `${dir}/c.csv` }, output: "out" });
    const text = await Deno.readTextFile(`${dir}/c.csv`);
    assert.equal(text.match(/^contract_/gm)?.length, 5, text); // the 5 sample points, one with a quoted newline
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

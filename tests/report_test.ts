/**
 * `alumet report`: the builder on recorded runs (csv in several formats, sqlite), the CLI's exit codes and
 * messages, the downsampling of a 500 000-row run, and the page as headless chromium draws it.
 *
 * The fixture `testdata/report/run.csv` is what {@linkcode writeFixtureRun} writes through the real csv output;
 * `UPDATE_FIXTURES=1 deno test -A tests/report_test.ts` writes it again.
 */
import assert from "node:assert/strict";
import { buildReport, defaultOutput } from "../src/report/mod.ts";
import { decodePng } from "../src/report/deps.ts";
import { PALETTE } from "../src/report/analyze.ts";
import { CsvOutput, type CsvOutputOptions } from "../plugins/csv/mod.ts";
import { SqliteOutput } from "../plugins/sqlite/mod.ts";
import { Batch } from "../src/model/batch.ts";
import { MetricRegistry } from "../src/model/metrics.ts";
import { Consumer, Resource } from "../src/model/resources.ts";
import { unit } from "../src/model/units.ts";
import { needs, testWith } from "../src/testing/needs.ts";
import { writeLargeCsv } from "../bench/report.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const FIXTURE = `${ROOT}/tests/testdata/report/run.csv`;
const MAIN = `${ROOT}/src/agent/main.ts`;

/** Seconds of the fixture run, one batch per second. */
const SECONDS = 120;
const START_NS = 1_714_564_800_000_000_000n; // 2024-05-01T12:00:00Z
/** Shares of package energy given to the three processes; the rest is unattributed. */
const SHARES = { "101": 0.30, "102": 0.18, "103": 0.12 } as const;

/** The package power of socket `s` at second `i` (W): what the fixture's energy deltas integrate. */
const packageWatts = (s: number, i: number) => 30 + 10 * s + 8 * Math.sin(i / 9 + s);
const dramWatts = (i: number) => 5 + Math.cos(i / 7);

/**
 * Writes the fixture run into `output`: RAPL package energy of two sockets and their `package_total`, dram of
 * socket 0, `attributed_energy` of package 0 to three processes (30, 18, 12 %) and `unattributed` (40 %) from
 * the second interval on (its attributes are late ones in a csv), the processes' cpu_percent (total and user)
 * and memory_usage (resident), and the machine's kernel_cpu_time. Returns the package_total joules written.
 */
function writeFixtureRun(
  output: CsvOutput | SqliteOutput,
): { packageJoules: number; package0Joules: number } {
  const registry = new MetricRegistry();
  const energy = registry.register("rapl", {
    name: "rapl_consumed_energy",
    unit: unit("J"),
    valueType: "f64",
    kind: "delta",
  });
  const attributed = registry.register("energy-attribution", {
    name: "attributed_energy",
    unit: unit("J"),
    valueType: "f64",
    kind: "delta",
  });
  const cpu = registry.register("procfs", { name: "cpu_percent", unit: unit("%"), valueType: "f64" });
  const mem = registry.register("procfs", { name: "memory_usage", unit: unit("By"), valueType: "u64" });
  const kernel = registry.register("procfs", {
    name: "kernel_cpu_time",
    unit: unit("s", "milli"),
    valueType: "u64",
    kind: "delta",
  });
  const ctx = { metric: (id: number) => registry.get(id) };
  let packageJoules = 0, package0Joules = 0;
  output.open();
  for (let i = 0; i < SECONDS; i++) {
    const b = new Batch();
    const timestamp = START_NS + BigInt(i) * 1_000_000_000n;
    let total = 0;
    for (const s of [0, 1]) {
      const j = packageWatts(s, i);
      total += j;
      if (s === 0) package0Joules += j;
      b.push(energy, j, { timestamp, resource: Resource.cpuPackage(s), attributes: { domain: "package" } });
    }
    packageJoules += total;
    b.push(energy, total, { timestamp, attributes: { domain: "package_total" } });
    b.push(energy, dramWatts(i), { timestamp, resource: Resource.dram(0), attributes: { domain: "dram" } });
    if (i > 0) {
      const p0 = packageWatts(0, i);
      const attrs = { domain: "package", source_metric: "rapl_consumed_energy", method: "cpu_time_share" };
      let given = 0;
      for (const [pid, share] of Object.entries(SHARES)) {
        given += p0 * share;
        b.push(attributed, p0 * share, {
          timestamp,
          resource: Resource.cpuPackage(0),
          consumer: Consumer.process(Number(pid)),
          attributes: attrs,
        });
      }
      b.push(attributed, p0 - given, {
        timestamp,
        resource: Resource.cpuPackage(0),
        consumer: Consumer.custom("unattributed", ""),
        attributes: attrs,
      });
    }
    for (const [k, pid] of ["101", "102", "103"].entries()) {
      const consumer = Consumer.process(Number(pid));
      const pct = 100 * Object.values(SHARES)[k]! * (1 + 0.3 * Math.sin(i / 5 + k));
      b.push(cpu, pct, { timestamp, consumer, attributes: { kind: "total" } });
      b.push(cpu, pct * 0.8, { timestamp, consumer, attributes: { kind: "user" } });
      b.push(mem, (200 + 150 * k + i) * 2 ** 20, { timestamp, consumer, attributes: { kind: "resident" } });
    }
    b.push(kernel, 900 + i % 50, { timestamp, attributes: { cpu_state: "user" } });
    output.write(b, ctx);
  }
  output.close();
  return { packageJoules, package0Joules };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "alumet-report-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function expected(): { packageJoules: number; package0Joules: number } {
  let packageJoules = 0, package0Joules = 0;
  for (let i = 0; i < SECONDS; i++) {
    packageJoules += packageWatts(0, i) + packageWatts(1, i);
    package0Joules += packageWatts(0, i);
  }
  return { packageJoules, package0Joules };
}

const near = (a: number, b: number, rel = 1e-9) => Math.abs(a - b) <= rel * Math.max(1, Math.abs(b));

if (Deno.env.get("UPDATE_FIXTURES") === "1") {
  await Deno.mkdir(`${ROOT}/tests/testdata/report`, { recursive: true });
  writeFixtureRun(new CsvOutput(FIXTURE));
}

/** Checks what the report found in a run written by {@linkcode writeFixtureRun}. */
function checkFixtureModel(model: Awaited<ReturnType<typeof buildReport>>["model"]): void {
  const want = expected();
  assert.equal(model.malformed, 0);
  assert.equal(model.duration, SECONDS - 1);
  const pkg = model.sources.find((s) => s.domain === "package")!;
  assert.ok(near(pkg.joules, want.packageJoules, 1e-6), `package ${pkg.joules} J ≠ ${want.packageJoules} J`);
  assert.match(pkg.what, /package_total/);
  assert.ok(model.sources.some((s) => s.domain === "dram"));
  // Mean power: the deltas after the first, over the 119 s span.
  const meanWant = (want.packageJoules - packageWatts(0, 0) - packageWatts(1, 0)) / (SECONDS - 1);
  assert.ok(near(pkg.meanWatts, meanWant, 1e-6), `${pkg.meanWatts} W ≠ ${meanWant} W`);
  // Attribution: 30/18/12 % and 40 % unattributed of package 0 from the second interval on.
  assert.equal(model.attributions.length, 1);
  const a = model.attributions[0]!;
  assert.equal(a.source, "rapl_consumed_energy package");
  assert.equal(a.consumers, 3);
  const attributedTotal = want.package0Joules - packageWatts(0, 0);
  assert.ok(near(a.total, attributedTotal, 1e-6));
  assert.deepEqual(a.rows.map((r) => r.consumer), ["process 101", "process 102", "process 103"]);
  for (const [k, share] of Object.values(SHARES).entries()) {
    assert.ok(near(a.rows[k]!.joules / a.total, share, 1e-6), `share of ${a.rows[k]!.consumer}`);
  }
  assert.ok(near(a.unattributed / a.total, 0.4, 1e-6));
  assert.equal(model.powerCharts.length, 1);
  const power = model.powerCharts[0]!;
  assert.equal(power.kind, "lines");
  if (power.kind === "lines") {
    assert.equal(power.lines.length, 4); // package 0, package 1, package_total, dram
    // The power lines are the deltas ÷ 1 s: the first interval has no power point.
    const l = power.lines.find((x) => x.label === "package · cpu_package 0")!;
    assert.equal(l.t.length, SECONDS - 1);
    assert.ok(near(l.v[10]!, packageWatts(0, 11), 1e-3));
  }
  assert.deepEqual(model.programCharts.map((c) => c.title.split(" ")[0]), ["CPU", "Memory"]);
  const cpu = model.programCharts[0]!;
  if (cpu.kind === "lines") {
    // kind=total is preferred over user: one line per process.
    assert.deepEqual(cpu.lines.map((l) => l.label).sort(), [
      "machine · process 101 · total",
      "machine · process 102 · total",
      "machine · process 103 · total",
    ]);
  }
  const counts = Object.fromEntries(model.metrics.map((m) => [m.name, m.points]));
  assert.deepEqual(counts, {
    attributed_energy: 4 * (SECONDS - 1),
    cpu_percent: 6 * SECONDS,
    kernel_cpu_time: SECONDS,
    memory_usage: 3 * SECONDS,
    rapl_consumed_energy: 4 * SECONDS,
  });
}

Deno.test("report of the fixture csv: energy per source, attribution shares, power and program charts", async () => {
  await withDir(async (dir) => {
    const out = `${dir}/page.html`;
    const r = await buildReport(FIXTURE, { output: out });
    assert.equal(r.path, out);
    checkFixtureModel(r.model);
    const a0 = r.model.attributions[0]!;
    const html = await Deno.readTextFile(out);
    assert.equal(r.bytes, new TextEncoder().encode(html).length);
    assert.doesNotMatch(html, /<(script|link|img|iframe)[^>]+(src|href)=|@import|url\(/); // nothing fetched
    assert.match(html, /uPlot 1\.6\.32/);
    // --top 1: the two others are summed as `other`; --top 2: the third is named, not `other (1 consumer)`.
    const top1 = (await buildReport(FIXTURE, { output: out, top: 1 })).model.attributions[0]!;
    assert.deepEqual(top1.rows.map((r) => r.consumer), ["process 101", "other (2 consumers)"]);
    assert.ok(near(top1.rows[1]!.joules / top1.total, SHARES["102"] + SHARES["103"], 1e-6));
    const top2 = (await buildReport(FIXTURE, { output: out, top: 2 })).model.attributions[0]!;
    assert.deepEqual(top2.rows.map((r) => r.consumer), ["process 101", "process 102", "process 103"]);
    // The bars of 3.587 kJ in all are in kJ.
    const bars = r.model.consumerCharts[0]!;
    assert.ok(bars.kind === "bars");
    assert.equal(bars.unit, "kJ");
    assert.ok(near(bars.values[0]!, a0.rows[0]!.joules / 1e3, 1e-3), `${bars.values[0]} kJ`);
    assert.match(
      html,
      /Measured by rapl_consumed_energy package on cpu_package 0 at the 119 attributed timestamps: 3.587 kJ; attributed \+ unattributed: 3.587 kJ \(0.00 %\)/,
    );
  });
});

Deno.test("report reads every csv output format: delimiters, late delimiter, unit suffixes or none", async (t) => {
  const variants: [string, CsvOutputOptions][] = [
    ["comma delimiter, ';' late delimiter", { delimiter: ",", lateDelimiter: ";" }],
    ["tab delimiter, '|' late delimiter", { delimiter: "\t", lateDelimiter: "|" }],
    ["no unit suffix", { appendUnitToMetricName: false }],
    ["Alumet's unique unit names", { useUnitDisplayName: false }],
    ["same delimiter for both (quoted late cell)", { delimiter: ";", lateDelimiter: ";" }],
  ];
  await withDir(async (dir) => {
    for (const [name, options] of variants) {
      await t.step(name, async () => {
        const path = `${dir}/run.csv`;
        writeFixtureRun(new CsvOutput(path, options));
        checkFixtureModel((await buildReport(path)).model);
      });
    }
  });
});

Deno.test("report reads a database of the sqlite output", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/run.sqlite`;
    writeFixtureRun(new SqliteOutput(path));
    const r = await buildReport(path);
    assert.equal(r.path, `${dir}/run.html`);
    assert.equal(r.model.format, "sqlite");
    checkFixtureModel(r.model);
  });
});

Deno.test("defaultOutput replaces the extension with .html", () => {
  assert.equal(defaultOutput("a/run.csv"), "a/run.html");
  assert.equal(defaultOutput("run"), "run.html");
  assert.equal(defaultOutput("a.d/run"), "a.d/run.html");
  assert.equal(defaultOutput(".hidden"), ".hidden.html");
});

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function alumet(args: string[], cwd: string): Promise<Result> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--allow-all", MAIN, ...args],
    cwd,
    env: { ALUMET_LOG: "warn" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("alumet report: a run without energy gives a page that says so, exit 0", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/procfs only.csv`,
      "metric;timestamp;value;resource_kind;resource_id;consumer_kind;consumer_id;kind;__late_attributes\n" +
        Array.from(
          { length: 30 },
          (_, i) =>
            `cpu_percent_%;2024-05-01T12:00:${String(i).padStart(2, "0")}Z;${
              10 + i
            };local_machine;;process;42;total;\n` +
            `memory_usage_B;2024-05-01T12:00:${String(i).padStart(2, "0")}Z;${
              1e6 + i
            };local_machine;;process;42;resident;\n`,
        )
          .join(""),
    );
    const r = await alumet(["report", "procfs only.csv"], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), "procfs only.html");
    const html = await Deno.readTextFile(`${dir}/procfs only.html`);
    assert.match(html, /This run has no energy series/);
    assert.match(html, /No attribution in this run/);
    assert.match(html, /CPU of the program/);
    assert.match(html, /Memory of the program/);
  });
});

Deno.test("alumet report: bad inputs give one line and exit code 2; malformed rows are skipped and counted", async (t) => {
  await withDir(async (dir) => {
    const noStack = (r: Result) => {
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.doesNotMatch(r.stderr, /\bat .*:\d+:\d+|unexpected error/);
      assert.equal(r.stdout, "");
    };
    await t.step("missing file", async () => {
      const r = await alumet(["report", "nope.csv"], dir);
      noStack(r);
      assert.match(r.stderr, /^alumet: Cannot read nope\.csv: no such file/);
    });
    await t.step("a directory", async () => {
      await Deno.mkdir(`${dir}/d`);
      const r = await alumet(["report", "d"], dir);
      noStack(r);
      assert.match(r.stderr, /it is a directory/);
    });
    await t.step("an empty file", async () => {
      await Deno.writeTextFile(`${dir}/empty.csv`, "");
      const r = await alumet(["report", "empty.csv"], dir);
      noStack(r);
      assert.match(r.stderr, /empty\.csv is empty/);
    });
    await t.step("a csv that is not the csv output's", async () => {
      await Deno.writeTextFile(`${dir}/other.csv`, "time,watts\n1,2\n");
      const r = await alumet(["report", "other.csv"], dir);
      noStack(r);
      assert.match(
        r.stderr,
        /other\.csv is not a file of the csv output: its first line should be the header/,
      );
    });
    await t.step("a binary file", async () => {
      await Deno.writeFile(`${dir}/bin.dat`, crypto.getRandomValues(new Uint8Array(4096)));
      const r = await alumet(["report", "bin.dat"], dir);
      noStack(r);
      assert.match(r.stderr, /is not a file of the csv output/);
    });
    await t.step("another application's sqlite database", async () => {
      const { DatabaseSync } = await import("node:sqlite");
      const db = new DatabaseSync(`${dir}/app.sqlite`);
      db.exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)");
      db.close();
      const r = await alumet(["report", "app.sqlite"], dir);
      noStack(r);
      assert.match(r.stderr, /app\.sqlite is an SQLite database, but not one of the sqlite output/);
    });
    await t.step("the output would overwrite the input", async () => {
      // A valid run: the old code read it, then wrote its page over it.
      const run = HEAD + row("rapl_consumed_energy_J", 0, 10, PKG0, "package");
      await Deno.writeTextFile(`${dir}/in.csv`, run);
      await Deno.writeTextFile(`${dir}/x.html`, run);
      await Deno.symlink(`${dir}/in.csv`, `${dir}/link.csv`);
      for (
        const [args, file] of [
          [["-o", "in.csv", "in.csv"], "in.csv"],
          [["-o", "./link.csv", "in.csv"], "in.csv"],
          [["x.html"], "x.html"],
        ] as const
      ) {
        const r = await alumet(["report", ...args], dir);
        noStack(r);
        assert.match(r.stderr, new RegExp(`^alumet: Refusing to write the report over its input ${file}`));
      }
      assert.equal(await Deno.readTextFile(`${dir}/in.csv`), run);
      assert.equal(await Deno.readTextFile(`${dir}/x.html`), run);
    });
    await t.step("usage errors", async () => {
      noStack(await alumet(["report"], dir));
      noStack(await alumet(["report", "a.csv", "b.csv"], dir));
      const r = await alumet(["report", "--top", "0", "x.csv"], dir);
      noStack(r);
      assert.match(r.stderr, /--top needs a positive integer/);
      // --top without its number: the FILE became its value.
      const r2 = await alumet(["report", "--top", "x.csv"], dir);
      noStack(r2);
      assert.match(r2.stderr, /--top needs a positive integer, not "x\.csv" \(usage: alumet report/);
    });
    await t.step("malformed rows are skipped and counted in the page", async () => {
      const head =
        "metric;timestamp;value;resource_kind;resource_id;consumer_kind;consumer_id;domain;__late_attributes\n";
      const good = (i: number) =>
        `rapl_consumed_energy_J;2024-05-01T12:00:0${i}Z;10;cpu_package;0;local_machine;;package;\n`;
      await Deno.writeTextFile(
        `${dir}/bad rows.csv`,
        head + good(0) + "garbage\n" + good(1) +
          "rapl_consumed_energy_J;yesterday;10;cpu_package;0;local_machine;;package;\n" +
          "rapl_consumed_energy_J;2024-05-01T12:00:02Z;ten;cpu_package;0;local_machine;;package;\n" +
          "rapl_consumed_energy_J;2024-05-01T12:00:03Z;10;cpu_package;0;local_machine;;package\n" + good(4),
      );
      const r = await alumet(["report", "-o", "out/page.html", "bad rows.csv"], dir).catch((e) => e);
      // The output directory does not exist: a clear error, exit 2.
      noStack(r);
      assert.match(r.stderr, /Cannot write the report out\/page\.html/);
      const ok = await alumet(["report", "bad rows.csv", "-o", "page.html"], dir);
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(ok.stdout, "page.html\n");
      const html = await Deno.readTextFile(`${dir}/page.html`);
      assert.match(html, /4 malformed rows were skipped/);
      assert.match(html, /<td>3<\/td><td>fewer than 4 cells<\/td>/);
      assert.match(html, /timestamp &quot;yesterday&quot; is not RFC 3339/);
      assert.match(html, /value &quot;ten&quot; is not a number/);
      assert.match(html, /8 cells where the header has 9/);
      assert.match(html, /30\.00 J/); // the three good rows
    });
  });
});

Deno.test("report of a 500 000-row csv: every point summed, at most 2 × 1024 points per line, a small page", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/day.csv`;
    const joules = await writeLargeCsv(path, 500_000);
    const r = await buildReport(path);
    assert.equal(r.model.rows, 500_000);
    assert.equal(r.model.malformed, 0);
    assert.equal(r.model.duration, 99_999);
    const pkg = r.model.sources.find((s) => s.domain === "package")!;
    assert.ok(near(pkg.joules, joules, 1e-9), `${pkg.joules} J ≠ ${joules} J`);
    assert.equal(pkg.what, "cpu_package 0, cpu_package 1");
    for (const c of [...r.model.powerCharts, ...r.model.programCharts]) {
      if (c.kind !== "lines") continue;
      for (const l of c.lines) {
        assert.ok(l.t.length <= 2048 && l.t.length >= 512, `${l.label}: ${l.t.length} points`);
      }
    }
    // The 50 W spikes (one point in 3600) survive the downsampling: min/max keeps them.
    const power = r.model.powerCharts[0]!;
    if (power.kind === "lines") {
      const p0 = power.lines.find((l) => l.label === "package · cpu_package 0")!;
      assert.ok(Math.max(...p0.v) > 75, `highest ${Math.max(...p0.v)} W`);
    }
    assert.ok(r.bytes < 600_000, `page of ${r.bytes} bytes`);
  });
});

// --- The page in headless chromium -------------------------------------------------------------------------

const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--no-first-run",
  "--disable-background-networking",
  "--hide-scrollbars",
  "--force-device-scale-factor=1",
  "--virtual-time-budget=3000",
];
const WIDTH = 1200;
const HEIGHT = 4200;

async function chromium(args: string[], cwd: string): Promise<string> {
  const out = await new Deno.Command("chromium", {
    args: [...CHROMIUM_FLAGS, `--window-size=${WIDTH},${HEIGHT}`, ...args],
    cwd,
    env: { HOME: cwd },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  if (!out.success) throw new Error(`chromium ${args.join(" ")} failed: ${dec.decode(out.stderr)}`);
  return dec.decode(out.stdout);
}

const rgb = (hex: string) =>
  [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)) as [number, number, number];

testWith([needs.command("chromium")], "the page in headless chromium: every chart is drawn", async () => {
  await withDir(async (dir) => {
    const page = `${dir}/run.html`;
    await buildReport(FIXTURE, { output: page });
    // Where the charts are: the page writes each plotting area's box into the DOM once drawn.
    const dom = await chromium(["--dump-dom", `file://${page}`], dir);
    const drawn = /<body[^>]*data-drawn="(\d+)"/.exec(dom);
    assert.ok(drawn, "the page's script did not finish (no data-drawn on <body>)");
    const charts = [...dom.matchAll(/<div class="chart" id="(chart\d+)"[^>]*>/g)].map((m) => {
      const box = /data-box="([\d,.-]+)"/.exec(m[0])![1]!.split(",").map(Number) as [
        number,
        number,
        number,
        number,
      ];
      const colors = /data-colors="([^"]+)"/.exec(m[0])![1]!.split(",");
      return { id: m[1]!, box, colors };
    });
    // power, energy per consumer, CPU, memory
    assert.equal(charts.length, 4);
    assert.equal(Number(drawn[1]), 4);
    assert.match(dom, /<body[^>]*data-charts="4"/);
    await chromium([`--screenshot=${dir}/shot.png`, `file://${page}`], dir);
    const png = decodePng(await Deno.readFile(`${dir}/shot.png`));
    assert.equal(png.width, WIDTH);
    const channels = png.channels;
    const px = (x: number, y: number) => {
      const o = (y * png.width + x) * channels;
      return [png.data[o]!, png.data[o + 1]!, png.data[o + 2]!] as const;
    };
    const distance = (p: readonly number[], c: readonly number[]) =>
      Math.abs(p[0]! - c[0]!) + Math.abs(p[1]! - c[1]!) + Math.abs(p[2]! - c[2]!);
    const close = (p: readonly number[], c: readonly number[], tol: number) => distance(p, c) <= tol;
    for (const [index, c] of charts.entries()) {
      const [x0, y0, w, h] = c.box;
      assert.ok(w > 500 && h > 150, `${c.id}: box ${c.box}`);
      assert.ok(y0 + h <= png.height, `${c.id} lies below the screenshot (${y0 + h} > ${png.height})`);
      let ink = 0;
      const columns = c.colors.map(() => new Set<number>());
      const pixels = c.colors.map(() => 0);
      // A pixel is a chart colour's when that colour is the nearest of the chart's colours, white, the grid's
      // grey and black, and not far (an antialiased edge of a line blends it with the background).
      const targets = c.colors.map(rgb);
      const others = [[255, 255, 255], [230, 230, 230], [0, 0, 0]];
      for (let y = y0; y < y0 + h; y++) {
        for (let x = x0; x < x0 + w; x++) {
          const p = px(x, y);
          if (!close(p, [255, 255, 255], 30)) ink++;
          let best = -1, bestD = 150;
          targets.forEach((t, k) => {
            const d = distance(p, t);
            if (d < bestD) (best = k), (bestD = d);
          });
          if (best >= 0 && others.every((o) => distance(p, o) > bestD)) {
            pixels[best] = pixels[best]! + 1;
            columns[best]!.add(x);
          }
        }
      }
      assert.ok(ink > 0.002 * w * h, `${c.id}: only ${ink} drawn pixels`);
      if (index === 1) {
        // Energy per consumer: 3 blue bars (the processes) and a grey one (unattributed).
        const runs = (cols: Set<number>) =>
          [...cols].sort((a, b) => a - b).filter((x, i, a) => i === 0 || x !== a[i - 1]! + 1).length;
        assert.equal(c.colors[0], PALETTE[0]);
        assert.equal(runs(columns[0]!), 3, `${c.id}: blue bars`);
        assert.equal(runs(columns[1]!), 1, `${c.id}: grey bars`);
        continue;
      }
      // Each line is there, in its colour, and the first spans the plot (not a partial frame).
      for (const [k, color] of c.colors.entries()) {
        assert.ok(pixels[k]! >= 40, `${c.id}: line ${k} (${color}) has ${pixels[k]} pixels`);
      }
      assert.ok(
        columns[0]!.size >= 0.95 * w,
        `${c.id}: the first line covers ${columns[0]!.size} of ${w} columns`,
      );
    }
  });
});

Deno.test("the inlined uPlot is the npm package's file, unedited", async () => {
  const { UPLOT_CSS, UPLOT_CSS_SHA256, UPLOT_JS, UPLOT_JS_SHA256, UPLOT_VERSION } = await import(
    "../src/report/vendor/uplot.ts"
  );
  const sha = async (s: string) =>
    [...new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s)))]
      .map((b) => b.toString(16).padStart(2, "0")).join("");
  assert.equal(UPLOT_VERSION, "1.6.32");
  // Recorded by update_uplot.ts from the tarball `npm pack uplot@1.6.32` (checked against its integrity).
  assert.equal(await sha(UPLOT_JS), UPLOT_JS_SHA256);
  assert.equal(UPLOT_JS_SHA256, "19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f");
  assert.equal(await sha(UPLOT_CSS), UPLOT_CSS_SHA256);
  assert.equal(UPLOT_CSS_SHA256, "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04");
  assert.ok(!UPLOT_JS.includes("</script"), "the script can be inlined");
});

// --- Small hand-written runs (review of the report) ---------------------------------------------------------

const HEAD =
  "metric;timestamp;value;resource_kind;resource_id;consumer_kind;consumer_id;domain;__late_attributes\n";
/** A row of a csv with the columns of {@linkcode HEAD}: `late` is the `__late_attributes` cell. */
const row = (metric: string, second: number, value: number, target: string, domain: string, late = "") =>
  `${metric};2024-05-01T12:00:${String(second).padStart(2, "0")}Z;${value};${target};${domain};${late}\n`;
const PKG0 = "cpu_package;0;local_machine;";

Deno.test("report: the process and cgroup views of attributed_energy are separate attributions, never summed", async () => {
  await withDir(async (dir) => {
    const att = (s: number, v: number, consumer: string, view: string) =>
      row(
        "attributed_energy_J",
        s,
        v,
        `cpu_package;0;${consumer}`,
        "package",
        `source_metric=rapl_consumed_energy,method=cpu_time_share,view=${view}`,
      );
    let text = HEAD;
    for (let s = 0; s < 4; s++) {
      text += row("rapl_consumed_energy_J", s, 10, PKG0, "package");
      if (s === 0) continue;
      text += att(s, 6, "process;1", "process") + att(s, 4, "unattributed;", "process");
      text += att(s, 7, "cgroup;/a", "cgroup") + att(s, 3, "unattributed;", "cgroup");
    }
    await Deno.writeTextFile(`${dir}/views.csv`, text);
    const { model } = await buildReport(`${dir}/views.csv`);
    assert.deepEqual(
      model.attributions.map((
        a,
      ) => [a.view, a.total, a.unattributed, a.rows.map((r) => [r.consumer, r.joules])]),
      [
        ["process", 30, 12, [["process 1", 18]]],
        ["cgroup", 30, 9, [["cgroup /a", 21]]],
      ],
    );
    assert.deepEqual(model.attributions.map((a) => a.measured), [30, 30]);
    assert.deepEqual(model.consumerCharts.map((c) => c.title), [
      "Energy per process: rapl_consumed_energy package",
      "Energy per cgroup: rapl_consumed_energy package",
    ]);
  });
});

Deno.test("report: the conservation check compares the attribution with the energy measured at the same timestamps", async (t) => {
  await withDir(async (dir) => {
    const att = (s: number, v: number, consumer: string) =>
      row(
        "attributed_energy_J",
        s,
        v,
        `cpu_package;0;${consumer}`,
        "package",
        "source_metric=rapl_consumed_energy",
      );
    await t.step(
      "the first point is attributed too (its interval guessed), the last one not yet",
      async () => {
        let text = HEAD;
        for (let s = 0; s < 5; s++) {
          text += row("rapl_consumed_energy_J", s, 100 + s, PKG0, "package");
          if (s < 4) text += att(s, 60 + s, "process;7") + att(s, 40, "unattributed;");
        }
        await Deno.writeTextFile(`${dir}/first.csv`, text);
        const r = await buildReport(`${dir}/first.csv`);
        const a = r.model.attributions[0]!;
        assert.equal(a.measured, 100 + 101 + 102 + 103);
        assert.equal(a.total, 406);
        assert.equal(a.intervals, 4);
        assert.match(
          await Deno.readTextFile(r.path),
          /at the 4 attributed timestamps: 406\.0 J; attributed \+ unattributed: 406\.0 J \(0\.00 %\)/,
        );
      },
    );
    await t.step("a short exec run: one energy point, attributed", async () => {
      await Deno.writeTextFile(
        `${dir}/short.csv`,
        HEAD + row("rapl_consumed_energy_J", 0, 12.5, PKG0, "package") + att(0, 10, "process;7") +
          att(0, 2.5, "unattributed;"),
      );
      const r = await buildReport(`${dir}/short.csv`);
      const html = await Deno.readTextFile(r.path);
      assert.match(
        html,
        /at the 1 attributed timestamp: 12\.50 J; attributed \+ unattributed: 12\.50 J \(0\.00 %\)/,
      );
      assert.doesNotMatch(html, /Measured[^<]*0\.000 J/);
    });
  });
});

Deno.test("report: an estimate per cpu_state counts the busy states only, merged, as exec's summary does", async () => {
  const { BUSY_CPU_STATES: execBusy } = await import("../src/agent/summary.ts");
  const { BUSY_CPU_STATES: reportBusy } = await import("../src/report/collect.ts");
  assert.deepEqual([...reportBusy], [...execBusy]);
  await withDir(async (dir) => {
    const head =
      "metric;timestamp;value;resource_kind;resource_id;consumer_kind;consumer_id;cpu_state;__late_attributes\n";
    const r = (metric: string, s: number, v: number, consumer: string, state: string, late: string) =>
      `${metric};2024-05-01T12:00:0${s}Z;${v};local_machine;;${consumer};${state};${late}\n`;
    const states = { user: 2, system: 1, idle: 5, iowait: 0.5, steal: 0.25 } as const;
    let text = head;
    for (let s = 0; s < 4; s++) {
      for (const [state, j] of Object.entries(states)) {
        text += r("estimated_consumed_energy_J", s, j, "local_machine;", state, "estimated=true");
        if (s === 0) continue;
        const late = "source_metric=estimated_consumed_energy,view=process,estimated=true";
        const busy = state === "user" || state === "system";
        if (busy) text += r("attributed_energy_J", s, j - 0.5, "process;7", state, late);
        text += r("attributed_energy_J", s, busy ? 0.5 : j, "unattributed;", state, late);
      }
    }
    await Deno.writeTextFile(`${dir}/tdp.csv`, text);
    const { model } = await buildReport(`${dir}/tdp.csv`);
    assert.equal(model.sources.length, 1);
    const src = model.sources[0]!;
    assert.equal(src.joules, 12); // (2 + 1) J × 4 points: idle, iowait and steal left out
    assert.equal(src.meanWatts, 3);
    assert.match(src.what, /busy CPU states: user, system/);
    assert.ok(
      model.notes.some((n) => /cpu_state idle, iowait, steal\) is left out/.test(n)),
      model.notes.join(),
    );
    const power = model.powerCharts[0]!;
    assert.ok(power.kind === "lines");
    assert.deepEqual(power.lines.map((l) => [l.label, l.v]), [["machine · busy (estimate)", [3, 3, 3]]]);
    const a = model.attributions[0]!;
    assert.deepEqual([a.total, a.unattributed, a.measured, a.intervals], [9, 3, 9, 3]);
    assert.deepEqual(a.rows, [{ consumer: "process 7", joules: 6 }]);
  });
});

Deno.test("report: a stray quote loses only its row; a quoted cell with a line break is one row", async () => {
  await withDir(async (dir) => {
    let text = HEAD;
    for (let s = 0; s < 10; s++) {
      if (s === 4) text += row("rapl_consumed_energy_J", s, 1000, PKG0, '"package'); // stray quote
      else if (s === 6) text += row("rapl_consumed_energy_J", s, 1000, PKG0, 'pack"age'); // one inside a cell
      text += row("rapl_consumed_energy_J", s, 10, PKG0, "package");
    }
    text += row("rapl_consumed_energy_J", 10, 5, PKG0, '"two\nlines"');
    text += row("rapl_consumed_energy_J", 11, 10, PKG0, "package");
    await Deno.writeTextFile(`${dir}/quotes.csv`, text);
    const { model } = await buildReport(`${dir}/quotes.csv`);
    assert.equal(model.malformed, 1);
    assert.equal(model.malformedExamples[0]!.line, 6);
    assert.match(model.malformedExamples[0]!.reason, /quoted cell is not closed/);
    assert.deepEqual(
      model.sources.map((s) => [s.domain, s.joules]).sort(),
      [['pack"age', 1000], ["package", 110], ["two\nlines", 5]],
    );
  });
});

testWith(
  [needs.command("chromium")],
  "the page in headless chromium: a power line of one point is drawn as a dot, and an empty chart is told apart",
  async () => {
    await withDir(async (dir) => {
      // Two points per energy series: one power point each.
      const text = HEAD + row("rapl_consumed_energy_J", 0, 10, PKG0, "package") +
        row("rapl_consumed_energy_J", 0, 3, "dram;0;local_machine;", "dram") +
        row("rapl_consumed_energy_J", 1, 12, PKG0, "package") +
        row("rapl_consumed_energy_J", 1, 4, "dram;0;local_machine;", "dram");
      await Deno.writeTextFile(`${dir}/short.csv`, text);
      const page = `${dir}/short.html`;
      const { model } = await buildReport(`${dir}/short.csv`, { output: page });
      assert.equal(model.powerCharts.length, 1);
      const dom = await chromium(["--dump-dom", `file://${page}`], dir);
      assert.match(dom, /<body[^>]*data-charts="1"/);
      assert.match(dom, /<body[^>]*data-drawn="1"/);
      const div = /<div class="chart" id="chart0"[^>]*>/.exec(dom)![0];
      assert.match(div, /data-points="2"/);
      const [x0, y0, w, h] = /data-box="([\d,.-]+)"/.exec(div)![1]!.split(",").map(Number) as [
        number,
        number,
        number,
        number,
      ];
      const colors = /data-colors="([^"]+)"/.exec(div)![1]!.split(",").map(rgb);
      await chromium([`--screenshot=${dir}/shot.png`, `file://${page}`], dir);
      const png = decodePng(await Deno.readFile(`${dir}/shot.png`));
      const pixels = colors.map(() => 0);
      for (let y = y0; y < y0 + h; y++) {
        for (let x = x0; x < x0 + w; x++) {
          const o = (y * png.width + x) * png.channels;
          colors.forEach((c, k) => {
            const d = Math.abs(png.data[o]! - c[0]) + Math.abs(png.data[o + 1]! - c[1]) +
              Math.abs(png.data[o + 2]! - c[2]);
            if (d < 40) pixels[k] = pixels[k]! + 1;
          });
        }
      }
      // A dot of 7 px: about 38 pixels of its colour; a point hidden would leave none.
      for (const [k, n] of pixels.entries()) assert.ok(n >= 10, `line ${k}: ${n} pixels of its colour`);
    });
  },
);

Deno.test("report: a run too short for power over time says so, and shows its energy in the summary", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/one.csv`,
      HEAD + row("rapl_consumed_energy_J", 0, 496.5, PKG0, "package") +
        row("rapl_consumed_energy_J", 0, 20, "dram;0;local_machine;", "dram"),
    );
    const r = await buildReport(`${dir}/one.csv`);
    assert.equal(r.model.powerCharts.length, 0);
    const html = await Deno.readTextFile(r.path);
    assert.doesNotMatch(html, /No energy or power series to chart/);
    assert.match(html, /too short for power over time: its energy series have one point each/);
    assert.match(html, /<td>package<\/td><td>cpu_package 0<\/td><td class="num">496\.5 J<\/td>/);
  });
});

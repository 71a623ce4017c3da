/**
 * `alumet report` on a day-long run, for `deno task bench report`: a csv of the csv output's format with
 * 500 000 rows (5 series — two RAPL packages, dram, a process's CPU and memory — one point each per second,
 * about 28 hours), reported end to end by the CLI in a subprocess. Measured: the wall time of the command
 * (Deno's start-up included), its peak RSS (VmHWM, polled from `/proc`), and the size of the page.
 *
 * `deno run -A bench/report.ts [ROWS]` runs it once and prints the figures.
 *
 * @module
 */

const MAIN = new URL("../src/agent/main.ts", import.meta.url).pathname;

/**
 * Writes a csv of `rows` rows as the csv output writes them (`;`, unit suffixes, attribute columns `domain`
 * and `kind`): 5 series, one point each per second; package 0 has a 50 W spike one second in 3600.
 * Returns the joules of the two packages together.
 */
export async function writeLargeCsv(path: string, rows: number): Promise<number> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  const enc = new TextEncoder();
  let text =
    "metric;timestamp;value;resource_kind;resource_id;consumer_kind;consumer_id;domain;kind;__late_attributes\n";
  let joules = 0;
  const t0 = Date.UTC(2024, 4, 1, 0, 0, 0);
  try {
    for (let i = 0; i * 5 < rows; i++) {
      const ts = new Date(t0 + i * 1000).toISOString().replace(".000Z", "Z");
      const j0 = 30 + 10 * Math.sin(i / 600) + (i % 3600 === 1800 ? 50 : 0);
      const j1 = 40 + (i % 60) / 10;
      joules += j0 + j1;
      text += `rapl_consumed_energy_J;${ts};${j0};cpu_package;0;local_machine;;package;;\n` +
        `rapl_consumed_energy_J;${ts};${j1};cpu_package;1;local_machine;;package;;\n` +
        `rapl_consumed_energy_J;${ts};${5 + (i % 7) / 10};dram;0;local_machine;;dram;;\n` +
        `cpu_percent_%;${ts};${50 + 40 * Math.sin(i / 300)};local_machine;;process;4242;;total;\n` +
        `memory_usage_B;${ts};${1e9 + i * 1000};local_machine;;process;4242;;resident;\n`;
      if (text.length > 1 << 20) {
        await file.write(enc.encode(text));
        text = "";
      }
    }
    await file.write(enc.encode(text));
  } finally {
    file.close();
  }
  return joules;
}

/** What one run of {@linkcode runReportBench} measured. */
export interface ReportBenchResult {
  /** Rows of the csv. */
  readonly rows: number;
  /** Bytes of the csv. */
  readonly csvBytes: number;
  /** Wall time of `alumet report`, start-up included, ms. */
  readonly ms: number;
  /** Peak resident memory of the command, MiB (VmHWM). */
  readonly peakMiB: number;
  /** Bytes of the page. */
  readonly pageBytes: number;
}

function vmHwmKiB(pid: number): number | undefined {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Runs `alumet report` once on a generated csv of `rows` rows in `dir` (the csv is written once and reused).
 * Throws when the command fails.
 */
export async function runReportBench(dir: string, rows = 500_000): Promise<ReportBenchResult> {
  const csv = `${dir}/report-bench-${rows}.csv`;
  try {
    await Deno.stat(csv);
  } catch {
    await writeLargeCsv(csv, rows);
  }
  const page = `${dir}/report-bench-${rows}.html`;
  const t0 = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--allow-all", MAIN, "report", csv, "-o", page],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let peak = 0;
  const timer = setInterval(() => peak = Math.max(peak, vmHwmKiB(child.pid) ?? 0), 20);
  const out = await child.output();
  clearInterval(timer);
  const ms = performance.now() - t0;
  if (!out.success) {
    throw new Error(`alumet report failed (exit ${out.code}): ${new TextDecoder().decode(out.stderr)}`);
  }
  return {
    rows,
    csvBytes: (await Deno.stat(csv)).size,
    ms,
    peakMiB: peak / 1024,
    pageBytes: (await Deno.stat(page)).size,
  };
}

if (import.meta.main) {
  const rows = Number(Deno.args[0] ?? 500_000);
  const dir = await Deno.makeTempDir({ prefix: "alumet-bench-report-" });
  try {
    const r = await runReportBench(dir, rows);
    // deno-lint-ignore no-console
    console.log(
      `alumet report, ${r.rows.toLocaleString("en-US")} rows (${
        (r.csvBytes / 2 ** 20).toFixed(1)
      } MiB csv): ` +
        `${r.ms.toFixed(0)} ms, peak RSS ${r.peakMiB.toFixed(0)} MiB, page ${
          (r.pageBytes / 1024).toFixed(0)
        } KiB`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * `alumet exec` gives the energy of the machine and its devices over the program's run, and `alumet doctor`
 * explains each energy source: end to end through `deno task alumet`, with the stand-in energy plugin of
 * `testdata/energy/fake_energy.ts` (no hardware here: its counters draw a constant power, computed from the poll
 * timestamps, so the expected joules and watts are known exactly) loaded through the config's `module` key.
 */
import assert from "node:assert/strict";
import { BEFORE_JOULES, GPU_WATTS, RAPL_WATTS } from "./testdata/energy/fake_energy.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const FAKE = `${ROOT}/tests/testdata/energy/fake_energy.ts`;

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** `deno task alumet --config <dir>/alumet.toml ARGS`, the config holding `toml`. */
async function alumet(toml: string, args: string[]): Promise<Run> {
  const dir = await Deno.makeTempDir({ prefix: "alumet-exec-energy-" });
  try {
    await Deno.writeTextFile(`${dir}/alumet.toml`, toml);
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "task",
        "--quiet",
        "--config",
        `${ROOT}/deno.json`,
        "alumet",
        "--config",
        `${dir}/alumet.toml`,
        ...args,
      ],
      cwd: dir,
      env: { ALUMET_LOG: "info", NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const d = new TextDecoder();
    return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const CONFIG = `[plugins.fake_energy]\nmodule = "${FAKE}"\n`;

interface EnergyRow {
  readonly joules: number;
  readonly watts: number;
  readonly label: string;
  readonly note: string;
}

/** The "Energy" block of the summary: its interval (s) and its rows by label. */
function energyOf(stderr: string): { interval: number; rows: Map<string, EnergyRow> } {
  const head = /^ Energy \(whole machine, during the run: ([\d.]+) s, from the poll at the program's start/m
    .exec(
      stderr,
    );
  assert.ok(head, `no Energy block in the summary:\n${stderr}`);
  const rows = new Map<string, EnergyRow>();
  const block = stderr.slice(head.index).split("\n").slice(1);
  for (const line of block) {
    const m = /^\s+(-?[\d.]+) J\s+([\d.]+) W {3}(.+?)(?: {3}\((.*)\))?$/.exec(line);
    if (!m) break;
    rows.set(m[3]!, { joules: Number(m[1]), watts: Number(m[2]), label: m[3]!, note: m[4] ?? "" });
  }
  return { interval: Number(head[1]), rows };
}

Deno.test("alumet exec gives the joules and mean power of each energy series over exactly the program's run", async () => {
  const r = await alumet(CONFIG, ["exec", "--", "sleep", "0.3"]);
  assert.equal(r.code, 0, r.stderr);
  const { interval, rows } = energyOf(r.stderr);
  // The interval runs from the poll just before the program to the poll just after it: at least the 0.3 s of
  // sleep, and not much more than the elapsed time (a busy machine may add some; the bound is generous).
  const elapsed = Number(/^\s+([\d.]+) s {3}elapsed$/m.exec(r.stderr)?.[1]);
  assert.ok(interval >= 0.3 && interval < elapsed + 5, `interval ${interval} s, elapsed ${elapsed} s`);
  const expected = [
    ...RAPL_WATTS.map((s) => ({
      label: `rapl_consumed_energy (domain=${s.domain})${
        s.pkg === undefined ? "" : ` [cpu_package ${s.pkg}]`
      }`,
      watts: s.watts,
      total: s.pkg === undefined,
    })),
    { label: "nvml_energy_consumption [gpu 00000000:3B:00.0]", watts: GPU_WATTS, total: false },
  ];
  assert.deepEqual([...rows.keys()].sort(), expected.map((e) => e.label).sort(), r.stderr);
  for (const e of expected) {
    const row = rows.get(e.label)!;
    // Constant power: the mean power is exactly the fake's (printed to the mW)…
    assert.equal(row.watts.toFixed(3), e.watts.toFixed(3), `${e.label}:\n${r.stderr}`);
    // …the joules are that power times the series' own interval (the block's unless the row says its own)…
    const own = /over ([\d.]+) s/.exec(row.note);
    const secs = own ? Number(own[1]) : interval;
    assert.ok(
      // (the interval is printed to the ms, ±0.5 ms, and a line without a note of its own may rest on up to 1 ms
      // less than the heading's)
      Math.abs(row.joules - e.watts * secs) <= e.watts * 0.0016,
      `${e.label}: ${row.joules} J is not ${e.watts} W × ${secs} s`,
    );
    // …and the energy spent before the program (in the first delta of every series) is not counted.
    assert.ok(row.joules < BEFORE_JOULES, `${e.label}: ${row.joules} J counts the time before the program`);
    // Sums over sockets are shown as totals, never added to the rest.
    assert.equal(row.note.includes("a total over resources"), e.total, `${e.label}: ${row.note}`);
  }
  // The GPU's mJ are shown in joules (150 W × ~0.3 s is tens of J, not tens of thousands).
  assert.ok(rows.get("nvml_energy_consumption [gpu 00000000:3B:00.0]")!.joules < 1000);
  // The totals are the sums of their sockets (the fake's totals draw 35+45 and 4+6 W).
  const j = (l: string) => rows.get(`rapl_consumed_energy ${l}`)!.joules;
  const sockets = j("(domain=package) [cpu_package 0]") + j("(domain=package) [cpu_package 1]");
  assert.ok(Math.abs(j("(domain=package_total)") - sockets) < 0.01 * sockets, r.stderr);
});

Deno.test("alumet exec counts, with the rapl plugin on a powercap fixture, only what the program added", async () => {
  // The two-socket Xeon fixture of the rapl plugin (plugins/rapl/testdata/intel_xeon_2s_dram), copied: the
  // program itself moves package 0's and its DRAM's energy_uj during its run, so the energy of the run is known
  // exactly (2.5 J and 0.25 J), and any poll outside [start, end] would show up as a wrong sum.
  const dir = await Deno.makeTempDir({ prefix: "alumet-exec-rapl-" });
  try {
    const cp = await new Deno.Command("cp", {
      args: ["-a", `${ROOT}/plugins/rapl/testdata/intel_xeon_2s_dram/sys`, `${dir}/sys`],
    }).output();
    assert.equal(cp.code, 0, new TextDecoder().decode(cp.stderr));
    const zone = `${dir}/sys/devices/virtual/powercap/intel-rapl/intel-rapl:0`;
    const pkg = Number((await Deno.readTextFile(`${zone}/energy_uj`)).trim());
    const dram = Number((await Deno.readTextFile(`${zone}/intel-rapl:0:0/energy_uj`)).trim());
    const script = `echo ${pkg + 2_500_000} > ${zone}/energy_uj; echo ${
      dram + 250_000
    } > ${zone}/intel-rapl:0:0/energy_uj; sleep 0.2`;
    const r = await alumet(
      `[plugins.rapl]\nmodule = "${ROOT}/plugins/rapl/mod.ts"\nsysfs_root = "${dir}/sys"\nno_perf_events = true\n`,
      ["exec", "--", "sh", "-c", script],
    );
    assert.equal(r.code, 0, r.stderr);
    const { interval, rows } = energyOf(r.stderr);
    const joules = Object.fromEntries([...rows.values()].map((row) => [row.label, row.joules.toFixed(6)]));
    assert.deepEqual(joules, {
      "rapl_consumed_energy (domain=package) [cpu_package 0]": "2.500000",
      "rapl_consumed_energy (domain=package) [cpu_package 1]": "0.000000",
      "rapl_consumed_energy (domain=dram) [dram 0]": "0.250000",
      "rapl_consumed_energy (domain=dram) [dram 1]": "0.000000",
      "rapl_consumed_energy (domain=package_total)": "2.500000",
      "rapl_consumed_energy (domain=dram_total)": "0.250000",
    }, r.stderr);
    const power = rows.get("rapl_consumed_energy (domain=package) [cpu_package 0]")!.watts;
    // The interval is printed to the ms: power × interval is 2.5 J within power × 0.5 ms.
    assert.ok(Math.abs(power * interval - 2.5) <= power * 0.0006, `${power} W over ${interval} s`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("alumet exec runs without an energy source whose hardware is absent, after one warning with the fix", async () => {
  const r = await alumet(CONFIG + "present = false\n", ["exec", "--", "sleep", "0.1"]);
  assert.equal(r.code, 0, r.stderr);
  const warnings = r.stderr.split("\n").filter((l) => /powercap/.test(l));
  assert.equal(warnings.length, 1, r.stderr);
  assert.match(warnings[0]!, /running without RAPL; fix: mount \/sys/);
  assert.match(r.stderr, /s {3}elapsed/);
  assert.doesNotMatch(r.stderr, /Energy \(/);
});

Deno.test("alumet doctor explains each energy source, enabled or not, and exits 0 only when all enabled can run", async (t) => {
  await t.step("a source that cannot run: what was found, the exact fix, exit 1", async () => {
    const r = await alumet(CONFIG + "present = false\n", ["doctor"]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /^✗ fake_energy\s+RAPL \(fake\): no \/sys\/class\/powercap/m);
    assert.match(r.stdout, /^\s+fix: mount \/sys read-only into the container/m);
    assert.match(r.stdout, /1 check\(s\) of enabled plugins fail/);
  });
  await t.step(
    "every built-in plugin is checked, those not enabled said so; exit 0 when the enabled can run",
    async () => {
      const r = await alumet(CONFIG, ["doctor"]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /^✓ fake_energy\s+RAPL \(fake\): 2 packages: package, dram$/m);
      assert.match(r.stdout, /^✓ procfs\s+kernel \(not enabled\): \/proc\/stat reads$/m);
      assert.match(r.stdout, /Everything enabled can run here \(fake_energy\)\./);
      assert.match(r.stdout, /Could run here too, not enabled: .*procfs/);
    },
  );
  await t.step(
    "a built-in name the config gives a module of its own is checked once, as that module",
    async () => {
      const r = await alumet(
        `[plugins.rapl]\nmodule = "${ROOT}/plugins/rapl/mod.ts"\nsysfs_root = "/nonexistent"\n`,
        ["doctor"],
      );
      assert.equal(r.code, 1, r.stdout + r.stderr);
      const rapl = r.stdout.split("\n").filter((l) => /^. rapl /.test(l));
      assert.ok(
        rapl.length > 0 && rapl.every((l) => l.startsWith("✗ ") && !l.includes("not enabled")),
        r.stdout,
      );
    },
  );
  await t.step("a plugin module that does not load is a failed check of its own", async () => {
    const r = await alumet(`[plugins.gone]\nmodule = "${ROOT}/tests/testdata/energy/no_such_plugin.ts"\n`, [
      "doctor",
    ]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /^✗ gone\s+plugin module: Cannot load plugin "gone" from /m);
    assert.match(r.stdout, /fix: check plugins\.gone\.module/);
  });
});

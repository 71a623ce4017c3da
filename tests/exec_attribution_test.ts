/**
 * `alumet exec` reports the program's energy next to the machine's, with the method named: on these machines
 * (no RAPL) the TDP estimate that exec enables when no energy source is, shared by energy-attribution; with the
 * rapl plugin on a powercap fixture, the measured share; `--baseline` gives the energy above idle.
 */
import assert from "node:assert/strict";
import { alumet, inTempDir } from "./testdata/exec/cli.ts";
import type { RunReport } from "../src/agent/summary.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const tempDir = <T>(f: (dir: string) => Promise<T>) => inTempDir("exec-attribution", f);

const BUSY = ["sh", "-c", "i=0; while [ $i -lt 60000 ]; do i=$((i+1)); done"];
const nCpus = () => navigator.hardwareConcurrency;

/** Σ program + unattributed + other consumers = the machine's, per source, within 1 %. */
function assertConserved(p: NonNullable<RunReport["program_energy"]>): void {
  for (const x of p.sources) {
    const sum = x.joules + (x.unattributed_joules ?? 0) + (x.other_consumers_joules ?? 0);
    assert.ok(x.machine_joules !== null && x.machine_joules >= 0, JSON.stringify(x));
    assert.ok(
      Math.abs(sum - x.machine_joules) <= 0.01 * x.machine_joules + 1e-9,
      `${sum} J is not ${x.machine_joules} J`,
    );
    assert.ok(x.joules >= 0 && x.joules <= x.machine_joules * 1.01, JSON.stringify(x));
  }
}

/** The estimated machine power is at most the TDP (every CPU busy), with a margin for /proc/stat's ticks. */
function assertPowerAtMost(j: RunReport, tdp: number): void {
  const lines = j.energy!.series.filter((l) => l.metric === "estimated_consumed_energy");
  assert.equal(lines.length, 1, JSON.stringify(j.energy));
  const w = lines[0]!.watts!;
  const margin = 0.02 * nCpus() / lines[0]!.interval_s; // 2 ticks of 10 ms per CPU over the interval
  assert.ok(w > 0 && w <= tdp * (1 + margin) + 1e-9, `${w} W with a TDP of ${tdp} W`);
}

Deno.test("exec without an energy source estimates the program's joules from CPU time × TDP, labelled as an estimate", async (t) => {
  await t.step(
    "the defaults: estimate and attribution enabled, the TDP assumed said with how to set it",
    async () => {
      await tempDir(async (dir) => {
        const r = await alumet(dir, ["exec", "--json", "r.json", "--", ...BUSY]);
        assert.equal(r.code, 0, r.stderr);
        const j = JSON.parse(await Deno.readTextFile(`${dir}/r.json`)) as RunReport;
        assert.equal(j.energy!.estimated, true);
        const p = j.program_energy!;
        assert.equal(p.method, "cpu_time_share");
        assert.equal(p.estimated, true);
        assert.match(p.description, /^TDP estimate, share of CPU time/);
        assertConserved(p);
        // The estimate is CPU time × TDP ÷ CPUs (100 W, this machine's CPUs), and energy-attribution shares an
        // estimate by the machine's busy time: the program gets its own CPU time × 100 W ÷ CPUs, whatever else
        // runs (/proc counts in ticks of 10 ms and the kernel's rusage is exact, hence the margins). The machine's
        // mean power is at most the TDP (all CPUs busy).
        const most = j.cpu!.total_s * 100 / nCpus();
        assert.ok(
          p.joules >= 0.75 * most - 0.5 && p.joules <= 1.05 * most + 0.5,
          `${p.joules} J, expected about ${most} J`,
        );
        assertPowerAtMost(j, 100);
        assert.match(r.stderr, /^ Energy of the program and its children \(TDP estimate, share of CPU time/m);
        assert.match(r.stderr, /\(an estimate, not a measurement\)$/m);
        assert.match(
          r.stderr,
          /No energy source is enabled, so exec enabled energy-estimation-tdp \(--no-estimate turns it off\): .* CPU time × [\d.]+ W per busy CPU \(TDP 100 W .*--config-override plugins\.energy-estimation-tdp\.tdp=WATTS\)/,
        );
        assert.equal(j.estimate_note !== null, true);
      });
    },
  );
  await t.step("a TDP of the user's: the estimate follows it", async () => {
    await tempDir(async (dir) => {
      const r = await alumet(dir, [
        "--config-override",
        "plugins.energy-estimation-tdp.tdp=20",
        "exec",
        "--json",
        "r.json",
        "--",
        ...BUSY,
      ]);
      assert.equal(r.code, 0, r.stderr);
      const j = JSON.parse(await Deno.readTextFile(`${dir}/r.json`)) as RunReport;
      const p = j.program_energy!;
      assertConserved(p);
      const most = j.cpu!.total_s * 20 / nCpus();
      assert.ok(
        p.joules >= 0.75 * most - 0.1 && p.joules <= 1.05 * most + 0.1,
        `${p.joules} J, expected about ${most} J`,
      );
      assertPowerAtMost(j, 20);
      assert.match(r.stderr, /TDP 20 W .*set in the config/);
      assert.doesNotMatch(r.stderr, /No energy source is enabled/);
    });
  });
  await t.step("--no-estimate, or --plugins: no estimate", async () => {
    await tempDir(async (dir) => {
      for (const args of [["exec", "--no-estimate"], ["--plugins", "procfs,csv", "exec"]]) {
        const r = await alumet(dir, [...args, "--json", "r.json", "--", "true"]);
        assert.equal(r.code, 0, r.stderr);
        const j = JSON.parse(await Deno.readTextFile(`${dir}/r.json`)) as RunReport;
        assert.equal(j.energy, null, args.join(" "));
        assert.equal(j.program_energy, null);
        assert.doesNotMatch(r.stderr, /Energy|estimate/);
      }
    });
  });
});

Deno.test("exec with the rapl plugin on a powercap fixture shares the measured joules with the program", async () => {
  await tempDir(async (dir) => {
    const cp = await new Deno.Command("cp", {
      args: ["-a", `${ROOT}/plugins/rapl/testdata/intel_xeon_2s_dram/sys`, `${dir}/sys`],
    }).output();
    assert.equal(cp.code, 0, new TextDecoder().decode(cp.stderr));
    const zone = `${dir}/sys/devices/virtual/powercap/intel-rapl/intel-rapl:0`;
    const pkg = Number((await Deno.readTextFile(`${zone}/energy_uj`)).trim());
    await Deno.writeTextFile(
      `${dir}/alumet.toml`,
      `[plugins.procfs]\n[plugins.rapl]\nmodule = "${ROOT}/plugins/rapl/mod.ts"\nsysfs_root = "${dir}/sys"\n` +
        `no_perf_events = true\n`,
    );
    const script = `${BUSY[2]}; echo ${pkg + 2_500_000} > ${zone}/energy_uj`;
    const r = await alumet(dir, [
      "--config",
      "alumet.toml",
      "exec",
      "--json",
      "r.json",
      "--",
      "sh",
      "-c",
      script,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(await Deno.readTextFile(`${dir}/r.json`)) as RunReport;
    const p = j.program_energy!;
    assert.equal(p.estimated, false);
    assert.equal(p.method, "cpu_time_share");
    assert.match(p.description, /^measured, share of CPU time/);
    assertConserved(p);
    const pk = p.sources.find((x) => x.domain === "package")!;
    assert.equal(pk.machine_joules!.toFixed(6), "2.500000");
    assert.ok(pk.joules > 0, JSON.stringify(pk));
    assert.match(r.stderr, /^ Energy of the program and its children \(measured, share of CPU time/m);
    assert.doesNotMatch(r.stderr, /estimate/);
  });
});

Deno.test("exec --baseline: a machine at constant power has nothing above idle; the arithmetic is the one said", async () => {
  await tempDir(async (dir) => {
    // The stand-in energy plugin draws a constant power (tests/testdata/energy/fake_energy.ts): idle or not.
    await Deno.writeTextFile(
      `${dir}/alumet.toml`,
      `[plugins.fake_energy]\nmodule = "${ROOT}/tests/testdata/energy/fake_energy.ts"\npoll_interval = "100ms"\n`,
    );
    const r = await alumet(dir, [
      "--config",
      "alumet.toml",
      "exec",
      "--baseline",
      "300ms",
      "--json",
      "r.json",
      "--",
      "sleep",
      "0.2",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(await Deno.readTextFile(`${dir}/r.json`)) as RunReport;
    const a = j.above_idle!;
    assert.ok(a.baseline_s >= 0.3, String(a.baseline_s));
    assert.equal(a.series.length, j.energy!.series.length);
    for (const l of a.series) {
      assert.ok(Math.abs(l.above_idle_joules - (l.joules - l.idle_watts * l.interval_s)) < 1e-9);
      assert.ok(
        Math.abs(l.above_idle_joules) < 1e-6 * l.joules,
        `${l.label}: ${l.above_idle_joules} J above idle`,
      );
    }
    assert.match(
      r.stderr,
      /^ Energy above idle \(the machine measured idle for 0\.3\d\d s just before the program; energy − idle power × interval\):$/m,
    );
    assert.match(r.stderr, /J {3}machine, above idle/);
  });
});

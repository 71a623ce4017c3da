/**
 * The rapl plugin against the real `perf stat -a -e power/energy-<domain>/`, on a machine whose kernel has RAPL's perf
 * `power` PMU. Elsewhere (most virtual machines, CI) the test is ignored, also under `CI=true`: no package
 * installs RAPL. Where the PMU is there, it needs root and `perf` as the other cross-checks do.
 */
import assert from "node:assert/strict";
import { needs, testWith } from "../src/testing/needs.ts";
import { perfDomain } from "../plugins/rapl/domains.ts";
import { alumet, inTempDir } from "./testdata/exec/cli.ts";

const EVENTS = "/sys/bus/event_source/devices/power/events";

/** The `energy-*` events this machine's power PMU lists (none without the PMU). */
function powerEvents(): string[] {
  try {
    return [...Deno.readDirSync(EVENTS)].map((e) => e.name).filter((n) => /^energy-[a-z]+$/.test(n)).sort();
  } catch {
    return [];
  }
}

const events = powerEvents();
const name =
  "alumet exec -- perf stat -a -e power/energy-*/ -- sleep 2: the rapl plugin's joules per domain hold perf stat's";
const test = () =>
  inTempDir("rapl-perf", async (dir) => {
    const r = await alumet(dir, [
      "--plugins",
      "rapl,csv",
      "exec",
      "--json",
      "summary.json",
      "--",
      "perf",
      "stat",
      "-a",
      "-x,",
      "-o",
      "ps.txt",
      "-e",
      events.map((e) => `power/${e}/`).join(","),
      "--",
      "sleep",
      "2",
    ]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    // perf stat -x, lines: value,unit,event,…
    const theirs = new Map<string, number>();
    for (const line of (await Deno.readTextFile(`${dir}/ps.txt`)).split("\n")) {
      const f = line.split(",");
      const m = /^power\/energy-([a-z]+)\/$/.exec(f[2] ?? "");
      if (m && f[0] !== "" && !Number.isNaN(Number(f[0]))) theirs.set(m[1]!, Number(f[0]));
    }
    const summary = JSON.parse(await Deno.readTextFile(`${dir}/summary.json`));
    const series: { attributes: Record<string, string>; joules: number }[] = summary.energy.series;
    for (const e of events) {
      const domain = perfDomain(e);
      if (domain === undefined) continue; // an event the plugin does not know
      const perfJ = theirs.get(e.slice("energy-".length));
      assert.ok(perfJ !== undefined, `perf stat gave no ${e}: ${[...theirs]}`);
      const ours = series.filter((s) => s.attributes.domain === domain).reduce((s, x) => s + x.joules, 0);
      if (perfJ === 0) {
        // a PMU that lists the event and counts nothing (seen on a virtual machine): the plugin reads 0 too
        assert.equal(ours, 0, `${domain}: the plugin ${ours} J where perf stat counted 0 J`);
        continue;
      }
      // The plugin's window (its polls at the program's start and end) holds perf stat's counting window, and
      // perf stat's own start and stop: a little more, never less (the counters update every ~1 ms).
      assert.ok(
        ours >= 0.98 * perfJ && ours <= 1.1 * perfJ + 1,
        `${domain}: the plugin ${ours.toFixed(3)} J, perf stat ${perfJ} J`,
      );
    }
  });

if (events.length === 0) Deno.test({ name, ignore: true, fn: test }); // no RAPL PMU: hardware, not a package
else testWith([needs.root, needs.command("perf")], name, test);

import assert from "node:assert/strict";
import { Batch } from "../../src/model/batch.ts";
import { MetricRegistry } from "../../src/model/metrics.ts";
import { registerMetrics } from "../../src/model/metric_set.ts";
import { Consumer, Resource } from "../../src/model/resources.ts";
import { unit } from "../../src/model/units.ts";
import type { ElementContext, PreStartContext } from "../../src/plugin/plugin.ts";
import { validatePluginConfig } from "../../src/plugin/config.ts";
import { EventBus } from "../../src/plugin/events.ts";
import { parseToml } from "../../src/deps.ts";
import { testPlugin } from "../../src/testing/mod.ts";
import { checkConfigBlock, checkMetricsTable } from "../../src/testing/readme.ts";
import { CPU_TIME_DELTA, MEMORY_USAGE } from "../../src/model/common_metrics.ts";
import { raplPlugin } from "../rapl/mod.ts";
import { createKernelMetrics, createProcessMetrics } from "../procfs/metrics.ts";
import { KernelSource } from "../procfs/kernel.ts";
import { ProcessSource } from "../procfs/process.ts";
import { CGROUP_METRICS } from "../cgroups/metrics.ts";
import { CgroupProbe } from "../cgroups/probe.ts";
import { detectLayout } from "../../src/sys/cgroup_layout.ts";
import {
  ATTRIBUTION_METRICS,
  compileExpr,
  type EnergyAttributionPlugin,
  energyAttributionPlugin,
  EnergyAttributor,
  type FormulaAttributor,
} from "./mod.ts";

const RAPL_FIXTURE = new URL("../rapl/testdata/intel_desktop_1s/sys", import.meta.url).pathname;
const S = 1_000_000_000n;
const T0 = 1_700_000_000n * S;
const NCPUS = 4;
const USER_HZ = 100;

/** Copies a directory tree (symlinks kept). */
function copyTree(from: string, to: string): void {
  Deno.mkdirSync(to, { recursive: true });
  for (const e of Deno.readDirSync(from)) {
    const src = `${from}/${e.name}`, dst = `${to}/${e.name}`;
    if (e.isSymlink) Deno.symlinkSync(Deno.readLinkSync(src), dst);
    else if (e.isDirectory) copyTree(src, dst);
    else Deno.copyFileSync(src, dst);
  }
}

/**
 * Every point of `b` again, at timestamp `ts` (sources recorded by hand get the scenario's clock), with its
 * metric registered in `to` (the harness that polled it had its own registry).
 */
function restamp(b: Batch, ts: bigint, from: MetricRegistry, to: MetricRegistry): Batch {
  const out = new Batch();
  for (const p of b) {
    const m = from.get(p.metric);
    const id = to.register(m.plugin, { name: m.name, unit: m.unit, valueType: m.valueType, kind: m.kind });
    out.push(id, p.value as number, {
      resource: p.resource,
      consumer: p.consumer,
      attributes: p.attributes,
      timestamp: ts,
    });
  }
  return out;
}

/** A fake `/proc/<pid>/stat` with `utime` ticks. */
function statLine(pid: number, utime: number): string {
  return `${pid} (p${pid}) S 1 ${pid} ${pid} 0 -1 4194560 1000 0 5 0 ${utime} 0 0 0 20 0 1 0 123456 ` +
    "104857600 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
}

/** A fake `/proc/stat` after `seconds`, every CPU `busy` of its time in user, the rest idle. */
function procStat(seconds: number, busy: number): string {
  const u = Math.round(seconds * USER_HZ * busy), i = Math.round(seconds * USER_HZ * (1 - busy));
  let text = `cpu  ${u * NCPUS} 0 0 ${i * NCPUS} 0 0 0 0 0 0\n`;
  for (let c = 0; c < NCPUS; c++) text += `cpu${c} ${u} 0 0 ${i} 0 0 0 0 0 0\n`;
  return text + "ctxt 1000\nprocesses 10\nprocs_running 1\nprocs_blocked 0\n";
}

/** The recorded RAPL series: the rapl plugin polled on a copy of a powercap fixture whose counters we move. */
class RecordedRapl implements AsyncDisposable {
  readonly root: string;
  readonly uj = new Map<string, number>([
    ["intel-rapl:0", 1e9], // package-0
    ["intel-rapl:0:0", 1e9], // core
    ["intel-rapl:0:1", 1e9], // uncore
    ["intel-rapl:0:2", 1e9], // dram
  ]);
  h!: Awaited<ReturnType<typeof testPlugin>>;

  constructor() {
    this.root = `${Deno.makeTempDirSync()}/sys`;
    copyTree(RAPL_FIXTURE, this.root);
    this.#write();
  }

  #write(): void {
    for (const [z, v] of this.uj) {
      Deno.writeTextFileSync(`${this.root}/class/powercap/${z}/energy_uj`, `${v}\n`);
    }
  }

  async open(): Promise<void> {
    this.h = await testPlugin(raplPlugin, { sysfs_root: this.root, no_perf_events: true });
  }

  /** Moves the counters by these joules (package, core, uncore, dram), polls, and restamps. */
  async poll(to: MetricRegistry, ts: bigint, joules?: [number, number, number, number]): Promise<Batch> {
    if (joules !== undefined) {
      [...this.uj.keys()].forEach((z, k) => this.uj.set(z, this.uj.get(z)! + joules[k]! * 1e6));
      this.#write();
    }
    return restamp(await this.h.poll("in"), ts, this.h.metrics, to);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.h?.stop();
    await Deno.remove(this.root.slice(0, -4), { recursive: true });
  }
}

/** One registry for the recorded sources and the attributor, as the agent has. */
function registry() {
  const r = new MetricRegistry();
  const ctx: ElementContext = { metric: (id) => r.get(id) };
  const out = registerMetrics(r, "energy-attribution", ATTRIBUTION_METRICS).attributed;
  return { r, ctx, out };
}

const consumerName = (c: Consumer) => c.kind === "unattributed" ? "unattributed" : c.id;

/** Fractions of the measured energy per consumer, for one interval, resource and view. */
function fractions(
  b: Batch,
  r: MetricRegistry,
  where: { ts: bigint; resource: Resource; view: string },
  measured: number,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of b) {
    if (r.get(p.metric).name !== "attributed_energy") continue;
    if (p.timestamp !== where.ts || p.resource !== where.resource || p.attributes["view"] !== where.view) {
      continue;
    }
    if (p.attributes["domain"] !== "package") continue;
    const k = consumerName(p.consumer);
    out[k] = Math.round(((out[k] ?? 0) + (p.value as number) / measured) * 1e6) / 1e6;
  }
  return out;
}

/** Σ attributed + unattributed per (interval, resource, domain, view) against the measured points. */
function checkConservation(
  all: Batch,
  r: { get(id: number): { name: string } },
  energyMetric: string,
): number {
  const measured = new Map<string, number>();
  const sums = new Map<string, number>();
  for (const p of all) {
    const name = r.get(p.metric).name;
    const key = `${p.timestamp}|${p.resource.kind}/${p.resource.id}|${p.attributes["domain"]}`;
    if (name === energyMetric && !String(p.attributes["domain"]).endsWith("_total")) {
      measured.set(key, p.value as number);
    } else if (name === "attributed_energy") {
      const k = `${key}|${p.attributes["view"]}`;
      sums.set(k, (sums.get(k) ?? 0) + (p.value as number));
      assert.equal(p.attributes["source_metric"], energyMetric);
      assert.ok(!String(p.attributes["domain"]).endsWith("_total"), "a _total domain was attributed");
    }
  }
  let checked = 0;
  for (const [k, sum] of sums) {
    const m = measured.get(k.slice(0, k.lastIndexOf("|")));
    assert.ok(m !== undefined, `no measured point for ${k}`);
    assert.ok(Math.abs(sum - m) <= 0.01 * Math.abs(m) + 1e-9, `${k}: Σ ${sum} J, measured ${m} J`);
    checked++;
  }
  return checked;
}

/**
 * Runs a recorded scenario: procfs process series (utime ticks per pid at each procfs tick; undefined: absent,
 * then gone) and kernel_cpu_time at whole seconds, the rapl fixture polled half a second later.
 */
async function processScenario(
  schedule: Record<number, (number | undefined)[]>,
  options: { ticks: number; born?: number[] },
) {
  const { r, ctx, out } = registry();
  const pm = createProcessMetrics((spec) => r.register("procfs", spec));
  const km = createKernelMetrics((spec) => r.register("procfs", spec));
  const proc = Deno.makeTempDirSync();
  const system = { userHz: USER_HZ, pageSize: 4096, nCpus: NCPUS };
  Deno.writeTextFileSync(`${proc}/stat`, procStat(0, 0.6));
  const kernel = new KernelSource(km, { root: proc, userHz: USER_HZ });
  const sources = new Map<number, ProcessSource>();
  await using rapl = new RecordedRapl();
  await rapl.open();
  const a = new EnergyAttributor({ output: out, systemCpus: 64, maxWaitMs: 1e12, clock: () => 0 });
  const all = new Batch();
  const feed = (b: Batch) => {
    a.ingest(b, ctx);
    all.append(b);
    const got = new Batch();
    a.emit(got);
    all.append(got);
  };
  for (let k = 0; k < options.ticks; k++) {
    const ts = T0 + BigInt(k) * S;
    const b = new Batch();
    b.timestamp = ts;
    Deno.writeTextFileSync(`${proc}/stat`, procStat(k, 0.6));
    kernel.poll(b);
    for (const [pidText, utimes] of Object.entries(schedule)) {
      const pid = Number(pidText);
      const u = utimes[k];
      if (u === undefined) {
        if (sources.has(pid)) Deno.writeTextFileSync(`${proc}/${pid}/stat`, ""); // gone
      } else {
        Deno.mkdirSync(`${proc}/${pid}`, { recursive: true });
        Deno.writeTextFileSync(`${proc}/${pid}/stat`, statLine(pid, u));
        Deno.writeTextFileSync(`${proc}/${pid}/statm`, "1000 100 50 10 0 200 0\n");
        if (!sources.has(pid)) {
          const baseline = options.born?.includes(pid) ? "zero" : "current";
          sources.set(pid, new ProcessSource(pid, pm, { root: proc, system, baseline }));
        }
      }
      const s = sources.get(pid);
      if (s === undefined) continue;
      try {
        s.poll(b, ts);
      } catch {
        s.close();
        sources.delete(pid);
      }
    }
    feed(b);
    // RAPL half a second later: 100 J package, 60 J core, 5 J uncore, 10 J dram per second.
    feed(await rapl.poll(r, ts + S / 2n, k === 0 ? undefined : [100, 60, 5, 10]));
  }
  for (const s of sources.values()) s.close();
  kernel.close();
  const last = new Batch();
  a.emit(last, true);
  all.append(last);
  Deno.removeSync(proc, { recursive: true });
  return { r, all, a };
}

const PKG0 = Resource.cpuPackage(0);

Deno.test("recorded RAPL + procfs: 30/18/12 % of the CPU time get 30/18/12 % of the joules, 40 % unattributed", async () => {
  // 4 CPUs: 120, 72 and 48 ticks a second are 30, 18 and 12 % of the machine's CPU time.
  const perSecond = { 101: 120, 102: 72, 103: 48 };
  const schedule = Object.fromEntries(
    Object.entries(perSecond).map(([pid, rate]) => [pid, [0, 1, 2, 3, 4].map((k) => 1000 + rate * k)]),
  );
  const { r, all, a } = await processScenario(schedule, { ticks: 5 });
  for (const k of [1, 2, 3]) { // RAPL intervals (k-0.5, k+0.5] lie between procfs ticks
    assert.deepEqual(
      fractions(all, r, { ts: T0 + BigInt(k) * S + S / 2n, resource: PKG0, view: "process" }, 100),
      {
        101: 0.3,
        102: 0.18,
        103: 0.12,
        unattributed: 0.4,
      },
    );
  }
  assert.ok(checkConservation(all, r, "rapl_consumed_energy") >= 12); // 4 domains × 4 intervals
  assert.equal(a.nCpus, NCPUS);
  assert.equal(a.nCpusSource, "kernel_cpu_time");
  assert.ok(a.stats.skippedTotals > 0, "the <domain>_total sums are not attributed a second time");
  // The last interval (3.5, 4.5] ends after the last procfs tick (4): computed at shutdown, its 4 domains
  // counted as incomplete.
  assert.equal(a.stats.incompleteIntervals, 4);
  assert.equal(a.stats.invariantBreaks, 0);
});

Deno.test("recorded RAPL + procfs: a process that starts and one that ends within an interval", async () => {
  // 104 is born between procfs ticks 1 and 2 (baseline zero: all its CPU time is new), 40 ticks a second;
  // 105 runs at 20 ticks a second and is gone at tick 4.
  const schedule = {
    101: [0, 1, 2, 3, 4].map((k) => 1000 + 120 * k),
    102: [0, 1, 2, 3, 4].map((k) => 1000 + 72 * k),
    103: [0, 1, 2, 3, 4].map((k) => 1000 + 48 * k),
    104: [undefined, undefined, 40, 80, 120],
    105: [500, 520, 540, 560, undefined],
  };
  const { r, all, a } = await processScenario(schedule, { ticks: 5, born: [104] });
  const at = (k: number) => ({ ts: T0 + BigInt(k) * S + S / 2n, resource: PKG0, view: "process" });
  // 104's first 0.4 s is spread over (1, 2], its source's previous tick to its first point: the interval
  // (0.5, 1.5] gets half of it (5 %), the next ones 10 %.
  assert.deepEqual(fractions(all, r, at(1), 100), {
    101: 0.3,
    102: 0.18,
    103: 0.12,
    104: 0.05,
    105: 0.05,
    unattributed: 0.3,
  });
  assert.deepEqual(fractions(all, r, at(2), 100), {
    101: 0.3,
    102: 0.18,
    103: 0.12,
    104: 0.1,
    105: 0.05,
    unattributed: 0.25,
  });
  // 105 was last seen at tick 3: it has (2.5, 3] at its rate, nothing after (its time after tick 3 is
  // unknown: unattributed).
  assert.deepEqual(fractions(all, r, at(3), 100), {
    101: 0.3,
    102: 0.18,
    103: 0.12,
    104: 0.1,
    105: 0.025,
    unattributed: 0.275,
  });
  checkConservation(all, r, "rapl_consumed_energy");
  assert.equal(a.stats.incompleteIntervals, 4);
});

Deno.test("recorded RAPL + cgroups: nested cgroups are counted once; one starts, one ends", async () => {
  const { r, ctx, out } = registry();
  const cm = registerMetrics(r, "cgroups", CGROUP_METRICS);
  const dir = Deno.makeTempDirSync();
  const root = `${dir}/cgroup`;
  Deno.mkdirSync(root);
  Deno.writeTextFileSync(`${root}/cgroup.controllers`, "cpu memory\n");
  Deno.writeTextFileSync(`${dir}/mounts`, `cgroup2 ${root} cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n`);
  const layout = detectLayout(`${dir}/mounts`);
  // CPU µs per second: /a 30 %, /b 18 % of its own plus its child /b/c 12 %; /d starts, /e ends.
  const usage: Record<string, (number | undefined)[]> = {
    "/a": [0, 1, 2, 3, 4].map((k) => 1.2e6 * k),
    "/b": [0, 1, 2, 3, 4].map((k) => (0.72e6 + 0.48e6) * k),
    "/b/c": [0, 1, 2, 3, 4].map((k) => 0.48e6 * k),
    "/d": [undefined, undefined, 0.4e6, 0.8e6, 1.2e6],
    "/e": [5e6, 5.2e6, 5.4e6, 5.6e6, undefined],
  };
  const probes = new Map<string, CgroupProbe>();
  await using rapl = new RecordedRapl();
  await rapl.open();
  const a = new EnergyAttributor({ output: out, nCpus: NCPUS, maxWaitMs: 1e12, clock: () => 0 });
  const all = new Batch();
  const feed = (b: Batch) => {
    a.ingest(b, ctx);
    all.append(b);
    a.emit(all);
  };
  for (let k = 0; k < 5; k++) {
    const ts = T0 + BigInt(k) * S;
    const b = new Batch();
    b.timestamp = ts;
    for (const [path, values] of Object.entries(usage)) {
      const v = values[k];
      const d = `${root}${path}`;
      if (v === undefined) {
        if (probes.has(path)) {
          Deno.writeTextFileSync(`${d}/cpu.stat`, "");
          Deno.writeTextFileSync(`${d}/memory.current`, "");
        }
      } else {
        Deno.mkdirSync(d, { recursive: true });
        Deno.writeTextFileSync(`${d}/cpu.stat`, `usage_usec ${v}\nuser_usec ${v}\nsystem_usec 0\n`);
        Deno.writeTextFileSync(`${d}/memory.current`, "1048576\n");
        if (!probes.has(path)) {
          const baseline = path === "/d" ? "zero" : "current";
          probes.set(path, new CgroupProbe(layout, path, cm, { nCpus: NCPUS, userHz: USER_HZ, baseline }));
        }
      }
      const p = probes.get(path);
      if (p !== undefined && !p.poll(b, ts)) {
        p.close();
        probes.delete(path);
      }
    }
    feed(b);
    feed(await rapl.poll(r, ts + S / 2n, k === 0 ? undefined : [100, 60, 5, 10]));
  }
  a.emit(all, true);
  for (const p of probes.values()) p.close();
  Deno.removeSync(dir, { recursive: true });
  const at = (k: number) => ({ ts: T0 + BigInt(k) * S + S / 2n, resource: PKG0, view: "cgroup" });
  const c = (x: Record<string, number>) => x;
  assert.deepEqual(
    fractions(all, r, at(1), 100),
    c({ "/a": 0.3, "/b": 0.18, "/b/c": 0.12, "/d": 0.05, "/e": 0.05, unattributed: 0.3 }),
  );
  assert.deepEqual(
    fractions(all, r, at(2), 100),
    c({ "/a": 0.3, "/b": 0.18, "/b/c": 0.12, "/d": 0.1, "/e": 0.05, unattributed: 0.25 }),
  );
  assert.deepEqual(
    fractions(all, r, at(3), 100),
    c({ "/a": 0.3, "/b": 0.18, "/b/c": 0.12, "/d": 0.1, "/e": 0.025, unattributed: 0.275 }),
  );
  checkConservation(all, r, "rapl_consumed_energy");
});

/** Synthetic series for the unit tests: energy and process CPU time at whole seconds. */
function synthetic(idle: "unattributed" | "spread", options: { kernelBusy?: number } = {}) {
  const { r, ctx, out } = registry();
  const energy = r.register("rapl", {
    name: "rapl_consumed_energy",
    unit: unit("J"),
    valueType: "f64",
    kind: "delta",
  });
  const cpu = r.register("procfs", CPU_TIME_DELTA);
  const mem = r.register("procfs", MEMORY_USAGE);
  const km = createKernelMetrics((spec) => r.register("procfs", spec));
  const kcpu = km.cpuTime;
  let clock = 0;
  const a = new EnergyAttributor({ output: out, idle, nCpus: 2, maxWaitMs: 5000, clock: () => clock });
  const tick = (k: number, cpuSeconds: Record<number, number>, joules?: number) => {
    const b = new Batch();
    const ts = T0 + BigInt(k) * S;
    for (const [pid, s] of Object.entries(cpuSeconds)) {
      const consumer = Consumer.process(Number(pid));
      b.push(mem, 1024, { consumer, timestamp: ts });
      if (k > 0) b.push(cpu, Math.round(s * 1e9), { consumer, attributes: { kind: "user" }, timestamp: ts });
    }
    // The kernel source's first poll pushes only its gauges; the next ones CPU time per state.
    if (options.kernelBusy !== undefined) b.push(km.procsRunning, 1, { timestamp: ts });
    if (options.kernelBusy !== undefined && k > 0) {
      b.push(kcpu, Math.round(options.kernelBusy * 2000), {
        attributes: { cpu_state: "user" },
        timestamp: ts,
      });
      b.push(kcpu, Math.round((1 - options.kernelBusy) * 2000), {
        attributes: { cpu_state: "idle" },
        timestamp: ts,
      });
    }
    if (joules !== undefined) {
      b.push(energy, joules, { resource: PKG0, attributes: { domain: "package" }, timestamp: ts });
    }
    a.ingest(b, ctx);
    a.emit(b);
    return b;
  };
  return { r, a, tick, setClock: (ms: number) => void (clock = ms) };
}

function shares(b: Batch, r: MetricRegistry): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of b) {
    if (r.get(p.metric).name !== "attributed_energy") continue;
    out[consumerName(p.consumer)] = Math.round((p.value as number) * 1e6) / 1e6;
  }
  return out;
}

Deno.test("idle = spread: the idle share goes to the active consumers; unaccounted busy time stays unattributed", async (t) => {
  await t.step("without kernel_cpu_time: everything to the consumers, by their CPU time", () => {
    const { r, tick } = synthetic("spread");
    tick(0, { 1: 0, 2: 0, 3: 0 }, 100);
    // 2 CPUs × 1 s: 0.6, 0.36, 0.24 s are 30/18/12 %; spread: 50/30/20 %.
    const b = tick(1, { 1: 0.6, 2: 0.36, 3: 0.24 }, 100);
    assert.deepEqual(shares(b, r), { 1: 50, 2: 30, 3: 20, unattributed: 0 });
  });
  await t.step("with kernel_cpu_time: the machine was 70 % busy, 10 % by nobody followed", () => {
    const { r, tick } = synthetic("spread", { kernelBusy: 0.7 });
    tick(0, { 1: 0, 2: 0, 3: 0 }, 100);
    const b = tick(1, { 1: 0.6, 2: 0.36, 3: 0.24 }, 100);
    // 30 + 30 × 30/60, 18 + 30 × 18/60, 12 + 30 × 12/60; unattributed keeps the unaccounted 10 %.
    assert.deepEqual(shares(b, r), { 1: 45, 2: 27, 3: 18, unattributed: 10 });
  });
  await t.step('idle = "unattributed" on the same data', () => {
    const { r, tick } = synthetic("unattributed", { kernelBusy: 0.7 });
    tick(0, { 1: 0, 2: 0, 3: 0 }, 100);
    assert.deepEqual(shares(tick(1, { 1: 0.6, 2: 0.36, 3: 0.24 }, 100), r), {
      1: 30,
      2: 18,
      3: 12,
      unattributed: 40,
    });
  });
});

Deno.test("late consumer data: a bounded wait, then unattributed and counted, never dropped", async (t) => {
  await t.step("data within the wait is used", () => {
    const { r, a, tick, setClock } = synthetic("unattributed");
    tick(0, { 1: 0 });
    setClock(0);
    // Energy for (0, 1] arrives before the CPU time of tick 1: it waits.
    const e = tick(1, {}, 100);
    assert.equal(shares(e, r)["unattributed"], undefined);
    assert.equal(a.pending, 1);
    setClock(1000);
    const late = tick(1, { 1: 1 }); // within the 5 s wait: counted in
    assert.deepEqual(shares(late, r), { 1: 50, unattributed: 50 });
    assert.equal(a.stats.incompleteIntervals, 0);
  });
  await t.step("after the wait, the unknown share goes to unattributed and is counted", () => {
    const { r, a, tick, setClock } = synthetic("unattributed");
    tick(0, { 1: 0 });
    tick(1, { 1: 1 });
    setClock(0);
    const e = tick(2, {}, 100); // energy for (1, 2]; the consumer's tick 2 is late
    assert.deepEqual(shares(e, r), {});
    setClock(6000);
    const b = new Batch();
    a.emit(b);
    assert.deepEqual(shares(b, r), { unattributed: 100 });
    assert.equal(a.stats.incompleteIntervals, 1);
    // When it finally comes, it is counted as late.
    tick(2, { 1: 1 });
    assert.equal(a.stats.latePoints, 1);
  });
  await t.step("an energy point out of order goes to unattributed, counted", () => {
    const { r, a, tick } = synthetic("unattributed");
    tick(0, { 1: 0 }, 1);
    tick(1, { 1: 1 }, 1);
    tick(2, { 1: 1 }, 1);
    const b = tick(1, {}, 7);
    assert.deepEqual(shares(b, r), { unattributed: 7 });
    assert.equal(a.stats.outOfOrderEnergy, 1);
  });
});

Deno.test("GPU energy is shared by SM utilisation", () => {
  const { r, ctx, out } = registry();
  const energy = r.register("nvml", {
    name: "nvml_energy_consumption",
    unit: unit("J", "milli"),
    valueType: "f64",
    kind: "delta",
  });
  const sm = r.register("nvml", { name: "nvml_sm_utilization", unit: unit("%"), valueType: "u64" });
  const gpu = Resource.gpu("00000000:65:00.0");
  const a = new EnergyAttributor({ output: out, maxWaitMs: 1e12, clock: () => 0 });
  const b0 = new Batch();
  b0.push(energy, 1000, { resource: gpu, timestamp: T0 });
  a.ingest(b0, ctx);
  a.emit(b0);
  const b = new Batch();
  b.push(sm, 60, { resource: gpu, consumer: Consumer.process(9), timestamp: T0 + S });
  b.push(sm, 15, { resource: gpu, consumer: Consumer.process(10), timestamp: T0 + S });
  b.push(energy, 200_000, { resource: gpu, timestamp: T0 + S }); // 200 J
  a.ingest(b, ctx);
  a.emit(b);
  assert.deepEqual(shares(b, r), { 9: 120, 10: 30, unattributed: 50 });
  const methods = new Set(
    [...b].filter((p) => r.get(p.metric).name === "attributed_energy").map((p) => p.attributes["method"]),
  );
  assert.deepEqual([...methods], ["gpu_sm_share"]);
});

Deno.test("estimated energy keeps estimated = true and its attributes", () => {
  const { r, ctx, out } = registry();
  const est = r.register("tdp", {
    name: "estimated_consumed_energy",
    unit: unit("J"),
    valueType: "f64",
    kind: "delta",
  });
  const cpu = r.register("procfs", CPU_TIME_DELTA);
  const a = new EnergyAttributor({ output: out, nCpus: 1, maxWaitMs: 1e12, clock: () => 0 });
  const b = new Batch();
  const attributes = { cpu_state: "user", estimated: true };
  const c = { consumer: Consumer.process(3), attributes: { kind: "user" } };
  b.push(cpu, 0, { ...c, timestamp: T0 });
  b.push(est, 5, { attributes, timestamp: T0 });
  b.push(cpu, 500_000_000, { ...c, timestamp: T0 + S });
  b.push(est, 10, { attributes, timestamp: T0 + S });
  a.ingest(b, ctx);
  const got = new Batch();
  a.emit(got, true);
  const last = [...got].filter((p) => p.timestamp === T0 + S);
  assert.deepEqual(last.map((p) => [consumerName(p.consumer), p.value, p.attributes]), [
    ["3", 5, {
      cpu_state: "user",
      estimated: true,
      source_metric: "estimated_consumed_energy",
      method: "cpu_time_share",
      view: "process",
    }],
    ["unattributed", 5, {
      cpu_state: "user",
      estimated: true,
      source_metric: "estimated_consumed_energy",
      method: "cpu_time_share",
      view: "process",
    }],
  ]);
});

Deno.test("a TDP estimate is shared by busy time: a consumer gets its CPU time × watts per CPU; idle's is nobody's", () => {
  const { r, ctx, out } = registry();
  const est = r.register("energy-estimation-tdp", {
    name: "estimated_consumed_energy",
    unit: unit("J"),
    valueType: "f64",
    kind: "delta",
  });
  const cpu = r.register("procfs", CPU_TIME_DELTA);
  const km = createKernelMetrics((spec) => r.register("procfs", spec));
  const a = new EnergyAttributor({ output: out, nCpus: 2, maxWaitMs: 5000, clock: () => 0 });
  // 2 CPUs × 1 s; the machine: user 0.6 s, system 0.4 s, idle 1 s; at 50 W per busy CPU the estimate is
  // user 30 J, system 20 J, idle 50 J. The program (pid 7) used 0.5 s: 25 J of the 50 J the machine's use cost.
  const states: [string, number, number][] = [["user", 600, 30], ["system", 400, 20], ["idle", 1000, 50]];
  let last = new Batch();
  for (const k of [0, 1]) {
    const b = new Batch();
    const ts = T0 + BigInt(k) * S;
    b.push(km.procsRunning, 1, { timestamp: ts });
    b.push(cpu, k === 0 ? 0 : 500_000_000, {
      consumer: Consumer.process(7),
      attributes: { kind: "user" },
      timestamp: ts,
    });
    for (const [state, ms, joules] of states) {
      if (k > 0) b.push(km.cpuTime, ms, { attributes: { cpu_state: state }, timestamp: ts });
      b.push(est, joules, { attributes: { cpu_state: state, estimated: true }, timestamp: ts });
    }
    a.ingest(b, ctx);
    last = new Batch();
    a.emit(last, k === 1);
  }
  const got: Record<string, number> = {};
  for (const p of last) {
    if (p.timestamp !== T0 + S || r.get(p.metric).name !== "attributed_energy") continue;
    const key = `${p.attributes.cpu_state}/${consumerName(p.consumer)}`;
    got[key] = Math.round((p.value as number) * 1e6) / 1e6;
  }
  assert.deepEqual(got, {
    "user/7": 15,
    "user/unattributed": 15,
    "system/7": 10,
    "system/unattributed": 10,
    "idle/unattributed": 50,
  });
});

// Alumet's README example (plugins/energy-attribution/README.md), as a user writes it.
const ALUMET_EXAMPLE = `
[plugins.energy-attribution.formulas.attributed_energy]
expr = "cpu_energy * cpu_usage / 100.0"
ref = "cpu_energy"

[plugins.energy-attribution.formulas.attributed_energy.per_resource]
cpu_energy = { metric = "rapl_consumed_energy", resource_kind = "local_machine", domain = "package_total" }

[plugins.energy-attribution.formulas.attributed_energy.per_consumer]
cpu_usage = { metric = "cpu_percent", kind = "total" }
`;

function alumetTable(text: string): Record<string, unknown> {
  const t = parseToml(text) as { plugins: Record<string, Record<string, unknown>> };
  return t.plugins["energy-attribution"]!;
}

Deno.test("Alumet's formula configuration: parsed, started, and computed with interpolation", async () => {
  await using h = await testPlugin(energyAttributionPlugin, alumetTable(ALUMET_EXAMPLE));
  const plugin = h.plugin as EnergyAttributionPlugin;
  assert.deepEqual([...h.transforms.keys()], ["formula_attributed_energy"]);
  assert.equal(plugin.attributor, undefined, "formula mode replaces the default mode");
  const metric = h.metrics.byName("attributed_energy")!;
  assert.equal(metric.unit.code, "J");
  const energy = h.metrics.register("rapl", {
    name: "rapl_consumed_energy",
    unit: unit("J"),
    valueType: "f64",
    kind: "delta",
  });
  const pct = h.metrics.register("procfs", { name: "cpu_percent", unit: unit("%"), valueType: "f64" });
  const b = new Batch();
  const p1 = Consumer.process(1), p2 = Consumer.process(2);
  // cpu_percent at 0 s and 2 s; energy at 1 s: interpolated at 1 s, 20 % and 50 %.
  b.push(pct, 10, { consumer: p1, attributes: { kind: "total" }, timestamp: T0 });
  b.push(pct, 30, { consumer: p1, attributes: { kind: "total" }, timestamp: T0 + 2n * S });
  b.push(pct, 99, { consumer: p1, attributes: { kind: "user" }, timestamp: T0 + S }); // filtered out
  b.push(pct, 50, { consumer: p2, attributes: { kind: "total" }, timestamp: T0 });
  b.push(pct, 50, { consumer: p2, attributes: { kind: "total" }, timestamp: T0 + 2n * S });
  const pkgTotal = { domain: "package_total" };
  b.push(energy, 40, { attributes: pkgTotal, timestamp: T0 + S });
  b.push(energy, 1000, { resource: PKG0, attributes: { domain: "package" }, timestamp: T0 + S }); // not cpu_energy
  const out = await h.transform("formula_attributed_energy", b);
  const got = [...out].filter((p) => p.metric === metric.id).map((
    p,
  ) => [p.consumer.id, p.value, p.timestamp]);
  assert.deepEqual(got, [["1", 8, T0 + S], ["2", 20, T0 + S]]);
  const fa = plugin.formulas.get("attributed_energy") as FormulaAttributor;
  assert.equal(fa.stats.emitted, 2);
  // A reference point beyond the consumers' data waits for it.
  const b2 = new Batch();
  b2.push(energy, 10, { attributes: pkgTotal, timestamp: T0 + 3n * S });
  assert.equal(
    [...await h.transform("formula_attributed_energy", b2)].filter((p) => p.metric === metric.id).length,
    0,
  );
  const b3 = new Batch();
  b3.push(pct, 30, { consumer: p1, attributes: { kind: "total" }, timestamp: T0 + 4n * S });
  const got3 = [...await h.transform("formula_attributed_energy", b3)].filter((p) => p.metric === metric.id);
  assert.deepEqual(got3.map((p) => [p.consumer.id, p.value]), [["1", 3]]);
});

Deno.test("formula configuration errors: one clear message naming the key", async (t) => {
  const bad = (table: Record<string, unknown>) => {
    try {
      validatePluginConfig(
        energyAttributionPlugin,
        { name: "energy-attribution", table },
        "alumet-config.toml",
      );
    } catch (e) {
      return (e as Error).message;
    }
    assert.fail("the config was accepted");
  };
  const base = alumetTable(ALUMET_EXAMPLE) as { formulas: { attributed_energy: Record<string, unknown> } };
  const withExpr = (expr: string) => ({
    formulas: { attributed_energy: { ...base.formulas.attributed_energy, expr } },
  });
  await t.step("syntax error", () => {
    assert.equal(
      bad(withExpr("cpu_energy * (cpu_usage / 100.0")),
      "Invalid config in alumet-config.toml: plugins.energy-attribution.formulas.attributed_energy.expr: " +
        'expected an expression that parses: expected ")", found the end of the expression at column 32 of ' +
        '"cpu_energy * (cpu_usage / 100.0"',
    );
    assert.match(
      bad(withExpr("cpu_energy ** 2")),
      /expected a number, a variable or "\(", found "\*" at column 13/,
    );
    assert.match(bad(withExpr("eval(cpu_energy)")), /unknown function "eval" \(known: min, max, abs\)/);
  });
  await t.step("unknown variable", () => {
    assert.match(
      bad(withExpr("cpu_energy * gpu_usage")),
      /formulas\.attributed_energy\.expr: expected only declared variables in "cpu_energy \* gpu_usage": "gpu_usage" is not declared under per_resource or per_consumer \(declared: cpu_energy, cpu_usage\)/,
    );
  });
  await t.step("ref not a per_resource variable", () => {
    assert.match(
      bad({ formulas: { attributed_energy: { ...base.formulas.attributed_energy, ref: "cpu_usage" } } }),
      /formulas\.attributed_energy\.ref: expected the name of a per_resource variable \(the reference series\), not "cpu_usage"/,
    );
  });
  await t.step("a series without metric", () => {
    assert.match(
      bad({
        formulas: {
          attributed_energy: {
            ...base.formulas.attributed_energy,
            per_consumer: { cpu_usage: { kind: "total" } },
          },
        },
      }),
      /formulas\.attributed_energy\.per_consumer\.cpu_usage\.metric: expected a metric name/,
    );
  });
  await t.step("default-mode keys", () => {
    assert.match(bad({ idle: "share" }), /idle/);
    assert.match(bad({ n_cpu: 4 }), /n_cpu/);
    assert.match(bad({ views: [] }), /views.*at least one view \("process", "cgroup"\)/s);
  });
});

Deno.test("expressions: arithmetic, precedence, functions, no access to anything else", () => {
  const ev = (text: string, vars: Record<string, number> = {}) => compileExpr(text).evaluate(vars);
  assert.equal(ev("1 + 2 * 3"), 7);
  assert.equal(ev("(1 + 2) * 3"), 9);
  assert.equal(ev("-2 ^ 2"), -4);
  assert.equal(ev("2 ^ 3 ^ 2"), 512);
  assert.equal(ev("10 / 4 - 7 % 4"), -0.5);
  assert.equal(ev("min(a, 3, b) + max(a, b) + abs(-1)", { a: 2, b: 5 }), 8);
  assert.equal(ev("(a > 1) * 10 + (a <= 1) * 20 + (a == 2) + (a != 2)", { a: 2 }), 11);
  assert.equal(ev("1e3 * .5"), 500);
  assert.ok(Number.isNaN(ev("constructor + 1")), "a variable reads own values only");
  assert.ok(Number.isNaN(ev("__proto__", {})));
  assert.throws(() => compileExpr("a; b"), /unexpected character ";" at column 2/);
  assert.throws(() => compileExpr("abs(1, 2)"), /abs\(\) takes 1 argument\(s\), got 2/);
  assert.throws(() => compileExpr(""), /found the end of the expression at column 1/);
});

Deno.test("README: metrics table and configuration block match the plugin", async () => {
  const readme = await Deno.readTextFile(new URL("./README.md", import.meta.url));
  checkMetricsTable(readme, ATTRIBUTION_METRICS);
  checkConfigBlock(readme, energyAttributionPlugin);
});

Deno.test("the agent runs rapl (powercap fixture) and procfs for real; what it attributes adds up", async () => {
  const { Agent, definePlugin } = await import("../../src/agent/agent.ts");
  const tmp = Deno.makeTempDirSync();
  const sys = `${tmp}/sys`;
  copyTree(RAPL_FIXTURE, sys);
  const zones = ["intel-rapl:0", "intel-rapl:0:0", "intel-rapl:0:1", "intel-rapl:0:2"];
  const watts = [40, 20, 2, 5];
  let uj = 1e9;
  const move = () => {
    uj += 50e3; // 50 ms at 1 W, in µJ
    zones.forEach((z, k) =>
      Deno.writeTextFileSync(`${sys}/class/powercap/${z}/energy_uj`, `${Math.round(uj * watts[k]!)}\n`)
    );
  };
  move();
  const timer = setInterval(move, 50);
  const got: Batch[] = [];
  let metrics: ElementContext | undefined;
  const sink = definePlugin({
    name: "sink",
    start(ctx) {
      ctx.addOutput("collect", {
        write: (b: Batch, c: ElementContext) => {
          metrics = c;
          got.push(b);
        },
      });
    },
  });
  let plugin: EnergyAttributionPlugin | undefined;
  const attribution = {
    ...energyAttributionPlugin,
    init: async (c: Parameters<typeof energyAttributionPlugin.init>[0]) =>
      plugin = await energyAttributionPlugin.init(c) as EnergyAttributionPlugin,
  };
  try {
    await using agent = new Agent({
      plugins: [
        {
          plugin: raplPlugin,
          config: { sysfs_root: sys, no_perf_events: true, poll_interval: "200ms", flush_interval: "200ms" },
        },
        {
          plugin: (await import("../procfs/mod.ts")).procfsPlugin,
          config: {
            kernel: { poll_interval: "200ms" },
            memory: { enabled: false },
            network: { enabled: false },
            processes: { groups: [{ pid: Deno.pid, poll_interval: "200ms", flush_interval: "200ms" }] },
          },
        },
        { plugin: attribution, config: {} },
        sink,
      ],
      selfInterval: 3_600_000,
    });
    await agent.start();
    const until = performance.now() + 2500;
    while (performance.now() < until) {
      let x = 0;
      for (let i = 0; i < 2e6; i++) x += i; // some CPU time for this process
      if (x < 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    await agent.stop();
  } finally {
    clearInterval(timer);
    Deno.removeSync(tmp, { recursive: true });
  }
  const all = new Batch();
  for (const b of got) all.append(b);
  assert.ok(metrics !== undefined);
  const byId = { get: (id: number) => metrics!.metric(id as never) };
  const checked = checkConservation(all, byId, "rapl_consumed_energy");
  assert.ok(checked >= 8 * 4, `only ${checked} (interval, domain) sums checked`);
  // This process used CPU time, and got a share of the joules.
  const mine = [...all].filter((p) =>
    byId.get(p.metric).name === "attributed_energy" && p.consumer.kind === "process" &&
    p.consumer.id === String(Deno.pid)
  );
  assert.ok(mine.some((p) => (p.value as number) > 0), "no energy attributed to this process");
  assert.ok(plugin?.attributor !== undefined);
  const stats = plugin.attributor.stats;
  assert.ok(stats.intervals >= 8, `only ${stats.intervals} intervals`);
  assert.equal(stats.invariantBreaks, 0);
  assert.ok(stats.skippedTotals > 0);
  assert.equal(plugin.attributor.nCpusSource, "kernel_cpu_time");
});

/**
 * Two consumer sources with their own cadences, as under `alumet exec` with a group config: a group source
 * (processes 1 and 2) polls and flushes every second; the program's tree source (process 9) polls every second,
 * half a second later, and flushes every 4 polls (processes.events). Energy: 100 J per second on 2 CPUs.
 * Events are replayed in arrival order, the wall clock following the data's.
 */
function twoCadences(options: { firstPollAtOnce: boolean; announce: boolean; stopAt?: number }) {
  const { r, ctx, out } = registry();
  const energy = r.register("rapl", {
    name: "rapl_consumed_energy",
    unit: unit("J"),
    valueType: "f64",
    kind: "delta",
  });
  const cpu = r.register("procfs", CPU_TIME_DELTA);
  const mem = r.register("procfs", MEMORY_USAGE);
  let nowMs = 0;
  const a = new EnergyAttributor({ output: out, nCpus: 2, clock: () => Number(T0 / 1_000_000n) + nowMs });
  const end = options.stopAt ?? 20_000;
  // Each event: [arrival ms, points as [poll ms, kind]].
  type Poll = { at: number; what: "group" | "tree" | "energy" };
  const arrivals = new Map<number, Poll[]>();
  const arrive = (at: number, p: Poll) => arrivals.set(at, [...(arrivals.get(at) ?? []), p]);
  for (let t = 0; t <= end; t += 1000) arrive(t + 10, { at: t, what: "group" });
  for (let t = 200; t <= end; t += 1000) arrive(t + 10, { at: t, what: "energy" });
  const treeStart = 2500;
  const treePolls: number[] = [];
  for (let t = treeStart; t <= end; t += 1000) treePolls.push(t);
  treePolls.forEach((t, i) => {
    // Flushed every 4 polls (the first one at once when its poll is triggered at start), and at the end.
    const k = options.firstPollAtOnce ? i : i + 1;
    const flushAt = options.firstPollAtOnce && i === 0
      ? t
      : treeStart + (Math.ceil(k / 4) * 4 - (options.firstPollAtOnce ? 0 : 1)) * 1000;
    arrive(Math.min(flushAt, end) + 20, { at: t, what: "tree" });
  });
  const got = new Batch();
  let announced = false;
  for (const at of [...arrivals.keys()].sort((x, y) => x - y)) {
    nowMs = at;
    if (options.announce && !announced && at >= treeStart) {
      a.expect([Consumer.process(9)]);
      announced = true;
    }
    const b = new Batch();
    for (const p of arrivals.get(at)!) {
      const ts = T0 + BigInt(p.at) * 1_000_000n;
      if (p.what === "energy") {
        if (p.at > 200) {
          b.push(energy, 100, { resource: PKG0, attributes: { domain: "package" }, timestamp: ts });
        } else b.push(energy, 0, { resource: PKG0, attributes: { domain: "package" }, timestamp: ts });
      } else if (p.what === "group") {
        for (const [pid, share] of [[1, 0.5], [2, 0.1]] as const) {
          const consumer = Consumer.process(pid);
          b.push(mem, 1024, { consumer, timestamp: ts });
          if (p.at > 0) {
            b.push(cpu, share * 1e9, { consumer, attributes: { kind: "user" }, timestamp: ts });
          }
        }
      } else {
        const consumer = Consumer.process(9);
        b.push(mem, 1024, { consumer, timestamp: ts });
        // The tree counts from the program's start (its first poll, 0 s used yet), then 1 CPU.
        b.push(cpu, p.at === treeStart ? 0 : 1e9, { consumer, attributes: { kind: "user" }, timestamp: ts });
      }
    }
    a.ingest(b, ctx);
    a.emit(got);
  }
  nowMs = end + 60_000;
  a.emit(got, true);
  // Joules per consumer, per interval end (ms after T0).
  const per = new Map<number, Record<string, number>>();
  for (const p of got) {
    if (r.get(p.metric).name !== "attributed_energy") continue;
    const ms = Number((p.timestamp - T0) / 1_000_000n);
    const row = per.get(ms) ?? {};
    row[consumerName(p.consumer)] = (row[consumerName(p.consumer)] ?? 0) + (p.value as number);
    per.set(ms, row);
  }
  return { a, per };
}

Deno.test("sources of different cadences: a series is ended by its own cadence, and intervals wait for it", async (t) => {
  for (
    const [name, options] of [
      ["its first poll flushed at once, the next ones 4 at a time", {
        firstPollAtOnce: true,
        announce: false,
      }],
      ["announced (start consumer measurement), its first points 4 s later", {
        firstPollAtOnce: false,
        announce: true,
      }],
    ] as const
  ) {
    await t.step(name, () => {
      const { a, per } = twoCadences(options);
      // Every interval from one after the program's first poll to the end: process 9 used 1 of 2 CPUs (50 J),
      // process 1 half a CPU (25 J), process 2 a tenth (5 J), 20 J unattributed.
      let n = 0;
      for (const [ms, row] of per) {
        if (ms < 4_200 || ms > 19_200) continue;
        n++;
        const r = Object.fromEntries(Object.entries(row).map(([k, v]) => [k, Math.round(v * 1e6) / 1e6]));
        assert.deepEqual(r, { 1: 25, 2: 5, 9: 50, unattributed: 20 }, `interval ending at ${ms} ms`);
      }
      assert.equal(n, 16);
      assert.equal(a.stats.incompleteIntervals, 0);
      assert.equal(a.stats.latePoints, 0);
    });
  }
});

Deno.test("unattributed is never negative: shares that add up to the measured energy give 0, not -1e-16", () => {
  let negatives = 0, checked = 0;
  for (const n of [3, 6, 7, 10]) {
    for (const joules of [0.3, 0.7, 1.1, 123.456789, 1e-3]) {
      const { r, ctx, out } = registry();
      const energy = r.register("rapl", { name: "e", unit: unit("J"), valueType: "f64", kind: "delta" });
      const cpu = r.register("procfs", CPU_TIME_DELTA);
      const a = new EnergyAttributor({ output: out, nCpus: 1, maxWaitMs: 1e12, clock: () => 0 });
      const got = new Batch();
      for (const k of [0, 1]) {
        const b = new Batch();
        const ts = T0 + BigInt(k) * S;
        // n consumers share the whole CPU: the shares add up to the measured joules.
        for (let pid = 1; pid <= n; pid++) {
          const v = k === 0 ? 0 : Math.round(1e9 / n) + (pid === 1 ? 1e9 - n * Math.round(1e9 / n) : 0);
          b.push(cpu, v, { consumer: Consumer.process(pid), attributes: { kind: "user" }, timestamp: ts });
        }
        b.push(energy, joules, { timestamp: ts });
        a.ingest(b, ctx);
        a.emit(got, k === 1);
      }
      let sum = 0;
      for (const p of got) {
        if (p.timestamp !== T0 + S || r.get(p.metric).name !== "attributed_energy") continue;
        sum += p.value as number;
        if (p.consumer.kind === "unattributed") {
          checked++;
          if ((p.value as number) < 0) negatives++;
        }
      }
      assert.ok(Math.abs(sum - joules) <= 1e-12 * joules, `${sum} J for ${joules} J`);
    }
  }
  assert.equal(checked, 20);
  assert.equal(negatives, 0);
});

Deno.test("a configured metric that no enabled plugin creates is warned about once the plugins have started", async (t) => {
  const run = async (table: Record<string, unknown>) => {
    const r = new MetricRegistry();
    r.register("rapl", { name: "rapl_consumed_energy", unit: unit("J"), valueType: "f64", kind: "delta" });
    r.register("procfs", { name: "cpu_percent", unit: unit("%"), valueType: "f64", kind: "gauge" });
    const config = validatePluginConfig(
      energyAttributionPlugin,
      { name: "energy-attribution", table },
      "test",
    );
    const plugin = await energyAttributionPlugin.init(config);
    const warnings: string[] = [];
    const log = { warn: (m: string) => void warnings.push(m), info() {}, debug() {}, error() {}, trace() {} };
    await plugin.preStart!({ metrics: r, log, events: new EventBus() } as unknown as PreStartContext);
    return warnings;
  };
  await t.step("energy_metrics", async () => {
    const w = await run({ energy_metrics: ["nope", "rapl_consumed_energy", "cpu_percent"] });
    assert.equal(w.length, 2, w.join("\n"));
    assert.match(w[0]!, /energy_metrics: "nope" is created by no enabled plugin/);
    assert.match(w[1]!, /energy_metrics: "cpu_percent" is not an energy .*gauge in %/);
    assert.deepEqual(await run({}), []);
  });
  await t.step("formula mode", async () => {
    const table = alumetTable(ALUMET_EXAMPLE);
    assert.deepEqual(await run(table), []);
    const est = alumetTable(ALUMET_EXAMPLE.replace("rapl_consumed_energy", "estimated_consumed_energy"));
    const w = await run(est);
    assert.equal(w.length, 1, w.join("\n"));
    assert.match(
      w[0]!,
      /Formula "attributed_energy": per_resource\.cpu_energy reads metric "estimated_consumed_energy", which no enabled plugin creates/,
    );
  });
});

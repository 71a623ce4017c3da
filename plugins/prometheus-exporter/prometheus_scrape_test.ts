/**
 * Debian's Prometheus (2.42 here) scrapes an agent that runs the exporter, and what it stored is read back with
 * its HTTP API: the series, their values and labels, and the energy counter's increase over the scrapes.
 */
import assert from "node:assert/strict";
import { needs, testWith } from "../../src/testing/needs.ts";
import { Agent } from "../../src/agent/agent.ts";
import { definePlugin } from "../../src/plugin/define.ts";
import { Resource } from "../../src/model/resources.ts";
import { unit } from "../../src/model/units.ts";
import { prometheusExporterPlugin } from "./mod.ts";

/** The energy delta of poll `k` (1, 2…), in joules: distinct partial sums, exact in binary. */
const deltaOf = (k: number) => 1 + (k % 7) * 0.125;

/** What the test's source produced: the running total after each poll, and when each poll ran (ms). */
interface Produced {
  totals: number[];
  times: number[];
}

function deterministicSource(produced: Produced) {
  return definePlugin({
    name: "promtest",
    start(ctx) {
      const energy = ctx.createMetric({
        name: "test_energy",
        unit: unit("J"),
        valueType: "f64",
        kind: "delta",
        description: "Energy of the test's fake package",
      });
      const temperature = ctx.createMetric({ name: "test_temperature", unit: unit("Cel"), valueType: "f64" });
      const load = ctx.createMetric({ name: "test_load", unit: unit("%"), valueType: "f64" });
      const pkg = Resource.cpuPackage(0);
      const domain = { domain: "package" };
      const attrs = { cpu_state: "user", path: 'C:\\x "y"', "odd-key": 7 };
      let k = 0;
      let total = 0;
      ctx.addSource("in", {
        poll(batch) {
          k++;
          const d = deltaOf(k);
          batch.push(energy, d, { resource: pkg, attributes: domain });
          batch.push(temperature, 42.5, { resource: pkg });
          batch.push(load, 50, { attributes: attrs });
          total += d;
          produced.totals.push(total);
          produced.times.push(Date.now());
        },
      }, { pollInterval: "100ms" });
    },
  });
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

interface Sample {
  metric: Record<string, string>;
  value?: [number, string];
  values?: [number, string][];
}

async function query(base: string, q: string): Promise<Sample[]> {
  const r = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(q)}`);
  const body = await r.json();
  assert.equal(body.status, "success", JSON.stringify(body));
  return body.data.result as Sample[];
}

async function waitFor<T>(what: string, ms: number, fn: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`Timed out after ${ms} ms waiting for ${what}${last ? `: ${last}` : ""}`);
}

testWith(
  [needs.command("prometheus")],
  "Prometheus scrapes the exporter: values, labels, and an energy counter that loses no joule",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "alumet_prom_test_" });
    const produced: Produced = { totals: [], times: [] };
    const agent = new Agent({
      plugins: [deterministicSource(produced), { plugin: prometheusExporterPlugin, config: { port: 0 } }],
    });
    let prom: Deno.ChildProcess | undefined;
    let promOutput: Promise<Deno.CommandOutput> | undefined;
    try {
      await agent.start();
      const target = agent.outputs().find((o) => o.name.includes("prometheus-exporter"))!.description;
      const exporterPort = Number(new URL(target).port);
      assert.ok(exporterPort > 0, target);

      const promPort = freePort();
      await Deno.writeTextFile(
        `${dir}/prometheus.yml`,
        `global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: agent\n` +
          `    static_configs:\n      - targets: ['127.0.0.1:${exporterPort}']\n`,
      );
      prom = new Deno.Command("prometheus", {
        args: [
          `--config.file=${dir}/prometheus.yml`,
          `--storage.tsdb.path=${dir}/data`,
          `--web.listen-address=127.0.0.1:${promPort}`,
          "--log.level=warn",
        ],
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      promOutput = prom.output();
      const base = `http://127.0.0.1:${promPort}`;
      await waitFor("Prometheus to be ready", 60_000, async () => {
        const r = await fetch(`${base}/-/ready`);
        await r.body?.cancel();
        return r.ok ? true : undefined;
      });

      // A few scrapes of the energy counter.
      const energyName = "test_energy_alumet_joules_total";
      const raw = await waitFor("5 scrapes of the energy counter", 60_000, async () => {
        const r = await query(base, `${energyName}[5m]`);
        return r.length === 1 && r[0]!.values!.length >= 5 ? r[0]! : undefined;
      });

      // Labels: resource, consumer and the attribute; the target is healthy.
      assert.deepEqual(raw.metric, {
        __name__: energyName,
        domain: "package",
        instance: `127.0.0.1:${exporterPort}`,
        job: "agent",
        resource_kind: "cpu_package",
        resource_id: "0",
        resource_consumer_kind: "local_machine",
      }); // Prometheus drops labels with an empty value (resource_consumer_id="")
      const up = await query(base, "up");
      assert.equal(up[0]?.value?.[1], "1");

      // Every scraped value is a running total of the deltas, never a single delta.
      const totals = produced.totals;
      const index = (v: number) => totals.findIndex((t) => Math.abs(t - v) <= 1e-9 * t);
      const points = raw.values!.map(([ts, v]) => ({ ts, v: Number(v), k: index(Number(v)) }));
      for (const p of points) {
        assert.ok(p.k >= 0, `scraped value ${p.v} is not a running total of the deltas`);
      }
      const first = points[0]!;
      const last = points.at(-1)!;
      assert.ok(last.k > first.k, "the counter grew between the first and the last scrape");
      let sum = 0;
      for (let k = first.k + 1; k <= last.k; k++) sum += deltaOf(k + 1); // totals[k] includes poll k + 1
      const increase = last.v - first.v;
      assert.ok(Math.abs(increase - sum) <= 0.01 * sum, `increase ${increase} J, deltas ${sum} J`);
      // The deltas counted were produced before the scrape that saw them (clocks: this machine's).
      assert.ok(produced.times[last.k]! <= last.ts * 1000 + 50, "a delta seen before it was produced");
      assert.ok(increase > 10 * deltaOf(1), "several scrapes, dozens of polls");

      // The gauge, in °C, and the metric with attributes, in % converted to a ratio, labels escaped back.
      const temp = await query(base, "test_temperature_alumet_celsius");
      assert.equal(temp.length, 1);
      assert.equal(temp[0]!.value![1], "42.5");
      assert.equal(temp[0]!.metric.resource_kind, "cpu_package");
      const load = await query(base, "test_load_alumet_ratio");
      assert.equal(load.length, 1);
      assert.equal(load[0]!.value![1], "0.5");
      assert.equal(load[0]!.metric.path, 'C:\\x "y"');
      assert.equal(load[0]!.metric.cpu_state, "user");
      assert.equal(load[0]!.metric.odd_key, "7");
    } finally {
      try {
        prom?.kill("SIGTERM");
      } catch { /* already gone */ }
      if (promOutput !== undefined) {
        const killer = setTimeout(() => {
          try {
            prom?.kill("SIGKILL");
          } catch { /* gone */ }
        }, 10_000);
        const out = await promOutput;
        clearTimeout(killer);
        if (!out.success && out.signal !== "SIGTERM") {
          // deno-lint-ignore no-console
          console.error(new TextDecoder().decode(out.stderr).slice(-4000));
        }
      }
      await agent[Symbol.asyncDispose]();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

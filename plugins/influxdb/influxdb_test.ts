import assert from "node:assert/strict";
import {
  apiVersionOf,
  escapeKey,
  escapeMeasurement,
  influxdbPlugin,
  LineProtocolEncoder,
  quoteString,
  writeUrl,
} from "./mod.ts";
import { Agent } from "../../src/agent/agent.ts";
import { definePlugin } from "../../src/plugin/define.ts";
import { Batch } from "../../src/model/batch.ts";
import { MetricRegistry } from "../../src/model/metrics.ts";
import { unit } from "../../src/model/units.ts";
import { checkConfigBlock } from "../../src/testing/readme.ts";
import { needs, testWith } from "../../src/testing/needs.ts";
import { type LogSink, setLogSink } from "../../src/log.ts";

function captureLogs(): { lines: string[]; [Symbol.dispose](): void } {
  const lines: string[] = [];
  const prev = setLogSink((level, scope, msg) => lines.push(`${level} ${scope}: ${msg}`));
  return { lines, [Symbol.dispose]: () => void setLogSink(prev as LogSink) };
}

Deno.test("influxdb README's configuration block is the plugin's default config and states the guarantee", () => {
  const readme = Deno.readTextFileSync(new URL("./README.md", import.meta.url));
  checkConfigBlock(readme, influxdbPlugin);
  assert.match(readme, /Guarantee: at-least-once/);
});

Deno.test("line protocol escaping", async (t) => {
  await t.step("measurement: commas and spaces", () => {
    assert.equal(escapeMeasurement("a b,c=d"), "a\\ b\\,c=d");
    assert.equal(escapeMeasurement("line\nbreak"), "line\\ break");
  });
  await t.step("tag keys, tag values, field keys: commas, equals, spaces", () => {
    assert.equal(escapeKey("k e=y,z"), "k\\ e\\=y\\,z");
    assert.equal(escapeKey("plain"), "plain");
  });
  await t.step("string fields: double quotes and backslashes", () => {
    assert.equal(quoteString('a "b" c\\d'), '"a \\"b\\" c\\\\d"');
    assert.equal(quoteString("x,y= z"), '"x,y= z"');
  });
});

Deno.test("LineProtocolEncoder writes points as Alumet does, per API version", async (t) => {
  const registry = new MetricRegistry();
  const energy = registry.register("t", { name: "energy", unit: unit("J"), valueType: "u64" });
  const power = registry.register("t", { name: "cpu_power", unit: unit("W"), valueType: "f64" });
  const ctx = { metric: (id: number) => registry.get(id) };
  const batch = new Batch();
  const attributes = { "my tag": "a,b=c d", value: 3, resource_id: "x", ok: true };
  batch.push(energy, 18_446_744_073_709_551_615n, {
    timestamp: 1_700_000_000_123_456_789n,
    resource: { kind: "cpu_package", id: "0" },
  });
  batch.push(power, 12.5, { timestamp: 1n, attributes });
  batch.push(power, NaN, { timestamp: 2n });

  await t.step("v2, attributes as fields", () => {
    const out = new LineProtocolEncoder().encode(batch, ctx);
    assert.equal(out.points, 2);
    assert.equal(out.skipped, 1);
    assert.equal(
      out.text,
      "energy,resource_kind=cpu_package,resource_id=0,resource_consumer_kind=local_machine " +
        "value=18446744073709551615u 1700000000123456789\n" +
        "cpu_power,resource_kind=local_machine,resource_consumer_kind=local_machine " +
        'my\\ tag="a,b=c d",alumet_attribute__value=3,resource_id="x",ok=T,value=12.5 1\n',
    );
  });
  await t.step("v1, attributes as tags: u64 as i, beyond 2^63-1 left out and counted", () => {
    const out = new LineProtocolEncoder({ version: "v1", attributesAs: "tag", attributesAsFields: ["ok"] })
      .encode(batch, ctx);
    assert.equal(out.points, 1);
    assert.equal(out.skipped, 2);
    assert.equal(
      out.text,
      "cpu_power,resource_kind=local_machine,resource_consumer_kind=local_machine," +
        "my\\ tag=a\\,b\\=c\\ d,value=3,alumet_attribute__resource_id=x ok=T,value=12.5 1\n",
    );
  });
  await t.step("URLs and the version's choice", () => {
    const base = { host: "http://h:8086/", org: "o r", bucket: "b", database: "d" };
    assert.equal(
      writeUrl({ ...base, version: "v2" }).href,
      "http://h:8086/api/v2/write?org=o+r&bucket=b&precision=ns",
    );
    assert.equal(writeUrl({ ...base, version: "v1" }).href, "http://h:8086/write?db=d&precision=ns");
    assert.equal(apiVersionOf({ api_version: "auto", database: "" }), "v2");
    assert.equal(apiVersionOf({ api_version: "auto", database: "db" }), "v1");
    assert.equal(apiVersionOf({ api_version: "v2", database: "db" }), "v2");
  });
});

// ---- against a real InfluxDB 1.6.7 ----

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

class Influxd {
  #child: Deno.ChildProcess | undefined;
  readonly url: string;
  readonly #config: string;
  constructor(readonly dir: string) {
    const http = freePort();
    const rpc = freePort();
    this.url = `http://127.0.0.1:${http}`;
    this.#config = `${dir}/influxdb.conf`;
    Deno.writeTextFileSync(
      this.#config,
      `reporting-disabled = true
bind-address = "127.0.0.1:${rpc}"
[meta]
  dir = "${dir}/meta"
[data]
  dir = "${dir}/data"
  wal-dir = "${dir}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:${http}"
  log-enabled = false
[monitor]
  store-enabled = false
`,
    );
  }

  async start(): Promise<void> {
    this.#child = new Deno.Command("/usr/bin/influxd", {
      args: ["-config", this.#config],
      stdout: "null",
      stderr: "null",
    }).spawn();
    for (let i = 0; i < 600; i++) {
      try {
        const r = await fetch(`${this.url}/ping`);
        await r.body?.cancel();
        if (r.status === 204) return;
      } catch {
        // not up yet
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`influxd did not answer ${this.url}/ping within 30 s`);
  }

  async stop(): Promise<void> {
    const c = this.#child;
    if (c === undefined) return;
    this.#child = undefined;
    try {
      c.kill("SIGTERM");
    } catch {
      // already gone
    }
    const killer = setTimeout(() => {
      try {
        c.kill("SIGKILL");
      } catch {
        // gone
      }
    }, 10_000);
    await c.status;
    clearTimeout(killer);
  }

  async query(db: string, q: string): Promise<{ columns: string[]; values: unknown[][] } | undefined> {
    const url = new URL(`${this.url}/query`);
    url.searchParams.set("db", db);
    url.searchParams.set("q", q);
    url.searchParams.set("epoch", "ns");
    const r = await fetch(url, { method: "POST" });
    // Nanosecond timestamps go beyond 2^53: keep the digits (JSON.parse would round them).
    const text = (await r.text()).replace(/\[(\d{16,})\s*,/g, '["$1",');
    assert.equal(r.status, 200, text);
    const body = JSON.parse(text);
    assert.equal(body.results[0].error, undefined, text);
    return body.results[0].series?.[0];
  }
}

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const end = performance.now() + ms;
  while (!(await cond())) {
    if (performance.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Timestamps: 2024-05-01T12:00:00Z plus n ms plus 123 ns, so that the nanoseconds must come through exact. */
const T0 = 1_714_564_800_000_000_000n;
const tsOf = (n: number) => T0 + BigInt(n) * 1_000_000n + 123n;

testWith(
  [needs.command("influxd")],
  "influxdb output against InfluxDB 1.6.7: values, tags, ns timestamps, an outage and a restart",
  async () => {
    using logs = captureLogs();
    const dir = await Deno.makeTempDir({ prefix: "alumet-influx-" });
    const server = new Influxd(dir);
    try {
      await server.start();
      const created = await fetch(
        `${server.url}/query?q=${encodeURIComponent('CREATE DATABASE "alumet db"')}`,
        {
          method: "POST",
        },
      );
      assert.equal(created.status, 200, await created.text());

      let n = 0;
      const source = definePlugin({
        name: "det",
        start(ctx) {
          const count = ctx.createMetric({ name: "det_count", unit: unit("1"), valueType: "u64" });
          const power = ctx.createMetric({ name: "det_power", unit: unit("W"), valueType: "f64" });
          ctx.addSource("s", {
            poll(batch) {
              const i = n++;
              batch.push(count, i, { timestamp: tsOf(i), resource: { kind: "cpu_package", id: "0" } });
              batch.push(power, i + 0.25, {
                timestamp: tsOf(i),
                attributes: { "zone name": "a b,c=d", note: 'say "hi"\\' },
              });
            },
          }, { pollInterval: "20ms" });
        },
      });
      const journal = `${dir}/journal`;
      const agent = new Agent({
        plugins: [source, {
          plugin: influxdbPlugin,
          config: {
            host: server.url,
            database: "alumet db",
            attributes_as: "tag",
            attributes_as_fields: ["note"],
            journal_path: journal,
            max_backoff: "200ms",
            final_attempt: "3s",
          },
        }],
      });
      try {
        await agent.start();
        const countOf = async (m: string) => {
          const s = await server.query("alumet db", `SELECT count("value") FROM "${m}"`);
          return Number(s?.values[0]?.[1] ?? 0);
        };
        await until(async () => (await countOf("det_count")) >= 5, "the first points");

        // Outage: stop the server while the agent runs, let points journal, start it again on the same data.
        await server.stop();
        const before = n;
        await until(() => n >= before + 20, "points produced during the outage");
        await server.start();
        await until(async () => (await countOf("det_count")) >= before + 20, "the replay");
      } finally {
        await agent.stop();
      }
      const produced = n;
      assert.equal(agent.losses().total, 0);
      // The output's own losses (journal full, 400) are not in Agent.losses yet: no Dropped line must appear.
      assert.ok(!logs.lines.some((l) => l.includes("Dropped")), logs.lines.join("\n"));

      const counts = await server.query("alumet db", 'SELECT "value" FROM "det_count"');
      const times = counts!.values.map((row) => String(row[0]));
      assert.equal(new Set(times).size, produced, "every point arrived (distinct timestamps)");
      assert.deepEqual(
        times,
        Array.from({ length: produced }, (_, i) => String(tsOf(i))),
        "exact ns timestamps",
      );
      assert.deepEqual(counts!.values.map((row) => row[1]), Array.from({ length: produced }, (_, i) => i));

      const powers = await server.query("alumet db", 'SELECT * FROM "det_power" LIMIT 1');
      const row = Object.fromEntries(powers!.columns.map((c, k) => [c, powers!.values[0]![k]]));
      assert.deepEqual(row, {
        time: String(tsOf(0)),
        note: 'say "hi"\\',
        resource_consumer_kind: "local_machine",
        resource_kind: "local_machine",
        value: 0.25,
        "zone name": "a b,c=d",
      });
      const tagged = await server.query(
        "alumet db",
        `SELECT count("value") FROM "det_power" WHERE "zone name" = 'a b,c=d'`,
      );
      assert.equal(Number(tagged!.values[0]![1]), produced);
      assert.ok(logs.lines.some((l) => l.includes("Cannot deliver to")), logs.lines.join("\n"));
      assert.ok(logs.lines.some((l) => l.includes("again after")), logs.lines.join("\n"));
    } finally {
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

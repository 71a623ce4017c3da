import assert from "node:assert/strict";
import {
  apiVersionOf,
  authorizationOf,
  escapeKey,
  escapeMeasurement,
  InfluxdbOutput,
  influxdbPlugin,
  LineProtocolEncoder,
  quoteString,
  readRefusal,
  writeUrl,
} from "./mod.ts";
import { Agent } from "../../src/agent/agent.ts";
import { definePlugin } from "../../src/plugin/define.ts";
import { Batch } from "../../src/model/batch.ts";
import { MetricRegistry } from "../../src/model/metrics.ts";
import { unit } from "../../src/model/units.ts";
import { checkConfigBlock } from "../../src/testing/readme.ts";
import { ConfigError } from "../../src/errors.ts";
import { validatePluginConfig } from "../../src/plugin/config.ts";
import { needs, testWith } from "../../src/testing/needs.ts";
import { type LogSink, setLogSink } from "../../src/log.ts";

/** How long the backend is down in the outage tests (the issue: 30 s, many back-off cycles). */
const OUTAGE_MS = 30_000;

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
  await t.step("trailing backslashes, line breaks, empty and reserved keys", () => {
    assert.equal(escapeKey("C:\\"), "C:", "a trailing backslash would escape the separator after it");
    assert.equal(escapeKey("a\\b"), "a\\b");
    assert.equal(escapeMeasurement("m\\\\"), "m");
    assert.equal(escapeKey("a\r\nb"), "a\\ \\ b");
    const registry = new MetricRegistry();
    const m = registry.register("t", { name: "m", unit: unit("W"), valueType: "f64" });
    const ctx = { metric: (id: number) => registry.get(id) };
    const batch = new Batch();
    batch.push(m, 1, {
      timestamp: 1n,
      attributes: { empty: "", slash: "\\", time: "t", _field: "f", "": "n" },
    });
    batch.push(m, 2, { timestamp: 2n, attributes: { time: 5, value: 6, "": 7, big: 1n << 63n } });
    const tags = new LineProtocolEncoder({ attributesAs: "tag" }).encode(batch, ctx);
    assert.equal(
      tags.text.split("\n")[0],
      "m,resource_kind=local_machine,resource_consumer_kind=local_machine,alumet_attribute__time=t," +
        "alumet_attribute___field=f,alumet_attribute__=n value=1 1",
    );
    const v2 = new LineProtocolEncoder().encode(batch, ctx);
    assert.equal(
      v2.text.split("\n")[1],
      "m,resource_kind=local_machine,resource_consumer_kind=local_machine " +
        "alumet_attribute__time=5,alumet_attribute__value=6,alumet_attribute__=7,big=9223372036854775808u,value=2 2",
    );
    const v1 = new LineProtocolEncoder({ version: "v1" }).encode(batch, ctx);
    assert.equal(v1.points, 1, "v1: an attribute above 2^63 - 1 cannot be written: its point is left out");
    assert.equal(v1.skipped, 1);
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

Deno.test("influxdb configuration mistakes are config errors naming the key (exit code 2)", async (t) => {
  /** The ConfigError for `table`, from validation or from init (as the agent runs them), or undefined. */
  const problemOf = async (table: Record<string, unknown>): Promise<ConfigError | undefined> => {
    try {
      const config = validatePluginConfig(influxdbPlugin, { name: "influxdb", table }, "a.toml");
      await influxdbPlugin.init(config);
      return undefined;
    } catch (e) {
      if (e instanceof ConfigError) return e;
      throw e;
    }
  };
  const expectProblem = async (
    table: Record<string, unknown>,
    key: string,
    re: RegExp,
    source = "a.toml",
  ) => {
    const e = await problemOf(table);
    assert.ok(e !== undefined, `${JSON.stringify(table)} should be refused`);
    assert.equal(e.problem.key, key, e.message);
    assert.equal(e.problem.source, source);
    assert.equal(e.exitCode, 2);
    assert.ok(!e.message.includes("\n"), e.message);
    assert.match(e.message, re);
    return e;
  };
  const v2 = { org: "o", bucket: "b", token: "t" };
  await t.step(
    "a host that is not an http(s) base URL, in the schema, with the password redacted",
    async () => {
      for (
        const host of [
          "localhost:8086",
          "not a url",
          "ftp://h:8086",
          "http://h:8086/?db=x",
          "http://h:8086/#x",
        ]
      ) {
        await expectProblem(
          { host, ...v2 },
          "plugins.influxdb.host",
          /expected InfluxDB's (http|base URL|URL without)/,
        );
      }
      const e = await expectProblem(
        { host: "http://admin:hunter2@db:8086", ...v2 },
        "plugins.influxdb.host",
        /without credentials \(use token, or username and password\), not "http:\/\/\*\*\*@db:8086"/,
      );
      assert.ok(!e.message.includes("hunter2") && !e.message.includes("admin"), e.message);
      const q = await expectProblem(
        { host: "http://db:8086/?token=s3cret", ...v2 },
        "plugins.influxdb.host",
        /query/,
      );
      assert.ok(!q.message.includes("s3cret"), q.message);
    },
  );
  await t.step(
    "v2 with org, bucket or token left at Alumet's placeholder, or org or bucket empty",
    async () => {
      const e = await expectProblem(
        {},
        "plugins.influxdb.org",
        /"FILL ME" is Alumet's placeholder: replace it/,
        "the config file",
      );
      assert.doesNotMatch(e.message, /needs org and bucket/);
      await expectProblem(
        { org: "o" },
        "plugins.influxdb.bucket",
        /bucket.*"FILL ME" is Alumet's placeholder/,
        "the config file",
      );
      await expectProblem(
        { org: "o", bucket: "b" },
        "plugins.influxdb.token",
        /API token.*placeholder/,
        "the config file",
      );
      await expectProblem(
        { bucket: "b", org: "" },
        "plugins.influxdb.org",
        /organization.*since the v2 API/,
        "the config file",
      );
      await expectProblem({ ...v2, bucket: "" }, "plugins.influxdb.bucket", /bucket/, "the config file");
      assert.equal(await problemOf({ ...v2, token: "" }), undefined, "an empty token: a server without auth");
    },
  );
  await t.step("v1 without a database; username or password on v2", async () => {
    await expectProblem({ api_version: "v1" }, "plugins.influxdb.database", /database to write to/);
    await expectProblem({ ...v2, username: "u" }, "plugins.influxdb.username", /no username with the v2 API/);
    await expectProblem({ ...v2, password: "p" }, "plugins.influxdb.password", /no password with the v2 API/);
  });
  await t.step("through the CLI: exit code 2 and one line naming the key", async () => {
    const dir = Deno.makeTempDirSync();
    const root = new URL("../../", import.meta.url).pathname;
    const run = async (section: string) => {
      Deno.writeTextFileSync(`${dir}/a.toml`, `[plugins.influxdb]\n${section}`);
      const r = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", `${root}src/agent/main.ts`, "--config", `${dir}/a.toml`, "run"],
        cwd: dir,
        env: { INIT_CWD: dir },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(r.stderr);
      assert.equal(r.code, 2, stderr);
      assert.equal(stderr.trim().split("\n").length, 1, stderr);
      return stderr;
    };
    try {
      const host = await run(`host = "http://u:hunter2@localhost:8086"\norg = "o"\nbucket = "b"\n`);
      assert.match(host, /a\.toml: plugins\.influxdb\.host: expected InfluxDB's URL without credentials/);
      assert.doesNotMatch(host, /hunter2/);
      const fill = await run(`token = "FILL ME"\norg = "FILL ME"\nbucket = "FILL ME"\n`);
      assert.match(fill, /plugins\.influxdb\.org: expected .*"FILL ME" is Alumet's placeholder: replace it/);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  });
  await t.step("valid settings pass", async () => {
    assert.equal(await problemOf(v2), undefined);
    assert.equal(await problemOf({ database: "d", username: "u", password: "p" }), undefined);
    assert.equal(
      await problemOf({ api_version: "v1", bucket: "b" }),
      undefined,
      "v1 takes bucket as database",
    );
  });
});

Deno.test("influxdb authentication per API version", () => {
  const basic = (s: string) => `Basic ${btoa(s)}`;
  assert.equal(authorizationOf({ version: "v2", token: "abc" }), "Token abc");
  assert.equal(authorizationOf({ version: "v2", token: "FILL ME" }), undefined);
  assert.equal(authorizationOf({ version: "v1", token: "" }), undefined);
  assert.equal(authorizationOf({ version: "v1", token: "", username: "u", password: "p:w" }), basic("u:p:w"));
  assert.equal(authorizationOf({ version: "v1", token: "u:p" }), basic("u:p"), "1.x's user:password token");
  assert.equal(authorizationOf({ version: "v1", token: "abc" }), "Token abc", "1.8+ and 3.x tokens");
});

Deno.test("influxdb refusals: partial writes are read from each version's answer", () => {
  const v1 = readRefusal(
    400,
    "Bad Request",
    '{"error":"partial write: field type conflict: input field \\"v\\" on measurement \\"m\\" is type string, already exists as type float dropped=3"}',
  );
  assert.equal(v1.dropped, 3);
  assert.match(v1.message, /^400 Bad Request: partial write: field type conflict/);
  const unparsed = readRefusal(
    400,
    "Bad Request",
    JSON.stringify({ error: "partial write: unable to parse 'a b': x\nunable to parse 'c d': y dropped=0" }),
  );
  assert.equal(unparsed.dropped, 2, "1.x lists the lines it could not parse with dropped=0");
  const v2 = readRefusal(
    422,
    "Unprocessable Entity",
    JSON.stringify({
      code: "unprocessable entity",
      message: "failure writing points to database: partial write: field type conflict dropped=1",
    }),
  );
  assert.equal(v2.dropped, 1);
  const v3 = readRefusal(
    400,
    "Bad Request",
    JSON.stringify({
      error: "partial write of line protocol occurred",
      data: [{ original_line: "x", line_number: 2, error_message: "bad" }],
    }),
  );
  assert.equal(v3.dropped, 1);
  const whole = readRefusal(
    400,
    "Bad Request",
    JSON.stringify({ code: "invalid", message: "unable to parse" }),
  );
  assert.equal(whole.dropped, undefined, "not a partial write: the request is bisected");
  // Long answers are cut to 300 characters and an ellipsis.
  assert.equal(
    readRefusal(413, "Payload Too Large", "x".repeat(1000)).message,
    `413 Payload Too Large: ${"x".repeat(300)}…`,
  );
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
  /** With `auth`, `[http] auth-enabled`: the first user must be created with {@linkcode Influxd.createAdmin}. */
  constructor(readonly dir: string, readonly auth?: { user: string; password: string }) {
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
  auth-enabled = ${auth !== undefined}
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

  /** Runs a statement that returns no series (CREATE …), as the admin when auth is on. */
  async exec(q: string): Promise<void> {
    const url = new URL(`${this.url}/query`);
    url.searchParams.set("q", q);
    if (this.auth) url.searchParams.set("u", this.auth.user), url.searchParams.set("p", this.auth.password);
    const r = await fetch(url, { method: "POST" });
    const text = await r.text();
    assert.equal(r.status, 200, text);
    assert.equal(JSON.parse(text).results[0].error, undefined, text);
  }

  /** With auth on: creates the admin user (InfluxDB allows it without credentials while there is no user). */
  async createAdmin(): Promise<void> {
    const a = this.auth!;
    const r = await fetch(
      `${this.url}/query?q=${
        encodeURIComponent(`CREATE USER "${a.user}" WITH PASSWORD '${a.password}' WITH ALL PRIVILEGES`)
      }`,
      { method: "POST" },
    );
    assert.equal(r.status, 200, await r.text());
  }

  async query(db: string, q: string): Promise<{ columns: string[]; values: unknown[][] } | undefined> {
    const url = new URL(`${this.url}/query`);
    url.searchParams.set("db", db);
    if (this.auth) url.searchParams.set("u", this.auth.user), url.searchParams.set("p", this.auth.password);
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
        await new Promise((r) => setTimeout(r, OUTAGE_MS)); // as long as the issue asks: many back-off cycles
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

/** A v1 output on `server`, writing `batch`es straight (no agent), closed by the caller. */
function v1Output(
  server: Influxd,
  journalPath: string,
  extra: { username?: string; password?: string; attributesAs?: "tag" | "field"; finalAttemptMs?: number } =
    {},
): InfluxdbOutput {
  const out = new InfluxdbOutput({
    host: server.url,
    version: "v1",
    token: "",
    username: extra.username ?? "",
    password: extra.password ?? "",
    org: "",
    bucket: "",
    database: "edge",
    timeoutMs: 30_000,
    journalPath,
    maxBytes: 16 << 20,
    fsync: "none",
    minBackoffMs: 20,
    maxBackoffMs: 200,
    finalAttemptMs: extra.finalAttemptMs ?? 30_000,
    encoder: { attributesAs: extra.attributesAs ?? "field" },
  });
  out.open();
  return out;
}

testWith(
  [needs.command("influxd")],
  "influxdb output against InfluxDB 1.6.7: Basic auth, a field type conflict loses exactly the conflicting points, escaping edge cases",
  async (t) => {
    using logs = captureLogs();
    const dir = await Deno.makeTempDir({ prefix: "alumet-influx-edge-" });
    const server = new Influxd(dir, { user: "admin", password: "s3cret:pw" });
    try {
      await server.start();
      await server.createAdmin();
      await server.exec('CREATE DATABASE "edge"');
      const registry = new MetricRegistry();
      const power = registry.register("t", { name: "conflict", unit: unit("W"), valueType: "f64" });
      const big = registry.register("t", { name: "big", unit: unit("J"), valueType: "u64" });
      const tagged = registry.register("t", { name: "edge_tags", unit: unit("W"), valueType: "f64" });
      const fields = registry.register("t", { name: "edge_fields", unit: unit("W"), valueType: "f64" });
      const ctx = { metric: (id: number) => registry.get(id) };
      const journal = `${dir}/journal`;
      const count = async (m: string) =>
        Number((await server.query("edge", `SELECT count("value") FROM "${m}"`))?.values[0]?.[1] ?? 0);
      const times = async (m: string) =>
        ((await server.query("edge", `SELECT "value" FROM "${m}"`))?.values ?? []).map((r) => String(r[0]));

      await t.step(
        "a wrong password is retried (401), not dropped; the right one delivers the journal",
        async () => {
          const wrong = v1Output(server, journal, {
            username: "admin",
            password: "nope",
            finalAttemptMs: 300,
          });
          const batch = new Batch();
          for (let i = 0; i < 5; i++) batch.push(big, i, { timestamp: tsOf(i) });
          wrong.write(batch, ctx);
          await until(() => logs.lines.some((l) => l.includes("401")), "the 401 warning");
          await wrong.close();
          assert.equal(wrong.delivery.pendingPoints, 5);
          assert.equal(wrong.lostPoints(), 0);
          assert.equal(await count("big"), 0);
          const right = v1Output(server, journal, { username: "admin", password: "s3cret:pw" });
          await right.close();
          assert.equal(right.lostPoints(), 0);
          assert.equal(await count("big"), 5);
        },
      );

      await t.step(
        "u64 above 2^63 - 1: that point left out and counted, the others stored as integers",
        async () => {
          const out = v1Output(server, journal, { username: "admin", password: "s3cret:pw" });
          const batch = new Batch();
          batch.push(big, (1n << 63n) - 1n, { timestamp: tsOf(5) });
          batch.push(big, 1n << 63n, { timestamp: tsOf(6) });
          batch.push(big, 7, { timestamp: tsOf(7) });
          out.write(batch, ctx);
          await out.close();
          assert.equal(out.lostPoints(), 1);
          assert.deepEqual(await times("big"), [0, 1, 2, 3, 4, 5, 7].map((i) => String(tsOf(i))));
          const max = await server.query("edge", `SELECT max("value") FROM "big"`);
          assert.equal(max!.values[0]![1], 9223372036854775807); // JSON's number for 2^63-1: stored as an integer
        },
      );

      // note is a float in most points, a string in every tenth (3, 13, …): those conflict with the float
      // field, in the batch that creates it (InfluxDB refuses the whole request) and in later batches (it
      // stores the others and answers a partial write).
      const conflicting = (i: number) => i % 10 === 3;
      const writeConflicts = (out: InfluxdbOutput, from: number, to: number) => {
        const batch = new Batch();
        for (let i = from; i < to; i++) {
          batch.push(power, i, {
            timestamp: tsOf(i),
            attributes: { note: conflicting(i) ? "text" : i + 0.5 },
          });
        }
        out.write(batch, ctx);
      };
      await t.step("a field type conflict: exactly the conflicting points are lost and counted", async () => {
        const out = v1Output(server, journal, { username: "admin", password: "s3cret:pw" });
        writeConflicts(out, 0, 40); // creates the field: the whole request is refused, then bisected
        await until(() => out.delivery.pendingPoints === 0, "the first batch");
        writeConflicts(out, 40, 60); // the field exists: a partial write
        await out.close();
        const expected = Array.from({ length: 60 }, (_, i) => i).filter((i) => !conflicting(i));
        assert.equal(out.lostPoints(), 6);
        assert.deepEqual(await times("conflict"), expected.map((i) => String(tsOf(i))));
        assert.ok(logs.lines.some((l) => l.includes("field type conflict")), logs.lines.join("\n"));
      });

      await t.step("escaping edge cases: every point stored", async () => {
        const asTags = v1Output(server, journal, {
          username: "admin",
          password: "s3cret:pw",
          attributesAs: "tag",
        });
        const b1 = new Batch();
        const tagCases = [
          { nl: "line\nbreak" },
          { path: "C:\\" },
          { empty: "", other: "x" },
          { only: "\\" },
          { time: "t" },
          { _field: "f", _measurement: "m" },
          { "": "nameless" },
          { "k,e y=": "v,a l=u e" },
        ];
        tagCases.forEach((attributes, i) => b1.push(tagged, i, { timestamp: tsOf(i), attributes }));
        asTags.write(b1, ctx);
        await asTags.close();
        assert.equal(asTags.lostPoints(), 0);
        assert.equal(await count("edge_tags"), tagCases.length);
        const rows = await server.query("edge", 'SELECT * FROM "edge_tags"');
        const col = (name: string, i: number) => rows!.values[i]![rows!.columns.indexOf(name)];
        assert.equal(col("nl", 0), "line break");
        assert.equal(col("path", 1), "C:");
        assert.ok(!rows!.columns.includes("empty") && !rows!.columns.includes("only"), "empty tags left out");
        assert.equal(col("other", 2), "x");
        assert.equal(col("alumet_attribute__time", 4), "t");
        assert.equal(col("alumet_attribute___field", 5), "f"); // refused as a tag key by InfluxDB 2
        assert.equal(col("alumet_attribute__", 6), "nameless");
        assert.equal(col("k,e y=", 7), "v,a l=u e");

        const asFields = v1Output(server, journal, { username: "admin", password: "s3cret:pw" });
        const b2 = new Batch();
        b2.push(fields, 1, {
          timestamp: tsOf(0),
          attributes: { time: 5, "": "x", "k\\": 2, s: 'a\nb "q" \\' },
        });
        asFields.write(b2, ctx);
        await asFields.close();
        assert.equal(asFields.lostPoints(), 0);
        const f = await server.query("edge", 'SELECT * FROM "edge_fields"');
        const row = Object.fromEntries(f!.columns.map((c, k) => [c, f!.values[0]![k]]));
        assert.deepEqual(row, {
          time: String(tsOf(0)),
          alumet_attribute__time: 5,
          alumet_attribute__: "x",
          k: 2,
          resource_consumer_kind: "local_machine",
          resource_kind: "local_machine",
          s: 'a\nb "q" \\',
          value: 1,
        });
      });
    } finally {
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

import assert from "node:assert/strict";
import {
  decodeWriteRequest,
  prometheusRemoteWritePlugin,
  RemoteWriteEncoder,
  RemoteWriteOutput,
  snappyUncompress,
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

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 60_000): Promise<void> {
  const end = performance.now() + ms;
  while (!(await cond())) {
    if (performance.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

Deno.test("prometheus-remote-write README's configuration block is the default config and states the guarantee", () => {
  const readme = Deno.readTextFileSync(new URL("./README.md", import.meta.url));
  checkConfigBlock(readme, prometheusRemoteWritePlugin);
  assert.match(readme, /Guarantee: at-least-once/);
});

Deno.test("config mistakes are config errors naming the key (exit code 2)", async (t) => {
  const problemOf = (table: Record<string, unknown>): ConfigError | undefined => {
    try {
      validatePluginConfig(prometheusRemoteWritePlugin, { name: "prometheus-remote-write", table }, "a.toml");
      return undefined;
    } catch (e) {
      if (e instanceof ConfigError) return e;
      throw e;
    }
  };
  const expectProblem = (table: Record<string, unknown>, key: string, re: RegExp) => {
    const e = problemOf(table);
    assert.ok(e !== undefined, `${JSON.stringify(table)} should be refused`);
    assert.equal(e.problem.key, key, e.message);
    assert.equal(e.exitCode, 2);
    assert.match(e.message, /^Invalid config in a\.toml: /);
    assert.match(e.message, re);
    return e;
  };
  const key = "plugins.prometheus-remote-write";
  await t.step("endpoint: an http(s) URL, without credentials (redacted in the message)", () => {
    expectProblem(
      { endpoint: "localhost:9090/api/v1/write" },
      `${key}.endpoint`,
      /expected the receiver's remote-write http:\/\/ or https:\/\/ URL, such as "http:\/\/localhost:9090\/api\/v1\/write", not "localhost:9090\/api\/v1\/write"/,
    );
    expectProblem({ endpoint: "ftp://h/x" }, `${key}.endpoint`, /http:\/\/ or https:\/\//);
    expectProblem({ endpoint: "" }, `${key}.endpoint`, /http:\/\/ or https:\/\//);
    const e = expectProblem(
      { endpoint: "https://user:hunter2@mimir:9009/api/v1/push?key=s3cret" },
      `${key}.endpoint`,
      /URL without credentials \(use basic_auth or bearer_token\), not "https:\/\/\*\*\*@mimir:9009\/api\/v1\/push\?key=\*\*\*"/,
    );
    assert.ok(!/hunter2|s3cret|user/.test(e.message), e.message);
    assert.equal(
      problemOf({ endpoint: "https://mimir:9009/api/v1/push?tenant=a" }),
      undefined,
      "a query is fine",
    );
  });
  await t.step("basic_auth and bearer_token exclude each other", () => {
    expectProblem(
      { basic_auth: { username: "u" }, bearer_token: "t" },
      `${key}.bearer_token`,
      /one or the other/,
    );
    expectProblem(
      { basic_auth: { password: "p" }, bearer_token: "t" },
      `${key}.bearer_token`,
      /one or the other/,
    );
    expectProblem({ basic_auth: { user: "u" } }, `${key}.basic_auth.user`, /known key/);
  });
  await t.step("header names and values; labels must be valid label names", () => {
    expectProblem({ headers: { "X Scope": "a" } }, `${key}.headers."X Scope"`, /HTTP header name/);
    expectProblem({ headers: { "X-A": "a\nb" } }, `${key}.headers.X-A`, /header value on one line/);
    expectProblem(
      { headers: { "Content-Type": "text/plain" } },
      `${key}.headers.Content-Type`,
      /does not set/,
    );
    expectProblem({ labels: { "a-b": "x" } }, `${key}.labels.a-b`, /label name/);
    expectProblem({ labels: { __x: "x" } }, `${key}.labels.__x`, /not starting with __/);
    assert.equal(problemOf({ headers: { "X-Scope-OrgID": "t" }, labels: { job: "alumet" } }), undefined);
  });
  await t.step("through the CLI: exit code 2, one line naming the key", async () => {
    const dir = Deno.makeTempDirSync();
    try {
      Deno.writeTextFileSync(
        `${dir}/a.toml`,
        `[plugins.prometheus-remote-write]\nendpoint = "localhost:9090/api/v1/write"\n`,
      );
      const root = new URL("../../", import.meta.url).pathname;
      const r = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", `${root}src/agent/main.ts`, "--config", `${dir}/a.toml`, "run"],
        cwd: dir,
        env: { INIT_CWD: dir },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(r.stderr);
      assert.equal(r.code, 2, stderr);
      assert.match(
        stderr,
        /plugins\.prometheus-remote-write\.endpoint: expected the receiver's remote-write http/,
      );
      assert.equal(stderr.trim().split("\n").length, 1, stderr);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  });
});

// ---- the encoder: names, labels, ordering, stale samples ----

function setup() {
  const registry = new MetricRegistry();
  const energy = registry.register("t", {
    name: "energy",
    unit: unit("J", "milli"),
    valueType: "f64",
    kind: "delta",
  });
  const power = registry.register("t", { name: "power", unit: unit("W"), valueType: "f64", kind: "gauge" });
  const ctx = { metric: (id: number) => registry.get(id) };
  return { energy, power, ctx };
}
const ms = (n: number) => BigInt(n) * 1_000_000n;

Deno.test("RemoteWriteEncoder: names, labels, ms timestamps, per-series ordering and stale samples", async (t) => {
  const { energy, power, ctx } = setup();
  const enc = new RemoteWriteEncoder({ labels: { instance: "h1" } });

  await t.step("names and labels as the exporter; __name__; empty labels left out; ns cut to ms", () => {
    const b = new Batch();
    b.push(power, 2.5, {
      timestamp: ms(1000) + 999_999n,
      resource: { kind: "cpu_package", id: "0" },
      attributes: { "zone name": "a", resource_kind: "x" },
    });
    const out = enc.encode(b, ctx);
    assert.deepEqual(decodeWriteRequest(out.bytes), [{
      labels: {
        __name__: "power_alumet_watts",
        attr_resource_kind: "x",
        instance: "h1",
        resource_consumer_kind: "local_machine",
        resource_id: "0",
        resource_kind: "cpu_package",
        zone_name: "a",
      },
      samples: [[2.5, 1000]],
    }]);
    // Labels are sorted by name, as receivers expect.
    const names = Object.keys(decodeWriteRequest(out.bytes)[0]!.labels);
    assert.deepEqual(names, [...names].sort());
  });

  await t.step("a batch's points are sorted per series; deltas become a running sum in base units", () => {
    const b = new Batch();
    b.push(energy, 3000, { timestamp: ms(30) });
    b.push(power, 1, { timestamp: ms(20) });
    b.push(energy, 1000, { timestamp: ms(10) });
    b.push(power, 2, { timestamp: ms(10) });
    b.push(energy, 2000, { timestamp: ms(20) });
    const out = enc.encode(b, ctx);
    assert.equal(out.samples, 5);
    assert.equal(out.series, 2);
    const [e, p] = decodeWriteRequest(out.bytes);
    assert.equal(e!.labels.__name__, "energy_alumet_joules_total");
    assert.deepEqual(e!.samples, [[1, 10], [3, 20], [6, 30]]);
    assert.deepEqual(p!.samples, [[2, 10], [1, 20]]);
  });

  await t.step(
    "never older than what the series sent: a gauge's stale point is dropped, a delta's folded",
    () => {
      const b = new Batch();
      b.push(energy, 500, { timestamp: ms(25) }); // older than 30: folded into the sum
      b.push(energy, 500, { timestamp: ms(30) }); // same ms as the last sent: folded too
      b.push(energy, 1000, { timestamp: ms(40) }); // carries the sum
      b.push(power, 9, { timestamp: ms(20) }); // same ms as sent: dropped
      b.push(power, 9, { timestamp: ms(5) }); // older: dropped
      b.push(power, 3, { timestamp: ms(21) });
      const out = enc.encode(b, ctx);
      assert.equal(out.dropped, 2);
      assert.equal(out.folded, 2);
      const [e, p] = decodeWriteRequest(out.bytes);
      assert.deepEqual(e!.samples, [[8, 40]], "no joule lost: 6 + 0.5 + 0.5 + 1");
      assert.deepEqual(p!.samples, [[3, 21]]);
    },
  );

  await t.step("two points of a series in one ms: one sample, the later point's", () => {
    const b = new Batch();
    b.push(power, 4, { timestamp: ms(50) + 1n });
    b.push(power, 5, { timestamp: ms(50) + 2n });
    b.push(energy, 1000, { timestamp: ms(50) + 1n });
    b.push(energy, 1000, { timestamp: ms(50) + 2n });
    const out = enc.encode(b, ctx);
    const [p, e] = decodeWriteRequest(out.bytes);
    assert.deepEqual(p!.samples, [[5, 50]]);
    assert.deepEqual(e!.samples, [[10, 50]]);
    assert.equal(out.dropped, 1);
    assert.equal(out.folded, 1);
  });

  await t.step("a NaN delta is dropped (it would poison the sum); a NaN gauge goes out", () => {
    const b = new Batch();
    b.push(energy, NaN, { timestamp: ms(60) });
    b.push(power, NaN, { timestamp: ms(60) });
    const out = enc.encode(b, ctx);
    assert.equal(out.dropped, 1);
    const series = decodeWriteRequest(out.bytes);
    assert.equal(series.length, 1);
    assert.ok(Number.isNaN(series[0]!.samples[0]![0]));
  });
});

// ---- delivery: a refused request loses only the refused series ----

interface Received {
  auth: string | null;
  series: ReturnType<typeof decodeWriteRequest>;
}

/** A receiver that refuses (400) any request holding a series with label `bad`, and answers `status()` else. */
function fakeReceiver(status: () => number = () => 204) {
  const got: Received[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    assert.equal(req.headers.get("content-encoding"), "snappy");
    assert.equal(req.headers.get("x-prometheus-remote-write-version"), "0.1.0");
    const series = decodeWriteRequest(snappyUncompress(new Uint8Array(await req.arrayBuffer())));
    if (series.some((s) => s.labels.bad !== undefined)) {
      return new Response("out of order sample", { status: 400 });
    }
    const code = status();
    if (code === 204) got.push({ auth: req.headers.get("authorization"), series });
    return new Response(null, { status: code });
  });
  return { got, server, url: `http://127.0.0.1:${server.addr.port}/api/v1/write` };
}

Deno.test("RemoteWriteOutput: a 400 is split until only the refused series are dropped and counted", async () => {
  using _logs = captureLogs();
  const { power, ctx } = setup();
  const rx = fakeReceiver();
  const dir = await Deno.makeTempDir({ prefix: "alumet-rw-" });
  try {
    const out = new RemoteWriteOutput({
      endpoint: rx.url,
      basicAuth: { username: "u", password: "p:w" },
      headers: { "X-Scope-OrgID": "t1" },
      journalPath: dir,
      batchPoints: 3,
      minBackoffMs: 10,
      maxBackoffMs: 50,
    });
    out.open();
    const b = new Batch();
    for (let i = 0; i < 8; i++) {
      b.push(power, i, { timestamp: ms(100 + i), attributes: i === 5 ? { bad: "yes" } : { n: i } });
    }
    out.write(b, ctx);
    await until(() => out.delivery.pendingPoints === 0, "delivery");
    await out.close();
    const delivered = rx.got.flatMap((r) => r.series.map((s) => s.samples[0]![0])).sort();
    assert.deepEqual(delivered, [0, 1, 2, 3, 4, 6, 7]);
    assert.ok(rx.got.every((r) => r.series.length <= 3), "at most batch_points samples per request");
    assert.equal(rx.got[0]!.auth, `Basic ${btoa("u:p:w")}`);
    assert.equal(out.lostPoints(), 1);
  } finally {
    await rx.server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("RemoteWriteOutput: everything refused is a RejectedError (counted once); 5xx is retried", async () => {
  using logs = captureLogs();
  const { power, ctx } = setup();
  let failures = 2;
  const rx = fakeReceiver(() => (failures-- > 0 ? 503 : 204));
  const dir = await Deno.makeTempDir({ prefix: "alumet-rw-" });
  try {
    const out = new RemoteWriteOutput({
      endpoint: rx.url,
      bearerToken: "tok",
      journalPath: dir,
      minBackoffMs: 10,
      maxBackoffMs: 50,
    });
    out.open();
    const bad = new Batch();
    bad.push(power, 1, { timestamp: ms(1), attributes: { bad: "1" } });
    bad.push(power, 1, { timestamp: ms(1), attributes: { bad: "2" } });
    out.write(bad, ctx);
    await until(() => out.delivery.pendingPoints === 0, "the refusal");
    const good = new Batch();
    good.push(power, 7, { timestamp: ms(2) });
    out.write(good, ctx);
    await until(() => out.delivery.pendingPoints === 0, "delivery");
    await out.close();
    assert.equal(out.lostPoints(), 2);
    assert.equal(out.delivery.droppedPoints, 2);
    assert.deepEqual(rx.got.map((r) => r.series[0]!.samples), [[[7, 2]]]);
    assert.equal(rx.got[0]!.auth, "Bearer tok");
    assert.ok(
      logs.lines.some((l) => l.includes("Cannot deliver to") && l.includes("503")),
      logs.lines.join("\n"),
    );
  } finally {
    await rx.server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

// ---- against the real servers ----

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** A server binary run on a free loopback port with a throw-away data directory; restartable on the same data. */
class Server {
  #child: Deno.ChildProcess | undefined;
  readonly port = freePort();
  readonly url = `http://127.0.0.1:${this.port}`;
  constructor(
    readonly bin: string,
    readonly args: (port: number) => string[],
    readonly ready: string,
  ) {}

  async start(): Promise<void> {
    this.#child = new Deno.Command(this.bin, { args: this.args(this.port), stdout: "null", stderr: "null" })
      .spawn();
    const child = this.#child;
    let exited = false;
    child.status.then(() => (exited = true));
    for (let i = 0; i < 1200; i++) {
      if (exited) throw new Error(`${this.bin} exited while starting`);
      try {
        const r = await fetch(this.url + this.ready);
        await r.body?.cancel();
        if (r.status === 200) return;
      } catch {
        // not up yet
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`${this.bin} did not answer ${this.url}${this.ready} within 60 s`);
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
    }, 15_000);
    await c.status;
    clearTimeout(killer);
  }
}

/** Polls every 20 ms: `det_energy` (delta, J: 0.5, 1, 1.5…) and `det_power` (gauge, W: i + 0.25). */
function detSource(t0: bigint, counter: { n: number }) {
  return definePlugin({
    name: "det",
    start(ctx) {
      const energy = ctx.createMetric({
        name: "det_energy",
        unit: unit("J"),
        valueType: "f64",
        kind: "delta",
      });
      const power = ctx.createMetric({ name: "det_power", unit: unit("W"), valueType: "f64", kind: "gauge" });
      ctx.addSource("s", {
        poll(batch) {
          const i = counter.n++;
          // 20 ms apart, plus 456 789 ns that must be cut off (not rounded) to the millisecond.
          const ts = t0 + BigInt(i) * 20_000_000n + 456_789n;
          batch.push(energy, (i + 1) * 0.5, { timestamp: ts, resource: { kind: "cpu_package", id: "0" } });
          batch.push(power, i + 0.25, { timestamp: ts, attributes: { "zone name": "a b" } });
        },
      }, { pollInterval: "20ms" });
    },
  });
}

const msOf = (t0: bigint, i: number) => Number(t0 / 1_000_000n) + i * 20;
const energyAt = (i: number) => 0.5 * (i + 1) * (i + 2) / 2;

/** Runs the agent, stops `server` for a while mid-run, restarts it, and waits until `count()` has every point. */
async function runWithOutage(
  server: Server,
  endpoint: string,
  journal: string,
  count: () => Promise<number>,
): Promise<{ produced: number; t0: bigint; agent: Agent }> {
  const counter = { n: 0 };
  const t0 = BigInt(Date.now()) * 1_000_000n;
  const agent = new Agent({
    plugins: [detSource(t0, counter), {
      plugin: prometheusRemoteWritePlugin,
      config: {
        endpoint,
        labels: { instance: "test-host" },
        journal_path: journal,
        max_backoff: "200ms",
        final_attempt: "5s",
      },
    }],
  });
  try {
    await agent.start();
    await until(async () => (await count()) >= 5, "the first points");
    await server.stop();
    const before = counter.n;
    await new Promise((r) => setTimeout(r, OUTAGE_MS)); // as long as the issue asks: many back-off cycles
    await until(() => counter.n >= before + 25, "points produced during the outage");
    await server.start();
    await until(async () => (await count()) >= before + 25, "the replay");
  } finally {
    await agent.stop();
  }
  return { produced: counter.n, t0, agent };
}

testWith(
  [needs.command("prometheus")],
  "remote write into Prometheus 2.42: values, labels, exact ms, an outage; a stale series does not sink a batch",
  async () => {
    using logs = captureLogs();
    const dir = await Deno.makeTempDir({ prefix: "alumet-rw-prom-" });
    Deno.writeTextFileSync(`${dir}/prometheus.yml`, "global:\n  scrape_interval: 1m\n");
    const server = new Server("prometheus", (port) => [
      `--config.file=${dir}/prometheus.yml`,
      `--storage.tsdb.path=${dir}/data`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--web.enable-remote-write-receiver",
      "--log.level=error",
    ], "/-/ready");
    type Matrix = { metric: Record<string, string>; values: [number, string][] }[];
    const rangeQuery = async (q: string): Promise<Matrix> => {
      const url = new URL(`${server.url}/api/v1/query`);
      url.searchParams.set("query", `${q}[1h]`);
      url.searchParams.set("time", String(Date.now() / 1000 + 60));
      const r = await fetch(url);
      const body = await r.json();
      assert.equal(r.status, 200, JSON.stringify(body));
      return body.data.result;
    };
    try {
      await server.start();
      const endpoint = `${server.url}/api/v1/write`;
      const count = async () => (await rangeQuery("det_power_alumet_watts"))[0]?.values.length ?? 0;
      const { produced, t0, agent } = await runWithOutage(server, endpoint, `${dir}/journal`, count);
      assert.equal(agent.losses().total, 0);
      assert.ok(!logs.lines.some((l) => l.includes("Dropped")), logs.lines.join("\n"));

      const [power, ...morePower] = await rangeQuery("det_power_alumet_watts");
      assert.equal(morePower.length, 0);
      assert.deepEqual(power!.metric, {
        __name__: "det_power_alumet_watts",
        instance: "test-host",
        resource_consumer_kind: "local_machine",
        resource_kind: "local_machine",
        zone_name: "a b",
      });
      const times = power!.values.map(([t]) => Math.round(t * 1000));
      assert.deepEqual(times, Array.from({ length: produced }, (_, i) => msOf(t0, i)), "every point, once");
      assert.deepEqual(
        power!.values.map(([, v]) => Number(v)),
        Array.from({ length: produced }, (_, i) => i + 0.25),
      );

      const [energy] = await rangeQuery("det_energy_alumet_joules_total");
      assert.equal(energy!.metric.resource_kind, "cpu_package");
      assert.equal(energy!.metric.resource_id, "0");
      assert.deepEqual(
        energy!.values.map(([t, v]) => [Math.round(t * 1000), Number(v)]),
        Array.from({ length: produced }, (_, i) => [msOf(t0, i), energyAt(i)]),
      );
      assert.ok(logs.lines.some((l) => l.includes("Cannot deliver to")), logs.lines.join("\n"));
      assert.ok(logs.lines.some((l) => l.includes("again after")), logs.lines.join("\n"));

      // A series the receiver already has newer samples of (another writer, or an agent restarted on an
      // older clock): Prometheus refuses the whole request with 400; only that series is lost.
      const { power: gauge, energy: energyMetric, ctx } = setup();
      const now = Date.now();
      const first = new RemoteWriteOutput({ endpoint, journalPath: `${dir}/j1`, encoder: { suffix: "" } });
      first.open();
      const b1 = new Batch();
      b1.push(gauge, 1, { timestamp: ms(now), attributes: { s: "stale" } });
      first.write(b1, ctx);
      await first.close();
      assert.equal(first.delivery.pendingPoints, 0);
      const second = new RemoteWriteOutput({ endpoint, journalPath: `${dir}/j2`, encoder: { suffix: "" } });
      second.open();
      const b2 = new Batch();
      b2.push(gauge, 2, { timestamp: ms(now - 1000), attributes: { s: "stale" } });
      for (let k = 0; k < 5; k++) {
        b2.push(gauge, 10 + k, { timestamp: ms(now - 1000 + k), attributes: { s: "ok" } });
      }
      second.write(b2, ctx);
      await second.close();
      assert.equal(second.delivery.pendingPoints, 0);
      assert.equal(second.lostPoints(), 1);
      const series = await rangeQuery("power_watts");
      const bySeries = Object.fromEntries(
        series.map((s) => [s.metric.s, s.values.map(([, v]) => Number(v))]),
      );
      assert.deepEqual(bySeries, { stale: [1], ok: [10, 11, 12, 13, 14] });
      assert.ok(
        logs.lines.some((l) => /Dropped 1 of 6 samples.*out of order/.test(l)),
        logs.lines.join("\n"),
      );

      // A second output on the same journal (an agent restarted) continues the energy counter: no reset.
      const sendEnergy = async (from: number, to: number) => {
        const out = new RemoteWriteOutput({ endpoint, journalPath: `${dir}/j3`, encoder: { suffix: "" } });
        out.open();
        const b = new Batch();
        for (let i = from; i <= to; i++) b.push(energyMetric, 1000 * i, { timestamp: ms(now + i) });
        out.write(b, ctx);
        await out.close();
        assert.equal(out.delivery.pendingPoints + out.lostPoints(), 0);
      };
      await sendEnergy(1, 3);
      await sendEnergy(4, 5);
      const [restarted] = await rangeQuery("energy_joules_total");
      assert.deepEqual(restarted!.values.map(([, v]) => Number(v)), [1, 3, 6, 10, 15]);
      const resets = await fetch(
        `${server.url}/api/v1/query?query=${encodeURIComponent("resets(energy_joules_total[1h])")}&time=${
          Date.now() / 1000 + 60
        }`,
      ).then((r) => r.json());
      assert.equal(resets.data.result[0].value[1], "0", "Prometheus sees no counter reset");
    } finally {
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

testWith(
  [needs.command("victoria-metrics")],
  "remote write into VictoriaMetrics 1.79: values, labels, exact ms, an outage, every point once",
  async () => {
    using logs = captureLogs();
    const dir = await Deno.makeTempDir({ prefix: "alumet-rw-vm-" });
    const server = new Server("victoria-metrics", (port) => [
      `-storageDataPath=${dir}/data`,
      `-httpListenAddr=127.0.0.1:${port}`,
      // VictoriaMetrics keeps a sample sent twice (at-least-once replay) unless deduplication is on.
      "-dedup.minScrapeInterval=1ms",
      "-loggerLevel=ERROR",
    ], "/health");
    type Exported = { metric: Record<string, string>; values: number[]; timestamps: number[] };
    const exportOf = async (name: string): Promise<Exported[]> => {
      const f = await fetch(`${server.url}/internal/force_flush`);
      await f.body?.cancel();
      const url = new URL(`${server.url}/api/v1/export`);
      url.searchParams.set("match[]", name);
      const r = await fetch(url);
      const text = await r.text();
      assert.equal(r.status, 200, text);
      return text.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l));
    };
    try {
      await server.start();
      const count = async () => new Set((await exportOf("det_power_alumet_watts"))[0]?.timestamps ?? []).size;
      const { produced, t0, agent } = await runWithOutage(
        server,
        `${server.url}/api/v1/write`,
        `${dir}/journal`,
        count,
      );
      assert.equal(agent.losses().total, 0);
      assert.ok(!logs.lines.some((l) => l.includes("Dropped")), logs.lines.join("\n"));
      // What the final attempt delivered may take a moment to be searchable.
      await until(async () => (await count()) >= produced, "every point searchable");

      const check = (s: Exported, value: (i: number) => number) => {
        const pairs = s.timestamps.map((t, k) => [t, s.values[k]!] as const).sort((a, b) => a[0] - b[0]);
        const distinct = [...new Map(pairs).entries()];
        assert.deepEqual(
          distinct,
          Array.from({ length: produced }, (_, i) => [msOf(t0, i), value(i)]),
          "every point, exact ms and value",
        );
        // A duplicate (a replayed batch) must carry the same value.
        for (const [t, v] of pairs) assert.equal(v, new Map(pairs).get(t));
      };
      const [power, ...more] = await exportOf("det_power_alumet_watts");
      assert.equal(more.length, 0);
      assert.deepEqual(power!.metric, {
        __name__: "det_power_alumet_watts",
        instance: "test-host",
        resource_consumer_kind: "local_machine",
        resource_kind: "local_machine",
        zone_name: "a b",
      });
      check(power!, (i) => i + 0.25);
      const [energy] = await exportOf("det_energy_alumet_joules_total");
      assert.equal(energy!.metric.resource_kind, "cpu_package");
      check(energy!, energyAt);
      assert.ok(logs.lines.some((l) => l.includes("again after")), logs.lines.join("\n"));
    } finally {
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("RemoteWriteOutput: a retry after a partly delivered batch does not send its delivered requests again", async () => {
  // batch_points 3 splits 8 samples into 3 requests; the 2nd fails once (503): the retry must send the 2nd and
  // 3rd only. Sent again, the 1st would be a duplicate a real Prometheus refuses (400), counted as lost.
  using _logs = captureLogs();
  const { power, ctx } = setup();
  let calls = 0;
  const rx = fakeReceiver(() => (++calls === 2 ? 503 : 204));
  const dir = await Deno.makeTempDir({ prefix: "alumet-rw-" });
  try {
    const out = new RemoteWriteOutput({
      endpoint: rx.url,
      journalPath: dir,
      batchPoints: 3,
      minBackoffMs: 10,
      maxBackoffMs: 50,
    });
    out.open();
    const b = new Batch();
    for (let i = 0; i < 8; i++) b.push(power, i, { timestamp: ms(100 + i), attributes: { n: i } });
    out.write(b, ctx);
    await until(() => out.delivery.pendingPoints === 0, "delivery");
    await out.close();
    const delivered = rx.got.flatMap((r) => r.series.map((s) => s.samples[0]![0])).sort();
    assert.deepEqual(delivered, [0, 1, 2, 3, 4, 5, 6, 7], "each sample delivered once");
    assert.equal(out.lostPoints(), 0);
  } finally {
    await rx.server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("RemoteWriteOutput: an agent started again on the same journal continues the energy counters", async (t) => {
  using logs = captureLogs();
  const { energy, power, ctx } = setup();
  const deltas = (out: RemoteWriteOutput, from: number, to: number) => {
    const b = new Batch();
    for (let i = from; i <= to; i++) {
      b.push(energy, 1000 * i, { timestamp: ms(i) }); // i J at i ms
      b.push(power, i, { timestamp: ms(i) });
    }
    out.write(b, ctx);
  };
  const totals = (rx: ReturnType<typeof fakeReceiver>) =>
    rx.got.flatMap((r) => r.series.filter((s) => s.labels.__name__ === "energy_joules_total"))
      .flatMap((s) => s.samples);

  await t.step("after a clean stop (everything acknowledged)", async () => {
    const rx = fakeReceiver();
    const dir = await Deno.makeTempDir({ prefix: "alumet-rw-" });
    try {
      const options = { endpoint: rx.url, journalPath: dir, minBackoffMs: 10, encoder: { suffix: "" } };
      const first = new RemoteWriteOutput(options);
      first.open();
      deltas(first, 1, 3);
      await first.close();
      assert.equal(first.delivery.pendingPoints, 0);
      const second = new RemoteWriteOutput(options);
      second.open();
      deltas(second, 4, 5);
      await second.close();
      assert.deepEqual(totals(rx), [[1, 1], [3, 2], [6, 3], [10, 4], [15, 5]]);
      assert.equal(first.lostPoints() + second.lostPoints(), 0);
    } finally {
      await rx.server.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  });

  await t.step("after a stop with samples left in the journal (the receiver was down)", async () => {
    let up = false;
    const rx = fakeReceiver(() => (up ? 204 : 503));
    const dir = await Deno.makeTempDir({ prefix: "alumet-rw-" });
    try {
      const options = { endpoint: rx.url, journalPath: dir, minBackoffMs: 10, encoder: { suffix: "" } };
      up = true;
      const first = new RemoteWriteOutput({ ...options, finalAttemptMs: 100 });
      first.open();
      deltas(first, 1, 2);
      await until(() => first.delivery.pendingPoints === 0, "the first samples");
      up = false;
      deltas(first, 3, 4);
      await first.close();
      assert.equal(first.delivery.pendingPoints, 4, "the samples at 3 and 4 ms wait in the journal");
      up = true;
      const second = new RemoteWriteOutput(options);
      second.open();
      deltas(second, 5, 5);
      await until(() => second.delivery.pendingPoints === 0, "the replay and the new samples");
      await second.close();
      assert.deepEqual(totals(rx), [[1, 1], [3, 2], [6, 3], [10, 4], [15, 5]]);
      // An older point of a series the receiver has newer samples of is folded into the sum, not sent.
      const third = new RemoteWriteOutput(options);
      third.open();
      deltas(third, 5, 6);
      await third.close();
      assert.deepEqual(totals(rx).slice(5), [[26, 6]]);
      assert.equal(third.foldedPoints, 1);
    } finally {
      await rx.server.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  });

  await t.step("an unreadable counters file: one warning, the counters start from 0", async () => {
    const rx = fakeReceiver();
    const dir = await Deno.makeTempDir({ prefix: "alumet-rw-" });
    try {
      Deno.writeTextFileSync(`${dir}/remote-write-counters.json`, "{not json");
      const out = new RemoteWriteOutput({ endpoint: rx.url, journalPath: dir, encoder: { suffix: "" } });
      out.open();
      deltas(out, 1, 1);
      await out.close();
      assert.deepEqual(totals(rx), [[1, 1]]);
      assert.equal(logs.lines.filter((l) => l.includes("remote-write-counters.json")).length, 1);
      const saved = JSON.parse(Deno.readTextFileSync(`${dir}/remote-write-counters.json`));
      assert.equal(Object.keys(saved.series).length, 1, "only the counter series is kept");
    } finally {
      await rx.server.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  });
});

/**
 * How the influxdb output splits a request InfluxDB refuses, against a stand-in server (Deno.serve on a
 * loopback port) that answers like InfluxDB does: 413 above a size, 400 or 422 for lines with a marker, a
 * partial write (stores the others, says how many it dropped), and a 503 in the middle of a split.
 */
import assert from "node:assert/strict";
import { InfluxdbOutput, type InfluxdbOutputOptions } from "./mod.ts";
import { Batch } from "../../src/model/batch.ts";
import { MetricRegistry } from "../../src/model/metrics.ts";
import { unit } from "../../src/model/units.ts";
import { type LogSink, setLogSink } from "../../src/log.ts";

interface Rules {
  /** Answer 413 to a body of more bytes. */
  readonly maxBytes?: number;
  /** Lines containing this are refused: the whole request gets `refuseStatus`. */
  readonly refuse?: string;
  readonly refuseStatus?: 400 | 422;
  /** Lines containing this are dropped, the others stored: answered as InfluxDB 1.x's partial write. */
  readonly partial?: string;
  /** Answer 503 to the request with this index (0-based, counted from when `up` is set). */
  readonly failAt?: number;
}

interface Received {
  readonly status: number;
  readonly bytes: number;
  readonly lines: string[];
}

/** A stand-in InfluxDB: `up` false answers 503 to everything; `stored` has every line it accepted. */
function standIn(rules: Rules) {
  const received: Received[] = [];
  const stored: string[] = [];
  const state = { up: false, count: 0, failed: 0 };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const body = new Uint8Array(await req.arrayBuffer());
    const lines = new TextDecoder().decode(body).split("\n").filter((l) => l !== "");
    const answer = (status: number, json?: unknown) => {
      received.push({ status, bytes: body.length, lines });
      return new Response(json === undefined ? null : JSON.stringify(json), {
        status,
        headers: json === undefined ? {} : { "content-type": "application/json" },
      });
    };
    if (!state.up) return answer(503, { error: "starting" });
    if (state.count++ === rules.failAt) {
      state.failed = lines.length;
      return answer(503, { error: "busy" });
    }
    if (rules.maxBytes !== undefined && body.length > rules.maxBytes) {
      return answer(413, { code: "request too large", message: "too large", maxLength: rules.maxBytes });
    }
    if (rules.refuse !== undefined && lines.some((l) => l.includes(rules.refuse!))) {
      return answer(rules.refuseStatus ?? 400, {
        code: "invalid",
        message: `unable to parse '${lines.find((l) => l.includes(rules.refuse!))}': invalid field format`,
      });
    }
    if (rules.partial !== undefined) {
      const bad = lines.filter((l) => l.includes(rules.partial!));
      stored.push(...lines.filter((l) => !l.includes(rules.partial!)));
      if (bad.length > 0) {
        return answer(400, {
          error:
            `partial write: field type conflict: input field "note" on measurement "m" is type string, ` +
            `already exists as type float dropped=${bad.length}`,
        });
      }
      return answer(204);
    }
    stored.push(...lines);
    return answer(204);
  });
  const url = `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}`;
  return { url, received, stored, state, close: () => server.shutdown() };
}

const registry = new MetricRegistry();
const metric = registry.register("t", { name: "m", unit: unit("W"), valueType: "f64" });
const ctx = { metric: (id: number) => registry.get(id) };

/** Points 0..n-1 (timestamp i), in batches of 10; `note(i)` is an attribute (a field). */
function writeAll(out: InfluxdbOutput, n: number, note: (i: number) => string | number): void {
  for (let b = 0; b < n; b += 10) {
    const batch = new Batch();
    for (let i = b; i < Math.min(n, b + 10); i++) {
      batch.push(metric, i, { timestamp: BigInt(i) + 1n, attributes: { note: note(i) } });
    }
    out.write(batch, ctx);
  }
}

/** The timestamps of `lines` (the last word, less 1: the point's index). */
const indexes = (lines: readonly string[]) => lines.map((l) => Number(l.slice(l.lastIndexOf(" ") + 1)) - 1);

async function run(
  rules: Rules,
  n: number,
  note: (i: number) => string | number,
  extra: Partial<InfluxdbOutputOptions> = {},
) {
  const logs: string[] = [];
  const prev = setLogSink((level, _scope, msg) => logs.push(`${level} ${msg}`));
  const server = standIn(rules);
  const dir = await Deno.makeTempDir({ prefix: "alumet-influx-split-" });
  try {
    const out = new InfluxdbOutput({
      host: server.url,
      version: "v2",
      token: "t",
      org: "o",
      bucket: "b",
      database: "",
      timeoutMs: 30_000,
      journalPath: dir,
      maxBytes: 16 << 20,
      fsync: "none",
      minBackoffMs: 5,
      maxBackoffMs: 20,
      finalAttemptMs: 60_000,
      encoder: {},
      ...extra,
    });
    out.open();
    // The server answers 503 until every point is journaled: the pump then sends them together.
    writeAll(out, n, note);
    server.state.up = true;
    await out.close();
    return { server, out, logs };
  } finally {
    setLogSink(prev as LogSink);
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
}

function assertOnce(stored: readonly string[], expected: readonly number[]): void {
  const got = indexes(stored).sort((a, b) => a - b);
  assert.deepEqual(got, [...expected].sort((a, b) => a - b), "each accepted point stored exactly once");
}

Deno.test("influxdb output splits refused requests: only the refused lines are lost, nothing is sent twice", async (t) => {
  const n = 300;
  const all = Array.from({ length: n }, (_, i) => i);
  const marked = new Set([0, 7, 8, 150, 299]);

  await t.step(
    "413: halved until each part passes; a line too large alone is dropped and counted",
    async () => {
      const big = 123;
      const { server, out } = await run(
        { maxBytes: 2000 },
        n,
        (i) => (i === big ? "x".repeat(3000) : i + 0.5),
      );
      assertOnce(server.stored, all.filter((i) => i !== big));
      assert.equal(out.lostPoints(), 1);
      for (const r of server.received) if (r.status === 204) assert.ok(r.bytes <= 2000, `${r.bytes} bytes`);
      const tooLarge = server.received.filter((r) => r.status === 413);
      // After a 413 later requests are cut to half the refused size: a few 413s, not one per request.
      // ~27 kB first request, 2 kB limit: 4 halvings, then the large line alone (measured: 5 of 23 requests).
      assert.ok(tooLarge.length <= 6, `${tooLarge.length} answers 413`);
      assert.equal(tooLarge.filter((r) => r.lines.length === 1).length, 1, "the large line alone, once");
    },
  );

  for (const status of [400, 422] as const) {
    await t.step(`${status} (v2 API): bisected until only the marked lines are refused`, async () => {
      const { server, out, logs } = await run(
        { refuse: "REFUSE", refuseStatus: status },
        n,
        (i) => (marked.has(i) ? "REFUSE" : i + 0.5),
      );
      assertOnce(server.stored, all.filter((i) => !marked.has(i)));
      assert.equal(out.lostPoints(), marked.size);
      assert.equal(out.delivery.droppedPoints, 0, "counted by the output, not as a whole batch");
      const refusedAlone = server.received.filter((r) => r.status === status && r.lines.length === 1);
      assert.deepEqual(indexes(refusedAlone.flatMap((r) => r.lines)).sort((a, b) => a - b), [...marked]);
      assert.ok(
        logs.some((l) => l.startsWith("warn Dropped 5 of 300 points: InfluxDB refused them")),
        logs.join("\n"),
      );
    });
  }

  await t.step("413 and 400 together", async () => {
    const { server, out } = await run(
      { maxBytes: 3000, refuse: "REFUSE" },
      n,
      (i) => (marked.has(i) ? "REFUSE" : i + 0.5),
    );
    assertOnce(server.stored, all.filter((i) => !marked.has(i)));
    assert.equal(out.lostPoints(), marked.size);
  });

  await t.step("a partial write (1.x): the dropped count is lost, the rest not sent again", async () => {
    const { server, out } = await run(
      { partial: "CONFLICT" },
      n,
      (i) => (marked.has(i) ? "CONFLICT" : i + 0.5),
    );
    assertOnce(server.stored, all.filter((i) => !marked.has(i)));
    assert.equal(out.lostPoints(), marked.size);
    const answered = server.received.filter((r) => r.status !== 503);
    assert.equal(answered.length, 1, "one request: the partial write is not split nor resent");
  });

  await t.step("a 503 in the middle of a split: the retry sends only the lines not settled yet", async () => {
    const { server, out } = await run(
      { refuse: "REFUSE", failAt: 4 },
      n,
      (i) => (marked.has(i) ? "REFUSE" : i + 0.5),
    );
    assert.ok(server.state.failed > 0, "the 503 came in the middle of the split");
    assertOnce(server.stored, all.filter((i) => !marked.has(i)));
    assert.equal(out.lostPoints(), marked.size);
  });

  await t.step("every line refused: the journal drops the records and counts them once", async () => {
    const { server, out } = await run({ refuse: "REFUSE" }, 12, () => "REFUSE");
    assert.equal(server.stored.length, 0);
    assert.equal(out.lostPoints(), 12);
    assert.equal(out.delivery.droppedPoints, 12);
  });
});

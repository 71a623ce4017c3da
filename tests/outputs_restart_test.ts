/**
 * End-to-end: an agent killed with SIGKILL while its backend is down loses nothing it journaled. Through the
 * CLI (the `alumet` task's `deno run` line with `--config <toml> run`, procfs `kernel` every 100 ms, one
 * network output with its journal in a temporary directory):
 *
 * 1. The backend is not running. Agent A runs until its journal holds points and it said it cannot deliver;
 *    it is killed with SIGKILL (the whole process group). Its points are those in the journal, all with
 *    timestamps before the kill.
 * 2. Agent B, same config and journal, the backend still down: it says how many points it found in the journal
 *    (A's), journals more, and on SIGTERM exits 0 and says how many points wait in the journal (all of them).
 * 3. The backend is started. Agent C replays the journal (it says how many points it found), and on SIGTERM
 *    exits 0 with nothing left waiting. Every journaled point (A's and B's) is found in the backend by query,
 *    once, with its value; the points before the kill are exactly A's.
 *
 * Run for the `influxdb` output (v1, into InfluxDB 1.6.7) and `prometheus-remote-write` (into VictoriaMetrics
 * 1.79, deduplicating, and into Prometheus 2.42, which needs no out-of-order window for this replay).
 */
import assert from "node:assert/strict";
import {
  Influxd,
  Prometheus,
  serverNeeds,
  type TestServer,
  VictoriaMetrics,
} from "../src/testing/servers.ts";
import { testWith } from "../src/testing/needs.ts";
import { decodeWriteRequest } from "../plugins/prometheus-remote-write/mod.ts";
import {
  AgentProcess,
  FAST_SOURCE,
  type JournalRecord,
  pointsOf,
  readJournal,
  until,
} from "./testdata/outputs/harness.ts";

/** A point as the test compares it: a series key and a timestamp (ns for InfluxDB, ms for remote write). */
type PointKey = string;

interface Case {
  /** The server, created but not started. */
  server: TestServer;
  /** The output's TOML section (journal in `journal`). */
  section: (journal: string) => string;
  /** What the server must have before agent C starts (a database). */
  prepare?: () => Promise<void>;
  /** The journal's points, keyed; the value is what the backend must hold for that key. */
  decode: (records: readonly JournalRecord[]) => { points: Map<PointKey, string>; maxTime: bigint };
  /** What the backend holds up to `maxTime` (inclusive), keyed as `decode` does; counts duplicates. */
  query: (maxTime: bigint, keys: ReadonlyMap<PointKey, string>) => Promise<
    { points: Map<PointKey, string>; duplicates: number }
  >;
  /** The time of a key, in the unit of `maxTime`. */
  timeOf: (key: PointKey) => bigint;
  /** Whether a stored value is the journaled one. Default: the same text. */
  sameValue?: (stored: string, journaled: string) => boolean;
  /** Converts a `Date.now()` (ms) to the unit of the keys' times. */
  fromMs: (ms: number) => bigint;
}

async function restartScenario(c: Case): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "alumet-restart-" });
  await using server = c.server;
  try {
    const journal = `${dir}/journal`;
    const config = `${dir}/alumet-config.toml`;
    await Deno.writeTextFile(config, FAST_SOURCE + c.section(journal));
    const context = (what: string, agent: AgentProcess) => `${what}; agent's stderr:\n${agent.stderr}`;

    // 1. Backend down; agent A journals, then is killed.
    const a = new AgentProcess(config, { cwd: dir });
    let killedAt: number;
    try {
      await a.waitFor(/Cannot deliver to /);
      await until(() => pointsOf(readJournal(journal)) >= 200, () => context("journal A < 200 points", a));
    } finally {
      killedAt = Date.now();
      await a.kill();
    }
    const journalA = readJournal(journal);
    const pointsA = c.decode(journalA);
    assert.equal(pointsA.points.size, pointsOf(journalA), "each journaled point decodes to one distinct key");
    assert.ok(pointsA.maxTime < c.fromMs(killedAt), "A's points are older than the kill");
    assert.equal(a.lines(/ WARN .*Cannot deliver to /).length, 1, context("one warning for the outage", a));

    // 2. Backend still down; agent B finds A's points, journals more, and keeps them on a normal stop.
    const b = new AgentProcess(config, { cwd: dir });
    let codeB: number;
    try {
      await b.waitFor(/Cannot deliver to /);
      await until(
        () => pointsOf(readJournal(journal)) >= pointsOf(journalA) + 100,
        () => context("B journals", b),
      );
    } finally {
      codeB = await b.stop();
    }
    assert.equal(codeB, 0, context("B exits 0: its points are journaled, not lost", b));
    assert.ok(
      b.stderr.includes(`holds ${pointsOf(journalA)} points not yet delivered`),
      context(`B says the journal holds A's ${pointsOf(journalA)} points`, b),
    );
    const journalB = readJournal(journal);
    assert.deepEqual(journalB.slice(0, journalA.length), journalA, "A's records stay first, unchanged");
    const waiting = b.lines(/ wait in the journal /);
    assert.equal(waiting.length, 1, context("one 'wait in the journal' line", b));
    assert.match(
      waiting[0]!,
      new RegExp(`WARN .*: ${pointsOf(journalB)} points \\(\\d+ bytes\\) not delivered`),
    );
    assert.ok(waiting[0]!.includes(journal), waiting[0]);
    assert.equal(b.lines(/ lost /).length, 0, context("nothing reported lost", b));
    const pointsB = c.decode(journalB);
    assert.equal(pointsB.points.size, pointsOf(journalB));

    // 3. Backend up; agent C replays everything and leaves nothing waiting.
    await server.start();
    await c.prepare?.();
    const cAgent = new AgentProcess(config, { cwd: dir });
    let codeC: number;
    try {
      await cAgent.waitFor(new RegExp(`holds ${pointsOf(journalB)} points not yet delivered`));
      await until(
        async () => (await c.query(pointsB.maxTime, pointsB.points)).points.size >= pointsB.points.size,
        () => context("the backend has every journaled point", cAgent),
      );
    } finally {
      codeC = await cAgent.stop();
    }
    assert.equal(codeC, 0, context("C exits 0", cAgent));
    assert.equal(cAgent.lines(/ wait in the journal /).length, 0, context("nothing left waiting", cAgent));
    assert.equal(cAgent.lines(/ WARN | ERROR /).length, 0, context("no warning with the backend up", cAgent));
    assert.equal(pointsOf(readJournal(journal)), 0, "the journal is empty");

    const stored = await c.query(pointsB.maxTime, pointsB.points);
    assert.equal(stored.duplicates, 0, "no point stored twice");
    const missing = [...pointsB.points.keys()].filter((k) => !stored.points.has(k));
    assert.deepEqual(missing.slice(0, 5), [], `${missing.length} journaled points not found`);
    const same = c.sameValue ?? ((x: string, y: string) => x === y);
    const wrong = [...pointsB.points].filter(([k, v]) => !same(stored.points.get(k) ?? "(none)", v));
    assert.deepEqual(wrong.slice(0, 5), [], `${wrong.length} points with another value`);
    assert.equal(stored.points.size, pointsB.points.size, "nothing else up to B's last point");
    // The first agent's points: exactly those before the kill.
    const beforeKill = [...stored.points.keys()].filter((k) => c.timeOf(k) < c.fromMs(killedAt));
    assert.equal(
      beforeKill.length,
      pointsOf(journalA),
      "the points before the kill are A's journaled points",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

// ---- InfluxDB v1 ----

/** The measurement of a line-protocol line (up to the first unescaped comma or space). */
function measurementOf(line: string): string {
  let m = "";
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (ch === "\\" && i + 1 < line.length) m += line[++i];
    else if (ch === "," || ch === " ") break;
    else m += ch;
  }
  return m;
}

testWith(
  [serverNeeds.influxd],
  "influxdb output: an agent SIGKILLed while InfluxDB is down loses nothing it journaled",
  async () => {
    const server = new Influxd();
    const db = "alumet";
    await restartScenario({
      server,
      section: (journal) =>
        `[plugins.influxdb]
host = "${server.url}"
api_version = "v1"
database = "${db}"
attributes_as = "tag"
timeout = "2s"
journal_path = "${journal}"
max_backoff = "500ms"
final_attempt = "3s"
`,
      prepare: () => server.createDatabase(db),
      // Key: measurement and timestamp, with the number of series that have a point there (InfluxDB keys a
      // point by series and time; the tags are compared as a count per measurement and time).
      decode: (records) => {
        const counts = new Map<PointKey, number>();
        let maxTime = 0n;
        let lines = 0;
        for (const r of records) {
          for (const line of new TextDecoder().decode(r.payload).split("\n")) {
            if (line === "") continue;
            lines++;
            const ts = BigInt(line.slice(line.lastIndexOf(" ") + 1));
            if (ts > maxTime) maxTime = ts;
            const key = `${measurementOf(line)} ${ts}`;
            counts.set(key, (counts.get(key) ?? 0) + 1);
          }
        }
        assert.equal(lines, pointsOf(records), "one line per journaled point");
        // One entry per point: "<measurement> <ts> #<k>".
        const points = new Map<PointKey, string>();
        for (const [key, n] of counts) for (let k = 0; k < n; k++) points.set(`${key} #${k}`, "");
        return { points, maxTime };
      },
      query: async (maxTime, keys) => {
        const measurements = new Set([...keys.keys()].map((k) => k.split(" ")[0]!));
        const points = new Map<PointKey, string>();
        for (const m of measurements) {
          const series = await server.query(
            db,
            `SELECT "value" FROM "${m}" WHERE time <= ${maxTime} GROUP BY *`,
          ).catch(() => []);
          const counts = new Map<string, number>();
          for (const s of series) {
            for (const row of s.values) {
              const key = `${m} ${row[0]}`;
              counts.set(key, (counts.get(key) ?? 0) + 1);
            }
          }
          for (const [key, n] of counts) for (let k = 0; k < n; k++) points.set(`${key} #${k}`, "");
        }
        // InfluxDB overwrites a point with the same series and time: a duplicate cannot be stored.
        return { points, duplicates: 0 };
      },
      timeOf: (key) => BigInt(key.split(" ")[1]!),
      fromMs: (ms) => BigInt(ms) * 1_000_000n,
    });
  },
);

// ---- remote write ----

/** Keys remote-write samples as `<sorted labels> @<ms>`, with their value. */
function sampleKey(labels: Record<string, string>, ms: number): PointKey {
  const sorted = Object.keys(labels).sort().map((k) => `${k}=${JSON.stringify(labels[k])}`).join(",");
  return `{${sorted}} @${ms}`;
}

function decodeRemoteWrite(
  records: readonly JournalRecord[],
): { points: Map<PointKey, string>; maxTime: bigint } {
  const points = new Map<PointKey, string>();
  let maxTime = 0n;
  let samples = 0;
  for (const r of records) {
    for (const s of decodeWriteRequest(r.payload)) {
      for (const [value, ms] of s.samples) {
        samples++;
        points.set(sampleKey(s.labels, ms), String(value));
        if (BigInt(ms) > maxTime) maxTime = BigInt(ms);
      }
    }
  }
  assert.equal(samples, pointsOf(records), "one sample per journaled point");
  return { points, maxTime };
}

const remoteWriteSection = (endpoint: string) => (journal: string) =>
  `[plugins.prometheus-remote-write]
endpoint = "${endpoint}"
timeout = "2s"
journal_path = "${journal}"
max_backoff = "500ms"
final_attempt = "3s"
[plugins.prometheus-remote-write.labels]
instance = "restart-test"
`;

testWith(
  [serverNeeds.victoriaMetrics],
  "prometheus-remote-write output: an agent SIGKILLed while VictoriaMetrics is down loses nothing it journaled",
  async () => {
    const server = new VictoriaMetrics();
    await restartScenario({
      server,
      section: remoteWriteSection(server.remoteWriteUrl),
      decode: decodeRemoteWrite,
      // VictoriaMetrics stores a float as a decimal of 12 significant digits or so: 0.16999999999999998 → 0.17.
      sameValue: (stored, journaled) =>
        Math.abs(Number(stored) - Number(journaled)) <= 1e-9 * Math.max(1, Math.abs(Number(journaled))),
      query: async (maxTime) => {
        const points = new Map<PointKey, string>();
        let duplicates = 0;
        for (const s of await server.exportSeries('{instance="restart-test"}')) {
          s.timestamps.forEach((ms, i) => {
            if (BigInt(ms) > maxTime) return;
            const key = sampleKey(s.metric, ms);
            if (points.has(key)) duplicates++;
            points.set(key, String(s.values[i]));
          });
        }
        return { points, duplicates };
      },
      timeOf: (key) => BigInt(key.slice(key.lastIndexOf("@") + 1)),
      fromMs: (ms) => BigInt(ms),
    });
  },
);

testWith(
  [serverNeeds.prometheus],
  "prometheus-remote-write output: an agent SIGKILLed while Prometheus is down loses nothing it journaled",
  async () => {
    // No out-of-order window: the journal is replayed in order, before the new points.
    const server = new Prometheus();
    await restartScenario({
      server,
      section: remoteWriteSection(server.remoteWriteUrl),
      decode: decodeRemoteWrite,
      query: async (maxTime) => {
        const points = new Map<PointKey, string>();
        let duplicates = 0;
        for (const s of await server.query('{instance="restart-test"}[1h]')) {
          for (const [t, v] of s.values ?? []) {
            const ms = Math.round(t * 1000);
            if (BigInt(ms) > maxTime) continue;
            const key = sampleKey(s.metric, ms);
            if (points.has(key)) duplicates++;
            points.set(key, String(Number(v)));
          }
        }
        return { points, duplicates };
      },
      timeOf: (key) => BigInt(key.slice(key.lastIndexOf("@") + 1)),
      fromMs: (ms) => BigInt(ms),
    });
  },
);

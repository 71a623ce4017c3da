import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { runOutputContract, testPlugin } from "../../src/testing/mod.ts";
import { needs, testWith } from "../../src/testing/needs.ts";
import { checkConfigBlock } from "../../src/testing/readme.ts";
import { APPLICATION_ID, SqliteOutput, sqlitePlugin } from "./mod.ts";
import { Batch } from "../../src/model/batch.ts";
import { MetricRegistry } from "../../src/model/metrics.ts";
import { Consumer, Resource } from "../../src/model/resources.ts";
import { unit } from "../../src/model/units.ts";
import type { ElementContext } from "../../src/plugin/plugin.ts";
import { AlumetError } from "../../src/errors.ts";
import { OutputBlockedError } from "../../src/pipeline/output.ts";
import { BUILTIN_NAMES } from "../../src/agent/builtin.ts";

const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const T0 = 1_714_564_800_123_456_789n; // 2024-05-01T12:00:00.123456789Z: beyond 2^53

function contextOf(registry: MetricRegistry): ElementContext {
  return { metric: (id) => registry.get(id) };
}

async function inTempDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "alumet_sqlite_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Every row of `sql`, integers as bigints (exact). */
function query(path: string, sql: string): Record<string, unknown>[] {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const st = db.prepare(sql);
    st.setReadBigInts(true);
    return st.all().map((r) => ({ ...r }));
  } finally {
    db.close();
  }
}

function registryWithMetrics() {
  const registry = new MetricRegistry();
  const energy = registry.register("rapl", {
    name: "rapl_consumed_energy",
    unit: unit("J"),
    valueType: "f64",
    kind: "delta",
    description: "energy",
  });
  const count = registry.register("test", {
    name: "count",
    unit: unit("1"),
    valueType: "u64",
    kind: "counter",
  });
  return { registry, energy, count };
}

Deno.test("SqliteOutput writes the metrics and the points, values and timestamps exact", async () => {
  await inTempDir((dir) => {
    const { registry, energy, count } = registryWithMetrics();
    const b = new Batch();
    b.timestamp = T0;
    b.push(energy, 12.5, { resource: Resource.cpuPackage(0), attributes: { domain: "package" } });
    b.push(energy, NaN, { resource: Resource.dram(1), timestamp: T0 + 1n });
    b.push(count, 2 ** 53 - 1); // a number: bound as an INTEGER
    b.push(count, 2n ** 60n + 1n, { consumer: Consumer.process(42) });
    b.push(count, 2n ** 64n - 1n, {
      consumer: Consumer.cgroup('/a b/"c"'),
      attributes: { big: 2n ** 64n - 1n, up: true, x: 1.5, note: 'q"\n' },
    });
    const path = `${dir}/out.sqlite`;
    const output = new SqliteOutput(path);
    output.open();
    output.write(b, contextOf(registry));
    output.close();
    for (const suffix of ["-wal", "-shm"]) {
      assert.throws(() => Deno.statSync(path + suffix), Deno.errors.NotFound, `${suffix} left after close`);
    }
    assert.deepEqual(query(path, "SELECT * FROM metrics ORDER BY id"), [
      {
        id: 1n,
        name: "rapl_consumed_energy",
        unit: "J",
        value_type: "f64",
        kind: "delta",
        description: "energy",
        plugin: "rapl",
      },
      {
        id: 2n,
        name: "count",
        unit: "1",
        value_type: "u64",
        kind: "counter",
        description: "",
        plugin: "test",
      },
    ]);
    assert.deepEqual(query(path, "SELECT *, typeof(value) AS t FROM points ORDER BY rowid"), [
      {
        metric_id: 1n,
        timestamp_ns: T0,
        value: 12.5,
        t: "real",
        resource_kind: "cpu_package",
        resource_id: "0",
        consumer_kind: "local_machine",
        consumer_id: "",
        attributes: '{"domain":"package"}',
      },
      {
        metric_id: 1n,
        timestamp_ns: T0 + 1n,
        value: null,
        t: "null",
        resource_kind: "dram",
        resource_id: "1",
        consumer_kind: "local_machine",
        consumer_id: "",
        attributes: null,
      },
      {
        metric_id: 2n,
        timestamp_ns: T0,
        value: 2n ** 53n - 1n,
        t: "integer",
        resource_kind: "local_machine",
        resource_id: "",
        consumer_kind: "local_machine",
        consumer_id: "",
        attributes: null,
      },
      {
        metric_id: 2n,
        timestamp_ns: T0,
        value: 2n ** 60n + 1n,
        t: "integer",
        resource_kind: "local_machine",
        resource_id: "",
        consumer_kind: "process",
        consumer_id: "42",
        attributes: null,
      },
      {
        metric_id: 2n,
        timestamp_ns: T0,
        value: "18446744073709551615",
        t: "text",
        resource_kind: "local_machine",
        resource_id: "",
        consumer_kind: "cgroup",
        consumer_id: '/a b/"c"',
        attributes: '{"big":18446744073709551615,"up":true,"x":1.5,"note":"q\\"\\n"}',
      },
    ]);
    assert.deepEqual(
      query(
        path,
        "SELECT attributes ->> '$.note' AS note, attributes ->> '$.up' AS up FROM points WHERE rowid = 5",
      ),
      [{ note: 'q"\n', up: 1n }],
    );
    assert.deepEqual(query(path, "PRAGMA journal_mode"), [{ journal_mode: "wal" }]);
    assert.deepEqual(query(path, "PRAGMA application_id"), [{ application_id: BigInt(APPLICATION_ID) }]);
    assert.deepEqual(
      query(path, "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'points'"),
      [{ name: "points_metric_time" }],
    );
  });
});

Deno.test("SqliteOutput writes large batches (multiple-row inserts and the rest) and a metric's row once", async () => {
  await inTempDir((dir) => {
    const { registry, energy, count } = registryWithMetrics();
    const path = `${dir}/out.sqlite`;
    const output = new SqliteOutput(path);
    output.open();
    let expected = 0;
    for (const size of [1, 31, 32, 33, 1000, 70]) {
      const b = new Batch();
      for (let i = 0; i < size; i++) b.push(i % 2 ? energy : count, i, { timestamp: BigInt(expected + i) });
      output.write(b, contextOf(registry));
      expected += size;
    }
    output.close();
    assert.deepEqual(
      query(path, "SELECT count(*) AS n, min(timestamp_ns) AS lo, max(timestamp_ns) AS hi FROM points"),
      [
        { n: BigInt(expected), lo: 0n, hi: BigInt(expected - 1) },
      ],
    );
    assert.deepEqual(query(path, "SELECT count(DISTINCT timestamp_ns) AS n FROM points"), [{
      n: BigInt(expected),
    }]);
    assert.deepEqual(query(path, "SELECT count(*) AS n FROM metrics"), [{ n: 2n }]);
  });
});

Deno.test("A batch blocked by another writer is rolled back and paused (SQLITE_BUSY); the retry writes it once", async () => {
  await inTempDir((dir) => {
    const { registry, energy, count } = registryWithMetrics();
    const path = `${dir}/out.sqlite`;
    const output = new SqliteOutput(path, { busyTimeoutMs: 0 });
    output.open();
    const first = new Batch();
    first.push(energy, 1, { timestamp: 1n });
    output.write(first, contextOf(registry));
    const other = new DatabaseSync(path);
    other.exec("BEGIN IMMEDIATE"); // holds the write lock
    const batch = new Batch();
    batch.push(count, 5, { timestamp: 2n }); // a new metric: its row goes with the batch's transaction
    for (let i = 0; i < 100; i++) batch.push(energy, i, { timestamp: 3n });
    assert.throws(() => output.write(batch, contextOf(registry)), (e: unknown) => {
      assert.ok(e instanceof OutputBlockedError, String(e));
      assert.equal(e.code, "SQLITE_BUSY");
      assert.match(e.message, /^Cannot write sqlite output ".*out\.sqlite": database is locked/);
      return true;
    });
    other.exec("COMMIT");
    other.close();
    output.write(batch, contextOf(registry));
    output.close();
    assert.deepEqual(query(path, "SELECT count(*) AS n FROM points"), [{ n: 102n }]);
    assert.deepEqual(query(path, "SELECT name FROM metrics ORDER BY id"), [
      { name: "rapl_consumed_energy" },
      { name: "count" },
    ]);
  });
});

Deno.test("A second sqlite output on the same file refuses to start and leaves the first one's file intact", async () => {
  await inTempDir((dir) => {
    const { registry, energy } = registryWithMetrics();
    const path = `${dir}/out.sqlite`;
    const first = new SqliteOutput(path);
    first.open();
    const batch = new Batch();
    batch.push(energy, 1, { timestamp: 0n });
    first.write(batch, contextOf(registry));
    const second = new SqliteOutput(path);
    assert.throws(() => second.open(), (e: unknown) => {
      assert.ok(e instanceof AlumetError);
      assert.match(e.message, /^Cannot write sqlite output ".*out\.sqlite": another agent is writing it/);
      assert.doesNotMatch(e.message, /\n/, "one line");
      return true;
    });
    first.write(batch, contextOf(registry));
    first.close();
    assert.deepEqual(query(path, "SELECT count(*) AS n FROM points"), [{ n: 2n }], "the first one went on");
    second.open(); // once the first one is done, the file can be written again (and is replaced)
    second.close();
    assert.deepEqual(query(path, "SELECT count(*) AS n FROM points"), [{ n: 0n }]);
  });
});

Deno.test("The sqlite output refuses a file that is not its database and leaves it as it is", async (t) => {
  await inTempDir(async (dir) => {
    await t.step("a csv file", async () => {
      const path = `${dir}/a.csv`;
      await Deno.writeTextFile(path, "metric;timestamp\n");
      assert.throws(
        () => new SqliteOutput(path).open(),
        /^AlumetError: Cannot write sqlite output ".*a\.csv": the file is not an SQLite database; it is left as it is/,
      );
      assert.equal(await Deno.readTextFile(path), "metric;timestamp\n");
    });
    await t.step("another application's database", () => {
      const path = `${dir}/other.db`;
      const db = new DatabaseSync(path);
      db.exec("CREATE TABLE precious (x); INSERT INTO precious VALUES (1)");
      db.close();
      for (const append of [false, true]) {
        assert.throws(
          () => new SqliteOutput(path, { append }).open(),
          /not written by this output \(its application_id is 0\)/,
        );
      }
      assert.deepEqual(query(path, "SELECT x FROM precious"), [{ x: 1n }]);
    });
    await t.step("an empty file is fine", async () => {
      const path = `${dir}/empty.sqlite`;
      await Deno.writeFile(path, new Uint8Array());
      const output = new SqliteOutput(path);
      output.open();
      output.close();
      assert.deepEqual(query(path, "SELECT count(*) AS n FROM metrics"), [{ n: 0n }]);
    });
  });
});

Deno.test("append = false replaces the file (and its old WAL); append = true and a restart in the same agent add to it", async () => {
  await inTempDir(async (dir) => {
    const { registry, energy, count } = registryWithMetrics();
    const path = `${dir}/out.sqlite`;
    const one = new Batch();
    one.push(energy, 1, { timestamp: 1n });
    const write = (output: SqliteOutput, b: Batch) => {
      output.open();
      output.write(b, contextOf(registry));
      output.close();
    };
    write(new SqliteOutput(path), one);
    // A crashed run leaves a WAL: replacing the file must not replay it.
    const crashed = new DatabaseSync(path);
    crashed.exec(
      "PRAGMA wal_autocheckpoint = 0; INSERT INTO points VALUES (1, 99, 99, 'x', '', 'x', '', NULL)",
    );
    await Deno.copyFile(`${path}-wal`, `${dir}/wal.copy`);
    crashed.close();
    await Deno.copyFile(`${dir}/wal.copy`, `${path}-wal`);
    const two = new Batch();
    two.push(count, 2, { timestamp: 2n });
    write(new SqliteOutput(path), two);
    assert.deepEqual(
      query(path, "SELECT m.name, p.value FROM points p JOIN metrics m ON m.id = p.metric_id"),
      [
        { name: "count", value: 2n },
      ],
    );
    write(new SqliteOutput(path, { append: true }), one);
    assert.deepEqual(
      query(
        path,
        "SELECT m.id, m.name, p.value FROM points p JOIN metrics m ON m.id = p.metric_id ORDER BY p.rowid",
      ),
      [{ id: 1n, name: "count", value: 2n }, { id: 2n, name: "rapl_consumed_energy", value: 1 }],
      "the metric already in the file keeps its id",
    );
    const again = new SqliteOutput(path);
    write(again, one);
    write(again, one); // started again in the same agent: added
    assert.deepEqual(query(path, "SELECT count(*) AS n FROM points"), [{ n: 2n }]);
  });
});

Deno.test("sqlite README shows the default config", async () => {
  checkConfigBlock(await Deno.readTextFile(new URL("./README.md", import.meta.url)), sqlitePlugin);
});

Deno.test("sqlitePlugin: --output-file sets output_path", () => {
  assert.equal(sqlitePlugin.outputFileKey, "output_path");
  assert.ok(Object.hasOwn(sqlitePlugin.defaultConfig(), sqlitePlugin.outputFileKey));
  assert.deepEqual(sqlitePlugin.defaultConfig(), { output_path: "alumet-output.sqlite", append: false });
  assert.equal(sqlitePlugin.configSchema.safeParse({ output_path: "" }).success, false);
  assert.equal(sqlitePlugin.configSchema.safeParse({ apend: true }).success, false);
});

Deno.test("sqlitePlugin start creates the database and adds the output out; a bad path names itself", async () => {
  await inTempDir(async (dir) => {
    const path = `${dir}/out.sqlite`;
    {
      await using h = await testPlugin(sqlitePlugin, { output_path: path });
      assert.deepEqual([...h.outputs.keys()], ["out"]);
      const output = h.outputs.get("out")!.output;
      assert.equal(output.describe?.(), path);
      const { registry, energy } = registryWithMetrics();
      const b = new Batch();
      b.push(energy, 3, { timestamp: T0 });
      await output.write(b, contextOf(registry));
      await h.stop();
    }
    assert.deepEqual(query(path, "SELECT timestamp_ns, value FROM points"), [{ timestamp_ns: T0, value: 3 }]);
    const bad = `${dir}/no/such/dir/out.sqlite`;
    await assert.rejects(async () => await testPlugin(sqlitePlugin, { output_path: bad }), (e: unknown) => {
      assert.ok(e instanceof AlumetError);
      assert.ok(e.message.startsWith(`Cannot open sqlite output "${bad}": `), e.message);
      return true;
    });
  });
});

Deno.test("sqlite honours the output contract", async (t) => {
  await inTempDir(async (dir) => {
    await runOutputContract(t, {
      plugin: sqlitePlugin,
      config: { output_path: `${dir}/c.sqlite` },
      output: "out",
    });
    assert.deepEqual(query(`${dir}/c.sqlite`, "SELECT count(*) AS n FROM points"), [{ n: 5n }]);
  });
});

testWith(
  [needs.command("sqlite3")],
  "alumet exec with procfs and sqlite writes a database that the sqlite3 shell queries",
  async () => {
    await inTempDir(async (dir) => {
      // Until sqlite is a built-in plugin, the config names its module.
      const builtin = BUILTIN_NAMES.includes("sqlite");
      await Deno.writeTextFile(
        `${dir}/c.toml`,
        builtin ? "" : `[plugins.sqlite]\nmodule = ${JSON.stringify(`${ROOT}/plugins/sqlite/mod.ts`)}\n`,
      );
      const before = BigInt(Date.now()) * 1_000_000n;
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "task",
          "--quiet",
          "--config",
          `${ROOT}/deno.json`,
          "alumet",
          "--config",
          "c.toml",
          "--plugins",
          "procfs,sqlite",
          "--output-file",
          "run.sqlite",
          "exec",
          "--",
          "sleep",
          "0.2",
        ],
        cwd: dir,
        env: { ALUMET_LOG: "warn", INIT_CWD: dir }, // not the outer `deno task test`'s
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, stderr);
      const after = BigInt(Date.now()) * 1_000_000n;
      const sqlite3 = (sql: string) => {
        const r = new Deno.Command("sqlite3", {
          args: ["-bail", "-separator", "|", `${dir}/run.sqlite`, sql],
        })
          .outputSync();
        assert.ok(r.success, new TextDecoder().decode(r.stderr));
        return new TextDecoder().decode(r.stdout).trim().split("\n").filter((l) => l !== "");
      };
      const metrics = sqlite3("SELECT name, unit, value_type, kind FROM metrics ORDER BY name");
      assert.ok(metrics.includes("cpu_time_delta|ns|u64|delta"), metrics.join("\n"));
      const names = metrics.map((l) => l.split("|")[0]);
      assert.ok(names.includes("memory_usage"), names.join(", "));
      const [n, lo, hi] = sqlite3("SELECT count(*), min(timestamp_ns), max(timestamp_ns) FROM points")[0]!
        .split("|");
      assert.ok(Number(n) > 0, "no points");
      assert.ok(
        BigInt(lo!) >= before && BigInt(hi!) <= after,
        `timestamps ${lo}..${hi} not in ${before}..${after}`,
      );
      // Exact nanoseconds: the shell prints the INTEGER's digits (a REAL would print 1.7e+18).
      assert.match(lo!, /^\d{19}$/);
      // The program's CPU time: sleep's process, found by the pid exec prints.
      const pid = /\(pid (\d+)\)/.exec(stderr)?.[1];
      assert.ok(pid, `no pid in the summary: ${stderr}`);
      const rows = sqlite3(
        "SELECT count(*), typeof(value), attributes ->> '$.kind' FROM points JOIN metrics m ON m.id = metric_id " +
          `WHERE m.name = 'cpu_time_delta' AND consumer_kind = 'process' AND consumer_id = '${pid}' ` +
          "GROUP BY 2, 3 ORDER BY 3",
      );
      assert.ok(rows.some((r) => /^\d+\|integer\|user$/.test(r)), rows.join("\n"));
      // The index answers a metric's points over time.
      const plan = sqlite3(
        "EXPLAIN QUERY PLAN SELECT * FROM points WHERE metric_id = 1 AND timestamp_ns > 0",
      ).join("\n");
      assert.match(plan, /USING INDEX points_metric_time/);
      await Deno.stat(`${dir}/run.sqlite`);
      for (const suffix of ["-wal", "-shm"]) {
        await assert.rejects(() => Deno.stat(`${dir}/run.sqlite${suffix}`), Deno.errors.NotFound);
      }
    });
  },
);

/** Mounting a tmpfs: root, and a kernel and container that allow it. */
const canMount = {
  what: "mount -t tmpfs",
  missing: () => {
    if (Deno.uid() !== 0) return "the test must run as root to mount a tmpfs";
    const dir = Deno.makeTempDirSync({ prefix: "alumet-mount-probe-" });
    try {
      const r = new Deno.Command("mount", { args: ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir] })
        .outputSync();
      if (!r.success) return `mount -t tmpfs failed: ${new TextDecoder().decode(r.stderr).trim()}`;
      new Deno.Command("umount", { args: [dir] }).outputSync();
      return undefined;
    } catch (e) {
      return `cannot run mount: ${(e as Error).message}`;
    } finally {
      Deno.removeSync(dir);
    }
  },
};

testWith(
  [canMount],
  "On a full disk a batch is rolled back (OutputBlockedError ENOSPC) and, retried once there is room, written once",
  async () => {
    await inTempDir(async (dir) => {
      const mnt = `${dir}/mnt`;
      await Deno.mkdir(mnt);
      const sh = (cmd: string, ...args: string[]) => {
        const r = new Deno.Command(cmd, { args }).outputSync();
        assert.ok(r.success, `${cmd} ${args.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
      };
      sh("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt);
      try {
        const { registry, energy } = registryWithMetrics();
        const path = `${mnt}/out.sqlite`;
        const output = new SqliteOutput(path);
        output.open();
        const small = new Batch();
        small.push(energy, 1, { timestamp: 1n });
        output.write(small, contextOf(registry));
        // Fill the rest of the tmpfs.
        const filler = await Deno.open(`${mnt}/filler`, { write: true, create: true });
        try {
          for (;;) filler.writeSync(new Uint8Array(4096));
        } catch (e) {
          assert.equal((e as { code?: string }).code, "ENOSPC", String(e));
        } finally {
          filler.close();
        }
        const big = new Batch();
        for (let i = 0; i < 5_000; i++) {
          big.push(energy, i, { timestamp: 2n, attributes: { pad: "x".repeat(40) } });
        }
        let blocked = 0;
        for (let i = 0; i < 3; i++) {
          assert.throws(() => output.write(big, contextOf(registry)), (e: unknown) => {
            assert.ok(e instanceof OutputBlockedError, String(e));
            assert.equal(e.code, "ENOSPC");
            assert.match(e.message, /^Cannot write sqlite output ".*": database or disk is full/);
            return true;
          });
          blocked++;
        }
        assert.equal(blocked, 3);
        await Deno.remove(`${mnt}/filler`);
        output.write(big, contextOf(registry)); // the retry
        output.close();
        assert.deepEqual(query(path, "SELECT count(*) AS n FROM points"), [{ n: 5_001n }]);
        assert.deepEqual(query(path, "PRAGMA integrity_check"), [{ integrity_check: "ok" }]);
      } finally {
        sh("umount", "-l", mnt);
      }
    });
  },
);

import assert from "node:assert/strict";
import { runOutputContract, testPlugin } from "../../src/testing/mod.ts";
import { LogOutput, logPlugin, type SyncWriter } from "./mod.ts";
import { Batch } from "../../src/model/batch.ts";
import { MetricRegistry } from "../../src/model/metrics.ts";
import { Consumer, Resource } from "../../src/model/resources.ts";
import { unit } from "../../src/model/units.ts";
import type { ElementContext } from "../../src/plugin/plugin.ts";
import { checkConfigBlock } from "../../src/testing/readme.ts";
import { OutputBlockedError, OutputTask } from "../../src/pipeline/output.ts";
import { Logger, type LogSink, setLogSink } from "../../src/log.ts";

/** Keeps the log lines of the test off the console. */
function silentLogs(): { lines: string[]; [Symbol.dispose](): void } {
  const lines: string[] = [];
  const prev = setLogSink((level, scope, msg) => lines.push(`${level} ${scope}: ${msg}`));
  return { lines, [Symbol.dispose]: () => void setLogSink(prev as LogSink) };
}

/** A writer that keeps what it receives, taking at most `chunk` bytes per call. */
function recorder(chunk = Infinity): SyncWriter & { text(): string; calls: number } {
  const parts: Uint8Array[] = [];
  const w = {
    calls: 0,
    writeSync(p: Uint8Array): number {
      w.calls++;
      const n = Math.min(p.length, chunk);
      parts.push(p.slice(0, n));
      return n;
    },
    text(): string {
      const all = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
      let at = 0;
      for (const p of parts) {
        all.set(p, at);
        at += p.length;
      }
      return new TextDecoder().decode(all);
    },
  };
  return w;
}

function setup(): { registry: MetricRegistry; ctx: ElementContext; batch: Batch } {
  const registry = new MetricRegistry();
  const energy = registry.register("rapl", {
    name: "rapl_consumed_energy",
    unit: unit("J"),
    valueType: "f64",
  });
  const instructions = registry.register("perf", { name: "instructions", unit: unit("1"), valueType: "u64" });
  const cpu = registry.register("procfs", {
    name: "cpu_time_delta",
    unit: unit("s", "micro"),
    valueType: "u64",
  });
  const batch = new Batch();
  batch.timestamp = 1_714_564_800_123_456_789n;
  batch.push(energy, 12.5, { resource: Resource.cpuPackage(0), attributes: { domain: "package" } });
  batch.push(instructions, 2n ** 64n - 1n, { consumer: Consumer.process(42) });
  batch.push(cpu, 1720, {
    timestamp: 0n,
    resource: Resource.cpuCore(3),
    consumer: Consumer.cgroup("/system.slice/a.service"),
    attributes: { kind: "user", guest: false },
  });
  return { registry, ctx: { metric: (id) => registry.get(id) }, batch };
}

const EXPECTED =
  "2024-05-01T12:00:00.123456789Z rapl_consumed_energy = 12.5 J [cpu_package 0 / local_machine] " +
  "domain=package\n" +
  "2024-05-01T12:00:00.123456789Z instructions = 18446744073709551615 [local_machine / process 42]\n" +
  "1970-01-01T00:00:00.000000000Z cpu_time_delta = 1720 μs [cpu_core 3 / cgroup /system.slice/a.service] " +
  "kind=user guest=false\n";

Deno.test("LogOutput prints one readable line per point", () => {
  const { ctx, batch } = setup();
  const out = recorder();
  const output = new LogOutput(out);
  output.write(batch, ctx);
  output.close();
  assert.equal(out.text(), EXPECTED);
  assert.equal(out.calls, 1, "a batch is one write");
});

Deno.test("LogOutput writes again until every byte is out", () => {
  const { ctx, batch } = setup();
  const out = recorder(7);
  new LogOutput(out).write(batch, ctx);
  assert.equal(out.text(), EXPECTED);
  assert.ok(out.calls > 1);
});

Deno.test("LogOutput writes nothing for an empty batch", () => {
  const { ctx } = setup();
  const out = recorder();
  new LogOutput(out).write(new Batch(), ctx);
  assert.equal(out.calls, 0);
});

Deno.test("logPlugin config schema accepts only the empty table", () => {
  assert.deepEqual(logPlugin.defaultConfig(), {});
  assert.equal(logPlugin.configSchema.safeParse({}).success, true);
  assert.equal(logPlugin.configSchema.safeParse({ max_points_per_batch: 10 }).success, false);
});

Deno.test("log README shows the default config", async () => {
  checkConfigBlock(await Deno.readTextFile(new URL("./README.md", import.meta.url)), logPlugin);
});

Deno.test("logPlugin start adds the output out, and nothing else", async () => {
  await using h = await testPlugin(logPlugin);
  assert.deepEqual([...h.outputs.keys()], ["out"]);
  assert.ok(h.outputs.get("out")?.output instanceof LogOutput);
  assert.equal(h.sources.size + h.autonomous.size + h.transforms.size + h.tasks.size, 0, "only an output");
  assert.equal(h.metrics.all.length, 0, "no metric");
});

Deno.test("log honours the output contract", async (t) => {
  await runOutputContract(t, { plugin: logPlugin, output: "out" });
});

Deno.test("alumet run | head: the agent stops once its reader went away (EPIPE), without hanging", async () => {
  const root = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
  const dir = await Deno.makeTempDir({ prefix: "alumet-log-epipe-" });
  try {
    await Deno.writeTextFile(
      `${dir}/probe.ts`,
      `import { unit } from "${root}/mod.ts";
let n = 0;
export default {
  name: "probe", version: "1.0.0", defaultConfig: () => ({}),
  init: () => ({
    start(ctx) {
      const m = ctx.createMetric({ name: "probe_seq", unit: unit("1"), valueType: "u64" });
      ctx.addSource("seq", { poll: (b) => b.push(m, ++n) }, { pollInterval: "10ms", flushInterval: "10ms" });
    },
  }),
};
`,
    );
    await Deno.writeTextFile(
      `${dir}/alumet-config.toml`,
      `[plugins.probe]\nmodule = "./probe.ts"\n\n[plugins.log]\n`,
    );
    // `head -n 3` as the reader: it exits after three lines, closing the pipe.
    const child = new Deno.Command("sh", {
      args: [
        "-c",
        `{ "$0" run --quiet --allow-all "$1" run; echo "agent exit $?" >&2; } | head -n 3`,
        Deno.execPath(),
        `${root}/src/agent/main.ts`,
      ],
      cwd: dir,
      env: { ALUMET_LOG: "info" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    const out = await child.output();
    clearTimeout(timer);
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(stdout.split("\n").filter((l) => l !== "").length, 3, stdout);
    assert.equal(out.signal, null, `the agent ended on its own, not killed after 60 s:\n${stderr}`);
    assert.match(stderr, /output\/log\/out: Stopped: its reader went away \(EPIPE/);
    assert.match(stderr, /Stopping \(a shutdown request\)/);
    assert.match(stderr, /agent exit 0\n/, "what no reader wants is not a loss: the agent exits 0");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The error Deno throws for a write on a full file system (`Error` with `code: "ENOSPC"`). */
function enospc(): Error {
  return Object.assign(new Error("No space left on device (os error 28)"), { code: "ENOSPC" });
}

/**
 * A file system with `room` bytes free, as the kernel behaves: a write takes what fits (a short write), the
 * next one fails with ENOSPC. Raise `room` to free space.
 */
function smallDisk(room: number): SyncWriter & { room: number; text(): string } {
  const keep = recorder();
  const disk = {
    room,
    writeSync(p: Uint8Array): number {
      if (disk.room <= 0) throw enospc();
      const n = keep.writeSync(p.subarray(0, Math.min(p.length, disk.room)));
      disk.room -= n;
      return n;
    },
    text: () => keep.text(),
  };
  return disk;
}

Deno.test("LogOutput on a full disk keeps the unwritten tail: the retry writes only the rest, no duplicate, no loss", () => {
  const { ctx, batch } = setup();
  const disk = smallDisk(150); // the disk fills in the middle of the second line (the first is 107 bytes)
  const output = new LogOutput(disk);
  assert.throws(() => output.write(batch, ctx), (e: unknown) => {
    assert.ok(e instanceof OutputBlockedError, `an OutputBlockedError, not ${e}`);
    assert.equal(e.code, "ENOSPC");
    assert.equal(e.unwrittenPoints, 2, "the line cut in two and the last one");
    assert.match(e.message, /^Cannot write to stdout: No space left on device/);
    return true;
  });
  assert.throws(() => output.write(batch, ctx), OutputBlockedError, "still full: still blocked");
  disk.room = 1 << 20;
  output.write(batch, ctx); // the pipeline retries the same batch once there is room
  assert.equal(disk.text(), EXPECTED, "every line once");
  output.write(batch, ctx);
  assert.equal(disk.text(), EXPECTED + EXPECTED, "the next batch in full");
});

Deno.test("LogOutput through the pipeline's OutputTask: a disk that fills then frees loses and repeats nothing", async () => {
  using _logs = silentLogs();
  const registry = new MetricRegistry();
  const m = registry.register("test", { name: "seq", unit: unit("1"), valueType: "u64" });
  const disk = smallDisk(700);
  const t = new OutputTask({ kind: "output", plugin: "log", name: "out" }, new LogOutput(disk), {
    capacity: 64,
    policy: "block",
    ctx: { metric: (id) => registry.get(id) },
    log: new Logger("output/log/out"),
    backoffMs: [5, 20],
  });
  let next = 1;
  for (let b = 0; b < 20; b++) {
    const batch = new Batch();
    for (let i = 0; i < 5; i++) batch.push(m, next++, { timestamp: 0n });
    t.offer(batch);
  }
  const t0 = performance.now();
  while (t.blocked === undefined && performance.now() - t0 < 20_000) {
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.equal(t.blocked, "ENOSPC", "the output pauses");
  disk.room = 1 << 20;
  await t.closeInput();
  const values = disk.text().split("\n").filter((l) => l !== "").map((l) => Number(/= (\d+) /.exec(l)![1]));
  assert.deepEqual(values, Array.from({ length: 100 }, (_, i) => i + 1), "every point once, in order");
  assert.equal(t.stats.droppedPoints, 0);
  assert.equal(t.stats.points, 100);
});

Deno.test("LogOutput through an OutputTask whose disk stays full: lines written + points counted lost = points measured", async () => {
  using _logs = silentLogs();
  const registry = new MetricRegistry();
  const m = registry.register("test", { name: "seq", unit: unit("1"), valueType: "u64" });
  const disk = smallDisk(700);
  const t = new OutputTask({ kind: "output", plugin: "log", name: "out" }, new LogOutput(disk), {
    capacity: 64,
    policy: "block",
    ctx: { metric: (id) => registry.get(id) },
    log: new Logger("output/log/out"),
    backoffMs: [5, 20],
    blockedGraceMs: 50,
  });
  for (let b = 0, next = 1; b < 4; b++) {
    const batch = new Batch();
    for (let i = 0; i < 5; i++) batch.push(m, next++, { timestamp: 0n });
    t.offer(batch);
  }
  await t.closeInput();
  const whole = disk.text().split("\n").slice(0, -1); // the last piece is a line cut short
  assert.ok(whole.length > 0 && whole.length < 20, `some lines fit (${whole.length})`);
  assert.equal(
    whole.length + t.stats.droppedPoints,
    20,
    `written ${whole.length}, lost ${t.stats.droppedPoints}`,
  );
});

Deno.test("StdoutWriter writes a view's own bytes to fd 1 with write(2), and says how many went out", async () => {
  const url = new URL("./mod.ts", import.meta.url).href;
  const code = `import { StdoutWriter } from ${JSON.stringify(url)};
const w = new StdoutWriter();
const all = new TextEncoder().encode("0123456789abcdef\\n");
const n = w.writeSync(all.subarray(10)); // "abcdef\\n", from an offset
console.error(JSON.stringify({ raw: w.raw, n }));`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", code],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(out.stderr);
  assert.ok(out.success, err);
  assert.deepEqual(JSON.parse(err), { raw: true, n: 7 });
  assert.equal(new TextDecoder().decode(out.stdout), "abcdef\n");
});

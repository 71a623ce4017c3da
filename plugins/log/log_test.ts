import assert from "node:assert/strict";
import { runOutputContract, testPlugin } from "../../src/testing/mod.ts";
import { LogOutput, logPlugin, type SyncWriter } from "./mod.ts";
import { Batch } from "../../src/model/batch.ts";
import { MetricRegistry } from "../../src/model/metrics.ts";
import { Consumer, Resource } from "../../src/model/resources.ts";
import { unit } from "../../src/model/units.ts";
import type { ElementContext } from "../../src/plugin/plugin.ts";
import { checkConfigBlock } from "../../src/testing/readme.ts";

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

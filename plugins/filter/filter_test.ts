import assert from "node:assert/strict";
import { Batch } from "../../src/model/batch.ts";
import { type MetricId, MetricRegistry } from "../../src/model/metrics.ts";
import { Consumer, Resource } from "../../src/model/resources.ts";
import { unit } from "../../src/model/units.ts";
import { CPU_PERCENT, CPU_TIME_DELTA, MEMORY_USAGE } from "../../src/model/common_metrics.ts";
import { ConfigError } from "../../src/errors.ts";
import { validatePluginConfig } from "../../src/plugin/config.ts";
import { definePlugin } from "../../src/plugin/define.ts";
import type { ElementContext } from "../../src/plugin/plugin.ts";
import { Agent } from "../../src/agent/agent.ts";
import { type LogSink, setLogSink } from "../../src/log.ts";
import { checkConfigBlock } from "../../src/testing/readme.ts";
import { type FilterConfig, filterPlugin, FilterTransform } from "./mod.ts";

const T0 = 1_700_000_000_000_000_000n;
const T1 = T0 + 2_000_000_000n;

function captureLogs(): { lines: string[]; [Symbol.dispose](): void } {
  const lines: string[] = [];
  const prev = setLogSink((level, scope, msg) => lines.push(`${level} ${scope}: ${msg}`));
  return { lines, [Symbol.dispose]: () => void setLogSink(prev as LogSink) };
}

const validate = (table: Record<string, unknown>): FilterConfig =>
  validatePluginConfig(filterPlugin, { name: "filter", table }, "alumet-config.toml");

function setup() {
  const r = new MetricRegistry();
  const m = {
    kernel: r.register("procfs", {
      name: "kernel_cpu_time",
      unit: unit("s", "milli"),
      valueType: "u64",
      kind: "delta",
    }),
    ctx: r.register("procfs", {
      name: "kernel_context_switches",
      unit: unit("1"),
      valueType: "u64",
      kind: "delta",
    }),
    rapl: r.register("rapl", {
      name: "rapl_consumed_energy",
      unit: unit("J"),
      valueType: "f64",
      kind: "delta",
    }),
    cpu: r.register("procfs", CPU_TIME_DELTA),
    pct: r.register("procfs", CPU_PERCENT),
    mem: r.register("procfs", MEMORY_USAGE),
  };
  const ctx: ElementContext = { metric: (id) => r.get(id) };
  return { r, m, ctx };
}

/** The batch's points as `metric consumer value [attributes]` lines, easy to compare by hand. */
function lines(b: Batch, r: MetricRegistry): string[] {
  return [...b].map((p) => {
    const attrs = Object.entries(p.attributes).map(([k, v]) => `${k}=${v}`).join(",");
    const ts = p.timestamp === T0 ? "T0" : p.timestamp === T1 ? "T1" : String(p.timestamp);
    return `${ts} ${r.get(p.metric).name} ${p.consumer.kind}:${p.consumer.id} ${p.value}${
      attrs ? ` ${attrs}` : ""
    }`;
  });
}

function run(config: Record<string, unknown>, fill: (b: Batch, m: ReturnType<typeof setup>["m"]) => void) {
  const { r, m, ctx } = setup();
  const b = new Batch();
  b.timestamp = T0;
  fill(b, m);
  new FilterTransform(validate(config)).apply(b, ctx);
  return lines(b, r);
}

function basic(b: Batch, m: ReturnType<typeof setup>["m"]) {
  b.push(m.kernel, 100, { attributes: { cpu_state: "user" } });
  b.push(m.ctx, 5);
  b.push(m.rapl, 1.5, { resource: Resource.cpuPackage(0), attributes: { domain: "package" } });
  b.push(m.cpu, 10, { consumer: Consumer.process(1), attributes: { kind: "user" } });
  b.push(m.cpu, 20, { consumer: Consumer.cgroup("/system.slice/a.service"), attributes: { kind: "user" } });
}

Deno.test("filter by metric: Alumet's include and exclude, with exact names, globs and /regex/", async (t) => {
  await t.step("include exact names (Alumet's form)", () => {
    assert.deepEqual(run({ include: ["cpu_time_delta"] }, basic), [
      "T0 cpu_time_delta process:1 10 kind=user",
      "T0 cpu_time_delta cgroup:/system.slice/a.service 20 kind=user",
    ]);
  });
  await t.step("exclude a glob", () => {
    assert.deepEqual(run({ exclude: ["kernel_*"] }, basic), [
      "T0 rapl_consumed_energy local_machine: 1.5 domain=package",
      "T0 cpu_time_delta process:1 10 kind=user",
      "T0 cpu_time_delta cgroup:/system.slice/a.service 20 kind=user",
    ]);
  });
  await t.step("include a regex", () => {
    assert.deepEqual(run({ include: ["/_energy$|^kernel_cpu/"] }, basic), [
      "T0 kernel_cpu_time local_machine: 100 cpu_state=user",
      "T0 rapl_consumed_energy local_machine: 1.5 domain=package",
    ]);
  });
});

Deno.test("filter by consumer: kind:id patterns", async (t) => {
  await t.step("include_consumers keeps only matching consumers", () => {
    assert.deepEqual(run({ include_consumers: ["cgroup:/system.slice/*"] }, basic), [
      "T0 cpu_time_delta cgroup:/system.slice/a.service 20 kind=user",
    ]);
  });
  await t.step("exclude_consumers with metrics: both filters apply", () => {
    assert.deepEqual(
      run({ exclude_consumers: ["process:*", "/^cgroup:/"], exclude: ["kernel_context_switches"] }, basic),
      [
        "T0 kernel_cpu_time local_machine: 100 cpu_state=user",
        "T0 rapl_consumed_energy local_machine: 1.5 domain=package",
      ],
    );
  });
});

Deno.test("filter config errors: one ConfigError each, naming the key", async (t) => {
  const fails = (table: Record<string, unknown>, re: RegExp) => {
    let err: unknown;
    try {
      validate(table);
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof ConfigError, String(err));
    assert.match(err.message, re);
  };
  await t.step(
    "include and exclude together (Alumet's rule)",
    () =>
      fails(
        { include: ["a"], exclude: ["b"] },
        /plugins\.filter\.exclude: expected either include or exclude, not both/,
      ),
  );
  await t.step("both consumer lists", () =>
    fails(
      { include_consumers: ["a"], exclude_consumers: ["b"] },
      /plugins\.filter\.exclude_consumers: expected either include_consumers or exclude_consumers/,
    ));
  await t.step(
    "an empty list",
    () => fails({ include: [] }, /plugins\.filter\.include: expected at least one metric pattern/),
  );
  await t.step(
    "a bad regex",
    () =>
      fails(
        { exclude: ["/(/"] },
        /plugins\.filter\.exclude\[0\]: expected a valid regular expression, not "\/\(\/"/,
      ),
  );
  await t.step(
    "top.n must be positive",
    () => fails({ top: { n: 0 } }, /plugins\.filter\.top\.n: expected a positive number/),
  );
});

/** Five processes at T0 (and three at T1): cpu_time_delta user+system, cpu_percent, memory_usage. */
function processes(b: Batch, m: ReturnType<typeof setup>["m"]) {
  const user = Object.freeze({ kind: "user" });
  const system = Object.freeze({ kind: "system" });
  const resident = Object.freeze({ kind: "resident" });
  // pid: [user ns, system ns, cpu %, resident bytes]
  const t0: [number, number, number, number, number][] = [
    [1, 100, 0, 1, 1000],
    [2, 500, 100, 6, 2000],
    [3, 50, 50, 1, 3000],
    [4, 300, 0, 3, 4000],
    [5, 10, 0, 0.5, 5000],
  ];
  for (const [pid, u, s, pct, mem] of t0) {
    const consumer = Consumer.process(pid);
    // A new attribute object per point, as sources that do not reuse them give: equal sets still sum together.
    b.push(m.cpu, u, { consumer, attributes: { ...user } });
    b.push(m.cpu, s, { consumer, attributes: system });
    b.push(m.pct, pct, { consumer });
    b.push(m.mem, mem, { consumer, attributes: resident });
  }
  b.push(m.kernel, 999, { attributes: { cpu_state: "user" } });
  for (const [pid, u] of [[1, 700], [2, 1], [3, 5]] as const) {
    b.push(m.cpu, u, { consumer: Consumer.process(pid), attributes: user, timestamp: T1 });
  }
}

Deno.test("filter top: per timestamp, the N heaviest processes keep their points, the rest sum into other", () => {
  // T0 weights (user + system): pid 2 = 600, pid 4 = 300, pid 1 = 100, pid 3 = 100, pid 5 = 10 → keep 2 and 4.
  // other at T0: cpu user = 100 + 50 + 10 = 160, system = 0 + 50 + 0 = 50, cpu % = 1 + 1 + 0.5 = 2.5,
  // memory = 1000 + 3000 + 5000 = 9000. T1: pid 1 = 700, pid 3 = 5, pid 2 = 1 → keep 1 and 3, other = pid 2.
  assert.deepEqual(run({ top: { n: 2 } }, processes), [
    "T0 cpu_time_delta process:2 500 kind=user",
    "T0 cpu_time_delta process:2 100 kind=system",
    "T0 cpu_percent process:2 6",
    "T0 memory_usage process:2 2000 kind=resident",
    "T0 cpu_time_delta process:4 300 kind=user",
    "T0 cpu_time_delta process:4 0 kind=system",
    "T0 cpu_percent process:4 3",
    "T0 memory_usage process:4 4000 kind=resident",
    "T0 kernel_cpu_time local_machine: 999 cpu_state=user",
    "T1 cpu_time_delta process:1 700 kind=user",
    "T1 cpu_time_delta process:3 5 kind=user",
    "T0 cpu_time_delta other: 160 kind=user",
    "T0 cpu_time_delta other: 50 kind=system",
    "T0 cpu_percent other: 2.5",
    "T0 memory_usage other: 9000 kind=resident",
    "T1 cpu_time_delta other: 1 kind=user",
  ]);
});

Deno.test("filter top: ties go to the lower pid; N at least the processes seen changes nothing", () => {
  // by memory_usage: pid 5 (5000) and pid 4 (4000) are the heaviest.
  const byMem = run({ top: { n: 2, by: "memory_usage" } }, processes).filter((l) =>
    l.startsWith("T0 memory")
  );
  assert.deepEqual(byMem, [
    "T0 memory_usage process:4 4000 kind=resident",
    "T0 memory_usage process:5 5000 kind=resident",
    "T0 memory_usage other: 6000 kind=resident",
  ]);
  // n = 3 at T0: pid 1 and pid 3 tie at 100: pid 1 stays.
  const three = run({ top: { n: 3 } }, processes).filter((l) => l.startsWith("T0 cpu_percent"));
  assert.deepEqual(three, [
    "T0 cpu_percent process:1 1",
    "T0 cpu_percent process:2 6",
    "T0 cpu_percent process:4 3",
    "T0 cpu_percent other: 1.5",
  ]);
  const all = run({ top: { n: 5 } }, processes);
  assert.equal(all.filter((l) => l.includes("other:")).length, 0);
  assert.equal(all.length, 5 * 4 + 1 + 3);
});

Deno.test("filter top then filters: other is a consumer the consumer patterns see", () => {
  const got = run({ top: { n: 1 }, include: ["cpu_percent"], exclude_consumers: ["process:*"] }, processes);
  // T0: pid 2 kept (dropped by exclude_consumers), other = 1 + 1 + 3 + 0.5 = 5.5
  assert.deepEqual(got, ["T0 cpu_percent other: 5.5"]);
});

Deno.test("filter README shows the default config", async () => {
  checkConfigBlock(await Deno.readTextFile(new URL("./README.md", import.meta.url)), filterPlugin);
});

Deno.test("filter with nothing set warns once and adds no transform; a pattern that matches nothing warns", async () => {
  using logs = captureLogs();
  const sink = definePlugin({ name: "sink", start: (ctx) => ctx.addOutput("out", { write() {} }) });
  {
    await using agent = new Agent({ plugins: [filterPlugin, sink], selfInterval: 3_600_000 });
    await agent.start();
    await agent.stop();
  }
  assert.equal(logs.lines.filter((l) => l.startsWith("warn filter") && /does nothing/.test(l)).length, 1);
  logs.lines.length = 0;
  {
    await using agent = new Agent({
      plugins: [{ plugin: filterPlugin, config: { include: ["no_such_*"] } }, sink],
      selfInterval: 3_600_000,
    });
    await agent.start();
    await agent.stop();
  }
  assert.equal(
    logs.lines.filter((l) => /"no_such_\*" matches no metric/.test(l)).length,
    1,
    logs.lines.join("\n"),
  );
});

Deno.test("filter in an agent: top 1 process plus other, kernel metrics excluded", async () => {
  using _ = captureLogs();
  const seen: string[] = [];
  const fixture = definePlugin({
    name: "fixture",
    start(ctx) {
      const kernel = ctx.createMetric({
        name: "kernel_cpu_time",
        unit: unit("s", "milli"),
        valueType: "u64",
        kind: "delta",
      });
      const cpu = ctx.createMetric(CPU_TIME_DELTA) as MetricId<"u64">;
      const b = new Batch();
      b.timestamp = T0;
      b.push(kernel, 40, { attributes: { cpu_state: "user" } });
      for (const [pid, ns] of [[10, 3], [11, 9], [12, 4]] as const) {
        b.push(cpu, ns, { consumer: Consumer.process(pid), attributes: { kind: "user" } });
      }
      ctx.addAutonomousSource("replay", () => ReadableStream.from([b]));
    },
  });
  const sink = definePlugin({
    name: "sink",
    start: (ctx) =>
      ctx.addOutput("out", {
        write(b: Batch, c) {
          for (const p of b) {
            const name = c.metric(p.metric).name;
            if (!name.startsWith("alumet_")) {
              seen.push(`${name} ${p.consumer.kind}:${p.consumer.id} ${p.value}`);
            }
          }
        },
      }),
  });
  {
    await using agent = new Agent({
      plugins: [fixture, { plugin: filterPlugin, config: { exclude: ["kernel_*"], top: { n: 1 } } }, sink],
      selfInterval: 3_600_000,
    });
    await agent.start();
    for (let i = 0; i < 200 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 25));
    await agent.stop();
  }
  assert.deepEqual(seen, ["cpu_time_delta process:11 9", "cpu_time_delta other: 7"]);
});

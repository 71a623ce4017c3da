import assert from "node:assert/strict";
import { Batch } from "../../src/model/batch.ts";
import { Consumer, Resource } from "../../src/model/resources.ts";
import { unit } from "../../src/model/units.ts";
import type { MetricId } from "../../src/model/metrics.ts";
import { CPU_TIME_DELTA } from "../../src/model/common_metrics.ts";
import { definePlugin } from "../../src/plugin/define.ts";
import { Agent } from "../../src/agent/agent.ts";
import { type LogSink, setLogSink } from "../../src/log.ts";
import { testPlugin } from "../../src/testing/mod.ts";
import { checkConfigBlock, checkMetricsTable } from "../../src/testing/readme.ts";
import { KERNEL_METRICS } from "../procfs/metrics.ts";
import { ACTIVE_CPU_STATES, energyEstimationTdpPlugin, logicalCpus, TDP_METRICS } from "./mod.ts";

const T0 = 1_700_000_000_000_000_000n;

function captureLogs(): { lines: string[]; [Symbol.dispose](): void } {
  const lines: string[] = [];
  const prev = setLogSink((level, scope, msg) => lines.push(`${level} ${scope}: ${msg}`));
  return { lines, [Symbol.dispose]: () => void setLogSink(prev as LogSink) };
}

/** Runs the plugin's transform on one batch, with the CPU time metric registered first as procfs would. */
async function estimate(
  config: Record<string, unknown>,
  fill: (b: Batch, ids: { kernel: MetricId<"u64">; cpu: MetricId<"u64"> }) => void,
) {
  using logs = captureLogs();
  // The metric must exist before preStart: a fixture plugin registers it, as procfs does in its start.
  let kernel = -1 as MetricId<"u64">, cpu = -1 as MetricId<"u64">;
  const h = await testPlugin(
    definePlugin({
      name: "energy-estimation-tdp",
      config: energyEstimationTdpPlugin.configSchema,
      init: async (c) => {
        const p = await energyEstimationTdpPlugin.init(c);
        return {
          start(ctx) {
            kernel = ctx.createMetrics(KERNEL_METRICS).cpuTime;
            cpu = ctx.createMetric(CPU_TIME_DELTA);
            return p.start(ctx);
          },
          preStart: (ctx) => p.preStart?.(ctx),
        };
      },
    }),
    config,
  );
  const b = new Batch();
  b.timestamp = T0;
  fill(b, { kernel, cpu });
  const out = [...await h.transform("transform", b)];
  await h.stop();
  const est = out.filter((p) => h.metrics.get(p.metric).name === "estimated_consumed_energy").map((p) => ({
    value: p.value,
    resource: `${p.resource.kind}:${p.resource.id}`,
    consumer: `${p.consumer.kind}:${p.consumer.id}`,
    attributes: { ...p.attributes },
    timestamp: p.timestamp,
  }));
  return { est, logs: logs.lines, total: out.length };
}

const STATE = (s: string) => Object.freeze({ cpu_state: s });

Deno.test("energy-estimation-tdp: E = Δcpu(s) × TDP × nb_vcpu / nb_cpu, by hand, from kernel_cpu_time in ms", async () => {
  const { est, total } = await estimate({ tdp: 100, nb_vcpu: 1, nb_cpu: 4 }, (b, { kernel }) => {
    // One 1 s interval on a 4-CPU machine: 1500 ms user, 500 ms system, 2000 ms idle (4000 ms in all).
    b.push(kernel, 1500, { attributes: STATE("user") });
    b.push(kernel, 500, { attributes: STATE("system") });
    b.push(kernel, 2000, { attributes: STATE("idle") });
    // Per-core points: skipped, the machine line already counts them.
    b.push(kernel, 800, { resource: Resource.cpuCore(0), attributes: STATE("user") });
  });
  // user: 1.5 s × 100 W / 4 = 37.5 J; system: 0.5 × 100 / 4 = 12.5 J; idle: 2 × 100 / 4 = 50 J.
  // Alumet with poll_interval = "1s" computes 1500·1000·1·100 / (10^6·1·4) = 37.5 for user: the same number,
  // which is a mean power (W) over its interval; × the interval (1 s) it is these joules.
  assert.deepEqual(est.map((e) => [e.attributes.cpu_state, e.value]), [["user", 37.5], ["system", 12.5], [
    "idle",
    50,
  ]]);
  assert.equal(total, 4 + 3, "the CPU time points stay");
  for (const e of est) {
    assert.equal(e.resource, "local_machine:");
    assert.equal(e.consumer, "local_machine:");
    assert.equal(e.attributes.estimated, true);
    assert.equal(e.timestamp, T0);
  }
  // The machine's estimate is the sum over the active states: 37.5 + 12.5 = 50 J for the interval.
  const active = est.filter((e) => ACTIVE_CPU_STATES.includes(e.attributes.cpu_state as string));
  assert.equal(active.reduce((s, e) => s + (e.value as number), 0), 50);
});

Deno.test("energy-estimation-tdp: the interval does not enter the energy (a 5 s interval at full load)", async () => {
  // 2 CPUs fully busy for 5 s: 10 000 ms of user time. TDP 65 W for the 2 CPUs → 65 W × 5 s = 325 J.
  const { est } = await estimate({ tdp: 65, nb_cpu: 2, poll_interval: "1s" }, (b, { kernel }) => {
    b.push(kernel, 10_000, { attributes: STATE("user") });
  });
  assert.deepEqual(est.map((e) => e.value), [325]);
});

Deno.test("energy-estimation-tdp: cpu_usage in ns, nb_vcpu, a process consumer and its attributes", async () => {
  const { est } = await estimate(
    { cpu_usage: "cpu_time_delta", tdp: 50, nb_vcpu: 2, nb_cpu: 8 },
    (b, { cpu }) => {
      b.push(cpu, 2_000_000_000, { consumer: Consumer.process(7), attributes: { kind: "user" } });
    },
  );
  // 2 s × 50 W × 2 / 8 = 25 J
  assert.deepEqual(est, [{
    value: 25,
    resource: "local_machine:",
    consumer: "process:7",
    attributes: { kind: "user", estimated: true },
    timestamp: T0,
  }]);
});

Deno.test("energy-estimation-tdp: Alumet's cpu_time_conversion_factor", async (t) => {
  await t.step("1000 on a ms metric agrees with its unit: no warning", async () => {
    const { est, logs } = await estimate({ cpu_time_conversion_factor: 1000, nb_cpu: 1 }, (b, { kernel }) => {
      b.push(kernel, 1000, { attributes: STATE("user") });
    });
    assert.deepEqual(est.map((e) => e.value), [100]);
    assert.equal(logs.filter((l) => l.startsWith("warn")).length, 0, logs.join("\n"));
  });
  await t.step("1000 on a ns metric disagrees: a warning, and the factor is used as configured", async () => {
    const { est, logs } = await estimate(
      { cpu_usage: "cpu_time_delta", cpu_time_conversion_factor: 0.001, nb_cpu: 1, tdp: 10 },
      (b, { cpu }) => b.push(cpu, 3_000_000_000),
    );
    // 3e9 ns × 0.001 µs/ns = 3e6 µs = 3 s → 30 J (the factor agrees here: no warning)
    assert.deepEqual(est.map((e) => e.value), [30]);
    assert.equal(logs.filter((l) => l.startsWith("warn")).length, 0);
    const wrong = await estimate(
      { cpu_usage: "cpu_time_delta", cpu_time_conversion_factor: 1000, nb_cpu: 1, tdp: 10 },
      (b, { cpu }) => b.push(cpu, 1000),
    );
    assert.equal(
      wrong.logs.filter((l) => /does not turn "cpu_time_delta" \(in ns\) into µs/.test(l)).length,
      1,
    );
    assert.deepEqual(wrong.est.map((e) => e.value), [10], "1000 ns × 1000 = 1 s as configured → 10 J");
  });
});

Deno.test("energy-estimation-tdp: no CPU time metric → one warning saying what to enable, no points", async () => {
  using logs = captureLogs();
  await using h = await testPlugin(energyEstimationTdpPlugin, {});
  const b = new Batch();
  b.push(h.metrics.register("x", { name: "other", unit: unit("1"), valueType: "f64" }), 1);
  assert.equal((await h.transform("transform", b)).length, 1);
  const warns = logs.lines.filter((l) => l.startsWith("warn"));
  assert.equal(warns.length, 1);
  assert.match(warns[0]!, /No metric "kernel_cpu_time".*\[plugins\.procfs\.kernel\] enabled = true/);
});

Deno.test("energy-estimation-tdp: nb_cpu defaults to this machine's logical CPUs", () => {
  assert.ok(logicalCpus() >= 1);
  assert.equal(energyEstimationTdpPlugin.configSchema.parse({}).nb_cpu, undefined);
  assert.deepEqual(energyEstimationTdpPlugin.defaultConfig(), {
    poll_interval: "5s",
    tdp: 100,
    nb_vcpu: 1,
    cpu_usage: "kernel_cpu_time",
  });
});

Deno.test("energy-estimation-tdp README: default config block and metrics table", async () => {
  const text = await Deno.readTextFile(new URL("./README.md", import.meta.url));
  checkConfigBlock(text, energyEstimationTdpPlugin);
  checkMetricsTable(text, TDP_METRICS);
});

Deno.test("energy-estimation-tdp in an agent: kernel_cpu_time from a fixture source gives estimated joules", async () => {
  using _ = captureLogs();
  const seen: { metric: string; value: number; state: unknown; estimated: unknown }[] = [];
  const fixture = definePlugin({
    name: "fixture",
    start(ctx) {
      const { cpuTime } = ctx.createMetrics(KERNEL_METRICS);
      // Two 2 s intervals of a 2-CPU machine, as procfs's kernel source pushes them (ms per cpu_state).
      const intervals = [[1000, 200, 2800], [4000, 0, 0]];
      const batches = intervals.map(([user, system, idle], k) => {
        const b = new Batch();
        b.timestamp = T0 + BigInt(k + 1) * 2_000_000_000n;
        b.push(cpuTime, user!, { attributes: STATE("user") });
        b.push(cpuTime, system!, { attributes: STATE("system") });
        b.push(cpuTime, idle!, { attributes: STATE("idle") });
        return b;
      });
      ctx.addAutonomousSource("replay", () => ReadableStream.from(batches));
    },
  });
  const sink = definePlugin({
    name: "sink",
    start: (ctx) =>
      ctx.addOutput("out", {
        write(b: Batch, c) {
          for (const p of b) {
            if (c.metric(p.metric).name !== "estimated_consumed_energy") continue;
            seen.push({
              metric: c.metric(p.metric).name,
              value: Number(p.value),
              state: p.attributes.cpu_state,
              estimated: p.attributes.estimated,
            });
          }
        },
      }),
  });
  {
    await using agent = new Agent({
      plugins: [fixture, { plugin: energyEstimationTdpPlugin, config: { tdp: 30, nb_cpu: 2 } }, sink],
      selfInterval: 3_600_000,
    });
    await agent.start();
    for (let i = 0; i < 200 && seen.length < 6; i++) await new Promise((r) => setTimeout(r, 25));
    await agent.stop();
  }
  // 15 J per CPU-second (30 W / 2 CPUs): 1 s user → 15 J, 0.2 s system → 3 J, 2.8 s idle → 42 J; then 60, 0, 0.
  assert.deepEqual(seen.map((s) => [s.state, s.value]), [
    ["user", 15],
    ["system", 3],
    ["idle", 42],
    ["user", 60],
    ["system", 0],
    ["idle", 0],
  ]);
  assert.ok(seen.every((s) => s.estimated === true));
});

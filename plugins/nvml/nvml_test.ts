/**
 * The nvml plugin against a stand-in `libnvidia-ml.so.1` (testdata/nvml_standin.c: NVML's real signatures and
 * struct layouts, deterministic values) compiled here with gcc: the real FFI path runs, and every reading is
 * checked against the value the stand-in gives (see the comment at the top of nvml_standin.c).
 */
import assert from "node:assert/strict";
import { needs, testWith } from "../../src/testing/needs.ts";
import { testPlugin } from "../../src/testing/mod.ts";
import { type PlainPoint, pointsOf } from "../../src/testing/fixtures.ts";
import { checkConfigBlock, checkMetricsTable } from "../../src/testing/readme.ts";
import { type LogSink, setLogSink } from "../../src/log.ts";
import { Agent } from "../../src/agent/agent.ts";
import type { Batch } from "../../src/model/batch.ts";
import { diagnoseNvml, NVML_ENERGY_METRICS, NVML_FULL_METRICS, nvmlConfigSchema, nvmlPlugin } from "./mod.ts";
import { isGa100, powerUsageReading } from "./device.ts";

const GIB = 1024 ** 3;
const MIB = 1024 ** 2;
const H100 = "00000000:17:00.0";
const LOST = "00000000:65:00.0";
const A100 = "00000000:B1:00.0";

interface Standins {
  /** An R535+ driver's library. */
  current: string;
  /** An R418-era driver's. */
  old: string;
  /** An R525–R530 driver's: 32-byte nvmlProcessInfo_t for the _v3 process queries. */
  r525: string;
  /** The current build again, at another path (its own state: a GPU can be lost in it alone). */
  lossy: string;
}

let built: Standins | undefined;

/** Compiles the stand-ins once. */
async function standins(): Promise<Standins> {
  if (built) return built;
  const dir = await Deno.makeTempDir({ prefix: "nvml-standin-" });
  const src = new URL("./testdata/nvml_standin.c", import.meta.url).pathname;
  const out: Record<string, string> = {};
  const variants = [["current", []], ["old", ["-DOLD_DRIVER"]], ["r525", ["-DR525"]], ["lossy", []]] as const;
  for (const [name, flags] of variants) {
    await Deno.mkdir(`${dir}/${name}`);
    const path = `${dir}/${name}/libnvidia-ml.so.1`;
    const r = await new Deno.Command("gcc", {
      args: ["-shared", "-fPIC", "-O1", ...flags, "-o", path, src],
      stderr: "piped",
    }).output();
    if (!r.success) throw new Error(`gcc failed: ${new TextDecoder().decode(r.stderr)}`);
    out[name] = path;
  }
  built = { current: out.current!, old: out.old!, r525: out.r525!, lossy: out.lossy! };
  return built;
}

/** The stand-in's test controls (same file, so the same loaded library and state as the plugin's). */
function controls(path: string) {
  const lib = Deno.dlopen(path, {
    nvml_standin_lose: { parameters: ["i32"], result: "void" },
    nvml_standin_last_seen: { parameters: [], result: "u64" },
    nvml_standin_cold_inits: { parameters: [], result: "i32" },
  });
  return { symbols: lib.symbols, [Symbol.dispose]: () => lib.close() };
}

/** Runs `f` with environment variables set (the stand-in reads them in nvmlInit_v2). */
async function withEnv<T>(vars: Record<string, string>, f: () => Promise<T>): Promise<T> {
  for (const [k, v] of Object.entries(vars)) Deno.env.set(k, v);
  try {
    return await f();
  } finally {
    for (const k of Object.keys(vars)) Deno.env.delete(k);
  }
}

function captureLogs(): { lines: string[] } & Disposable {
  const lines: string[] = [];
  const prev = setLogSink((level, scope, msg) => lines.push(`${level} ${scope}: ${msg}`));
  return { lines, [Symbol.dispose]: () => void setLogSink(prev as LogSink) };
}

/** The one point of `metric` on `resource` whose consumer and attributes match. */
function one(
  points: readonly PlainPoint[],
  metric: string,
  resource: string,
  match: { consumer?: string; attributes?: Record<string, string | number> } = {},
): PlainPoint {
  const found = points.filter((p) =>
    p.metric === metric && p.resource[1] === resource &&
    (match.consumer === undefined
      ? p.consumer[0] === "local_machine"
      : p.consumer.join("/") === match.consumer) &&
    Object.entries(match.attributes ?? {}).every(([k, v]) => p.attributes[k] === v)
  );
  assert.equal(
    found.length,
    1,
    `${metric} on ${resource} ${JSON.stringify(match)}: ${JSON.stringify(found)}`,
  );
  return found[0]!;
}

const gcc = [needs.command("gcc")];

testWith(gcc, "nvml reads every metric of the stand-in through the real FFI path", async (t) => {
  const { current } = await standins();
  using logs = captureLogs();
  await using h = await testPlugin(nvmlPlugin, { library_path: current });

  await t.step("one source per working GPU, the lost one skipped with one line", () => {
    assert.deepEqual([...h.sources.keys()].sort(), [`device_${H100}`, `device_${A100}`]);
    const skipped = logs.lines.filter((l) => l.includes("Skipping"));
    assert.deepEqual(skipped, [
      `warn nvml: Skipping GPU 1 (${LOST}): nvmlDeviceGetName failed: GPU is lost (NVML error 15)`,
    ]);
    assert.ok(logs.lines.some((l) => l.includes(`Found NVML device ${H100} "NVIDIA H100 80GB HBM3"`)));
    assert.ok(!logs.lines.some((l) => l.includes("lacks")), logs.lines.join("\n"));
  });

  await t.step("H100: first poll (no energy yet: the first reading is the baseline)", async () => {
    const p = pointsOf(await h.poll(`device_${H100}`), h.metrics);
    assert.equal(p.filter((x) => x.metric === "nvml_energy_consumption").length, 0);
    const power = one(p, "nvml_instant_power", H100);
    assert.equal(power.value, 312_500); // the instant field, not GetPowerUsage's 300 000
    assert.deepEqual(power.attributes, { power_reading: "instant" });
    assert.deepEqual(power.resource, ["gpu", H100]);
    assert.equal(one(p, "nvml_temperature_gpu", H100).value, 54);
    assert.equal(one(p, "nvml_gpu_utilization", H100).value, 87);
    assert.equal(one(p, "nvml_memory_utilization", H100).value, 41);
    const mem = (kind: string) => one(p, "nvml_gpu_memory_info", H100, { attributes: { kind } }).value;
    assert.equal(mem("total"), 80 * GIB);
    assert.equal(mem("reserved"), 512 * MIB);
    assert.equal(mem("used"), 10 * GIB);
    assert.equal(mem("free"), 80 * GIB - 512 * MIB - 10 * GIB);
    assert.equal(one(p, "nvml_encoder_utilization", H100).value, 0);
    assert.equal(one(p, "nvml_encoder_sampling_period", H100).value, 167_000);
    assert.equal(one(p, "nvml_decoder_utilization", H100).value, 5);
    assert.equal(one(p, "nvml_decoder_sampling_period", H100).value, 167_000);
    assert.equal(one(p, "nvml_n_compute_processes", H100).value, 2);
    assert.equal(one(p, "nvml_n_graphic_processes", H100).value, 0);
    const used = (pid: number) =>
      one(p, "nvml_used_gpu_memory", H100, {
        consumer: `process/${pid}`,
        attributes: { context: "compute" },
      });
    assert.equal(used(4242).value, 8 * GIB);
    assert.equal(used(4243).value, 2 * GIB);
    assert.deepEqual(used(4242).attributes, { context: "compute" }); // no MIG: no instance ids
    const clock = (clock_type: string) =>
      one(p, "nvml_clock_info", H100, { attributes: { clock_type } }).value;
    assert.equal(clock("SM"), 1980e6);
    assert.equal(clock("Graphics"), 1980e6);
    assert.equal(clock("Memory"), 2619e6);
    assert.equal(clock("Video"), 1755e6);
    assert.equal(p.filter((x) => x.metric === "nvml_sm_utilization").length, 0); // first poll opens the window
  });

  await t.step("H100: second poll: 250 mJ (one counter step), per-process utilization", async () => {
    const p = pointsOf(await h.poll(`device_${H100}`), h.metrics);
    assert.equal(one(p, "nvml_energy_consumption", H100).value, 250);
    assert.equal(one(p, "nvml_sm_utilization", H100, { consumer: "process/4242" }).value, 80);
    assert.equal(one(p, "nvml_memory_utilization", H100, { consumer: "process/4242" }).value, 30);
    assert.equal(one(p, "nvml_sm_utilization", H100, { consumer: "process/4243" }).value, 7);
    assert.equal(one(p, "nvml_memory_utilization", H100, { consumer: "process/4243" }).value, 11);
    assert.equal(one(p, "nvml_decoder_utilization", H100, { consumer: "process/4243" }).value, 0);
    // the window's start went to NVML in µs since the epoch (the stand-in answers NOT_FOUND otherwise)
    using lib = controls(current);
    const lastSeenUs = Number(lib.symbols.nvml_standin_last_seen());
    assert.ok(Math.abs(lastSeenUs - Date.now() * 1000) < 60e6, `lastSeenTimeStamp ${lastSeenUs}`);
  });

  await t.step(
    "A100 with MIG: instant power from GetPowerUsage on GA100; partitions give memory and processes",
    async () => {
      await h.poll(`device_${A100}`);
      const p = pointsOf(await h.poll(`device_${A100}`), h.metrics);
      assert.equal(one(p, "nvml_energy_consumption", A100).value, 100);
      const power = one(p, "nvml_instant_power", A100);
      assert.equal(power.value, 250_000);
      assert.deepEqual(power.attributes, { power_reading: "instant" });
      assert.equal(p.filter((x) => x.metric === "nvml_gpu_utilization").length, 0); // not on a MIG parent
      const gi1 = `${A100}/1`;
      const gi2 = `${A100}/2`;
      const m = one(p, "nvml_gpu_memory_info", gi1, { attributes: { kind: "total" } });
      assert.deepEqual(m.resource, ["gpu_partition", gi1]);
      assert.equal(m.value, 20 * GIB);
      assert.equal(one(p, "nvml_gpu_memory_info", gi1, { attributes: { kind: "used" } }).value, GIB);
      assert.equal(one(p, "nvml_gpu_memory_info", gi2, { attributes: { kind: "used" } }).value, 0);
      assert.equal(one(p, "nvml_n_compute_processes", gi1).value, 1);
      assert.equal(one(p, "nvml_n_compute_processes", gi2).value, 0);
      const proc = one(p, "nvml_used_gpu_memory", gi1, { consumer: "process/5001" });
      assert.equal(proc.value, GIB);
      assert.deepEqual(proc.attributes, { context: "compute", gpu_instance_id: 1, compute_instance_id: 0 });
      // energy, power, temperature and clocks exist per physical GPU only
      for (
        const name of [
          "nvml_energy_consumption",
          "nvml_instant_power",
          "nvml_temperature_gpu",
          "nvml_clock_info",
        ]
      ) {
        assert.equal(p.filter((x) => x.metric === name && x.resource[0] === "gpu_partition").length, 0, name);
      }
    },
  );
});

testWith(gcc, "nvml with skip_failed_devices = false fails at start on the lost GPU", async () => {
  const { current } = await standins();
  await assert.rejects(
    testPlugin(nvmlPlugin, { library_path: current, skip_failed_devices: false }),
    (e: Error) => {
      assert.match(
        e.message,
        new RegExp(`GPU 1 \\(${LOST}\\) failed: .*GPU is lost.*skip_failed_devices = true`),
      );
      return true;
    },
  );
});

testWith(
  gcc,
  "nvml with an old driver's library uses the subset it has and says what it skipped",
  async () => {
    const { old } = await standins();
    using logs = captureLogs();
    await using h = await testPlugin(nvmlPlugin, { library_path: old });
    const lacks = logs.lines.filter((l) => l.includes("lacks"));
    assert.equal(lacks.length, 1, logs.lines.join("\n"));
    for (
      const s of [
        "nvmlDeviceGetFieldValues (skipped: instant power",
        "nvmlDeviceGetMemoryInfo_v2 (skipped: reserved memory",
        "nvmlDeviceGetMigMode (skipped: MIG partitions)",
        "nvmlDeviceGetComputeRunningProcesses_v3 (skipped: nothing (uses _v2))",
      ]
    ) assert.ok(lacks[0]!.includes(s), `${s} in ${lacks[0]}`);
    const p = pointsOf(await h.poll(`device_${H100}`), h.metrics);
    const power = one(p, "nvml_instant_power", H100);
    assert.equal(power.value, 300_000); // nvmlDeviceGetPowerUsage
    assert.deepEqual(power.attributes, { power_reading: "unknown" }); // no nvmlDeviceGetArchitecture
    assert.equal(
      one(p, "nvml_gpu_memory_info", H100, { attributes: { kind: "used" } }).value,
      10 * GIB + 512 * MIB,
    );
    assert.equal(
      p.filter((x) => x.metric === "nvml_gpu_memory_info" && x.attributes.kind === "reserved").length,
      0,
    );
    assert.equal(one(p, "nvml_n_compute_processes", H100).value, 2); // through _v2
    const a100 = pointsOf(await h.poll(`device_${A100}`), h.metrics);
    assert.equal(a100.filter((x) => x.resource[0] === "gpu_partition").length, 0);
  },
);

testWith(gcc, "nvml minimal mode: power, and energy integrated from it", async () => {
  const { current } = await standins();
  await using h = await testPlugin(nvmlPlugin, { library_path: current, mode: "minimal" });
  assert.equal(h.metrics.byName("nvml_temperature_gpu"), undefined);
  const first = await h.poll(`device_${H100}`);
  assert.deepEqual(pointsOf(first, h.metrics).map((x) => x.metric), ["nvml_instant_power"]);
  await new Promise((r) => setTimeout(r, 20));
  const second = await h.poll(`device_${H100}`);
  const p = pointsOf(second, h.metrics);
  const seconds = Number(second.timestamp - first.timestamp) / 1e9;
  // constant 312 500 mW: the trapezoid is exact
  assert.ok(Math.abs(one(p, "nvml_energy_consumption", H100).value - 312_500 * seconds) < 1e-6);
});

testWith(
  gcc,
  "nvml without a library, or without a driver: one warning, no source, doctor says why",
  async () => {
    {
      using logs = captureLogs();
      await using h = await testPlugin(nvmlPlugin, { library_path: "/nonexistent/libnvidia-ml.so.1" });
      assert.equal(h.sources.size, 0);
      const warns = logs.lines.filter((l) => l.startsWith("warn"));
      assert.equal(warns.length, 1);
      assert.match(
        warns[0]!,
        /^warn nvml: Cannot load NVML \(libnvidia-ml\): tried \/nonexistent\/libnvidia-ml\.so\.1 \(/,
      );
      const [d] = diagnoseNvml(nvmlConfigSchema.parse({ library_path: "/nonexistent/libnvidia-ml.so.1" }));
      assert.equal(d!.ok, false);
      assert.match(d!.fix!, /library_path/);
    }
    const { current } = await standins();
    Deno.env.set("NVML_STANDIN_NO_GPU", "1");
    try {
      using logs = captureLogs();
      await using h = await testPlugin(nvmlPlugin, { library_path: current });
      assert.equal(h.sources.size, 0);
      assert.deepEqual(logs.lines.filter((l) => l.startsWith("warn")), [
        "warn nvml: NVML cannot start: nvmlInit_v2 failed: Driver Not Loaded (NVML error 9); load the NVIDIA kernel driver (modprobe nvidia; nvidia-smi should then list the GPUs); no GPU is measured",
      ]);
      const [d] = diagnoseNvml(nvmlConfigSchema.parse({ library_path: current }));
      assert.equal(d!.ok, false);
      assert.match(d!.fix!, /modprobe nvidia/);
    } finally {
      Deno.env.delete("NVML_STANDIN_NO_GPU");
    }
  },
);

testWith(gcc, "nvml doctor lists the working GPUs and the failed one", async () => {
  const { current } = await standins();
  const d = diagnoseNvml(nvmlConfigSchema.parse({ library_path: current }));
  assert.equal(d[0]!.ok, true);
  assert.match(
    d[0]!.detail,
    /2 of 3 GPU\(s\) working \(00000000:17:00\.0 NVIDIA H100 80GB HBM3, 00000000:B1:00\.0/,
  );
  assert.equal(d.length, 2);
  assert.equal(d[1]!.ok, false);
  assert.match(d[1]!.detail, /^00000000:65:00\.0: .*GPU is lost/);
});

testWith(gcc, "nvml sources run as blocking sources in their own Workers in a real agent", async () => {
  const { current } = await standins();
  let energy = 0;
  let polls = 0;
  const got: Batch[] = [];
  {
    await using agent = new Agent({
      plugins: [
        {
          plugin: nvmlPlugin,
          config: { library_path: current, poll_interval: "10ms", flush_interval: "50ms" },
        },
        {
          plugin: (await import("../../src/plugin/define.ts")).definePlugin({
            name: "sink",
            start(ctx) {
              ctx.addOutput("collect", { write: (b: Batch) => void got.push(b) });
            },
          }),
        },
      ],
    });
    await agent.start();
    // Until 10 polls at 100 Hz (0.1 s on a quiet machine; up to 30 s on a loaded one, whose CPU share is no
    // test's matter), then the points they flushed.
    const pollsNow = () => agent.stats()!.sources.get(`source/nvml/device_${H100}`)!.polls;
    for (let i = 0; i < 3000 && pollsNow() < 10; i++) await new Promise((r) => setTimeout(r, 10));
    polls = pollsNow();
  }
  for (const b of got) {
    for (let i = 0; i < b.length; i++) {
      // on the H100 only the energy delta is 250 (one counter step per poll)
      if (b.resourceAt(i).id === H100 && b.valueAt(i) === 250) energy += 250;
    }
  }
  assert.ok(polls >= 10, `only ${polls} polls at 100 Hz within 30 s`);
  assert.ok(energy >= 250 * 5, `energy points: ${energy / 250}`);
});

/** Every process of the H100 with NVML_STANDIN_PROCESSES=n: pid 6000+i using (i+1) MiB. */
async function checkManyProcesses(path: string, n: number): Promise<void> {
  await withEnv({ NVML_STANDIN_PROCESSES: String(n) }, async () => {
    await using h = await testPlugin(nvmlPlugin, { library_path: path });
    for (let round = 0; round < 2; round++) { // the second poll reuses the grown buffer
      const p = pointsOf(await h.poll(`device_${H100}`), h.metrics);
      assert.equal(one(p, "nvml_n_compute_processes", H100).value, n);
      const used = p.filter((x) => x.metric === "nvml_used_gpu_memory");
      assert.equal(used.length, n);
      for (let i = 0; i < n; i++) {
        const point = one(p, "nvml_used_gpu_memory", H100, { consumer: `process/${6000 + i}` });
        assert.equal(point.value, (i + 1) * MIB, `pid ${6000 + i}`);
        assert.deepEqual(point.attributes, { context: "compute" });
      }
    }
  });
}

testWith(
  gcc,
  "nvml reads 32-byte process entries from an R525 library (more than 16 processes: the buffer grows)",
  async () => {
    const { r525 } = await standins();
    await checkManyProcesses(r525, 20);
    await checkManyProcesses(r525, 16);
    await checkManyProcesses(r525, 100);
  },
);

testWith(
  gcc,
  "nvml reads 24-byte process entries from an R535+ library, and _v2 from an old one",
  async () => {
    const { current, old } = await standins();
    await checkManyProcesses(current, 20);
    await checkManyProcesses(old, 20);
  },
);

testWith(
  gcc,
  "nvml: a MIG parent that refuses a non-root caller (NO_PERMISSION) keeps its energy and power",
  async () => {
    const { current } = await standins();
    await withEnv({ NVML_STANDIN_NO_PERMISSION: "1" }, async () => {
      using logs = captureLogs();
      await using h = await testPlugin(nvmlPlugin, { library_path: current });
      assert.ok(h.sources.has(`device_${A100}`), logs.lines.join("\n"));
      const root = logs.lines.filter((l) => l.includes("root"));
      assert.deepEqual(root, [
        `warn nvml: GPU ${A100}: memory_info, running_compute_processes, running_graphics_processes need ` +
        "root (NVML_ERROR_NO_PERMISSION): run the agent as root to measure them",
      ]);
      await h.poll(`device_${A100}`);
      const p = pointsOf(await h.poll(`device_${A100}`), h.metrics);
      assert.equal(one(p, "nvml_energy_consumption", A100).value, 100);
      assert.equal(one(p, "nvml_instant_power", A100).value, 250_000);
      assert.equal(p.filter((x) => x.resource[1] === A100 && x.metric === "nvml_gpu_memory_info").length, 0);
      // the MIG devices still answer
      assert.equal(one(p, "nvml_n_compute_processes", `${A100}/1`).value, 1);
    });
  },
);

testWith(
  gcc,
  "nvml: an instant-power field that fails in its own nvmlReturn falls back to nvmlDeviceGetPowerUsage",
  async () => {
    const { current } = await standins();
    await withEnv({ NVML_STANDIN_FIELD_RETURN: "2" }, async () => { // NVML_ERROR_INVALID_ARGUMENT
      using logs = captureLogs();
      await using h = await testPlugin(nvmlPlugin, { library_path: current });
      assert.ok(h.sources.has(`device_${H100}`), logs.lines.join("\n"));
      const p = pointsOf(await h.poll(`device_${H100}`), h.metrics);
      const power = one(p, "nvml_instant_power", H100);
      assert.equal(power.value, 300_000);
      assert.deepEqual(power.attributes, { power_reading: "average_1s" }); // Hopper
    });
  },
);

testWith(gcc, "nvml: a GPU lost mid-run stops its source with one line; the other goes on", async () => {
  const { lossy } = await standins();
  using logs = captureLogs();
  using lib = controls(lossy);
  let before = 0;
  let a100Before = 0;
  let a100After = 0;
  let h100After = 0;
  {
    await using agent = new Agent({
      plugins: [{
        plugin: nvmlPlugin,
        config: { library_path: lossy, poll_interval: "10ms", flush_interval: "20ms" },
      }],
    });
    await agent.start();
    // the discovery handle stayed open while the Workers initialised: the "driver" started once
    assert.equal(lib.symbols.nvml_standin_cold_inits(), 1);
    await new Promise((r) => setTimeout(r, 150));
    lib.symbols.nvml_standin_lose(0);
    await new Promise((r) => setTimeout(r, 100));
    const stats = () => agent.stats()!.sources;
    before = stats().get(`source/nvml/device_${H100}`)!.polls;
    a100Before = stats().get(`source/nvml/device_${A100}`)!.polls;
    await new Promise((r) => setTimeout(r, 200));
    h100After = stats().get(`source/nvml/device_${H100}`)!.polls;
    a100After = stats().get(`source/nvml/device_${A100}`)!.polls;
  }
  assert.equal(h100After, before, "the lost GPU's source kept polling");
  assert.ok(a100After >= a100Before + 5, `A100 polls ${a100Before} -> ${a100After}`);
  const lost = logs.lines.filter((l) => l.includes(H100) && l.includes("GPU is lost"));
  assert.equal(lost.length, 1, logs.lines.join("\n"));
  assert.match(
    lost[0]!,
    /^error .*Stopped after an error.*GPU 00000000:17:00\.0: .*GPU is lost \(NVML error 15\)/,
  );
});

Deno.test("power_reading follows NVML's rule: a 1 s average on Ampere and newer except GA100", () => {
  assert.equal(powerUsageReading(9, 0x2330), "average_1s"); // H100
  assert.equal(powerUsageReading(7, 0x2204), "average_1s"); // RTX 3090 (GA102)
  assert.equal(powerUsageReading(7, 0x20b0), "instant"); // A100 (GA100)
  assert.equal(powerUsageReading(5, 0x1db4), "instant"); // V100
  assert.equal(powerUsageReading(undefined, 0x2330), "unknown");
  assert.ok(isGa100(0x20b7) && !isGa100(0x2230));
});

Deno.test("nvml README: metrics table and configuration block match the plugin", async () => {
  const readme = await Deno.readTextFile(new URL("./README.md", import.meta.url));
  checkMetricsTable(readme, NVML_ENERGY_METRICS, NVML_FULL_METRICS);
  checkConfigBlock(readme, nvmlPlugin);
});

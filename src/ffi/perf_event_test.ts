import assert from "node:assert/strict";
import { type Need, needs, testWith } from "../testing/needs.ts";
import { cString, ErrnoError, getrusage, libc, O_RDONLY_CLOEXEC } from "./libc.ts";

/** `RUSAGE_THREAD`: the calling thread, what a perf event with pid 0 counts. */
const RUSAGE_THREAD = 1;
import * as pe from "./perf_event.ts";
import {
  ATTR_FIELDS,
  ATTR_FLAG_BITS,
  ATTR_FLAGS_OFFSET,
  attrWithMode,
  decodePerfEventAttr,
  encodePerfEventAttr,
  openPerfEvent,
  PERF_ATTR_SIZE,
  PERF_FORMAT_BITS,
  PERF_SAMPLE_BITS,
  PERF_STAT_MODE,
  type PerfEventAttr,
  perfEventOpenSyscall,
  PerfGroup,
  PerfGroupReading,
  perfOpenHint,
  PRECISE_IP_BIT,
} from "./perf_event.ts";
import {
  isLibpfmStyle,
  listPmus,
  parseFormat,
  parsePerfEvent,
  parsePerfEvents,
  PerfEventError,
  readPmuCpumask,
} from "./perf_events_parse.ts";

const HERE = new URL(".", import.meta.url).pathname;
const FIXTURES = `${HERE}testdata/perf_vv`;

// ---------------------------------------------------------------------------------------------------------
// Layout, checked against the C compiler and <linux/perf_event.h>

/** A C program that prints the layout of struct perf_event_attr and the constants, and decodes a file. */
function layoutProgram(): string {
  const fields = Object.keys(ATTR_FIELDS).map((f) => {
    const line = `  printf("field ${f} %zu %zu\\n", offsetof(struct perf_event_attr, ${f}), ` +
      `sizeof(((struct perf_event_attr *)0)->${f}));`;
    return f === "config3" ? `#ifdef PERF_ATTR_SIZE_VER8\n${line}\n#endif` : line;
  });
  const values = Object.entries(ATTR_FIELDS).map(([f, { ctype }]) => {
    const fmt = ctype === "s32" ? "%lld" : "%llu";
    const cast = ctype === "s32" ? "(long long)" : "(unsigned long long)";
    const line = `  printf("value ${f} ${fmt}\\n", ${cast}a.${f});`;
    return f === "config3" ? `#ifdef PERF_ATTR_SIZE_VER8\n${line}\n#endif` : line;
  });
  const flags = Object.keys(ATTR_FLAG_BITS);
  const flagWords = [...flags, "precise_ip"].map((f) =>
    `  memset(&a, 0, sizeof a); a.${f} = ${f === "precise_ip" ? 3 : 1}; ` +
    `memcpy(&w, (char *)&a + offsetof(struct perf_event_attr, read_format) + 8, 8); ` +
    `printf("flag ${f} %llu %d\\n", (unsigned long long)w, others(&a));`
  );
  const flagValues = [...flags, "precise_ip"].map((f) =>
    `  printf("flagvalue ${f} %u\\n", (unsigned)a.${f});`
  );
  const consts = [
    "PERF_EVENT_IOC_ENABLE",
    "PERF_EVENT_IOC_DISABLE",
    "PERF_EVENT_IOC_RESET",
    "PERF_EVENT_IOC_ID",
    "PERF_IOC_FLAG_GROUP",
    "PERF_FLAG_FD_NO_GROUP",
    "PERF_FLAG_FD_OUTPUT",
    "PERF_FLAG_PID_CGROUP",
    "PERF_FLAG_FD_CLOEXEC",
    "PERF_FORMAT_TOTAL_TIME_ENABLED",
    "PERF_FORMAT_TOTAL_TIME_RUNNING",
    "PERF_FORMAT_ID",
    "PERF_FORMAT_GROUP",
    "PERF_FORMAT_LOST",
    "PERF_SAMPLE_IDENTIFIER",
    "PERF_ATTR_SIZE_VER7",
    ...Object.keys(pe).filter((k) => /^PERF_(TYPE|COUNT)_/.test(k)),
  ].map((c) => `  printf("const ${c} %llu\\n", (unsigned long long)(${c}));`);
  const bits = [
    ...Object.keys(PERF_SAMPLE_BITS).map((n) => `PERF_SAMPLE_${n}`),
    ...Object.keys(PERF_FORMAT_BITS).map((n) => `PERF_FORMAT_${n}`),
  ].map((c) => `  printf("bit ${c} %llu\\n", (unsigned long long)(${c}));`);
  return `#include <linux/perf_event.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>

/* 1 when a byte outside the flag word is set */
static int others(const struct perf_event_attr *a) {
  const unsigned char *p = (const unsigned char *)a;
  size_t f = offsetof(struct perf_event_attr, read_format) + 8;
  for (size_t i = 0; i < sizeof *a; i++) if ((i < f || i >= f + 8) && p[i]) return 1;
  return 0;
}

int main(int argc, char **argv) {
  struct perf_event_attr a;
  unsigned long long w;
  if (argc > 1) {
    FILE *f = fopen(argv[1], "rb");
    memset(&a, 0, sizeof a);
    if (!f || fread(&a, 1, sizeof a, f) != sizeof a) return 2;
    fclose(f);
${values.join("\n")}
${flagValues.join("\n")}
    return 0;
  }
  printf("sizeof %zu\\n", sizeof(struct perf_event_attr));
  printf("const SYS_perf_event_open %ld\\n", (long)SYS_perf_event_open);
  printf("union sample_freq %zu\\n", offsetof(struct perf_event_attr, sample_freq));
  printf("union wakeup_watermark %zu\\n", offsetof(struct perf_event_attr, wakeup_watermark));
  printf("union bp_addr %zu\\n", offsetof(struct perf_event_attr, bp_addr));
  printf("union bp_len %zu\\n", offsetof(struct perf_event_attr, bp_len));
${fields.join("\n")}
${flagWords.join("\n")}
${consts.join("\n")}
${bits.join("\n")}
  return 0;
}
`;
}

async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`${cmd} ${args.join(" ")} failed (${out.code}):\n${text}`);
  return text;
}

testWith([needs.command("gcc")], "perf_event_attr layout matches the C header", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "perf_attr_layout_" });
  try {
    await Deno.writeTextFile(`${dir}/layout.c`, layoutProgram());
    await run("gcc", ["-O0", "-Wall", "-Werror", "-o", `${dir}/layout`, `${dir}/layout.c`]);
    const lines = (await run(`${dir}/layout`, [])).trim().split("\n").map((l) => l.split(" "));
    const rows = (kind: string) => lines.filter((l) => l[0] === kind);

    await t.step("sizeof is PERF_ATTR_SIZE_VER7, or VER8 where the header has config3", () => {
      const size = Number(rows("sizeof")[0]![1]);
      assert.ok(size === pe.PERF_ATTR_SIZE_VER7 || size === pe.PERF_ATTR_SIZE_VER8, `sizeof ${size}`);
      const hasConfig3 = rows("field").some((r) => r[1] === "config3");
      assert.equal(size, hasConfig3 ? pe.PERF_ATTR_SIZE_VER8 : pe.PERF_ATTR_SIZE_VER7);
      // the field this module adds past an older header starts where that header's struct ends
      if (!hasConfig3) assert.equal(ATTR_FIELDS.config3.offset, size);
    });

    await t.step("every field has the offset and width of the header", () => {
      const widths: Record<string, number> = { u64: 8, u32: 4, s32: 4, u16: 2 };
      for (const [, name, offset, size] of rows("field")) {
        const f = ATTR_FIELDS[name as keyof typeof ATTR_FIELDS];
        assert.ok(f, `field ${name}`);
        assert.equal(f.offset, Number(offset), `offset of ${name}`);
        assert.equal(widths[f.ctype], Number(size), `size of ${name}`);
      }
      const hasConfig3 = rows("field").some((r) => r[1] === "config3");
      assert.equal(rows("field").length, Object.keys(ATTR_FIELDS).length - (hasConfig3 ? 0 : 1));
      const unions = Object.fromEntries(rows("union").map((r) => [r[1], Number(r[2])]));
      assert.deepEqual(unions, {
        sample_freq: ATTR_FIELDS.sample_period.offset,
        wakeup_watermark: ATTR_FIELDS.wakeup_events.offset,
        bp_addr: ATTR_FIELDS.config1.offset,
        bp_len: ATTR_FIELDS.config2.offset,
      });
    });

    await t.step("each flag sets its own bit of the word after read_format, and nothing else", () => {
      assert.equal(ATTR_FLAGS_OFFSET, ATTR_FIELDS.read_format.offset + 8);
      const flags = rows("flag");
      assert.equal(flags.length, Object.keys(ATTR_FLAG_BITS).length + 1);
      for (const [, name, word, others] of flags) {
        const expected = name === "precise_ip"
          ? 3n << BigInt(PRECISE_IP_BIT)
          : 1n << BigInt(ATTR_FLAG_BITS[name as keyof typeof ATTR_FLAG_BITS]);
        assert.equal(BigInt(word!), expected, `bit of ${name}`);
        assert.equal(others, "0", `${name} touches only the flag word`);
      }
    });

    await t.step("the constants and ioctl numbers are the header's", () => {
      for (const [, name, value] of rows("const")) {
        if (name === "SYS_perf_event_open") {
          assert.equal(perfEventOpenSyscall(), Number(value));
          continue;
        }
        assert.equal((pe as unknown as Record<string, number>)[name!], Number(value), name);
      }
      for (const [, name, value] of rows("bit")) {
        const [table, key] = name!.startsWith("PERF_SAMPLE_")
          ? [PERF_SAMPLE_BITS, name!.slice(12)]
          : [PERF_FORMAT_BITS, name!.slice(12)];
        assert.equal(2 ** table[key]!, Number(value), name);
      }
    });

    await t.step("C reads back every field and flag the encoder wrote", async () => {
      const attr: PerfEventAttr = {};
      let k = 0;
      for (const [name, { ctype }] of Object.entries(ATTR_FIELDS)) {
        k++;
        const v = ctype === "u64"
          ? (0x0102030405060708n * BigInt(k)) & 0xffff_ffff_ffff_ffffn
          : ctype === "u16"
          ? 0x1000 + k
          : ctype === "s32"
          ? -1000 - k
          : 0x0a0b0c00 + k;
        (attr as Record<string, unknown>)[name] = v;
      }
      Object.keys(ATTR_FLAG_BITS).forEach((f, i) => {
        if (i % 3 !== 1) (attr as Record<string, unknown>)[f] = true;
      });
      attr.precise_ip = 2;
      const bytes = encodePerfEventAttr(attr);
      await Deno.writeFile(`${dir}/attr.bin`, bytes);
      const back = (await run(`${dir}/layout`, [`${dir}/attr.bin`])).trim().split("\n").map((l) =>
        l.split(" ")
      );
      for (const [kind, name, value] of back) {
        if (kind === "value") {
          const expected = attr[name as keyof PerfEventAttr];
          assert.equal(BigInt(value!), BigInt(expected as number | bigint), name);
        } else {
          const expected = name === "precise_ip" ? 2 : attr[name as keyof PerfEventAttr] ? 1 : 0;
          assert.equal(Number(value), expected, name);
        }
      }
      assert.deepEqual(decodePerfEventAttr(bytes), { ...attr, precise_ip: 2 });
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("encodePerfEventAttr writes little-endian fields into a reused buffer and checks ranges", async (t) => {
  await t.step("fields and flags round-trip, zeros omitted", () => {
    const buf = new Uint8Array(PERF_ATTR_SIZE);
    encodePerfEventAttr({ type: 9, config: 0xffff_ffff_ffff_ffffn, sigtrap: true, exclude_guest: true }, buf);
    assert.deepEqual(decodePerfEventAttr(buf), {
      type: 9,
      size: 136,
      config: 0xffff_ffff_ffff_ffffn,
      sigtrap: true,
      exclude_guest: true,
    });
    encodePerfEventAttr({ type: 1, size: 128, sample_freq: 4000, freq: true, clockid: -1 }, buf);
    assert.deepEqual(decodePerfEventAttr(buf), {
      type: 1,
      size: 128,
      sample_period: 4000n,
      freq: true,
      clockid: -1,
    });
  });
  await t.step("numbers beyond 2^32 are split into both words", () => {
    const v = new DataView(encodePerfEventAttr({ config: 2 ** 40 + 5 }).buffer);
    assert.equal(v.getBigUint64(8, true), 2n ** 40n + 5n);
  });
  await t.step("values that do not fit are RangeErrors", () => {
    assert.throws(() => encodePerfEventAttr({ config: -1 }), RangeError);
    assert.throws(() => encodePerfEventAttr({ config: 2 ** 60 }), /use a bigint/);
    assert.throws(() => encodePerfEventAttr({ config: 1n << 64n }), RangeError);
    assert.throws(() => encodePerfEventAttr({ type: 2 ** 32 }), RangeError);
    assert.throws(() => encodePerfEventAttr({ sample_max_stack: 70000 }), RangeError);
    assert.throws(() => encodePerfEventAttr({ precise_ip: 4 }), /precise_ip/);
    assert.throws(() => encodePerfEventAttr({ sample_period: 1, sample_freq: 1 }), TypeError);
    assert.throws(() => encodePerfEventAttr({}, new Uint8Array(128)), RangeError);
  });
});

// ---------------------------------------------------------------------------------------------------------
// A fake sysfs tree of PMUs

type Tree = { [name: string]: string | Tree };

const FAKE_PMUS: Tree = {
  software: { type: "1" },
  tracepoint: { type: "2" },
  msr: { type: "9", format: { event: "config:0-63" }, events: { tsc: "event=0x00", aperf: "event=0x01" } },
  cpu: {
    type: "4",
    format: {
      event: "config:0-7",
      umask: "config:8-15",
      edge: "config:18",
      inv: "config:23",
      cmask: "config:24-31",
      ldlat: "config1:0-15",
      frontend: "config3:0-23",
    },
    events: {
      "cpu-cycles": "event=0x3c",
      "mem-loads": "event=0xcd,umask=0x1,ldlat=3",
      "topdown-retiring": "event=0x00,umask=0x80",
    },
  },
  amd_l3: {
    type: "11",
    format: { event: "config:0-7,32-35", umask: "config:8-15" },
  },
  power: {
    type: "23",
    format: { event: "config:0-7" },
    events: {
      "energy-pkg": "event=0x02\n",
      "energy-pkg.scale": "2.3283064365386962890625e-10\n",
      "energy-pkg.unit": "Joules\n",
      "energy-ram": "event=0x03",
    },
  },
  uncore_imc_0: {
    type: "14",
    format: { event: "config:0-7", umask: "config:8-15", chan: "config1:0-3" },
    events: { clockticks: "event=0x00,umask=0x00", "cas-count": "event=0x04,chan=?" },
  },
  uncore_imc_1: { type: "15", format: { event: "config:0-7" }, events: { clockticks: "event=0x00" } },
};

/** The PMUs of this machine, as ENVIRONMENT.md describes them: what the perf fixtures were captured with. */
const THIS_MACHINE_PMUS: Tree = {
  breakpoint: { type: "5" },
  msr: { type: "9", format: { event: "config:0-63" }, events: { tsc: "event=0x00" } },
  software: { type: "1" },
  tracepoint: { type: "2" },
  uprobe: { type: "8", format: { ref_ctr_offset: "config:32-63", retprobe: "config:0" } },
};

function writeTree(dir: string, tree: Tree): void {
  Deno.mkdirSync(dir, { recursive: true });
  for (const [name, v] of Object.entries(tree)) {
    if (typeof v === "string") Deno.writeTextFileSync(`${dir}/${name}`, v);
    else writeTree(`${dir}/${name}`, v);
  }
}

async function withSysfs(tree: Tree, fn: (root: string) => void | Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "perf_sysfs_" });
  try {
    writeTree(root, tree);
    await fn(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

// ---------------------------------------------------------------------------------------------------------
// The event parser

Deno.test("parsePerfEvent knows perf's and Alumet's generic events", async (t) => {
  const sysfsRoot = "/nonexistent";
  const cases: [string, string, number, number][] = [
    ["cycles", "hardware", 0, 0],
    ["cpu-cycles", "hardware", 0, 0],
    ["instructions", "hardware", 0, 1],
    ["cache-references", "hardware", 0, 2],
    ["cache-misses", "hardware", 0, 3],
    ["branches", "hardware", 0, 4],
    ["branch-instructions", "hardware", 0, 4],
    ["branch-misses", "hardware", 0, 5],
    ["bus-cycles", "hardware", 0, 6],
    ["stalled-cycles-frontend", "hardware", 0, 7],
    ["stalled-cycles-backend", "hardware", 0, 8],
    ["ref-cycles", "hardware", 0, 9],
    ["cpu-clock", "software", 1, 0],
    ["task-clock", "software", 1, 1],
    ["page-faults", "software", 1, 2],
    ["faults", "software", 1, 2],
    ["context-switches", "software", 1, 3],
    ["cs", "software", 1, 3],
    ["cpu-migrations", "software", 1, 4],
    ["migrations", "software", 1, 4],
    ["minor-faults", "software", 1, 5],
    ["major-faults", "software", 1, 6],
    ["alignment-faults", "software", 1, 7],
    ["emulation-faults", "software", 1, 8],
    ["dummy", "software", 1, 9],
    ["cgroup-switches", "software", 1, 11],
    ["CPU_CYCLES", "hardware", 0, 0],
    ["INSTRUCTIONS", "hardware", 0, 1],
    ["CACHE_MISSES", "hardware", 0, 3],
    ["BRANCH_MISSES", "hardware", 0, 5],
    ["REF_CPU_CYCLES", "hardware", 0, 9],
    ["PAGE_FAULTS", "software", 1, 2],
    ["CONTEXT_SWITCHES", "software", 1, 3],
    ["PAGE_FAULTS_MAJ", "software", 1, 6],
    ["CGROUP_SWITCHES", "software", 1, 11],
    ["L1-dcache-load-misses", "hw_cache", 3, 0x10000],
    ["L1-dcache-loads", "hw_cache", 3, 0],
    ["L1-dcache-stores", "hw_cache", 3, 0x100],
    ["L1-dcache-prefetch-misses", "hw_cache", 3, 0x10200],
    ["L1-icache-load-misses", "hw_cache", 3, 0x10001],
    ["LLC-loads", "hw_cache", 3, 2],
    ["LLC-store-misses", "hw_cache", 3, 0x10102],
    ["LLC-misses", "hw_cache", 3, 0x10002],
    ["dTLB-load-misses", "hw_cache", 3, 0x10003],
    ["iTLB-loads", "hw_cache", 3, 4],
    ["branch-loads", "hw_cache", 3, 5],
    ["branch-load-misses", "hw_cache", 3, 0x10005],
    ["branch", "hw_cache", 3, 5],
    ["node-loads", "hw_cache", 3, 6],
    ["node-store-misses", "hw_cache", 3, 0x10106],
    ["l1d-read-miss", "hw_cache", 3, 0x10000],
    ["L1-data-speculative-read-Reference", "hw_cache", 3, 0x200],
    ["L1-dcache-misses-load", "hw_cache", 3, 0x10000],
    ["LL_READ_MISS", "hw_cache", 3, 0x10002],
    ["L1D_WRITE_ACCESS", "hw_cache", 3, 0x100],
    ["NODE_PREFETCH_MISS", "hw_cache", 3, 0x10206],
    ["ITLB_READ_ACCESS", "hw_cache", 3, 4],
    ["BPU_READ_MISS", "hw_cache", 3, 0x10005],
    ["r01c2", "raw", 4, 0x1c2],
    ["r0x1c2", "raw", 4, 0x1c2],
    ["rABC", "raw", 4, 0xabc],
  ];
  for (const [name, kind, type, config] of cases) {
    await t.step(`${name} is ${kind} type ${type} config 0x${config.toString(16)}`, () => {
      const e = parsePerfEvent(name, { sysfsRoot });
      assert.equal(e.name, name);
      assert.equal(e.kind, kind);
      // A name in Alumet's syntax keeps Alumet's default domain, user space only; perf's counts every domain.
      const alumet = /^[A-Z0-9_]+$/.test(name) || name.startsWith("r0x");
      const domain = alumet ? { exclude_kernel: true, exclude_hv: true } : {};
      assert.deepEqual(e.attr, { type, config: BigInt(config), ...domain });
      assert.equal(e.hasModifiers, alumet);
      assert.equal(e.pmu, undefined);
    });
  }
  await t.step("cache ops a cache does not have are refused, as perf does", () => {
    assert.throws(
      () => parsePerfEvent("iTLB-stores", { sysfsRoot }),
      /the iTLB cache has no "stores" events/,
    );
    assert.throws(
      () => parsePerfEvent("L1-icache-store-misses", { sysfsRoot }),
      /L1-icache cache has no "store"/,
    );
  });
  await t.step("names are case-sensitive, as in perf", () => {
    assert.throws(() => parsePerfEvent("L1-DCACHE-LOADS", { sysfsRoot }), /did you mean "L1-dcache-loads"/);
    assert.throws(() => parsePerfEvent("CYCLES", { sysfsRoot }), /did you mean "cycles"/);
  });
  await t.step("Alumet's names are case-insensitive, as in Alumet (event/native.rs upper-cases them)", () => {
    const cases: [string, PerfEventAttr][] = [
      ["page_faults", { type: 1, config: 2n }],
      ["Page_Faults", { type: 1, config: 2n }],
      ["instructions#u:k", { type: 0, config: 1n }],
      ["cpu_cycles", { type: 0, config: 0n }],
      ["ll_read_miss", { type: 3, config: 0x10002n }],
      ["l1d_Read_Access", { type: 3, config: 0n }],
    ];
    for (const [name, attr] of cases) {
      const e = parsePerfEvent(name, { sysfsRoot });
      const { exclude_user: _u, exclude_kernel: _k, exclude_hv: _h, ...rest } = e.attr;
      assert.deepEqual(rest, attr, name);
      assert.equal(e.name, name);
    }
    // Alumet's syntax, so Alumet's default domain: user space only.
    assert.deepEqual(parsePerfEvent("page_faults", { sysfsRoot }).attr, {
      type: 1,
      config: 2n,
      exclude_kernel: true,
      exclude_hv: true,
    });
    // perf's own names keep perf's meaning (every domain) and stay case-sensitive.
    assert.deepEqual(parsePerfEvent("instructions", { sysfsRoot }).attr, { type: 0, config: 1n });
    assert.throws(() => parsePerfEvent("Cycles", { sysfsRoot }), /did you mean "cycles"/);
    assert.throws(
      () => parsePerfEvent("context_switch", { sysfsRoot }),
      /Unknown perf event "context_switch"/,
    );
  });
  await t.step("a raw config beyond 64 bits is refused", () => {
    assert.throws(() => parsePerfEvent("r1ffffffffffffffff", { sysfsRoot }), /64 bits at most/);
  });
});

Deno.test("parsePerfEvent applies modifiers with perf 6.1's exclude semantics", async (t) => {
  const sysfsRoot = "/nonexistent";
  const cases: [string, PerfEventAttr][] = [
    ["cycles:u", { exclude_kernel: true, exclude_hv: true, exclude_guest: true }],
    ["cycles:k", { exclude_user: true, exclude_hv: true }],
    ["cycles:h", { exclude_user: true, exclude_kernel: true }],
    ["cycles:uk", { exclude_hv: true, exclude_guest: true }],
    ["cycles:kh", { exclude_user: true }],
    ["cycles:ukh", { exclude_guest: true }],
    ["cycles:H", { exclude_guest: true }],
    ["cycles:G", { exclude_host: true }],
    ["cycles:uG", { exclude_kernel: true, exclude_hv: true, exclude_host: true }],
    ["cycles:Gu", { exclude_kernel: true, exclude_hv: true, exclude_host: true }],
    ["cycles:I", { exclude_idle: true }],
    ["cycles:p", { precise_ip: 1, exclude_guest: true }],
    ["cycles:pp", { precise_ip: 2, exclude_guest: true }],
    ["cycles:ppp", { precise_ip: 3, exclude_guest: true }],
    ["cycles:up", { exclude_kernel: true, exclude_hv: true, exclude_guest: true, precise_ip: 1 }],
    ["cycles:D", { pinned: true }],
    ["cycles:e", { exclusive: true }],
    ["LL_READ_MISS:k", { exclude_user: true, exclude_hv: true }],
  ];
  for (const [name, bits] of cases) {
    await t.step(`${name}`, () => {
      const e = parsePerfEvent(name, { sysfsRoot });
      const { type: _t, config: _c, ...rest } = e.attr;
      assert.deepEqual(rest, bits);
      assert.equal(e.hasModifiers, true);
    });
  }
  await t.step("defaultModifiers apply only to perf-syntax events written without modifiers", () => {
    const u = parsePerfEvent("cache-misses", { sysfsRoot, defaultModifiers: "u" });
    assert.deepEqual(u.attr, {
      type: 0,
      config: 3n,
      exclude_kernel: true,
      exclude_hv: true,
      exclude_guest: true,
    });
    const k = parsePerfEvent("cache-misses:k", { sysfsRoot, defaultModifiers: "u" });
    assert.deepEqual(k.attr, { type: 0, config: 3n, exclude_user: true, exclude_hv: true });
  });
  await t.step(
    "the syntax decides the default domain: Alumet's names user space only, perf's every domain",
    () => {
      assert.deepEqual(parsePerfEvent("CACHE_MISSES", { sysfsRoot }).attr, {
        type: 0,
        config: 3n,
        exclude_kernel: true,
        exclude_hv: true,
      });
      assert.deepEqual(parsePerfEvent("cache-misses", { sysfsRoot }).attr, { type: 0, config: 3n });
      // perf's modifiers on an Alumet name: perf's meaning (the modifier was written, no default applies).
      assert.deepEqual(parsePerfEvent("CACHE_MISSES:k", { sysfsRoot }).attr, {
        type: 0,
        config: 3n,
        exclude_user: true,
        exclude_hv: true,
      });
    },
  );
  await t.step("unknown modifiers and more than ppp are refused with the list", () => {
    assert.throws(
      () => parsePerfEvent("cycles:ux", { sysfsRoot }),
      /unknown modifier "x" in ":ux" \(modifiers: u user/,
    );
    assert.throws(() => parsePerfEvent("cycles:pppp", { sysfsRoot }), /more than 3 levels/);
    assert.throws(() => parsePerfEvent("cycles:P", { sysfsRoot }), PerfEventError);
  });
});

Deno.test("parsePerfEvent takes Alumet's EVENT#mods with Alumet's semantics (plugins/perf/src/spec.rs)", async (t) => {
  const sysfsRoot = "/nonexistent";
  // Alumet's Modifiers::excludes: the listed domains of u/k/h are counted, the others excluded; H excludes
  // the guest, G the host, I idle; nothing else is set (no exclude_guest with u, unlike perf's :u).
  const cases: [string, PerfEventAttr][] = [
    ["INSTRUCTIONS#u:k", { exclude_hv: true }],
    ["INSTRUCTIONS#u", { exclude_kernel: true, exclude_hv: true }],
    ["CPU_CYCLES#u", { exclude_kernel: true, exclude_hv: true }],
    ["LL_READ_MISS#h", { exclude_user: true, exclude_kernel: true }],
    ["CACHE_MISSES#k:h", { exclude_user: true }],
    ["CACHE_MISSES#u:k:h", {}],
    // No u/k/h: Alumet's default domain, user space only.
    ["INSTRUCTIONS#H", { exclude_kernel: true, exclude_hv: true, exclude_guest: true }],
    ["INSTRUCTIONS#G", { exclude_kernel: true, exclude_hv: true, exclude_host: true }],
    ["INSTRUCTIONS#H:G", { exclude_kernel: true, exclude_hv: true }],
    ["INSTRUCTIONS#u:I", { exclude_kernel: true, exclude_hv: true, exclude_idle: true }],
    ["task-clock#k", { exclude_user: true, exclude_hv: true }],
  ];
  for (const [name, bits] of cases) {
    await t.step(name, () => {
      const e = parsePerfEvent(name, { sysfsRoot });
      const { type: _t, config: _c, ...rest } = e.attr;
      assert.deepEqual(rest, bits);
      assert.equal(e.hasModifiers, true);
      assert.equal(e.name, name);
      assert.equal(e.base, name.split("#")[0]);
    });
  }
  await t.step("an empty '#' is no modifier: Alumet's default domain, user space only", () => {
    const e = parsePerfEvent("INSTRUCTIONS#", { sysfsRoot });
    assert.deepEqual(e.attr, { type: 0, config: 1n, exclude_kernel: true, exclude_hv: true });
    assert.equal(e.hasModifiers, true, "Alumet sets every exclude bit: no perf-style exclude_guest default");
  });
  await t.step("unknown and empty tokens are refused, as Alumet does; so are modifiers written twice", () => {
    assert.throws(() => parsePerfEvent("INSTRUCTIONS#z", { sysfsRoot }), /unknown modifier "z" in "#z"/);
    assert.throws(() => parsePerfEvent("INSTRUCTIONS#uk", { sysfsRoot }), /unknown modifier "uk"/);
    assert.throws(() => parsePerfEvent("INSTRUCTIONS#u:", { sysfsRoot }), /empty modifier/);
    assert.throws(() => parsePerfEvent("cycles:u#k", { sysfsRoot }), /modifiers are written twice/);
    assert.throws(() => parsePerfEvent("#u", { sysfsRoot }), /the name before '#' is empty/);
    for (const bad of ["INSTRUCTIONS#z", "cycles:u#k"]) {
      assert.throws(
        () => parsePerfEvent(bad, { sysfsRoot }),
        (e) => e instanceof PerfEventError && e.reason === "invalid",
      );
    }
  });
  await t.step("a PMU event takes '#' modifiers after its closing '/'", async () => {
    await withSysfs(FAKE_PMUS, (root) => {
      const e = parsePerfEvent("msr/tsc/#k", { sysfsRoot: root });
      assert.equal(e.base, "msr/tsc/");
      assert.equal(e.attr.exclude_user, true);
      assert.equal(e.attr.exclude_hv, true);
      assert.equal(e.attr.exclude_kernel, undefined);
    });
  });
});

Deno.test("PerfEventError says why: unknown name, missing PMU, or invalid value", async (t) => {
  await withSysfs(FAKE_PMUS, async (sysfsRoot) => {
    const reason = (name: string) => {
      try {
        parsePerfEvent(name, { sysfsRoot });
      } catch (e) {
        if (e instanceof PerfEventError) return e.reason;
        throw e;
      }
      return "parsed";
    };
    await t.step("unknown", () => {
      assert.equal(reason("task-clok"), "unknown");
      assert.equal(reason("RESOURCE_STALLS:ANY"), "unknown");
      assert.equal(reason("msr/tcs/"), "unknown");
    });
    await t.step("no-pmu: the PMU may exist on another machine", () => {
      assert.equal(reason("cpu_core/event=0x3c/"), "no-pmu");
    });
    await t.step("invalid", () => {
      assert.equal(reason("cycles:z"), "invalid");
      assert.equal(reason("INSTRUCTIONS#z"), "invalid");
    });
  });
});

Deno.test("isLibpfmStyle tells libpfm4 names (Alumet resolves them with libpfm) from misspellings", () => {
  for (
    const name of [
      "RESOURCE_STALLS:ANY",
      "MEM_LOAD_RETIRED:L3_MISS",
      "ix86arch::INSTRUCTION_RETIRED",
      "UOPS_RETIRED",
      "MEM_LOAD_RETIRED:L3_MISS#u:k",
      "perf::PERF_COUNT_HW_INSTRUCTIONS",
      // libpfm4 names are case-insensitive (Alumet's perf README): with ':' or '::', any case.
      "resource_stalls:any",
      "Resource_Stalls:Any",
      "mem_load_retired:l3_miss#u",
      "ix86arch::instruction_retired",
    ]
  ) {
    assert.equal(isLibpfmStyle(name), true, name);
  }
  for (
    const name of [
      "task-clok",
      "cycels",
      "CPU_CYCLE",
      "INSTRUCTION",
      "CONTEXT_SWITCH",
      "cycles:u",
      "cycels:u",
      "task-clok:k",
      "msr/tsc/",
    ]
  ) {
    assert.equal(isLibpfmStyle(name), false, name);
  }
});

Deno.test("parsePerfEvent reads PMU formats, named events, scale and unit from sysfs", async (t) => {
  await withSysfs(FAKE_PMUS, async (sysfsRoot) => {
    const parse = (e: string) => parsePerfEvent(e, { sysfsRoot });
    await t.step("terms are placed by their format files", () => {
      const e = parse("cpu/event=0x3c,umask=0x1,edge,cmask=2/");
      assert.equal(e.kind, "pmu");
      assert.equal(e.pmu, "cpu");
      assert.deepEqual(e.attr, { type: 4, config: 0x3cn | 0x100n | (1n << 18n) | (2n << 24n) });
    });
    await t.step("a split range spreads the value's bits low to high (config:0-7,32-35)", () => {
      assert.deepEqual(parse("amd_l3/event=0x1c2,umask=0xff/").attr, {
        type: 11,
        config: 0xc2n | 0xff00n | (1n << 32n),
      });
      assert.deepEqual(parse("amd_l3/event=0xfff/").attr, { type: 11, config: 0xffn | (0xfn << 32n) });
    });
    await t.step("named events expand to their terms, and later terms override them", () => {
      assert.deepEqual(parse("cpu/mem-loads/").attr, { type: 4, config: 0x1cdn, config1: 3n });
      assert.deepEqual(parse("cpu/mem-loads,ldlat=30/").attr, { type: 4, config: 0x1cdn, config1: 30n });
      assert.deepEqual(parse("cpu/topdown-retiring,umask=0x81/").attr, { type: 4, config: 0x8100n });
    });
    await t.step(
      "config words, period and name can be given directly; config3 formats land in config3",
      () => {
        assert.deepEqual(parse("cpu/config=0x1234,config1=7,period=1000,name=x/").attr, {
          type: 4,
          config: 0x1234n,
          config1: 7n,
          sample_period: 1000n,
        });
        assert.deepEqual(parse("cpu/frontend=0x11/").attr, { type: 4, config3: 0x11n });
      },
    );
    await t.step("scale and unit come with the event", () => {
      const e = parse("power/energy-pkg/");
      assert.deepEqual(e.attr, { type: 23, config: 2n });
      assert.equal(e.scale, 2 ** -32);
      assert.equal(e.unit, "Joules");
      const ram = parse("power/energy-ram/");
      assert.equal(ram.scale, undefined);
      assert.equal(ram.unit, undefined);
    });
    await t.step("a bare name resolves to the one PMU that defines it, like perf's tsc → msr/tsc/", () => {
      const e = parse("energy-pkg");
      assert.equal(e.pmu, "power");
      assert.equal(e.scale, 2 ** -32);
      assert.deepEqual(parse("tsc:u").attr, {
        type: 9,
        exclude_kernel: true,
        exclude_hv: true,
        exclude_guest: true,
      });
      assert.throws(() => parse("clockticks"), /several PMUs define it \(uncore_imc_0, uncore_imc_1\)/);
    });
    await t.step("modifiers follow the closing slash", () => {
      assert.deepEqual(parse("msr/tsc/u").attr, {
        type: 9,
        exclude_kernel: true,
        exclude_hv: true,
        exclude_guest: true,
      });
      assert.deepEqual(parse("msr/tsc/:k").attr, { type: 9, exclude_user: true, exclude_hv: true });
      assert.equal(parse("msr/tsc/").hasModifiers, false);
    });
    await t.step("a term left as ? must be given", () => {
      assert.throws(() => parse("uncore_imc_0/cas-count/"), /needs a value for "chan" \(add chan=N/);
      assert.deepEqual(parse("uncore_imc_0/cas-count,chan=2/").attr, { type: 14, config: 4n, config1: 2n });
    });
    await t.step("values too big for their format are refused", () => {
      assert.throws(
        () => parse("cpu/umask=0x100/"),
        /^PerfEventError: Invalid perf event "cpu\/umask=0x100\/": value 0x100 is too big for term "umask" of PMU "cpu" \(8 bits, maximum 0xff\)$/,
      );
      assert.throws(() => parse("cpu/umask=lots/"), /is not a number/);
    });
    await t.step("unknown PMUs, terms and events name what exists and suggest the closest", () => {
      assert.throws(
        () => parse("cpux/event=1/"),
        (e: Error) =>
          e instanceof PerfEventError && e.event === "cpux/event=1/" &&
          /no PMU "cpux" here \(PMUs: amd_l3, cpu, msr, power, software, tracepoint, uncore_imc_0, uncore_imc_1\); did you mean "cpu"\?/
            .test(e.message),
      );
      assert.throws(() => parse("cpu/umsk=1/"), /PMU "cpu" has no term "umsk".*did you mean "umask"\?/);
      assert.throws(
        () => parse("msr/tcs/"),
        /PMU "msr" has no event or term "tcs" \(events: aperf, tsc; terms: event\); did you mean "tsc"\?/,
      );
      assert.throws(
        () => parse("cycels"),
        /^PerfEventError: Unknown perf event "cycels": not a generic event, and no PMU here defines it \(PMUs: amd_l3, cpu, .*\); did you mean "cycles"\?$/,
      );
      assert.throws(() => parse("energy-pgk"), /did you mean "energy-pkg"\?/);
      assert.throws(
        () => parsePerfEvent("nothing-like-this", { sysfsRoot: "/nonexistent" }),
        /PMUs: none found in \/nonexistent\)$/,
      );
    });
    await t.step("parsePerfEvents splits perf's -e lists, keeping commas inside pmu/…/", () => {
      const list = parsePerfEvents("cycles,cpu/event=0x3c,umask=1/u,task-clock:k", { sysfsRoot });
      assert.deepEqual(list.map((e) => e.name), ["cycles", "cpu/event=0x3c,umask=1/u", "task-clock:k"]);
    });
  });
});

Deno.test("parseFormat reads sysfs format files", () => {
  assert.deepEqual(parseFormat("config:0-7\n"), { field: "config", bits: [0, 1, 2, 3, 4, 5, 6, 7] });
  assert.deepEqual(parseFormat("config1:3"), { field: "config1", bits: [3] });
  assert.deepEqual(parseFormat("config:0-1,32-33"), { field: "config", bits: [0, 1, 32, 33] });
  assert.throws(() => parseFormat("config:60-64"), /beyond bit 63/);
  assert.throws(() => parseFormat("attr:1"), /Unsupported/);
});

// ---------------------------------------------------------------------------------------------------------
// Goldens: what perf stat -vv builds for the same events

/** The first perf_event_attr block of `perf stat -vv` output, in decodePerfEventAttr's canonical form. */
function parsePerfVv(text: string): PerfEventAttr {
  const lines = text.split("\n");
  const start = lines.findIndex((l) => l.trim() === "perf_event_attr:");
  if (start < 0) throw new Error("No perf_event_attr block in the perf output");
  const out: Record<string, unknown> = {};
  const bigintFields = new Set(
    Object.entries(ATTR_FIELDS).filter(([, f]) => f.ctype === "u64").map(([n]) => n),
  );
  const labels: Record<string, string> = {
    "{ sample_period, sample_freq }": "sample_period",
    sample_freq: "sample_period",
    "{ wakeup_events, wakeup_watermark }": "wakeup_events",
    wakeup_watermark: "wakeup_events",
    "{ bp_addr, config1 }": "config1",
    "{ bp_len, config2 }": "config2",
  };
  for (const line of lines.slice(start + 1)) {
    if (/^-+$/.test(line.trim())) break;
    const m = /^\s+(\{[^}]*\}|\S+)\s+(\S+)$/.exec(line);
    if (m === null) throw new Error(`Unexpected line in the perf_event_attr block: "${line}"`);
    const name = labels[m[1]!] ?? m[1]!;
    const value = m[2]!;
    if (name === "sample_type" || name === "read_format") {
      const table = name === "sample_type" ? PERF_SAMPLE_BITS : PERF_FORMAT_BITS;
      out[name] = value.split("|").reduce((acc, n) => {
        const bit = table[n];
        if (bit === undefined) throw new Error(`Unknown ${name} bit "${n}"`);
        return acc | (1n << BigInt(bit));
      }, 0n);
    } else if (name in ATTR_FLAG_BITS) {
      assert.equal(value, "1", `flag ${name}`);
      out[name] = true;
    } else if (name === "precise_ip") {
      out[name] = Number(value);
    } else if (name in ATTR_FIELDS) {
      out[name] = bigintFields.has(name) ? BigInt(value) : Number(value);
    } else {
      throw new Error(`Unknown perf_event_attr field "${name}" in the perf output`);
    }
  }
  return out as PerfEventAttr;
}

/** What this module builds for `event` in perf stat's per-process mode, in canonical form. */
function ours(event: string, sysfsRoot?: string): PerfEventAttr {
  const parsed = parsePerfEvent(event, sysfsRoot === undefined ? {} : { sysfsRoot });
  return decodePerfEventAttr(encodePerfEventAttr(attrWithMode(parsed, PERF_STAT_MODE)));
}

function fixtures(): { file: string; event: string; text: string }[] {
  return [...Deno.readDirSync(FIXTURES)].filter((e) => e.name.endsWith(".txt")).sort((a, b) =>
    a.name < b.name ? -1 : 1
  ).map((e) => {
    const text = Deno.readTextFileSync(`${FIXTURES}/${e.name}`);
    const m = /^\$ perf stat -vv -e (\S+) -- true\n/.exec(text);
    if (m === null) throw new Error(`${e.name}: the first line must be the perf command`);
    return { file: e.name, event: m[1]!, text };
  });
}

const REQUIRED_GOLDENS = [
  "cycles",
  "instructions",
  "cache-misses",
  "L1-dcache-load-misses",
  "r01c2",
  "cycles:u",
  "msr/tsc/",
  "task-clock",
  "page-faults",
  "context-switches",
];

Deno.test("the encoder builds what perf stat -vv printed, for every captured fixture", async (t) => {
  const all = fixtures();
  for (const e of REQUIRED_GOLDENS) assert.ok(all.some((f) => f.event === e), `fixture for ${e}`);
  await withSysfs(THIS_MACHINE_PMUS, async (sysfsRoot) => {
    for (const { file, event, text } of all) {
      await t.step(`${event} (${file})`, () => {
        assert.deepEqual(ours(event, sysfsRoot), parsePerfVv(text));
      });
    }
  });
  await t.step("parsePerfVv reads perf's union labels and refuses what it does not know", () => {
    const block = (body: string) => `perf_event_attr:\n${body}\n------\n`;
    assert.deepEqual(
      parsePerfVv(block("  { sample_period, sample_freq }   4000\n  freq   1\n  { bp_addr, config1 }  0x5")),
      {
        sample_period: 4000n,
        freq: true,
        config1: 5n,
      },
    );
    assert.throws(() => parsePerfVv(block("  mystery  1")), /Unknown perf_event_attr field "mystery"/);
    assert.throws(() => parsePerfVv(block("  sample_type  IP|NOPE")), /Unknown sample_type bit "NOPE"/);
  });
});

testWith([needs.command("perf")], "the encoder builds what the installed perf builds, live", async (t) => {
  for (const { event } of fixtures()) {
    await t.step(event, async () => {
      const out = await new Deno.Command("perf", {
        args: ["stat", "-vv", "-e", event, "--", "true"],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
      assert.deepEqual(ours(event), parsePerfVv(text));
    });
  }
});

// ---------------------------------------------------------------------------------------------------------
// Opening and reading

Deno.test("perfOpenHint says what to do for each errno", () => {
  assert.match(perfOpenHint("EACCES", 2)!, /kernel\.perf_event_paranoid = 2.*CAP_PERFMON/);
  assert.match(perfOpenHint("EPERM", 3)!, /root/);
  for (const code of ["ENOENT", "EOPNOTSUPP", "ENODEV"]) {
    assert.match(perfOpenHint(code, 0)!, /no such PMU or event/);
  }
  assert.match(perfOpenHint("EMFILE", 0)!, /ulimit -n/);
  assert.match(perfOpenHint("EINVAL", 0)!, /attribute this kernel or PMU does not support/);
  assert.equal(perfOpenHint("EIO", 0), undefined);
  assert.equal(perfEventOpenSyscall("x86_64"), 298);
  assert.equal(perfEventOpenSyscall("aarch64"), 241);
});

Deno.test("PerfGroupReading decodes a group read and scales multiplexed counts", async (t) => {
  const fill = (r: PerfGroupReading, words: bigint[]) => new BigUint64Array(r.buffer.buffer).set(words);
  await t.step("count × enabled / running, and the running ratio", () => {
    const r = new PerfGroupReading(3);
    fill(r, [3n, 1_000_000n, 400_000n, 100n, 11n, 0n, 12n, 7n, 13n]);
    r.decode();
    assert.deepEqual([r.timeEnabled, r.timeRunning, r.counts, r.ids], [1_000_000, 400_000, [100, 0, 7], [
      11,
      12,
      13,
    ]]);
    assert.equal(r.scaled(0), 250);
    assert.equal(r.scaled(1), 0);
    assert.equal(r.scaled(2), 17.5);
    assert.equal(r.runningRatio(), 0.4);
    assert.throws(() => r.scaled(3), RangeError);
  });
  await t.step("a group that never ran has no scaled value; one never enabled no ratio", () => {
    const r = new PerfGroupReading(1);
    fill(r, [1n, 5000n, 0n, 0n, 1n]);
    r.decode();
    assert.equal(r.scaled(0), undefined);
    assert.equal(r.runningRatio(), 0);
    fill(r, [1n, 0n, 0n, 0n, 1n]);
    assert.equal(r.decode().runningRatio(), undefined);
  });
  await t.step("u64 counts stay numbers up to 2^53 and become bigints beyond", () => {
    const r = new PerfGroupReading(2);
    fill(r, [2n, 10n, 10n, 2n ** 53n - 1n, 1n, 2n ** 64n - 1n, 2n]);
    r.decode();
    assert.equal(r.counts[0], 2 ** 53 - 1);
    assert.equal(r.counts[1], 2n ** 64n - 1n);
    assert.equal(r.scaled(1), 2 ** 64);
  });
  await t.step("a read with another number of counters is an error", () => {
    const r = new PerfGroupReading(2);
    fill(r, [3n]);
    assert.throws(() => r.decode(), /returned 3 counters, expected 2/);
  });
});

function busy(ms: number): number {
  const end = performance.now() + ms;
  let x = 0;
  while (performance.now() < end) x += Math.sqrt(x + 1);
  return x;
}

const SOFTWARE = ["task-clock", "page-faults", "context-switches"];

/**
 * Touches `pages` pages of fresh anonymous memory (mmap, huge pages off): one minor fault per page. A large
 * ArrayBuffer would not do: once glibc's dynamic mmap threshold has grown past its size (any bigger buffer
 * freed earlier in this process, e.g. under --coverage or by another test file of a --parallel run), it comes
 * from the heap, reusing pages that are already resident, and faults little or not at all.
 */
function touchFreshPages(pages: number): void {
  const lib = Deno.dlopen("libc.so.6", {
    mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
    madvise: { parameters: ["pointer", "usize", "i32"], result: "i32" },
    munmap: { parameters: ["pointer", "usize"], result: "i32" },
  });
  try {
    const len = pages * 4096;
    // PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS
    const p = lib.symbols.mmap(null, BigInt(len), 3, 0x22, -1, 0n);
    if (p === null || Deno.UnsafePointer.value(p) === 2n ** 64n - 1n) throw new Error("mmap failed");
    try {
      lib.symbols.madvise(p, BigInt(len), 15); // MADV_NOHUGEPAGE: one fault per 4 KiB page
      const bytes = new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(p, len));
      for (let i = 0; i < len; i += 4096) bytes[i] = 1;
    } finally {
      lib.symbols.munmap(p, BigInt(len));
    }
  } finally {
    lib.close();
  }
}

/** Counting this process, kernel included: root, or kernel.perf_event_paranoid <= 1. */
const perfSelf: Need = {
  what: "perf_event access",
  missing: () => {
    const p = pe.perfEventParanoid();
    return Deno.uid() === 0 || (p !== undefined && p <= 1)
      ? undefined
      : `counting the kernel part of this process needs root or kernel.perf_event_paranoid <= 1 (it is ${p})`;
  },
};

testWith([perfSelf], "PerfGroup counts software events for this thread, in one read", async (t) => {
  using g = PerfGroup.open(SOFTWARE.map((e) => parsePerfEvent(e)));
  assert.deepEqual(g.names, SOFTWARE);
  assert.equal(g.fds.length, 3);

  await t.step("counts grow with work; software events are never multiplexed", async () => {
    const before = g.read();
    const [clock0, faults0, cs0] = before.counts.map(Number) as [number, number, number];
    const ru0 = getrusage(RUSAGE_THREAD);
    busy(40);
    touchFreshPages(4096); // 16 MiB
    await new Promise((r) => setTimeout(r, 20)); // sleeping switches this thread out
    const ru1 = getrusage(RUSAGE_THREAD);
    const r = g.read();
    assert.equal(r, before, "the same reading object is reused");
    const [clock, faults, cs] = r.counts.map(Number) as [number, number, number];
    // the kernel's own accounting of this thread, inside the counters' window (rusage's CPU time of a running
    // thread lags by up to one scheduler tick)
    const cpuNs = (ru1.userUs + ru1.systemUs - ru0.userUs - ru0.systemUs) * 1000;
    const ruFaults = ru1.minorFaults + ru1.majorFaults - ru0.minorFaults - ru0.majorFaults;
    const ruSwitches = ru1.voluntarySwitches + ru1.involuntarySwitches - ru0.voluntarySwitches -
      ru0.involuntarySwitches;
    assert.ok(
      Math.abs(clock - clock0 - cpuNs) <= 5e6 + 0.05 * cpuNs,
      `task-clock ${clock - clock0} ns, rusage ${cpuNs} ns`,
    );
    assert.ok(faults - faults0 >= 4096, `page faults ${faults - faults0} for 4096 fresh pages`);
    assert.ok(
      faults - faults0 - ruFaults >= 0 && faults - faults0 - ruFaults <= 50,
      `faults ${faults - faults0}, rusage ${ruFaults}`,
    );
    assert.ok(cs - cs0 >= 1, `context switches ${cs - cs0}`);
    assert.ok(
      cs - cs0 - ruSwitches >= 0 && cs - cs0 - ruSwitches <= 5,
      `switches ${cs - cs0}, rusage ${ruSwitches}`,
    );
    assert.equal(r.timeEnabled, r.timeRunning);
    assert.equal(r.runningRatio(), 1);
    assert.equal(r.scaled(1), faults);
  });

  await t.step("disable freezes the counts, reset zeroes them, enable resumes", () => {
    g.disable();
    const frozen = [...g.read().counts];
    busy(5);
    assert.deepEqual([...g.read().counts], frozen);
    g.reset();
    assert.deepEqual([...g.read().counts], [0, 0, 0]);
    g.enable();
    busy(5);
    assert.ok(Number(g.read().counts[0]) > 0);
  });

  await t.step("close is idempotent and a closed group cannot be read", () => {
    g.close();
    g.close();
    assert.throws(() => g.read(), /closed perf group/);
    assert.throws(() => g.enable(), /closed perf group/);
  });
});

testWith([perfSelf], "PerfGroup with Alumet's dummy leader hides the dummy from the reading", () => {
  using g = PerfGroup.open(["task-clock", "page-faults"].map((e) => parsePerfEvent(e)), {
    dummyLeader: true,
  });
  assert.equal(g.fds.length, 3);
  busy(5);
  const r = g.read();
  assert.equal(r.size, 2);
  assert.equal(r.counts.length, 2);
  assert.ok(Number(r.counts[0]) > 0);
  assert.equal(r.runningRatio(), 1);
});

testWith([perfSelf], "PerfGroup opened disabled (or enabled on exec) counts nothing until enabled", () => {
  using onExec = PerfGroup.open([parsePerfEvent("task-clock")], { enableOnExec: true });
  using g = PerfGroup.open([parsePerfEvent("task-clock")], { enable: false, inherit: true });
  busy(5);
  assert.deepEqual([...g.read().counts], [0]);
  assert.equal(g.read().timeEnabled, 0);
  g.enable();
  busy(5);
  assert.ok(Number(g.read().counts[0]) > 0);
  assert.deepEqual([...onExec.read().counts], [0], "this process did not exec");
});

const hasCpuPmu = listPmus().includes("cpu") || listPmus().some((p) => p.startsWith("armv8"));

Deno.test(
  hasCpuPmu
    ? "cycles opens and counts on a machine with a hardware PMU"
    : "cycles fails with ENOENT and the hint on a machine without a hardware PMU",
  () => {
    // :u where the kernel part is not ours to count, so that the PMU is what fails, not the permission
    const event = perfSelf.missing() === undefined ? "cycles" : "cycles:u";
    const open = () => PerfGroup.open([parsePerfEvent(event), parsePerfEvent(`task-clock${event.slice(6)}`)]);
    if (hasCpuPmu) {
      using g = open();
      busy(5);
      assert.ok(Number(g.read().counts[0]) > 0);
      return;
    }
    assert.throws(
      open,
      (e: Error) =>
        e instanceof ErrnoError && e.code === "ENOENT" &&
        e.message.startsWith(`perf_event_open("${event}", pid 0, cpu -1) failed: `) &&
        /\(ENOENT\); no such PMU or event on this machine/.test(e.message),
    );
  },
);

testWith([perfSelf], "openPerfEvent names the event and gives the hint for an invalid attribute", () => {
  assert.throws(
    () =>
      openPerfEvent({ type: pe.PERF_TYPE_SOFTWARE, config: 1, read_format: 1 << 20 }, { name: "task-clock" }),
    (e: Error) => e instanceof ErrnoError && /"task-clock".*\(EINVAL\); an attribute/.test(e.message),
  );
  assert.throws(
    () => openPerfEvent({ type: pe.PERF_TYPE_SOFTWARE, config: 1 }, { pid: 0x7fff_fff0 }),
    (e: Error) => e instanceof ErrnoError && e.code === "ESRCH",
  );
});

Deno.test("a package PMU's events carry its cpumask, scale and unit (two-socket Xeon fixture); msr has none", async (t) => {
  // src/ffi/testdata/sysfs_xeon_2s: the power PMU of rapl.c on a two-socket Broadwell-EP (see its README.md).
  const sysfsRoot = new URL("./testdata/sysfs_xeon_2s/bus/event_source/devices", import.meta.url).pathname;
  await t.step("power/energy-pkg/ and the bare energy-ram", () => {
    const pkg = parsePerfEvent("power/energy-pkg/", { sysfsRoot });
    assert.deepEqual(pkg.attr, { type: 13, config: 2n });
    assert.equal(pkg.scale, 2.3283064365386962890625e-10);
    assert.equal(pkg.scale, 2 ** -32, "the kernel's scale string is 2^-32 exactly");
    assert.equal(pkg.unit, "Joules");
    assert.deepEqual(pkg.cpumask, [0, 4], "one CPU per package");
    const ram = parsePerfEvent("energy-ram", { sysfsRoot });
    assert.deepEqual([ram.pmu, ram.attr.config, ram.cpumask], ["power", 3n, [0, 4]]);
    assert.deepEqual(readPmuCpumask("power", sysfsRoot), [0, 4]);
  });
  await t.step(
    "generic events and this machine's msr PMU have no cpumask (they count wherever opened)",
    () => {
      assert.equal(parsePerfEvent("task-clock").cpumask, undefined);
      if (!listPmus().includes("msr")) return;
      const tsc = parsePerfEvent("msr/tsc/");
      assert.equal(tsc.cpumask, undefined);
      assert.equal(tsc.scale, undefined);
      assert.equal(readPmuCpumask("msr"), undefined);
    },
  );
});

testWith([needs.root], "PerfGroup counts msr/tsc system-wide on CPU 0", () => {
  if (!listPmus().includes("msr")) return; // the msr PMU is x86-only
  using g = PerfGroup.open([parsePerfEvent("msr/tsc/")], { pid: -1, cpu: 0 });
  const c0 = Number(g.read().counts[0]);
  const t0 = performance.now();
  busy(20);
  const r = g.read();
  const hz = (Number(r.counts[0]) - c0) / ((performance.now() - t0) / 1000);
  assert.ok(hz > 1e8 && hz < 1e10, `TSC at ${hz} Hz`);
  assert.equal(r.runningRatio(), 1);
});

testWith(
  [needs.root],
  "openPerfEvent retries without exclude_guest for PMUs that refuse it, as perf does",
  () => {
    if (!listPmus().includes("msr")) return;
    const attr = attrWithMode(parsePerfEvent("msr/tsc/"), PERF_STAT_MODE);
    assert.equal(attr.exclude_guest, true);
    assert.throws(
      () => openPerfEvent(attr, { excludeGuestFallback: false, name: "msr/tsc/" }),
      (e: Error) => e instanceof ErrnoError && e.code === "EINVAL",
    );
    const fd = openPerfEvent(attr, { name: "msr/tsc/" });
    assert.ok(fd >= 0);
    pe.closePerfEvent(fd);
  },
);

/** The mount point of the cgroup v2 hierarchy, if any. */
function cgroup2Mount(): string | undefined {
  const line = Deno.readTextFileSync("/proc/mounts").split("\n").find((l) => l.split(" ")[2] === "cgroup2");
  return line?.split(" ")[1];
}

testWith([needs.root], "PerfGroup counts a cgroup on every CPU through PERF_FLAG_PID_CGROUP", async () => {
  const mount = cgroup2Mount();
  if (mount === undefined) return; // no cgroup v2 here
  const dir = `${mount}/alumet_perf_test_${Deno.pid}`;
  Deno.mkdirSync(dir);
  const groups: PerfGroup[] = [];
  const fd = libc().open(cString(dir), O_RDONLY_CLOEXEC, 0);
  try {
    assert.ok(fd >= 0, `open(${dir})`);
    const cpus = navigator.hardwareConcurrency;
    for (let cpu = 0; cpu < cpus; cpu++) {
      groups.push(
        PerfGroup.open(["task-clock", "context-switches"].map((e) => parsePerfEvent(e)), {
          cgroupFd: fd,
          cpu,
        }),
      );
    }
    busy(20); // this process is not in the cgroup: not counted
    assert.equal(groups.reduce((s, g) => s + Number(g.read().counts[0]), 0), 0);
    const child = new Deno.Command("sh", {
      args: ["-c", `echo $$ > ${dir}/cgroup.procs; i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done`],
    }).spawn();
    assert.ok((await child.status).success);
    const clock = groups.reduce((s, g) => s + Number(g.read().counts[0]), 0);
    assert.ok(clock > 1e6, `the cgroup ran ${clock} ns`);
  } finally {
    for (const g of groups) g.close();
    if (fd >= 0) libc().close(fd);
    Deno.removeSync(dir);
  }
});

Deno.test("parsePerfEvent takes Alumet's pmu/NAME and pmu/rN: pinned to that PMU, or no-pmu here", async (t) => {
  await withSysfs(FAKE_PMUS, async (sysfsRoot) => {
    const cpuType = Number(Deno.readTextFileSync(`${sysfsRoot}/cpu/type`).trim());
    await t.step(
      "a generic hardware event gets the PMU's type in config's upper 32 bits, as perf does",
      () => {
        const e = parsePerfEvent("cpu/INSTRUCTIONS#u", { sysfsRoot });
        assert.deepEqual(e.attr, {
          type: 0,
          config: 1n | (BigInt(cpuType) << 32n),
          exclude_kernel: true,
          exclude_hv: true,
        });
        assert.equal(e.pmu, "cpu");
        assert.equal(e.base, "cpu/INSTRUCTIONS");
      },
    );
    await t.step("a raw code goes to the PMU's type", () => {
      assert.deepEqual(parsePerfEvent("cpu/r0x412e", { sysfsRoot }).attr, {
        type: cpuType,
        config: 0x412en,
        exclude_kernel: true,
        exclude_hv: true,
      });
    });
    await t.step("a PMU this machine lacks is no-pmu (the event may exist elsewhere)", () => {
      assert.throws(
        () => parsePerfEvent("cpu_core/INSTRUCTIONS", { sysfsRoot }),
        (e) =>
          e instanceof PerfEventError && e.reason === "no-pmu" && /no PMU "cpu_core" here/.test(e.message),
      );
    });
    await t.step("software events cannot be pinned; unknown names are unknown", () => {
      assert.throws(() => parsePerfEvent("cpu/PAGE_FAULTS", { sysfsRoot }), /only hardware and cache events/);
      assert.throws(() => parsePerfEvent("cpu/INSTRUCTONS", { sysfsRoot }), /did you mean "INSTRUCTIONS"/i);
    });
  });
});

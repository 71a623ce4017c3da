/**
 * `alumet exec` reports the kernel's exact accounting of the program, as `/usr/bin/time -v` reports it: peak
 * memory (not the agent's own, which a process forked from the agent inherits into its `ru_maxrss`), CPU time
 * without the stopped-start wrapper's, the exit code or killing signal; stdin reaches the program; SIGTERM
 * sent to the agent reaches the program.
 */
import assert from "node:assert/strict";
import { reapedStartUnavailable, startReaped } from "../src/agent/exec.ts";
import { needs, testWith } from "../src/testing/needs.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const TESTDATA = `${ROOT}/tests/testdata/exec`;

function alumetCommand(dir: string, args: string[], env: Record<string, string>, stdin: "null" | "piped") {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "-A", `${ROOT}/src/agent/main.ts`, ...args],
    cwd: dir,
    env: { ALUMET_LOG: "warn", ...env },
    stdin,
    stdout: "piped",
    stderr: "piped",
  });
}

async function alumet(
  dir: string,
  args: string[],
  options: { env?: Record<string, string>; input?: string } = {},
) {
  const child = alumetCommand(dir, args, options.env ?? {}, options.input === undefined ? "null" : "piped")
    .spawn();
  if (options.input !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(options.input));
    await w.close();
  }
  const out = await child.output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

/** The summary's figures: CPU time (µs), peak memory (bytes). */
function summaryOf(stderr: string) {
  const cpuUs = Math.round(Number(/([\d.]+) s\s+CPU time/.exec(stderr)?.[1]) * 1e6);
  const peak = Number(/peak memory \(([\d,]+) KiB/.exec(stderr)?.[1]?.replaceAll(",", "")) * 1024;
  return { cpuUs, peak };
}

/** `/usr/bin/time -v`'s figures. */
function parseTimeV(text: string) {
  const get = (label: string) => Number(new RegExp(`${label}: ([\\d.]+)`).exec(text)?.[1]);
  return {
    cpuMs: (get("User time \\(seconds\\)") + get("System time \\(seconds\\)")) * 1000,
    maxRssKiB: get("Maximum resident set size \\(kbytes\\)"),
  };
}

async function tempDir<T>(f: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "alumet-exec-rusage-" });
  try {
    return await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function gcc(dir: string, name: string, source: string): Promise<string> {
  await Deno.writeTextFile(`${dir}/${name}.c`, source);
  const cc = await new Deno.Command("gcc", { args: ["-O1", "-o", `${dir}/${name}`, `${dir}/${name}.c`] })
    .output();
  assert.equal(cc.code, 0, new TextDecoder().decode(cc.stderr));
  return `${dir}/${name}`;
}

/** Touches MiB megabytes, then burns about MS milliseconds of CPU (argv[1], argv[2]). */
const MEM_C = `#include <stdlib.h>
#include <string.h>
#include <time.h>
int main(int argc, char **argv) {
  size_t n = (size_t)atoi(argv[1]) << 20;
  char *p = malloc(n);
  memset(p, 1, n);
  clock_t end = clock() + (clock_t)atoi(argv[2]) * (CLOCKS_PER_SEC / 1000);
  volatile unsigned long x = 0;
  while (clock() < end) x += p[x % n];
  return p[n / 2] == 1 ? 0 : 1;
}
`;

testWith(
  [needs.command("time"), needs.command("gcc")],
  "exec reports the program's peak memory and CPU time as /usr/bin/time -v does (not the agent's peak)",
  () =>
    tempDir(async (dir) => {
      const mem = await gcc(dir, "mem", MEM_C);
      // 12 MiB: far below the agent's own peak (~50 MiB), which a child forked from the agent would report.
      const r = await alumet(dir, [
        "--plugins",
        "procfs,csv",
        "exec",
        "--",
        "/usr/bin/time",
        "-v",
        "-o",
        "time.txt",
        mem,
        "12",
        "150",
      ]);
      assert.equal(r.code, 0, r.stderr);
      const time = parseTimeV(await Deno.readTextFile(`${dir}/time.txt`));
      const s = summaryOf(r.stderr);
      // The process measured is /usr/bin/time: its peak is its child's (it is itself much smaller).
      assert.ok(
        Math.abs(s.peak - time.maxRssKiB * 1024) <= 256 * 1024,
        `summary peak ${s.peak} B vs /usr/bin/time ${time.maxRssKiB} KiB\n${r.stderr}`,
      );
      assert.ok(s.peak < 30 * 1048576, `peak ${s.peak}: the agent's, not the program's`);
      // /usr/bin/time rounds each figure to 10 ms; we also count /usr/bin/time itself (about a millisecond).
      assert.ok(
        Math.abs(s.cpuUs / 1000 - time.cpuMs) <= 30,
        `summary CPU ${s.cpuUs} µs vs /usr/bin/time ${time.cpuMs} ms\n${r.stderr}`,
      );
    }),
);

testWith(
  [needs.command("time"), needs.command("make")],
  "exec of a build working in children: peak memory and CPU time equal /usr/bin/time -v's",
  () =>
    tempDir(async (dir) => {
      const r = await alumet(dir, [
        "--plugins",
        "procfs,csv",
        "exec",
        "--",
        "/usr/bin/time",
        "-v",
        "-o",
        "time.txt",
        "make",
        "-s",
        "-j2",
        "-f",
        `${TESTDATA}/Makefile`,
      ]);
      assert.equal(r.code, 0, r.stderr);
      const time = parseTimeV(await Deno.readTextFile(`${dir}/time.txt`));
      const s = summaryOf(r.stderr);
      assert.ok(
        Math.abs(s.peak - time.maxRssKiB * 1024) <= 256 * 1024,
        `summary peak ${s.peak} B vs /usr/bin/time ${time.maxRssKiB} KiB\n${r.stderr}`,
      );
      assert.ok(
        Math.abs(s.cpuUs / 1000 - time.cpuMs) <= 30,
        `summary CPU ${s.cpuUs} µs vs /usr/bin/time ${time.cpuMs} ms\n${r.stderr}`,
      );
    }),
);

testWith(
  [needs.command("gcc")],
  "exec counts the program's CPU time from its first instruction, not the stopped-start wrapper's",
  () =>
    tempDir(async (dir) => {
      // The program's own getrusage(RUSAGE_SELF) at the start of main and at its end. A process's rusage
      // survives exec: the first figure holds the wrapper that became the program (the shell that stopped
      // itself before its exec) plus the program's own loading.
      const self = await gcc(
        dir,
        "self",
        `#include <stdio.h>
#include <sys/resource.h>
static long us(void) {
  struct rusage r; getrusage(RUSAGE_SELF, &r);
  return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1000000L + r.ru_utime.tv_usec + r.ru_stime.tv_usec;
}
int main(int argc, char **argv) {
  long a = us();
  volatile unsigned long x = 0;
  while (us() - a < 150000) x++;
  long b = us();
  FILE *f = fopen(argv[1], "w"); fprintf(f, "%ld %ld\\n", a, b); fclose(f);
  return 0;
}
`,
      );
      const r = await alumet(dir, ["--plugins", "csv", "exec", "--", self, "self.txt"], {
        env: { ALUMET_LOG: "debug" },
      });
      assert.equal(r.code, 0, r.stderr);
      const [a, b] = (await Deno.readTextFile(`${dir}/self.txt`)).trim().split(" ").map(Number) as [
        number,
        number,
      ];
      const wrapperUs = Number(/stopped-start shell used (\d+) µs/.exec(r.stderr)?.[1]);
      assert.ok(wrapperUs > 0, `no stopped start measured\n${r.stderr}`);
      const s = summaryOf(r.stderr);
      // Everything the program did is counted: at least what it ran between its two readings.
      assert.ok(s.cpuUs >= b - a, `summary ${s.cpuUs} µs < the program's own ${b - a} µs`);
      // The wrapper's time is not: the summary is the program's total less the wrapper's, up to its exit
      // (a fraction of a millisecond) and the rounding of the split between user and system time.
      assert.ok(
        s.cpuUs >= b - wrapperUs - 300 && s.cpuUs <= b - wrapperUs + 2000,
        `summary ${s.cpuUs} µs; the program's getrusage ${b} µs, the wrapper's ${wrapperUs} µs\n${r.stderr}`,
      );
    }),
);

Deno.test("exec keeps the exit code (7) and the killing signal (SIGKILL: 137)", async () => {
  await tempDir(async (dir) => {
    const seven = await alumet(dir, ["--plugins", "csv", "exec", "--", "sh", "-c", "exit 7"]);
    assert.equal(seven.code, 7, seven.stderr);
    const killed = await alumet(dir, ["--plugins", "csv", "exec", "--", "sh", "-c", "kill -KILL $$"], {
      env: { ALUMET_LOG: "info" },
    });
    assert.equal(killed.code, 137, killed.stderr);
    assert.match(killed.stderr, /killed by SIGKILL/);
  });
});

Deno.test("exec: stdin reaches the program, and it does not start with SIGINT or SIGQUIT ignored", async () => {
  await tempDir(async (dir) => {
    const r = await alumet(dir, ["--plugins", "csv", "exec", "--", "cat"], { input: "hi\n" });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "hi\n");
    const st = await alumet(dir, ["--plugins", "csv", "exec", "--", "cat", "/proc/self/status"]);
    const ignored = BigInt("0x" + /^SigIgn:\s+([0-9a-f]+)/m.exec(st.stdout)![1]);
    assert.equal(ignored & 0b110n, 0n, `SIGINT or SIGQUIT ignored: SigIgn ${ignored.toString(16)}`);
  });
});

Deno.test("exec: the program is in the agent's process group (Ctrl-C reaches it); SIGTERM to the agent alone reaches it (143)", async () => {
  await tempDir(async (dir) => {
    const child = alumetCommand(dir, ["--plugins", "csv", "exec", "--", "sleep", "30"], {
      ALUMET_LOG: "info",
    }, "null").spawn();
    const output = child.output();
    // Wait until the program runs: a sleep whose parent is the agent (reparented to it), in its process group.
    const agentPgrp = Number(Deno.readTextFileSync(`/proc/${child.pid}/stat`).split(") ")[1]!.split(" ")[2]);
    let running = false;
    for (let i = 0; i < 600 && !running; i++) {
      await new Promise((r) => setTimeout(r, 50));
      for (const e of Deno.readDirSync("/proc")) {
        if (!/^\d+$/.test(e.name)) continue;
        try {
          const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
          const [comm, rest] = [
            stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")),
            stat.slice(stat.lastIndexOf(")") + 2),
          ];
          const [state, ppid, pgrp] = rest.split(" ");
          if (comm === "sleep" && Number(ppid) === child.pid && state === "S") {
            assert.equal(Number(pgrp), agentPgrp, "the program is not in the agent's process group");
            running = true;
          }
        } catch {
          // gone
        }
      }
    }
    assert.ok(running, "the program never ran as the agent's child");
    child.kill("SIGTERM");
    const out = await output;
    assert.equal(out.code, 143, new TextDecoder().decode(out.stderr));
  });
});

Deno.test("exec starts the program reaped without `env --default-signal` (an env lacking it first in PATH)", async () => {
  await tempDir(async (dir) => {
    // An `env` that does not name the option (as busybox's or coreutils' before 8.31) comes first in PATH: the
    // start is one shell and its subshell, no `env`, so the program is still not forked from the agent.
    await Deno.mkdir(`${dir}/bin`);
    await Deno.writeTextFile(`${dir}/bin/env`, '#!/bin/sh\nexec /usr/bin/env "$@"\n', { mode: 0o755 });
    const r = await alumet(dir, ["--plugins", "csv", "exec", "--", "sh", "-c", "read x; echo $x; exit 7"], {
      env: { ALUMET_LOG: "debug", PATH: `${dir}/bin:${Deno.env.get("PATH")}` },
      input: "hi\n",
    });
    assert.equal(r.code, 7, r.stderr);
    assert.equal(r.stdout, "hi\n");
    assert.doesNotMatch(r.stderr, /started as the agent's child/);
    assert.match(r.stderr, /stopped-start shell used \d+ µs/);
    assert.match(r.stderr, /CPU time/);
  });
});

testWith(
  [{ what: "a reaped start", missing: () => reapedStartUnavailable() }],
  "startReaped: Deno does not reap the reparented program, even while it reaps children of its own",
  async () => {
    const p = await startReaped("sh", ["-c", "sleep 0.3; exit 5"], Deno.cwd());
    assert.ok(p.stopped);
    const ppid = Number(Deno.readTextFileSync(`/proc/${p.pid}/stat`).split(") ")[1]!.split(" ")[1]);
    assert.equal(ppid, Deno.pid, "the program was not reparented to this process");
    const exit = p.wait();
    Deno.kill(p.pid, "SIGCONT");
    // Deno reaps these (its own children) meanwhile; it must leave the program to wait4.
    for (let i = 0; i < 5; i++) assert.equal((await new Deno.Command("true").output()).code, 0);
    const e = await exit;
    assert.equal(e.code, 5);
    assert.equal(e.signal, null);
    assert.ok(e.rusage.maxRssKiB > 0 && e.rusage.maxRssKiB < 20 * 1024, `maxrss ${e.rusage.maxRssKiB} KiB`);
  },
);

testWith(
  [{ what: "a reaped start", missing: () => reapedStartUnavailable() }],
  "startReaped: the program runs in the directory asked for, with this process's environment, an empty signal mask and SIGPIPE at its default",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "alumet-reaped-" });
    try {
      Deno.env.set("ALUMET_REAPED_TEST", "it's here");
      const script =
        'pwd -P > out; printf %s "$ALUMET_REAPED_TEST" > env; grep -E "^Sig(Blk|Ign)" /proc/self/status > sig';
      const p = await startReaped("sh", ["-c", script], dir);
      assert.ok(p.stopped);
      const exit = p.wait();
      Deno.kill(p.pid, "SIGCONT");
      assert.equal((await exit).code, 0);
      assert.equal(Deno.readTextFileSync(`${dir}/out`).trim(), Deno.realPathSync(dir));
      assert.equal(Deno.readTextFileSync(`${dir}/env`), "it's here");
      const sig = Object.fromEntries(
        Deno.readTextFileSync(`${dir}/sig`).trim().split("\n").map((l) =>
          l.split(/:\s+/) as [string, string]
        ),
      );
      assert.equal(BigInt(`0x${sig.SigBlk}`), 0n, "no signal blocked");
      assert.equal((BigInt(`0x${sig.SigIgn}`) >> 12n) & 1n, 0n, "SIGPIPE not ignored (Deno ignores it)");
    } finally {
      Deno.env.delete("ALUMET_REAPED_TEST");
      await Deno.remove(dir, { recursive: true });
    }
  },
);

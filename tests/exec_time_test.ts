/**
 * `alumet exec` loses nothing at the end: the program's CPU time in the csv (the sum of its cpu_time_delta,
 * including the remainder taken from the kernel's rusage after it was reaped) agrees with /usr/bin/time.
 */
import assert from "node:assert/strict";
import { needs, testWith } from "../src/testing/needs.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
// A deterministic CPU-bound shell loop (about 0.3–0.6 s of user time here).
const WORKLOAD = ["sh", "-c", "i=0; while [ $i -lt 250000 ]; do i=$((i+1)); done"];

testWith(
  [needs.command("time")],
  "alumet exec reports the program's whole CPU time, as /usr/bin/time does",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "alumet-exec-time-" });
    try {
      // /usr/bin/time runs inside exec: its figures and ours describe the very same run. The process exec
      // measures is /usr/bin/time itself; its CPU time includes the workload it waited for, plus its own
      // start-up (well under 10 ms).
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--quiet",
          "-A",
          `${ROOT}/src/agent/main.ts`,
          "--plugins",
          "procfs,csv",
          "exec",
          "--",
          "/usr/bin/time",
          "-f",
          "%U %S",
          "-o",
          "time.txt",
          ...WORKLOAD,
        ],
        cwd: dir,
        env: { ALUMET_LOG: "warn" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      const [u, s] = (await Deno.readTextFile(`${dir}/time.txt`)).trim().split(/\s+/).map(Number);
      const timeTotalMs = (u! + s!) * 1000;
      const rows = (await Deno.readTextFile(`${dir}/alumet-output.csv`)).trim().split("\n").map((l) =>
        l.split(";")
      );
      const header = rows[0]!;
      const kindCol = header.indexOf("kind");
      // The program's rows only (a procfs group may measure other processes beside it).
      const pid = /\(pid (\d+)\)/.exec(new TextDecoder().decode(out.stderr))?.[1];
      assert.ok(pid, "no pid in the summary");
      const idCol = header.indexOf("consumer_id");
      let csvNs = 0;
      let n = 0;
      for (const r of rows.slice(1)) {
        if (r[0] !== "cpu_time_delta_ns" || r[5] !== "process" || r[idCol] !== pid) continue;
        const kind = kindCol >= 0 ? r[kindCol] : /kind=(\w+)/.exec(r.at(-1)!)?.[1];
        if (kind === "user" || kind === "system") {
          csvNs += Number(r[2]);
          n++;
        }
      }
      assert.ok(n > 0, "no cpu_time_delta for the program in the csv");
      const csvMs = csvNs / 1e6;
      assert.ok(timeTotalMs > 100, `the workload was too short to compare (${timeTotalMs} ms)`);
      // /usr/bin/time rounds to 10 ms per figure (20 ms for two), and adds nothing of its own; we add
      // /usr/bin/time's own start-up (a few ms): allow 20 ms below and 30 ms above.
      assert.ok(
        csvMs >= timeTotalMs - 20 && csvMs <= timeTotalMs + 30,
        `csv total ${csvMs.toFixed(1)} ms vs /usr/bin/time ${timeTotalMs} ms`,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

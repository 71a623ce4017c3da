import assert from "node:assert/strict";
import type { Logger } from "../log.ts";
import { StopDecision, StopSignals } from "./signals.ts";

Deno.test("StopDecision counts repeats of one signal within the window once", async (t) => {
  await t.step("a Ctrl-C forwarded by deno task is one Ctrl-C", () => {
    const d = new StopDecision(1000);
    assert.equal(d.receive("SIGINT", 100), "stop");
    assert.equal(d.receive("SIGINT", 100.5), "repeat");
    assert.equal(d.receive("SIGINT", 1100), "repeat"); // the window's edge still counts as the same one
  });
  await t.step("a second Ctrl-C after the window forces", () => {
    const d = new StopDecision(1000);
    assert.equal(d.receive("SIGINT", 0), "stop");
    assert.equal(d.receive("SIGINT", 1), "repeat");
    assert.equal(d.receive("SIGINT", 1001), "force");
  });
  await t.step("SIGTERM and SIGHUP never force, however late they repeat", () => {
    for (const sig of ["SIGTERM", "SIGHUP"] as const) {
      const d = new StopDecision(1000);
      assert.equal(d.receive(sig, 0), "stop");
      assert.equal(d.receive(sig, 1), "repeat");
      assert.equal(d.receive(sig, 60_000), "repeat");
    }
  });
  await t.step("a Ctrl-C during a drain started by SIGTERM is the first Ctrl-C; a second one forces", () => {
    const d = new StopDecision(1000);
    assert.equal(d.receive("SIGTERM", 0), "stop");
    assert.equal(d.receive("SIGINT", 5000), "repeat");
    assert.equal(d.receive("SIGINT", 5500), "repeat");
    assert.equal(d.receive("SIGINT", 6001), "force");
  });
  await t.step("a window of 0 forces on any later Ctrl-C", () => {
    const d = new StopDecision(0);
    assert.equal(d.receive("SIGINT", 0), "stop");
    assert.equal(d.receive("SIGINT", 0), "repeat");
    assert.equal(d.receive("SIGINT", 0.001), "force");
  });
  await t.step("a bad window is a RangeError", () => {
    assert.throws(() => new StopDecision(-1), RangeError);
    assert.throws(() => new StopDecision(NaN), RangeError);
  });
});

/** A logger that records its lines, or throws on every call (stderr gone). */
function recordingLog(options: { throws?: boolean } = {}): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (message: string) => {
    if (options.throws) throw new Deno.errors.BrokenPipe("stderr closed");
    lines.push(`${level} ${message}`);
  };
  const log = {
    scope: "test",
    error: at("error"),
    warn: at("warn"),
    info: at("info"),
    debug: at("debug"),
    trace: at("trace"),
  } as unknown as Logger;
  return { log, lines };
}

/** Waits until `ready()` holds, up to 30 s, however loaded the machine. */
async function until(ready: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 30_000;
  while (!ready()) {
    if (performance.now() > deadline) throw new Error(`after 30 s: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** The value `p` resolves with, waiting up to 30 s (a timer keeps the event loop alive meanwhile). */
async function settled<T>(p: Promise<T>, what: string): Promise<T> {
  let value: { v: T } | undefined;
  p.then((v) => (value = { v }));
  await until(() => value !== undefined, what);
  return value!.v;
}

Deno.test("StopSignals resolves with the first signal sent to the process, and absorbs its repeats", async () => {
  const forced: Deno.Signal[] = [];
  const { log, lines } = recordingLog();
  // SIGINT is left to the subprocess test below: `deno test` takes a SIGINT for itself and ends the run.
  using signals = new StopSignals(log, { signals: ["SIGTERM", "SIGHUP"], onForce: (s) => forced.push(s) });
  Deno.kill(Deno.pid, "SIGHUP");
  assert.equal(await settled(signals.stopped, "SIGHUP was not heard"), "SIGHUP");
  const repeats = () => lines.filter((l) => l.startsWith("debug ")).length;
  for (const sig of ["SIGHUP", "SIGTERM", "SIGHUP"] as const) {
    const before = repeats();
    Deno.kill(Deno.pid, sig);
    await until(() => repeats() > before, `the repeat of ${sig} was not heard`);
  }
  assert.deepEqual(forced, [], "SIGTERM and SIGHUP never force");
});

Deno.test("StopSignals keeps working when its log throws (stderr gone after a SIGHUP)", async () => {
  let heard = 0;
  const witness = () => heard++;
  const { log } = recordingLog({ throws: true });
  using signals = new StopSignals(log, { signals: ["SIGHUP", "SIGTERM"] });
  Deno.addSignalListener("SIGTERM", witness);
  try {
    Deno.kill(Deno.pid, "SIGHUP");
    assert.equal(await settled(signals.stopped, "SIGHUP was not heard"), "SIGHUP");
    Deno.kill(Deno.pid, "SIGTERM"); // a repeat: logged at debug, which throws here
    await until(() => heard > 0, "SIGTERM was not heard");
    await new Promise((r) => setTimeout(r, 0)); // an error thrown by the listener would fail the test here
  } finally {
    Deno.removeSignalListener("SIGTERM", witness);
  }
});

/** A script that stops on StopSignals with a clock it moves itself, and sends itself SIGINTs. */
const FORCE_SCRIPT = `
import { Logger } from "${new URL("../log.ts", import.meta.url)}";
import { StopSignals } from "${new URL("./signals.ts", import.meta.url)}";
let clock = 0;
const log = new Logger("test");
const signals = new StopSignals(log, { now: () => clock });
const keepAlive = setInterval(() => {}, 1000);
Deno.kill(Deno.pid, "SIGINT");
await signals.stopped;
console.log("stopping");
let repeats = 0;
const counted = () => repeats++;
Deno.addSignalListener("SIGINT", counted); // to know when the repeat was heard
clock = 999;
Deno.kill(Deno.pid, "SIGINT"); // within the window: the same Ctrl-C
while (repeats === 0) await new Promise((r) => setTimeout(r, 5));
console.log("repeat absorbed");
clock = 1500;
Deno.kill(Deno.pid, "SIGINT"); // after the window: a deliberate second Ctrl-C
await new Promise((r) => setTimeout(r, 30_000));
clearInterval(keepAlive);
console.log("not forced");
`;

Deno.test("StopSignals exits 130 at once on a second Ctrl-C after the window, with one line", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", FORCE_SCRIPT],
    env: { ALUMET_LOG: "info" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  const stdout = dec.decode(out.stdout);
  const stderr = dec.decode(out.stderr);
  assert.equal(stdout, "stopping\nrepeat absorbed\n", stderr);
  assert.equal(out.code, 130, stderr);
  const lines = stderr.trim().split("\n");
  assert.equal(lines.length, 1, stderr);
  assert.match(lines[0]!, /WARN +test: Second Ctrl-C \(SIGINT\): exiting at once/);
});

Deno.test("StopSignals removes its listeners when disposed", async () => {
  let heard = 0;
  const witness = () => heard++;
  Deno.addSignalListener("SIGUSR2", witness); // keeps SIGUSR2 from killing the test once ours is gone
  try {
    let stoppedWith: Deno.Signal | undefined;
    {
      using signals = new StopSignals(recordingLog().log, { signals: ["SIGUSR2"] });
      signals.stopped.then((s) => (stoppedWith = s));
    }
    Deno.kill(Deno.pid, "SIGUSR2");
    await until(() => heard > 0, "SIGUSR2 was not heard");
    await new Promise((r) => setTimeout(r, 0));
    assert.equal(stoppedWith, undefined);
  } finally {
    Deno.removeSignalListener("SIGUSR2", witness);
  }
});

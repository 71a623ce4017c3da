import assert from "node:assert/strict";
import { StopDecision } from "./signals.ts";

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

/**
 * Runs `body` in a fresh Deno with `StopSignals`, `Logger` and helpers in scope, and returns what it printed.
 * Signals go to that process, never to the test runner's: `deno test` takes a SIGINT for itself, and with
 * `--parallel` the other test modules share its pid and its signal listeners.
 *
 * In scope: `clock` (the StopSignals' clock when passed `now`), `log` (a Logger scoped `test`, at debug
 * level), `throwingLog`
 * (a logger whose every call throws, as when stderr is gone), `heard(sig)` (resolves when the next `sig` has
 * reached this process, after the listeners registered before it), `settle()` (one macrotask).
 */
async function runScript(body: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const script = `
import { Logger, setLogLevel } from "${new URL("../log.ts", import.meta.url)}";
import { StopSignals } from "${new URL("./signals.ts", import.meta.url)}";
const keepAlive = setInterval(() => {}, 1000);
let clock = 0;
setLogLevel("debug");
const log = new Logger("test");
const throwingLog = new Proxy({}, { get: () => () => { throw new Deno.errors.BrokenPipe("stderr closed"); } });
function heard(sig) {
  return new Promise((resolve) => {
    const once = () => { Deno.removeSignalListener(sig, once); resolve(); };
    Deno.addSignalListener(sig, once);
  });
}
const settle = () => new Promise((r) => setTimeout(r, 0));
${body}
clearInterval(keepAlive);
`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=js", script],
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("StopSignals resolves with the first signal, and absorbs its repeats and SIGTERM/SIGHUP", async () => {
  const r = await runScript(`
    // The clock stays at 0: the two SIGINTs are within the window, however slow this machine.
    const signals = new StopSignals(log, { now: () => clock, onForce: (s) => console.log("forced", s) });
    let h = heard("SIGHUP");
    Deno.kill(Deno.pid, "SIGHUP");
    console.log("stopped", await signals.stopped);
    await h;
    for (const sig of ["SIGHUP", "SIGTERM", "SIGINT", "SIGTERM", "SIGINT"]) {
      h = heard(sig);
      Deno.kill(Deno.pid, sig);
      await h;
    }
    await settle();
    console.log("done");
    signals[Symbol.dispose]();
  `);
  assert.equal(r.stdout, "stopped SIGHUP\ndone\n", r.stderr);
  assert.equal(r.code, 0, r.stderr);
  // Each repeat is told at debug level only.
  const repeats = r.stderr.trim().split("\n").filter((l) =>
    /DEBUG test: SIG\w+ again: already stopping/.test(l)
  );
  assert.equal(repeats.length, 5, r.stderr);
});

Deno.test("StopSignals keeps working when its log throws (stderr gone after a SIGHUP)", async () => {
  const r = await runScript(`
    const signals = new StopSignals(throwingLog, { now: () => clock, onForce: (s) => console.log("forced", s) });
    let h = heard("SIGHUP");
    Deno.kill(Deno.pid, "SIGHUP");
    console.log("stopped", await signals.stopped);
    await h;
    h = heard("SIGTERM");
    Deno.kill(Deno.pid, "SIGTERM"); // a repeat: told at debug level, which throws here
    await h;
    clock = 5000;
    h = heard("SIGINT");
    Deno.kill(Deno.pid, "SIGINT"); // the first Ctrl-C: a repeat too
    await h;
    await settle();
    console.log("done");
    signals[Symbol.dispose]();
  `);
  assert.equal(r.stdout, "stopped SIGHUP\ndone\n", r.stderr);
  assert.equal(r.code, 0, r.stderr);
});

Deno.test("StopSignals exits 130 at once on a second Ctrl-C after the window, with one line", async () => {
  const r = await runScript(`
    const signals = new StopSignals(log, { now: () => clock });
    let h = heard("SIGINT");
    Deno.kill(Deno.pid, "SIGINT");
    await signals.stopped;
    await h;
    console.log("stopping");
    clock = 999;
    h = heard("SIGINT");
    Deno.kill(Deno.pid, "SIGINT"); // within the window: the same Ctrl-C
    await h;
    console.log("repeat absorbed");
    clock = 1500;
    Deno.kill(Deno.pid, "SIGINT"); // after the window: a deliberate second Ctrl-C
    await new Promise((r) => setTimeout(r, 30_000));
    console.log("not forced");
  `);
  assert.equal(r.stdout, "stopping\nrepeat absorbed\n", r.stderr);
  assert.equal(r.code, 130, r.stderr);
  const lines = r.stderr.trim().split("\n").filter((l) => !/ DEBUG /.test(l));
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /WARN +test: Second Ctrl-C \(SIGINT\): exiting at once/);
});

Deno.test("StopSignals removes its listeners when disposed", async () => {
  const r = await runScript(`
    const witness = () => {};
    Deno.addSignalListener("SIGUSR2", witness); // keeps SIGUSR2 from killing the script once ours is gone
    let stoppedWith;
    {
      using signals = new StopSignals(log, { signals: ["SIGUSR2"] });
      signals.stopped.then((s) => (stoppedWith = s));
    }
    const h = heard("SIGUSR2");
    Deno.kill(Deno.pid, "SIGUSR2");
    await h;
    await settle();
    console.log("stopped with", String(stoppedWith));
  `);
  assert.equal(r.stdout, "stopped with undefined\n", r.stderr);
  assert.equal(r.code, 0, r.stderr);
});

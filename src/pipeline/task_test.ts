import assert from "node:assert/strict";
import { Logger, type LogSink, setLogSink } from "../log.ts";
import { Task } from "./task.ts";

Deno.test("Task.stop waits for a run in progress, but not forever for one that ignores its signal", async () => {
  const lines: string[] = [];
  const previous = setLogSink(
    ((level, _scope, message) => void lines.push(`${level}: ${message}`)) as LogSink,
  );
  let release = () => {};
  try {
    const ignores = new Task(
      "hang",
      () => new Promise<void>((r) => (release = r)),
      "1h",
      new Logger("t"),
      undefined,
      50,
    );
    void ignores.start();
    const t0 = performance.now();
    await ignores.stop();
    assert.ok(performance.now() - t0 >= 45, "stop returned before the grace period");
    assert.deepEqual(lines, ["warn: Task hang did not end within 50 ms of its stop: left behind"]);

    lines.length = 0;
    let ended = false;
    const honours = new Task(
      "ok",
      (signal) =>
        new Promise<void>((r) =>
          signal.addEventListener("abort", () => {
            ended = true;
            r();
          })
        ),
      "1h",
      new Logger("t"),
      undefined,
      10_000,
    );
    void honours.start();
    await honours.stop();
    assert.ok(ended, "stop returned before the run ended");
    assert.deepEqual(lines, []);
  } finally {
    release();
    setLogSink(previous);
  }
});

import assert from "node:assert/strict";
import { Batch } from "../model/batch.ts";
import { type MetricId, MetricRegistry } from "../model/metrics.ts";
import { unit } from "../model/units.ts";
import { Logger, type LogSink, setLogSink } from "../log.ts";
import type { FullPolicy, Output } from "../plugin/plugin.ts";
import { withTimeout } from "../testing/timeout.ts";
import { OutputBlockedError, OutputTask } from "./output.ts";

const LIMIT = 20_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function setup(): { registry: MetricRegistry; m: MetricId<"u64"> } {
  const registry = new MetricRegistry();
  const m = registry.register("test", { name: "seq", unit: unit("1"), valueType: "u64" });
  return { registry, m };
}

function batchOf(m: MetricId<"u64">, ...values: number[]): Batch {
  const b = new Batch();
  for (const v of values) b.push(m, v, { timestamp: 0n });
  return b;
}

/** The error Deno throws for a write on a full file system (`Error` with `code: "ENOSPC"`). */
function enospc(): Error {
  return Object.assign(new Error("No space left on device (os error 28)"), { code: "ENOSPC" });
}

/**
 * An output whose writes fail with `error()` while `full` is true; it records the values it wrote, and each
 * attempt.
 */
interface DiskOutput extends Output {
  full: boolean;
  attempts: number;
  values: number[];
  closed: number;
}

/** What an output that honours the contract throws on a full disk: it wrote nothing of the batch. */
function blocked(): Error {
  return new OutputBlockedError("Cannot write out: No space left on device (os error 28)", {
    cause: enospc(),
  });
}

function diskOutput(m: MetricId<"u64">, error: () => Error = blocked): DiskOutput {
  return {
    full: false,
    attempts: 0,
    values: [],
    closed: 0,
    write(b) {
      this.attempts++;
      if (this.full) throw error();
      for (let i = 0; i < b.length; i++) if (b.metricAt(i) === m) this.values.push(Number(b.valueAt(i)));
    },
    close() {
      this.closed++;
    },
  };
}

function captureLogs(): { lines: string[]; [Symbol.dispose](): void } {
  const lines: string[] = [];
  const prev = setLogSink((level, scope, msg) => lines.push(`${level} ${scope}: ${msg}`));
  return { lines, [Symbol.dispose]: () => void setLogSink(prev as LogSink) };
}

function task(
  output: Output,
  options: { capacity?: number; policy?: FullPolicy; graceMs?: number; onReaderGone?: () => void } = {},
): OutputTask {
  const { registry } = setup();
  return new OutputTask({ kind: "output", plugin: "test", name: "out" }, output, {
    capacity: options.capacity ?? 4,
    policy: options.policy ?? "block",
    ctx: { metric: (id) => registry.get(id) },
    log: new Logger("output/test/out"),
    backoffMs: [5, 20],
    blockedGraceMs: options.graceMs ?? 5000,
    onReaderGone: options.onReaderGone,
  });
}

/** Waits until `cond` holds (polling every 5 ms), failing after LIMIT ms. */
async function until(cond: () => boolean, what: string): Promise<void> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > LIMIT) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

Deno.test("OutputTask: a write failing with ENOSPC pauses the output, retries the same batch, resumes once space is back", async () => {
  using logs = captureLogs();
  const { m } = setup();
  const out = diskOutput(m);
  const t = task(out);
  t.offer(batchOf(m, 1, 2));
  await until(() => out.values.length === 2, "the first batch");
  out.full = true;
  t.offer(batchOf(m, 3, 4));
  t.offer(batchOf(m, 5));
  await until(() => out.attempts >= 5, "retries while full");
  assert.equal(t.state, "paused", "a blocked output reads as paused");
  assert.equal(t.failed, false, "a full disk does not fail the output");
  assert.deepEqual(out.values, [1, 2]);
  out.full = false;
  await until(() => out.values.length === 5, "the held batches once space is back");
  assert.equal(t.state, "running");
  await withTimeout(t.closeInput(), LIMIT, "closeInput");
  assert.deepEqual(out.values, [1, 2, 3, 4, 5], "every point written once, in order");
  assert.equal(t.stats.droppedPoints, 0);
  assert.equal(t.stats.points, 5);
  assert.ok(t.stats.retries >= 3, `retries counted (${t.stats.retries})`);
  assert.equal(out.closed, 1);
  const paused = logs.lines.filter((l) => l.startsWith("warn") && /paused/i.test(l) && l.includes("ENOSPC"));
  const resumed = logs.lines.filter((l) => /resumed/i.test(l));
  assert.equal(paused.length, 1, `one pause line naming ENOSPC:\n${logs.lines.join("\n")}`);
  assert.equal(resumed.length, 1, `one resume line:\n${logs.lines.join("\n")}`);
  assert.ok(logs.lines.indexOf(paused[0]!) < logs.lines.indexOf(resumed[0]!));
});

Deno.test("OutputTask: an OutputBlockedError, whatever its cause, pauses the output too", async () => {
  using _logs = captureLogs();
  const { m } = setup();
  const errors: [string, () => Error][] = [
    ["OutputBlockedError", () => new OutputBlockedError("backend says: slow down")],
    ["EDQUOT as the cause of an OutputBlockedError", () =>
      new OutputBlockedError("Cannot write: quota", {
        cause: Object.assign(new Error("Disk quota exceeded (os error 122)"), { code: "EDQUOT" }),
      })],
  ];
  for (const [what, error] of errors) {
    const out = diskOutput(m, error);
    const t = task(out);
    out.full = true;
    t.offer(batchOf(m, 1));
    await until(() => out.attempts >= 3, `${what}: retries`);
    assert.equal(t.failed, false, what);
    out.full = false;
    await withTimeout(t.closeInput(), LIMIT, `${what}: closeInput`);
    assert.deepEqual(out.values, [1], what);
    assert.equal(t.stats.droppedPoints, 0, what);
  }
});

Deno.test("OutputTask: while paused, a blocking output's queue fills and the producer waits, then every batch goes out", async () => {
  using _logs = captureLogs();
  const { m } = setup();
  const out = diskOutput(m);
  out.full = true;
  const t = task(out, { capacity: 2 });
  // The first batch is taken (and held); two more fill the queue; the fourth must wait.
  assert.equal(t.offer(batchOf(m, 1)), undefined);
  await until(() => out.attempts >= 1, "the first attempt");
  assert.equal(t.offer(batchOf(m, 2)), undefined);
  assert.equal(t.offer(batchOf(m, 3)), undefined);
  const waiting = t.offer(batchOf(m, 4));
  assert.ok(waiting instanceof Promise, "a full queue makes the producer wait (block)");
  let admitted = false;
  waiting.then(() => (admitted = true));
  await sleep(50);
  assert.equal(admitted, false, "still waiting while the disk is full");
  out.full = false;
  await withTimeout(waiting, LIMIT, "the waiting offer");
  await withTimeout(t.closeInput(), LIMIT, "closeInput");
  assert.deepEqual(out.values, [1, 2, 3, 4]);
  assert.equal(t.stats.droppedPoints, 0);
});

Deno.test("OutputTask: while paused, a drop-oldest output drops the oldest queued batches and counts them", async () => {
  using _logs = captureLogs();
  const { m } = setup();
  const out = diskOutput(m);
  out.full = true;
  const t = task(out, { capacity: 2, policy: "drop-oldest" });
  t.offer(batchOf(m, 1));
  await until(() => out.attempts >= 1, "the first attempt");
  for (let v = 2; v <= 6; v++) assert.equal(t.offer(batchOf(m, v)), undefined, "never waits");
  assert.equal(t.stats.droppedPoints, 3, "2, 3 and 4 dropped");
  out.full = false;
  await withTimeout(t.closeInput(), LIMIT, "closeInput");
  assert.deepEqual(out.values, [1, 5, 6], "the held batch and the newest two");
  assert.equal(t.stats.droppedPoints, 3);
});

Deno.test("OutputTask: at stop, an output still blocked retries for the grace period, then counts every held point as lost", async () => {
  using logs = captureLogs();
  const { m } = setup();
  const out = diskOutput(m);
  out.full = true;
  const t = task(out, { capacity: 2, graceMs: 150 });
  t.offer(batchOf(m, 1, 2));
  await until(() => out.attempts >= 1, "the first attempt");
  t.offer(batchOf(m, 3));
  t.offer(batchOf(m, 4));
  const late = t.offer(batchOf(m, 5)); // waits for room
  assert.ok(late instanceof Promise);
  const t0 = performance.now();
  await withTimeout(t.closeInput(), LIMIT, "closeInput of a blocked output");
  await withTimeout(late, LIMIT, "the waiting offer is released");
  assert.ok(performance.now() - t0 >= 100, "it kept retrying for the grace period");
  assert.deepEqual(out.values, []);
  assert.equal(t.stats.droppedPoints, 5, "every point held or waiting is counted as lost");
  assert.equal(t.offer(batchOf(m, 6)), undefined);
  assert.equal(t.stats.droppedPoints, 6, "what comes after is counted too");
  assert.equal(out.closed, 1);
  assert.ok(
    logs.lines.some((l) => l.startsWith("error") && l.includes("ENOSPC") && /gave up/i.test(l)),
    `an error line says it gave up:\n${logs.lines.join("\n")}`,
  );
  const gaveUp = logs.lines.find((l) => /gave up/i.test(l))!;
  assert.match(gaveUp, /4 points not written/, "the batch held and the two queued");
  assert.deepEqual(
    logs.lines.filter((l) => /dropped a batch/i.test(l)),
    [],
    `the Gave-up line tells the loss; no "Dropped a batch … lost so far" line after it:\n${
      logs.lines.join("\n")
    }`,
  );
  const waiting = logs.lines.findIndex((l) =>
    /stopping.*waiting up to 150 ms.*ENOSPC.*to write what it holds/i.test(l)
  );
  assert.ok(
    waiting >= 0 && waiting < logs.lines.indexOf(gaveUp),
    `a line says the stop waits for it, before it gives up:\n${logs.lines.join("\n")}`,
  );
});

Deno.test("OutputTask: an output that wrote half a batch then throws a bare ENOSPC: the batch is not retried, its loss is counted, the output goes on", async () => {
  using logs = captureLogs();
  const { m } = setup();
  // Writes the points one by one, as a loop of writes does, until the disk is full: it cannot undo them.
  let room = 3;
  let attempts = 0;
  const values: number[] = [];
  const output: Output = {
    write(b) {
      attempts++;
      for (let i = 0; i < b.length; i++) {
        if (room === 0) throw enospc();
        room--;
        values.push(Number(b.valueAt(i)));
      }
    },
  };
  const t = task(output);
  t.offer(batchOf(m, 1, 2));
  t.offer(batchOf(m, 3, 4)); // 3 goes out, then ENOSPC
  await until(() => attempts >= 2 && t.state === "paused", "the failed write");
  t.offer(batchOf(m, 5));
  await until(() => attempts >= 3, "the next try");
  room = 100;
  t.offer(batchOf(m, 6, 7));
  await withTimeout(t.closeInput(), LIMIT, "closeInput");
  assert.equal(new Set(values).size, values.length, `no point written twice: ${values}`);
  assert.deepEqual(values.slice(0, 3), [1, 2, 3]);
  assert.deepEqual(values.slice(-2), [6, 7], "the output went on once space was back");
  assert.equal(t.failed, false);
  // The output did not say what it wrote: its whole failed batch counts as lost (3 and 4), and so does 5, tried
  // while the disk was still full. An overcount, never a point written twice or lost without being counted.
  assert.deepEqual(values, [1, 2, 3, 6, 7]);
  assert.equal(t.stats.droppedPoints, 3);
  const warn = logs.lines.filter((l) => l.startsWith("warn") && /OutputBlockedError/.test(l));
  assert.equal(warn.length, 1, `one line says why the batch is not retried:\n${logs.lines.join("\n")}`);
  assert.match(warn[0]!, /ENOSPC/);
});

Deno.test("OutputTask: space back during the stop's grace period: nothing is lost", async () => {
  using _logs = captureLogs();
  const { m } = setup();
  const out = diskOutput(m);
  out.full = true;
  const t = task(out, { graceMs: 10_000 });
  t.offer(batchOf(m, 1));
  t.offer(batchOf(m, 2));
  await until(() => out.attempts >= 2, "retries");
  const closed = t.closeInput();
  await sleep(30);
  out.full = false;
  await withTimeout(closed, LIMIT, "closeInput");
  assert.deepEqual(out.values, [1, 2]);
  assert.equal(t.stats.droppedPoints, 0);
});

Deno.test("OutputTask: a reader gone (EPIPE) stops the output, asks for a shutdown once and counts what it misses as unread, not lost", async () => {
  using logs = captureLogs();
  const { m } = setup();
  let requests = 0;
  const out = diskOutput(m, () => new Deno.errors.BrokenPipe("Broken pipe (os error 32)"));
  const t = task(out, { onReaderGone: () => requests++ });
  t.offer(batchOf(m, 1));
  await until(() => out.values.length === 1, "the first batch");
  out.full = true;
  t.offer(batchOf(m, 2, 3));
  await until(() => t.state === "stopped", "the output stops");
  assert.equal(requests, 1, "one shutdown request");
  assert.equal(out.attempts, 2, "a broken pipe is not retried");
  t.offer(batchOf(m, 4));
  await withTimeout(t.closeInput(), LIMIT, "closeInput");
  assert.equal(requests, 1);
  assert.equal(t.stats.unreadPoints, 3, "the points it could not write are counted as unread");
  assert.equal(t.stats.droppedPoints, 0, "no reader wants them: not a loss");
  assert.ok(
    logs.lines.some((l) => l.includes("EPIPE") && /reader/.test(l)),
    `a line says the reader went away:\n${logs.lines.join("\n")}`,
  );
});

Deno.test("OutputTask: a close that fails for lack of space is retried within the grace, then its unwritten points count", async () => {
  using _logs = captureLogs();
  const { m } = setup();
  let closeAttempts = 0;
  let full = true;
  const output: Output = {
    write() {},
    close() {
      closeAttempts++;
      if (full) throw new OutputBlockedError("final flush failed", { code: "ENOSPC", unwrittenPoints: 7 });
    },
  };
  const t = task(output, { graceMs: 100 });
  t.offer(batchOf(m, 1));
  await withTimeout(t.closeInput(), LIMIT, "closeInput");
  assert.ok(closeAttempts >= 2, `close retried (${closeAttempts})`);
  assert.equal(t.stats.droppedPoints, 7);

  closeAttempts = 0;
  const output2: Output = {
    write() {},
    close() {
      closeAttempts++;
      if (closeAttempts < 3) {
        throw new OutputBlockedError("final flush failed", { code: "ENOSPC", unwrittenPoints: 7 });
      }
    },
  };
  full = false;
  const t2 = task(output2, { graceMs: 10_000 });
  t2.offer(batchOf(m, 1));
  await withTimeout(t2.closeInput(), LIMIT, "closeInput");
  assert.equal(closeAttempts, 3);
  assert.equal(t2.stats.droppedPoints, 0);
});

Deno.test("OutputTask: points an output loses on its own (Output.lostPoints) count in droppedPoints, once each", async () => {
  const { m } = setup();
  let lost = 0;
  const output: Output = { write() {}, lostPoints: () => lost };
  const t = task(output);
  t.offer(batchOf(m, 1, 2));
  lost = 5; // e.g. a journal that was full dropped its oldest 5 points
  t.syncLosses();
  t.syncLosses(); // read twice: counted once
  assert.equal(t.stats.droppedPoints, 5);
  lost = 7;
  t.syncLosses();
  assert.equal(t.stats.droppedPoints, 7);
  await withTimeout(t.closeInput(), LIMIT, "closeInput");
});

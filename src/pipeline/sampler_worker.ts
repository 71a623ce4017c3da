/**
 * The sampling Worker: polls hot sources (periods under about 10 ms) on one shared schedule, sleeping
 * synchronously between ticks, and posts one batch per source per flush to the pipeline.
 *
 * Waking the main thread at every tick would cost more than the whole budget (ENVIRONMENT.md, Timers), so
 * the Worker does the polling itself. It sleeps with `Atomics.wait` on a shared control word, with a timeout
 * up to the next deadline: the main thread wakes it early by bumping that word after posting a command. For
 * periods under 0.5 ms it wakes a little early and spins to the deadline (the OS wake-up latency, about
 * 100 µs here, is as long as the period).
 *
 * Protocol (main → worker): `init` (the control buffer), then `add`, `stop`, `trigger`, `flush`, `period`,
 * `pause`, `resume`, `exit`, each followed by `Atomics.add(ctl, 0, 1)` + `Atomics.notify`. Worker → main:
 * `ack` (with the request's `seq`, and `error` if it failed), `batch` (data, stats, lateness histogram),
 * `log`, and `fatal` when the Worker cannot go on (its own loop failed): the sources' last batches were posted
 * just before, and the Worker closes.
 *
 * Each source shares a small `counts` buffer with the pipeline (see {@linkcode Counts}): the Worker writes there,
 * after every poll, how many points the source has produced in all, and whether a poll is under way. If the
 * Worker is terminated (stuck, or failed), the pipeline still knows how many points it lost with it.
 *
 * A source's error that nobody catches — thrown in a timer, a promise nobody awaits — would kill the Worker and
 * every source in it, with the points they had not posted yet. The Worker catches those instead, reports them
 * (the first few, then one in a hundred) and goes on polling.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { Batch, BatchEncoder } from "../model/batch.ts";
import { now } from "../model/timestamp.ts";
import { messageOf, NormalStop, RetryableError } from "../errors.ts";
import type { Source, SourceContext } from "../plugin/plugin.ts";
import { LatenessHistogram } from "./lateness.ts";
import { CLOCK_MONOTONIC, errno, libc, SCHED_FIFO, TIMER_ABSTIME } from "../ffi/libc.ts";
import { privilegedForRealtime, REALTIME_PRIORITY, realtimeRefused } from "./realtime.ts";
import { Counts, type SamplerCommand, type SamplerMessage } from "./sampler_protocol.ts";

interface Hot {
  readonly id: number;
  readonly source: Source;
  period: number;
  flushMs: number;
  flushRounds: number;
  rounds: number;
  next: number;
  batch: Batch;
  /** Encodes the batches posted: each resource, consumer and attribute set travels once. */
  readonly encoder: BatchEncoder;
  /** Points posted so far. */
  posted: number;
  /** See {@linkcode Counts}. */
  readonly counts: Float64Array;
  state: "running" | "paused" | "stopped";
  readonly stats: { polls: number; late: number; missed: number; errors: number };
  readonly lateness: LatenessHistogram;
  retryLogged: number;
}

const SPIN_BELOW_MS = 0.5;

/**
 * Periods up to this (ms) get the realtime scheduling class when the pipeline asks for it (the config's
 * `sampling_realtime`, off by default) and it is allowed (root or CAP_SYS_NICE). Keep equal to
 * `REALTIME_UP_TO_MS` of sampler.ts (this module must not import that one).
 */
const REALTIME_UP_TO_MS = 3;

/** Whether the pipeline asked for realtime scheduling (`init`); normal priority otherwise. */
let realtimeAsked = false;
let realtime: "off" | "on" | "denied" = "off";

/**
 * Puts this Worker's thread in `SCHED_FIFO` so that a 1 ms tick is not delayed behind ordinary tasks, when the
 * pipeline asked for it: off by default, since a realtime thread preempts the measured program. Not while
 * spinning (a spinning realtime thread would starve its CPU). A refusal is a warning (the config asked for
 * realtime) naming the kernel's reason; sampling goes on at normal priority.
 */
function maybeRealtime(minPeriod: number): void {
  if (!realtimeAsked || realtime !== "off" || minPeriod > REALTIME_UP_TO_MS || minPeriod < SPIN_BELOW_MS) {
    return;
  }
  let r: number, code = 0;
  try {
    r = libc().sched_setscheduler(0, SCHED_FIFO, new Int32Array([REALTIME_PRIORITY]));
    if (r !== 0) code = errno();
  } catch (e) {
    realtime = "denied";
    post({ type: "log", id: 0, level: "warn", message: `Realtime sampling is unavailable: ${messageOf(e)}` });
    return;
  }
  realtime = r === 0 ? "on" : "denied";
  post({
    type: "log",
    id: 0,
    level: r === 0 ? "debug" : "warn",
    message: r === 0
      ? `Sampling thread set to SCHED_FIFO priority ${REALTIME_PRIORITY}`
      : realtimeRefused(code, privilegedForRealtime()),
  });
}

/**
 * Sleeps until `deadline` (a `performance.now()` time); returns false when it stopped short of it on purpose. With FFI, `clock_nanosleep(CLOCK_MONOTONIC,
 * TIMER_ABSTIME)` on the absolute deadline: the cheapest wake-up measured here, and a command waits at most
 * {@linkcode LONG_WAIT_MS} (the loop checks the control word after each wake): a longer wait first sleeps with
 * `Atomics.wait`, which a command interrupts. Without FFI, `Atomics.wait` with a timeout throughout.
 */
function sleepUntil(ctl: Int32Array, deadline: number, relative: number): boolean {
  if (clock === undefined) {
    try {
      const c = libc();
      const ts = new BigInt64Array(2);
      c.clock_gettime(CLOCK_MONOTONIC, ts);
      const monoMs = Number(ts[0]) * 1000 + Number(ts[1]) / 1e6;
      // The same 16 bytes seen as 32-bit halves: filling them allocates no BigInt (little-endian, values < 2^31).
      clock = {
        sleep: c.clock_nanosleep,
        ts,
        halves: new Int32Array(ts.buffer),
        offsetMs: monoMs - performance.now(),
      };
    } catch {
      clock = null;
    }
  }
  if (clock === null) {
    Atomics.wait(ctl, 0, handled, relative);
    return true;
  }
  if (relative > LONG_WAIT_MS) {
    // A long wait (a blocking source polled every second) must not hold the commands up for a whole period:
    // Atomics.wait returns as soon as a command arrives. It stops short of the deadline: the loop then goes
    // round again and sleeps the rest precisely.
    Atomics.wait(ctl, 0, handled, relative - LONG_WAIT_MS / 2);
    return false;
  }
  const ms = clock.offsetMs + deadline;
  const sec = Math.floor(ms / 1000);
  const h = clock.halves;
  h[0] = sec;
  h[1] = 0;
  h[2] = Math.round((ms - sec * 1000) * 1e6);
  h[3] = 0;
  clock.sleep(CLOCK_MONOTONIC, TIMER_ABSTIME, clock.ts, null);
  return true;
}

/** Waits longer than this (ms) sleep on the control word first, so that commands interrupt them. */
const LONG_WAIT_MS = 20;

let clock:
  | {
    sleep: (id: number, flags: number, t: BigInt64Array, rem: null) => number;
    ts: BigInt64Array;
    halves: Int32Array;
    offsetMs: number;
  }
  | null
  | undefined;

let control: Int32Array | undefined;
let handled = 0;
const inbox: SamplerCommand[] = [];
let inboxWaiter: (() => void) | undefined;
const hot = new Map<number, Hot>();

self.onmessage = (e: MessageEvent<SamplerCommand>) => {
  const cmd = e.data;
  if (cmd.type === "init") {
    control = new Int32Array(cmd.control);
    realtimeAsked = cmd.realtime === true;
    loop().catch(fatal);
    return;
  }
  inbox.push(cmd);
  inboxWaiter?.();
};

/** Errors of the sources that nobody caught, so far. */
let strays = 0;

/**
 * Reports an error a source made outside its poll, which nobody caught; the Worker goes on. It is blamed on the
 * source when the Worker runs only one.
 */
function stray(error: unknown): void {
  strays++;
  if (strays > 5 && strays % 100 !== 0) return;
  const only = hot.size === 1 ? [...hot.keys()][0]! : 0;
  const what = only === 0 ? "A source of the sampling Worker failed" : "Failed";
  const count = strays > 1 ? ` (${strays} such errors so far)` : "";
  post({
    type: "log",
    id: only,
    level: "error",
    message: `${what} outside its poll (in a timer or a promise nobody awaited)${count}; polling goes on: ${
      messageOf(error)
    }`,
  });
}

self.addEventListener("error", (e: ErrorEvent) => {
  e.preventDefault();
  stray(e.error ?? e.message);
});

self.addEventListener("unhandledrejection", (e: PromiseRejectionEvent) => {
  e.preventDefault();
  stray(e.reason);
});

/** The Worker's own loop failed: post what the sources polled, tell the pipeline, and close. */
function fatal(error: unknown): void {
  for (const h of hot.values()) {
    if (h.state === "stopped") continue;
    h.state = "stopped";
    try {
      flush(h, true);
    } catch {
      // nothing more can be saved of this one
    }
  }
  hot.clear();
  post({ type: "fatal", message: messageOf(error) });
  self.close();
}

function post(msg: SamplerMessage, transfer: Transferable[] = []): void {
  self.postMessage(msg, transfer);
}

function roundsFor(flush: number, poll: number): number {
  return Math.max(1, Math.round(flush / poll));
}

async function handle(cmd: Exclude<SamplerCommand, { type: "init" }>): Promise<boolean> {
  if (cmd.type === "exit") {
    for (const h of hot.values()) await finish(h);
    post({ type: "ack", seq: cmd.seq });
    return false;
  }
  if (cmd.type === "add") {
    try {
      const mod = await import(cmd.module);
      const create = mod[cmd.export];
      if (typeof create !== "function") {
        throw new TypeError(`${cmd.module} exports no function "${cmd.export}"`);
      }
      const id = cmd.id;
      const say = (level: "error" | "warn" | "info" | "debug") => (message: string) =>
        post({ type: "log", id, level, message });
      const context: SourceContext = {
        log: { error: say("error"), warn: say("warn"), info: say("info"), debug: say("debug") },
      };
      const source: Source = await create(cmd.config, context);
      hot.set(cmd.id, {
        id: cmd.id,
        source,
        period: cmd.pollMs,
        flushMs: cmd.flushMs,
        flushRounds: roundsFor(cmd.flushMs, cmd.pollMs),
        rounds: 0,
        next: performance.now() + cmd.pollMs,
        batch: new Batch(64),
        encoder: new BatchEncoder(),
        posted: 0,
        counts: new Float64Array(cmd.counts),
        state: cmd.paused ? "paused" : "running",
        stats: { polls: 0, late: 0, missed: 0, errors: 0 },
        lateness: new LatenessHistogram(),
        retryLogged: 0,
      });
      post({ type: "ack", seq: cmd.seq });
    } catch (e) {
      post({ type: "ack", seq: cmd.seq, error: messageOf(e) });
    }
    return true;
  }
  const h = hot.get(cmd.id);
  if (h === undefined) {
    post({ type: "ack", seq: cmd.seq });
    return true;
  }
  switch (cmd.type) {
    case "stop":
      await finish(h);
      break;
    case "trigger":
      if (h.state !== "stopped") await poll(h);
      break;
    case "flush":
      flush(h, false);
      break;
    case "pause":
      if (h.state === "running") {
        h.state = "paused";
        flush(h, false);
        h.source.reset?.();
      }
      break;
    case "resume":
      if (h.state === "paused") {
        h.state = "running";
        h.next = performance.now() + h.period;
      }
      break;
    case "period":
      h.period = cmd.pollMs;
      h.flushRounds = roundsFor(h.flushMs, cmd.pollMs);
      h.next = performance.now() + cmd.pollMs;
      break;
  }
  post({ type: "ack", seq: cmd.seq });
  return true;
}

function poll(h: Hot): void | Promise<void> {
  const ts = now();
  h.batch.timestamp = ts;
  h.stats.polls++;
  h.counts[Counts.POLLING] = 1;
  try {
    const r = h.source.poll(h.batch, ts);
    if (r instanceof Promise) {
      return r.then(() => polled(h), (e) => {
        polled(h);
        return pollFailed(h, e);
      });
    }
  } catch (e) {
    polled(h);
    return pollFailed(h, e);
  }
  polled(h);
}

/** A poll returned: what the source produced so far is known to the pipeline (see {@linkcode Counts}). */
function polled(h: Hot): void {
  const c = h.counts;
  c[Counts.PRODUCED] = h.posted + h.batch.length;
  c[Counts.POLLING] = 0;
}

function pollFailed(h: Hot, e: unknown): void | Promise<void> {
  if (e instanceof RetryableError) {
    h.stats.errors++;
    if (h.retryLogged++ < 5 || h.stats.errors % 100 === 0) {
      post({
        type: "log",
        id: h.id,
        level: "warn",
        message: `Poll failed, retrying next tick: ${e.message}`,
      });
    }
    return;
  }
  if (e instanceof NormalStop) {
    post({ type: "log", id: h.id, level: "debug", message: `Stopped: ${e.message}` });
  } else {
    post({
      type: "log",
      id: h.id,
      level: "error",
      message: `Stopped after an error; the rest of the pipeline goes on: ${messageOf(e)}`,
    });
  }
  return finish(h);
}

/** Posts the batch (even empty when `final`, so that the pipeline knows the source ended). */
function flush(h: Hot, final: boolean): void {
  h.rounds = 0;
  // Even with no point, the counters and the lateness go to the pipeline once per flush.
  const lateness = h.lateness.counts.slice();
  h.lateness.clear();
  const stats = { ...h.stats };
  if (h.batch.length === 0) {
    post({ type: "batch", id: h.id, batch: undefined, stats, lateness, final }, [lateness.buffer]);
    return;
  }
  h.posted += h.batch.length;
  const { data, transfer } = h.encoder.encode(h.batch);
  h.batch = new Batch(data.length);
  post({ type: "batch", id: h.id, batch: data, stats, lateness, final }, [...transfer, lateness.buffer]);
}

async function finish(h: Hot): Promise<void> {
  if (h.state === "stopped") return;
  h.state = "stopped";
  flush(h, true);
  hot.delete(h.id);
  try {
    await h.source.close?.();
  } catch (e) {
    post({ type: "log", id: h.id, level: "error", message: `close() failed: ${messageOf(e)}` });
  }
}

/** Runs the queued commands; resolves false after `exit`. */
async function drainInbox(): Promise<boolean> {
  const target = Atomics.load(control!, 0);
  while (handled < target) {
    while (inbox.length === 0) await new Promise<void>((r) => (inboxWaiter = r));
    inboxWaiter = undefined;
    const cmd = inbox.shift()!;
    handled++;
    if (cmd.type === "init") continue;
    if (!(await handle(cmd))) return false;
  }
  return true;
}

async function loop(): Promise<void> {
  const ctl = control!;
  let active: Hot[] = [];
  let activeFor = -1; // the `handled` count the list was built for: commands change the set
  for (;;) {
    if (Atomics.load(ctl, 0) !== handled) {
      if (!(await drainInbox())) break;
      continue;
    }
    if (activeFor !== handled) {
      active = [...hot.values()];
      activeFor = handled;
    }
    let due = Infinity;
    let minPeriod = Infinity;
    for (let i = 0; i < active.length; i++) {
      const h = active[i]!;
      if (h.state !== "running") continue;
      if (h.next < due) due = h.next;
      if (h.period < minPeriod) minPeriod = h.period;
    }
    maybeRealtime(minPeriod);
    if (due === Infinity) {
      // Nothing to sample: wait for the next command without holding the thread.
      await Atomics.waitAsync(ctl, 0, handled).value;
      continue;
    }
    let t = performance.now();
    const wait = due - t;
    if (wait > 0) {
      const slack = minPeriod < SPIN_BELOW_MS ? Math.min(wait, 0.15) : 0;
      // Woken early (a long wait, or a command): go round again rather than spin the rest of the wait.
      if (wait - slack > 0 && !sleepUntil(ctl, due - slack, wait - slack)) continue;
      if (Atomics.load(ctl, 0) !== handled) continue;
      while ((t = performance.now()) < due) { /* spin the last few µs */ }
    }
    for (let i = 0; i < active.length; i++) {
      const h = active[i]!;
      if (h.state !== "running" || h.next > t) continue;
      const late = t - h.next;
      h.lateness.record(late);
      if (late > h.period) h.stats.late++;
      const pending = poll(h);
      if (pending !== undefined) await pending;
      if (h.state !== "running") {
        activeFor = -1;
        continue;
      }
      if (++h.rounds >= h.flushRounds) flush(h, false);
      h.next += h.period;
      if (h.next < t) {
        const skipped = Math.ceil((t - h.next) / h.period);
        h.stats.missed += skipped;
        h.next += skipped * h.period;
      }
    }
  }
  self.close();
}

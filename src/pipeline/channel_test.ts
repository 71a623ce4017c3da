import assert from "node:assert/strict";
import { Channel, type ChannelController } from "./channel.ts";

/** A channel with its controller and a count of `pull` calls. */
function open(highWaterMark: number) {
  let controller!: ChannelController<number>;
  const calls = { pull: 0, cancel: [] as unknown[] };
  const ch = new Channel<number>({
    start: (c) => (controller = c),
    pull: () => void calls.pull++,
    cancel: (reason) => void calls.cancel.push(reason),
  }, highWaterMark);
  return { ch, controller, calls };
}

Deno.test("Channel: values in order, reads wait for them, a close ends the reads once the queue is drained", async () => {
  const { ch, controller } = open(4);
  const reader = ch.getReader();
  const waiting = reader.read();
  controller.enqueue(1); // handed to the waiting read, not queued
  assert.equal(controller.desiredSize, 4);
  assert.deepEqual(await waiting, { done: false, value: 1 });
  controller.enqueue(2);
  controller.enqueue(3);
  controller.close();
  assert.equal(controller.desiredSize, 2, "closing: counted as a stream does until the queue is drained");
  assert.throws(() => controller.enqueue(4), TypeError);
  assert.deepEqual(await reader.read(), { done: false, value: 2 });
  assert.deepEqual(await reader.read(), { done: false, value: 3 });
  assert.equal(controller.desiredSize, 0);
  assert.equal((await reader.read()).done, true);
  assert.equal((await reader.read()).done, true);
});

Deno.test("Channel: desiredSize counts against the high-water mark, and pull is called while there is room", async () => {
  const { ch, controller, calls } = open(2);
  assert.equal(calls.pull, 1, "once after the start");
  controller.enqueue(1);
  controller.enqueue(2);
  assert.equal(controller.desiredSize, 0);
  controller.enqueue(3); // above the mark: queued all the same, as a stream does
  assert.equal(controller.desiredSize, -1);
  const reader = ch.getReader();
  await reader.read();
  assert.equal(calls.pull, 1, "still full: no pull");
  await reader.read();
  assert.equal(calls.pull, 2, "room again: pulled");
  await reader.read();
  const pending = reader.read();
  assert.equal(calls.pull, 4, "a waiting read asks too");
  controller.enqueue(4);
  assert.equal((await pending).value, 4);
});

Deno.test("Channel: cancel drops the queue, ends waiting reads and tells the source once", async () => {
  const { ch, controller, calls } = open(4);
  const reader = ch.getReader();
  controller.enqueue(1);
  await reader.cancel("enough");
  assert.deepEqual(calls.cancel, ["enough"]);
  assert.equal((await reader.read()).done, true);
  assert.throws(() => controller.enqueue(2), TypeError);
  await reader.cancel("again");
  assert.deepEqual(calls.cancel, ["enough"]);

  const second = open(4);
  const r2 = second.ch.getReader();
  const waiting = r2.read();
  await r2.cancel();
  assert.equal((await waiting).done, true);
});

Deno.test("Channel: an error rejects pending and later reads; the reader is exclusive until released", async () => {
  const { ch, controller } = open(1);
  const reader = ch.getReader();
  assert.throws(() => ch.getReader(), TypeError);
  const waiting = reader.read();
  controller.error(new Error("broken"));
  await assert.rejects(waiting, /broken/);
  await assert.rejects(reader.read(), /broken/);
  assert.equal(controller.desiredSize, null);
  reader.releaseLock();
  await assert.rejects(reader.read(), TypeError);
  assert.doesNotThrow(() => ch.getReader());
});

Deno.test("Channel: leaving a for-await loop early cancels it", async () => {
  const { ch, controller, calls } = open(4);
  controller.enqueue(1);
  controller.enqueue(2);
  for await (const v of ch) {
    assert.equal(v, 1);
    break;
  }
  assert.equal(calls.cancel.length, 1);
  assert.equal(ch.locked, false);
});

Deno.test("Channel: a high-water mark of 0 still pulls for a waiting read; a pull that throws errors it", async () => {
  let controller!: ChannelController<number>;
  let pulls = 0;
  const ch = new Channel<number>({
    start: (c) => (controller = c),
    pull: () => {
      if (++pulls === 2) controller.enqueue(7);
    },
  }, 0);
  assert.equal(pulls, 0, "no room and no read: no pull");
  const reader = ch.getReader();
  const waiting = reader.read();
  assert.equal(pulls, 1);
  const second = reader.read();
  assert.equal((await waiting).value, 7);
  controller.enqueue(8);
  assert.equal((await second).value, 8);

  const failing = new Channel<number>({
    pull() {
      throw new Error("pull broke");
    },
  }, 1);
  await assert.rejects(failing.getReader().read(), /pull broke/);
});

Deno.test("Channel: releasing the reader fails its pending reads; the next reader gets the next values", async () => {
  const { ch, controller } = open(2);
  const first = ch.getReader();
  const pending = first.read();
  first.releaseLock();
  await assert.rejects(pending, TypeError);
  const second = ch.getReader();
  controller.enqueue(1);
  assert.deepEqual(await second.read(), { done: false, value: 1 });
});

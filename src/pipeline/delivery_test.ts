import assert from "node:assert/strict";
import { Delivery, type DeliveryOptions, RejectedError } from "./delivery.ts";
import { type LogSink, setLogSink } from "../log.ts";

function captureLogs(): { lines: string[]; text(): string; [Symbol.dispose](): void } {
  const lines: string[] = [];
  const prev = setLogSink((level, scope, msg) => lines.push(`${level} ${scope}: ${msg}`));
  return { lines, text: () => lines.join("\n"), [Symbol.dispose]: () => void setLogSink(prev as LogSink) };
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A fake backend: `down` while true (each send throws), records what it got, in order. */
class FakeBackend {
  got: string[] = [];
  calls = 0;
  down = false;
  failNext = 0;
  reject: string | undefined;
  send = (payloads: readonly Uint8Array[]) => {
    this.calls++;
    if (this.down) throw new Error("connection refused");
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error("503 service unavailable");
    }
    if (this.reject !== undefined && payloads.some((p) => dec.decode(p) === this.reject)) {
      throw new RejectedError("400 bad line");
    }
    for (const p of payloads) this.got.push(dec.decode(p));
  };
}

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function make(dir: string, backend: FakeBackend, more: Partial<DeliveryOptions> = {}): Delivery {
  return new Delivery({
    journalPath: dir,
    send: backend.send,
    minBackoffMs: 2,
    maxBackoffMs: 20,
    finalAttemptMs: 200,
    ...more,
  });
}

Deno.test("Delivery retries a failing send with back-off and delivers each record once, in order", async () => {
  using _logs = captureLogs();
  const dir = await Deno.makeTempDir();
  try {
    const backend = new FakeBackend();
    backend.failNext = 3;
    const d = make(dir, backend);
    d.open();
    for (let i = 0; i < 5; i++) d.append(enc.encode(`r${i}`), 2);
    await until(() => backend.got.length === 5, "5 records");
    assert.deepEqual(backend.got, ["r0", "r1", "r2", "r3", "r4"]);
    assert.ok(backend.calls >= 4);
    assert.equal(await d.close(), 0);
    assert.equal(d.deliveredPoints, 10);
    assert.equal(d.droppedPoints, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Delivery journals while the backend is down and replays in order once it is back", async () => {
  using logs = captureLogs();
  const dir = await Deno.makeTempDir();
  try {
    const backend = new FakeBackend();
    backend.down = true; // down at start: no error
    const d = make(dir, backend);
    d.open();
    for (let i = 0; i < 50; i++) d.append(enc.encode(`r${i}`), 1);
    await until(() => backend.calls >= 3, "some failed attempts");
    assert.equal(d.pendingPoints, 50);
    assert.ok(logs.text().includes("Cannot deliver to"), logs.text());
    backend.down = false;
    await until(() => backend.got.length === 50, "the replay");
    assert.deepEqual(backend.got, Array.from({ length: 50 }, (_, i) => `r${i}`));
    assert.ok(logs.text().includes("again after"), logs.text());
    assert.equal(await d.close(), 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Delivery keeps what the final attempt could not send and replays it after a restart", async () => {
  using logs = captureLogs();
  const dir = await Deno.makeTempDir();
  try {
    const backend = new FakeBackend();
    backend.down = true;
    const d1 = make(dir, backend, { segmentBytes: 64 });
    d1.open();
    for (let i = 0; i < 30; i++) d1.append(enc.encode(`first-${i}`), 1);
    const t0 = performance.now();
    assert.equal(await d1.close(), 30);
    assert.ok(performance.now() - t0 < 2000, "the final attempt is bounded");
    assert.match(logs.text(), /30 points \(\d+ bytes\) not delivered .* wait in the journal/);

    // A torn record at the end of the last segment, as a crash mid-append leaves it, is cut off.
    const segs = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".seg")).sort();
    Deno.writeFileSync(`${dir}/${segs.at(-1)}`, new Uint8Array([200, 0, 0, 0, 1, 0, 0, 0, 65]), {
      append: true,
    });

    backend.down = false;
    const d2 = make(dir, backend);
    d2.open();
    assert.equal(d2.replayedPoints, 30);
    d2.append(enc.encode("second-0"), 1);
    await until(() => backend.got.length === 31, "the replay after the restart");
    assert.deepEqual(backend.got, [...Array.from({ length: 30 }, (_, i) => `first-${i}`), "second-0"]);
    assert.ok(logs.text().includes("cut short"), logs.text());
    assert.equal(await d2.close(), 0);

    // A third start finds nothing left to send.
    const d3 = make(dir, backend);
    d3.open();
    assert.equal(d3.replayedPoints, 0);
    await d3.close();
    assert.equal(backend.got.length, 31);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Delivery drops the oldest records when the journal is full, and counts and logs them", async () => {
  using logs = captureLogs();
  const dir = await Deno.makeTempDir();
  try {
    const backend = new FakeBackend();
    backend.down = true;
    const drops: number[] = [];
    const d = make(dir, backend, { maxBytes: 8192, onDrop: (n) => drops.push(n) });
    d.open();
    const payload = (i: number) => enc.encode(`${String(i).padStart(4, "0")}:${"x".repeat(92)}`); // 100 B
    for (let i = 0; i < 200; i++) d.append(payload(i), 3); // 200 × 108 B: far more than 8 KiB
    assert.ok(d.journalBytes <= 8192, `journal ${d.journalBytes} B`);
    assert.ok(d.droppedPoints > 0);
    assert.equal(d.droppedPoints + d.pendingPoints, 600);
    assert.equal(drops.reduce((a, b) => a + b, 0), d.droppedPoints);
    assert.ok(logs.text().includes("is full"), logs.text());
    backend.down = false;
    await until(() => d.pendingPoints === 0, "the rest");
    // What is left is the newest, in order, ending with the last appended.
    const kept = backend.got.map((s) => Number(s.slice(0, 4)));
    assert.equal(kept.at(-1), 199);
    assert.deepEqual(kept, kept.toSorted((a, b) => a - b));
    assert.equal(kept.length * 3, 600 - d.droppedPoints);
    await d.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Delivery drops and counts a batch the backend rejects for good, and goes on", async () => {
  using _logs = captureLogs();
  const dir = await Deno.makeTempDir();
  try {
    const backend = new FakeBackend();
    backend.reject = "bad";
    const d = make(dir, backend, { maxSendBytes: 1 });
    d.open();
    d.append(enc.encode("a"), 1);
    d.append(enc.encode("bad"), 4);
    d.append(enc.encode("b"), 1);
    await until(() => d.pendingPoints === 0, "all handled");
    assert.deepEqual(backend.got, ["a", "b"]);
    assert.equal(d.droppedPoints, 4);
    await d.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Delivery refuses a journal another agent holds", async () => {
  using _logs = captureLogs();
  const dir = await Deno.makeTempDir();
  try {
    const backend = new FakeBackend();
    const a = make(dir, backend);
    a.open();
    const b = make(dir, backend);
    assert.throws(() => b.open(), /another agent is using it/);
    await a.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Delivery counts a record dropped from a full journal while it is being sent either delivered or dropped, never both", async (t) => {
  using _logs = captureLogs();
  for (const outcome of ["accepted", "failed"] as const) {
    await t.step(`the send in flight is ${outcome}`, async () => {
      const dir = await Deno.makeTempDir();
      try {
        let release: ((ok: boolean) => void) | undefined;
        let sends = 0;
        const got: string[] = [];
        let fail = outcome === "failed";
        const d = new Delivery({
          journalPath: dir,
          maxBytes: 8192,
          minBackoffMs: 2,
          maxBackoffMs: 20,
          finalAttemptMs: 200,
          maxSendBytes: 250, // two records per send
          send: async (payloads) => {
            sends++;
            if (sends === 1) {
              // The first send hangs until the journal has dropped the segment it is sending.
              const ok = await new Promise<boolean>((r) => (release = r));
              if (!ok) throw new Error("connection reset");
            } else if (fail) throw new Error("still down");
            for (const p of payloads) got.push(dec.decode(p));
          },
        });
        d.open();
        const payload = (i: number) => enc.encode(`${String(i).padStart(4, "0")}:${"x".repeat(92)}`);
        d.append(payload(0), 3);
        await until(() => release !== undefined, "the first send");
        // 200 more records of 100 B: the journal (8 KiB) drops its oldest segments, the one in flight included.
        for (let i = 1; i <= 200; i++) d.append(payload(i), 3);
        assert.ok(d.droppedPoints + d.pendingPoints <= 603);
        release!(outcome === "accepted");
        fail = false;
        await until(() => d.pendingPoints === 0, "the rest");
        const delivered = new Set(got.map((s) => Number(s.slice(0, 4))));
        assert.equal(d.deliveredPoints, got.length * 3, "delivered = what the backend got");
        assert.equal(delivered.size, got.length, "each record delivered once");
        assert.equal(
          d.deliveredPoints + d.droppedPoints,
          603,
          "every point counted once: delivered or dropped",
        );
        if (outcome === "accepted") assert.ok(delivered.has(0), "the record in flight was delivered");
        else assert.ok(!delivered.has(0));
        await d.close();
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  }
});

Deno.test('Delivery syncs records and the ack file with fsync "batch", and nothing with "none"', async () => {
  using _logs = captureLogs();
  for (const fsync of ["batch", "none"] as const) {
    const dir = await Deno.makeTempDir();
    try {
      const backend = new FakeBackend();
      backend.down = true;
      const d = make(dir, backend, { fsync, maxSendBytes: 1 });
      d.open();
      for (let i = 0; i < 5; i++) d.append(enc.encode(`r${i}`), 1);
      const afterAppends = d.syncCount;
      backend.down = false;
      await until(() => d.pendingPoints === 0, "the delivery");
      await d.close();
      if (fsync === "none") assert.equal(d.syncCount, 0);
      else {
        // 5 records + the new segment's directory entry; then per acknowledged send (5): ack file + directory.
        assert.equal(afterAppends, 6);
        assert.equal(d.syncCount, 6 + 5 * 2);
      }
      assert.equal(Deno.readTextFileSync(`${dir}/ack`).trim().split(" ").length, 2);
      assert.ok(!Deno.readDirSync(dir).some((e) => e.name === "ack.tmp"));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("Delivery after a SIGKILL resends at most the records of one send and skips none", async () => {
  using _logs = captureLogs();
  const dir = await Deno.makeTempDir();
  try {
    const script = `${dir}/child.ts`;
    Deno.writeTextFileSync(
      script,
      `import { Delivery } from ${JSON.stringify(new URL("./delivery.ts", import.meta.url).href)};
const d = new Delivery({
  journalPath: Deno.args[0],
  maxSendBytes: 1,
  send: async (payloads) => {
    await new Promise((r) => setTimeout(r, 5));
    for (const p of payloads) console.log("got " + new TextDecoder().decode(p));
  },
});
d.open();
for (let i = 0; i < 1000; i++) d.append(new TextEncoder().encode("r" + i), 1);
setInterval(() => {}, 1000);
`,
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", script, `${dir}/journal`],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const got: string[] = [];
    let text = "";
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    while (got.length < 20) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
      const lines = text.split("\n");
      text = lines.pop()!;
      for (const l of lines) if (l.startsWith("got ")) got.push(l.slice(4));
    }
    child.kill("SIGKILL");
    await child.status;
    // What the backend got after the kill was decided, but read it all.
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    for (const l of text.split("\n")) if (l.startsWith("got ")) got.push(l.slice(4));
    assert.ok(got.length >= 20 && got.length < 1000, `${got.length} delivered before the kill`);

    const backend = new FakeBackend();
    const d = make(`${dir}/journal`, backend);
    d.open();
    await until(() => d.pendingPoints === 0, "the replay");
    await d.close();
    const all = Array.from({ length: 1000 }, (_, i) => `r${i}`);
    assert.deepEqual([...new Set([...got, ...backend.got])].toSorted(), all.toSorted(), "nothing skipped");
    const resent = backend.got.filter((r) => got.includes(r));
    assert.ok(resent.length <= 1, `resent ${resent.join(", ")}: at most one send (one record here)`);
    assert.deepEqual(backend.got, all.slice(all.length - backend.got.length), "the rest, in order");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A journal of one segment holding records `rec-0`…`rec-9` (17 bytes each after the 8-byte segment header), record k of k + 1 points. */
async function tenRecords(dir: string): Promise<string> {
  const backend = new FakeBackend();
  backend.down = true;
  const d = make(dir, backend, { finalAttemptMs: 20 });
  d.open();
  for (let k = 0; k < 10; k++) d.append(enc.encode(`rec-${k}`), k + 1);
  await d.close();
  const segs = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".seg"));
  assert.equal(segs.length, 1);
  const path = `${dir}/${segs[0]}`;
  assert.equal(Deno.statSync(path).size, 8 + 10 * 17);
  return path;
}

/** Reopens the journal, lets it deliver, and says what was delivered and lost. */
async function replay(dir: string): Promise<{ got: string[]; replayed: number; dropped: number }> {
  const backend = new FakeBackend();
  const d = make(dir, backend);
  d.open();
  await until(() => d.pendingPoints === 0, "the replay");
  await d.close();
  return { got: backend.got, replayed: d.replayedPoints, dropped: d.droppedPoints };
}

const recs = (...ks: number[]) => ks.map((k) => `rec-${k}`);

Deno.test("Delivery checks each record's CRC32 on replay: a damaged or torn record is skipped and counted, the rest replayed", async (t) => {
  await t.step("crc32 is zlib's", async () => {
    const { crc32: zlibCrc32 } = await import("node:zlib");
    const { crc32 } = await import("./delivery.ts");
    const data = new Uint8Array(10_000).map((_, i) => (i * 7919) % 251);
    assert.equal(crc32(data), zlibCrc32(data));
    assert.equal(crc32(data.subarray(5000), crc32(data.subarray(0, 5000))), zlibCrc32(data));
    assert.equal(crc32(new Uint8Array()), 0);
  });

  await t.step("a byte of a payload flipped", async () => {
    using logs = captureLogs();
    const dir = await Deno.makeTempDir();
    try {
      const path = await tenRecords(dir);
      const bytes = Deno.readFileSync(path);
      bytes[8 + 3 * 17 + 12 + 2]! ^= 0x01; // record 3's payload
      Deno.writeFileSync(path, bytes);
      const r = await replay(dir);
      assert.deepEqual(r.got, recs(0, 1, 2, 4, 5, 6, 7, 8, 9));
      assert.equal(r.dropped, 4, "record 3's 4 points are lost");
      const warnings = logs.lines.filter((l) => l.includes(path));
      assert.equal(warnings.length, 1, logs.text());
      assert.match(
        warnings[0]!,
        /^warn .*Dropped 4 points: .*1 damaged records.*the records after them are replayed/,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  await t.step("a record's length damaged: the next good record is found by its checksum", async () => {
    using logs = captureLogs();
    const dir = await Deno.makeTempDir();
    try {
      const path = await tenRecords(dir);
      const bytes = Deno.readFileSync(path);
      bytes[8 + 5 * 17]! = 200; // record 5's length
      Deno.writeFileSync(path, bytes);
      const r = await replay(dir);
      assert.deepEqual(r.got, recs(0, 1, 2, 3, 4, 6, 7, 8, 9));
      assert.equal(logs.lines.filter((l) => l.includes(path)).length, 1, logs.text());
      assert.match(logs.text(), /1 damaged records/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  await t.step("the last record cut short (a crash during its write)", async () => {
    using logs = captureLogs();
    const dir = await Deno.makeTempDir();
    try {
      const path = await tenRecords(dir);
      Deno.truncateSync(path, 8 + 9 * 17 + 14); // record 9: header and 2 of its 5 payload bytes
      const r = await replay(dir);
      assert.deepEqual(r.got, recs(0, 1, 2, 3, 4, 5, 6, 7, 8));
      assert.equal(r.dropped, 10);
      assert.equal(r.replayed, 45);
      const warnings = logs.lines.filter((l) => l.includes(path));
      assert.equal(warnings.length, 1, logs.text());
      assert.match(warnings[0]!, /cut short by a crash \(14 bytes\)/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  await t.step("an earlier format without checksums is still read; a newer one is refused", async () => {
    using logs = captureLogs();
    const dir = await Deno.makeTempDir();
    try {
      const v1 = [...recs(0, 1)].flatMap((p, k) => [5, 0, 0, 0, k + 1, 0, 0, 0, ...enc.encode(p)]);
      Deno.writeFileSync(`${dir}/000000000001.seg`, new Uint8Array(v1));
      const r = await replay(dir);
      assert.deepEqual(r.got, recs(0, 1));
      assert.equal(r.replayed, 3);
      assert.match(logs.text(), /format of an earlier version/);

      Deno.writeFileSync(`${dir}/000000000009.seg`, new Uint8Array([0x41, 0x4a, 0x4e, 0x4c, 3, 0, 0, 0]));
      const d = make(dir, new FakeBackend());
      assert.throws(
        () => d.open(),
        /000000000009\.seg has journal format 3, which this version .* move the journal away/,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("Delivery keeps its back-off while new records arrive (a down backend is not retried per append)", async () => {
  using _logs = captureLogs();
  const dir = await Deno.makeTempDir();
  try {
    const backend = new FakeBackend();
    backend.down = true;
    const d = make(dir, backend, { minBackoffMs: 100, maxBackoffMs: 400, fsync: "none" });
    d.open();
    // 100 appends, 10 ms apart (about 1 s): with back-offs of 50–100, 100–200, then 200–400 ms, at most 8
    // attempts fit in that second (one per append before the fix: ~100).
    for (let i = 0; i < 100; i++) {
      d.append(enc.encode(`r${i}`), 1);
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(backend.calls >= 1 && backend.calls <= 8, `${backend.calls} attempts for 100 appends`);
    backend.down = false;
    await until(() => backend.got.length === 100, "the replay");
    assert.deepEqual(backend.got, Array.from({ length: 100 }, (_, i) => `r${i}`));
    assert.equal(await d.close(), 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Delivery holds at most a few sends' payloads in memory: the rest of the journal is read back from disk", async () => {
  using _logs = captureLogs();
  const dir = await Deno.makeTempDir();
  try {
    const backend = new FakeBackend();
    backend.down = true;
    const payload = (i: number) => `r${String(i).padStart(4, "0")}${"x".repeat(495)}`; // 500 bytes
    let d = make(dir, backend, { maxSendBytes: 1000, fsync: "none" });
    d.open();
    for (let i = 0; i < 200; i++) d.append(enc.encode(payload(i)), 1);
    // 100 KB journaled; memory: the cap (2 sends: 2000 bytes) plus the send being retried (1000 bytes).
    assert.ok(d.memoryBytes <= 3000, `${d.memoryBytes} bytes in memory`);
    assert.equal(d.pendingBytes, 200 * 500);
    assert.equal(await d.close(), 200);
    // A restart reads the journal without holding it either, and replays every record, in order, intact.
    d = make(dir, backend, { maxSendBytes: 1000, fsync: "none" });
    d.open();
    assert.ok(d.memoryBytes <= 3000, `${d.memoryBytes} bytes in memory after open`);
    assert.equal([...d.unsentPayloads()].length, 200);
    backend.down = false;
    await until(() => backend.got.length === 200, "the replay");
    assert.deepEqual(backend.got, Array.from({ length: 200 }, (_, i) => payload(i)));
    assert.equal(d.memoryBytes, 0);
    assert.equal(await d.close(), 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

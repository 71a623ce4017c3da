/**
 * Delivery that loses nothing, for network outputs: every batch is first appended to a bounded on-disk journal,
 * then sent, in order, by one background pump that batches records, retries with exponential back-off and
 * jitter, and moves its acknowledgement cursor past what the backend accepted. What could not be sent stays in
 * the journal and is replayed in order when the backend is back, and again after an agent restart.
 *
 * The journal is a directory: append-only segment files (`<seq>.seg`, 12 digits), an `ack` file (`<seq>
 * <offset>`: where the unsent records begin) and a `lock` file (`flock`, so that two agents never share a
 * journal). A segment (format 2) begins with `AJNL` and the format version (`u32`), then holds records: `u32`
 * payload bytes, `u32` points, `u32` CRC32 (zlib's, over the length, the points and the payload), all
 * little-endian, then the payload. Segments of format 1 (no header, no CRC: this module before checksums) are
 * still read; a segment of a newer format makes `open` fail with a message that says so.
 *
 * - **fsync policy** (`fsync`): with `"batch"` (the default) each appended record is `fdatasync`ed before
 *   {@linkcode Delivery.append} returns (and a new segment's directory entry is synced), and after each
 *   acknowledged send the `ack` file is written to `ack.tmp`, `fdatasync`ed, renamed over `ack` and the
 *   directory synced, before acknowledged segments are deleted. So a process crash or a power cut loses no
 *   accepted record, and resends at most the records of one send (the one whose acknowledgement had not reached
 *   the disk: at most `maxSendBytes` of payload, or one larger record). With `"none"` nothing is synced: a
 *   process crash loses nothing either (the kernel holds the writes) and resends at most one send's records,
 *   but a power cut loses the records appended in the last seconds before it (until the kernel writes them
 *   back: about 30 s on Linux by default, `vm.dirty_expire_centisecs`) and resends those delivered in that
 *   time. Either way nothing is skipped: at-least-once.
 * - **Full journal**: when appending would make the segments exceed `maxBytes`, the oldest segment is deleted
 *   and its unsent points are counted in {@linkcode Delivery.droppedPoints} and logged. A point counts as
 *   delivered only when the backend acknowledged its record, and as dropped only when it was dropped without
 *   that: records of the deleted segment that are being sent at that moment stay in memory until the send ends,
 *   and are counted delivered if it succeeds, dropped if it fails (never both).
 * - **Damaged records**: when the journal is opened, a record whose CRC does not match is skipped, and the
 *   replay goes on with the next good record (right after it, or found by its checksum when its length is
 *   damaged); a record cut short at the end of a segment (a crash during its write) is cut off the file. Their
 *   points (as far as their headers can be read) count in {@linkcode Delivery.droppedPoints}, with one warning
 *   naming the file. A damaged record left in the journal is skipped, and counted, again by each start that
 *   finds it still unsent.
 * - **A backend down at start** is no error: records accumulate in the journal and the pump keeps trying.
 * - **Back-off**: after a failed send the pump waits (equal jitter: half the delay fixed, half random) from
 *   `minBackoffMs`, doubling up to `maxBackoffMs`; new records do not cut a back-off short (a down backend is
 *   not retried at the sources' rate), only the close does, for its final attempt.
 * - **Memory**: the journal is on disk; the agent holds the payloads of the newest records up to two sends'
 *   worth (`2 × maxSendBytes`), plus those of the send in progress. Older ones are read back from their
 *   segment when their turn comes, so a long outage grows the journal, not the agent.
 * - **Shutdown** ({@linkcode Delivery.close}): one bounded final attempt (`finalAttemptMs`, 5 s by default);
 *   what is still unsent stays in the journal and one log line says how much.
 *
 * @example
 * ```ts
 * import { Delivery } from "./delivery.ts";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * const got: string[] = [];
 * const d = new Delivery({
 *   journalPath: dir,
 *   send: (payloads) => { got.push(...payloads.map((p) => new TextDecoder().decode(p))); },
 * });
 * d.open();
 * d.append(new TextEncoder().encode("a"), 1);
 * await d.close();
 * assert.deepEqual(got, ["a"]);
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
import { AlumetError, messageOf } from "../errors.ts";
import { Logger } from "../log.ts";

/** Sends records to the backend; throws on failure. `signal` aborts at the final attempt's deadline. */
export type Sender = (payloads: readonly Uint8Array[], signal: AbortSignal) => void | Promise<void>;

/**
 * Thrown by a {@linkcode Sender} when the backend refused the data for good (a 400: malformed, a type
 * conflict): retrying would fail forever and block everything after it, so the records are dropped and counted.
 */
export class RejectedError extends AlumetError {
  override name = "RejectedError";
}

/** How a {@linkcode Delivery} journals and sends. */
export interface DeliveryOptions {
  /** The journal's directory (created if missing). */
  readonly journalPath: string;
  /** Sends a group of records, in order. */
  readonly send: Sender;
  /** Most bytes the journal's segments may hold. Default 64 MiB. */
  readonly maxBytes?: number;
  /** Bytes after which a new segment file begins. Default `maxBytes / 8` (at least 1 KiB). */
  readonly segmentBytes?: number;
  /** `"batch"`: fdatasync each appended record (default); `"none"`: leave it to the kernel. */
  readonly fsync?: "batch" | "none";
  /** Most payload bytes in one send. Default 1 MiB (a record bigger than that goes alone). */
  readonly maxSendBytes?: number;
  /** First back-off after a failure, ms. Default 100. */
  readonly minBackoffMs?: number;
  /** Longest back-off, ms. Default 5000. */
  readonly maxBackoffMs?: number;
  /** How long the final attempt at shutdown may take, ms. Default 5000. */
  readonly finalAttemptMs?: number;
  /** Where to log. Default a logger scoped `delivery`. */
  readonly log?: Logger;
  /** What the backend is, for log lines (a URL). Default `"the backend"`. */
  readonly target?: string;
  /** Called with the points of each record dropped (journal full, or rejected by the backend). */
  readonly onDrop?: (points: number, why: string) => void;
}

/** The options of a {@linkcode Delivery} that a config sets: all but `send`, `log`, `target` and `onDrop`. */
export type JournalOptions = Omit<DeliveryOptions, "send" | "log" | "target" | "onDrop">;

/**
 * The journal and retry keys the network outputs' configs share, as their schemas validate them (durations in
 * ms): `journal_path`, `journal_max_mib`, `journal_fsync`, `max_backoff`, `final_attempt`.
 */
export interface DeliveryConfig {
  readonly journal_path: string;
  readonly journal_max_mib: number;
  readonly journal_fsync: "batch" | "none";
  readonly max_backoff: number;
  readonly final_attempt: number;
}

/**
 * Maps the journal and retry keys of a network output's config to {@linkcode Delivery} options.
 *
 * @example
 * ```ts
 * import { deliveryOptions } from "./delivery.ts";
 * import assert from "node:assert/strict";
 * const config = { journal_path: "j", journal_max_mib: 2, journal_fsync: "none", max_backoff: 5000, final_attempt: 1000 } as const;
 * assert.deepEqual(deliveryOptions(config), {
 *   journalPath: "j",
 *   maxBytes: 2 * 1024 * 1024,
 *   fsync: "none",
 *   maxBackoffMs: 5000,
 *   finalAttemptMs: 1000,
 * });
 * ```
 */
export function deliveryOptions(config: DeliveryConfig): JournalOptions {
  return {
    journalPath: config.journal_path,
    maxBytes: config.journal_max_mib * 1024 * 1024,
    fsync: config.journal_fsync,
    maxBackoffMs: config.max_backoff,
    finalAttemptMs: config.final_attempt,
  };
}

/** A segment's first bytes: `AJNL` and the format version (u32, little-endian). */
const MAGIC = [0x41, 0x4a, 0x4e, 0x4c] as const;
/** The format written: 2 (records with a CRC32). Version 1 (no segment header, no CRC) is still read. */
const FORMAT_VERSION = 2;
/** Bytes of a segment's header: magic, version. */
const SEG_HEADER = 8;
/** Bytes of a record's header: payload length, points, CRC32. */
const HEADER = 12;
/** Bytes of a version-1 record's header: payload length, points. */
const HEADER_V1 = 8;
/** How long a warning about an unreachable backend stays quiet before it is repeated, ms. */
const REPEAT_WARN_MS = 60_000;

interface Rec {
  readonly seg: number;
  /** Offset just past the record in its segment (its payload is the `len` bytes before). */
  readonly end: number;
  /** Payload bytes. */
  readonly len: number;
  /**
   * The payload, when held in memory: the newest records up to `#memCap` bytes and those being sent (kept
   * across retries, so that a sender sees the same objects); else read from the segment when taken.
   */
  payload: Uint8Array | undefined;
  readonly points: number;
}

interface Segment {
  readonly seq: number;
  size: number;
}

/**
 * A journal plus a sending pump (see the module doc). `open` before `append`; `close` once. Not safe for
 * two writers at once; `append` is synchronous.
 */
export class Delivery {
  readonly #dir: string;
  readonly #send: Sender;
  readonly #maxBytes: number;
  readonly #segmentBytes: number;
  readonly #fsync: boolean;
  readonly #maxSendBytes: number;
  readonly #minBackoff: number;
  readonly #maxBackoff: number;
  readonly #finalMs: number;
  readonly #log: Logger;
  readonly #target: string;
  readonly #onDrop: ((points: number, why: string) => void) | undefined;

  #lock: Deno.FsFile | undefined;
  #tail: Deno.FsFile | undefined;
  #segments: Segment[] = [];
  /** Unsent records, oldest first (the journal's content past the ack cursor). */
  #queue: Rec[] = [];
  #head = 0;
  #pendingPoints = 0;
  #pendingBytes = 0;
  #wake: (() => void) | undefined;
  #pump: Promise<void> | undefined;
  #closing = false;
  #deadline = Infinity;
  #abort = new AbortController();
  #failingSince: number | undefined;
  #lastWarn = -Infinity;
  #lastDropWarn = -Infinity;
  #quietDrops = 0;
  #failures = 0;
  /** The records of the send in progress. */
  #inflight = new Set<Rec>();
  /** Payload bytes held in memory by queued records. */
  #memBytes = 0;
  /** Most payload bytes held in memory beyond a send's: the rest of the journal stays on disk only. */
  readonly #memCap: number;
  /** Wakes the back-off sleep: only the close does (new records do not cut a back-off short). */
  #wakeSleep: (() => void) | undefined;
  /** Records in flight whose segment the full journal dropped: lost if their send fails. */
  #doomed = new Set<Rec>();

  #syncs = 0;

  /** Points delivered (acknowledged by the backend). */
  deliveredPoints = 0;
  /** Points dropped: the oldest when the journal was full, and those the backend rejected for good. */
  droppedPoints = 0;
  /** Points found in the journal when it was opened (left by an earlier run). */
  replayedPoints = 0;

  constructor(options: DeliveryOptions) {
    this.#dir = options.journalPath;
    this.#send = options.send;
    this.#maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    if (!(this.#maxBytes >= 4096)) {
      throw new RangeError(`The journal's size must be at least 4 KiB: ${this.#maxBytes}`);
    }
    this.#segmentBytes = options.segmentBytes ?? Math.max(1024, Math.floor(this.#maxBytes / 8));
    this.#fsync = (options.fsync ?? "batch") === "batch";
    this.#maxSendBytes = options.maxSendBytes ?? 1024 * 1024;
    this.#memCap = Math.min(this.#maxBytes, 2 * this.#maxSendBytes);
    this.#minBackoff = options.minBackoffMs ?? 100;
    this.#maxBackoff = Math.max(this.#minBackoff, options.maxBackoffMs ?? 5000);
    this.#finalMs = options.finalAttemptMs ?? 5000;
    this.#log = options.log ?? new Logger("delivery");
    this.#target = options.target ?? "the backend";
    this.#onDrop = options.onDrop;
  }

  /** Points waiting in the journal (appended, not yet delivered). */
  get pendingPoints(): number {
    return this.#pendingPoints;
  }

  /** Payload bytes waiting in the journal. */
  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  /** `fdatasync`/`fsync` calls made so far (records, `ack`, the directory): 0 with `fsync: "none"`. */
  get syncCount(): number {
    return this.#syncs;
  }

  /**
   * The payloads of the unsent records, oldest first (after `open`: what an earlier run left, then more); those
   * not held in memory are read from their segment, one at a time.
   */
  *unsentPayloads(): IterableIterator<Uint8Array> {
    for (let i = this.#head; i < this.#queue.length; i++) {
      const r = this.#queue[i]!;
      yield r.payload ?? this.#readPayloads([r])[0]!;
    }
  }

  /** Payload bytes of the unsent records held in memory (the rest is on disk only). */
  get memoryBytes(): number {
    return this.#memBytes;
  }

  /** Reads records' payloads from their segments (records of one segment through one open file). */
  #readPayloads(records: readonly Rec[]): Uint8Array[] {
    const out: Uint8Array[] = [];
    let file: Deno.FsFile | undefined;
    let seg = -1;
    try {
      for (const r of records) {
        if (r.seg !== seg) {
          file?.close();
          file = Deno.openSync(this.#segPath(r.seg), { read: true });
          seg = r.seg;
        }
        const buf = new Uint8Array(r.len);
        file!.seekSync(r.end - r.len, Deno.SeekMode.Start);
        let done = 0;
        while (done < r.len) {
          const n = file!.readSync(buf.subarray(done));
          if (n === null || n === 0) throw new Error(`${this.#segPath(r.seg)} ends before its record`);
          done += n;
        }
        out.push(buf);
      }
    } finally {
      file?.close();
    }
    return out;
  }

  /** Keeps a record's payload in memory while under the cap. */
  #hold(r: Rec, payload: Uint8Array): void {
    if (this.#memBytes + r.len <= this.#memCap) {
      r.payload = payload;
      this.#memBytes += r.len;
    }
  }

  /** A record leaves the queue: its payload no longer counts in memory. */
  #release(r: Rec): void {
    if (r.payload !== undefined) this.#memBytes -= r.len;
  }

  /** Bytes of the journal's segment files. */
  get journalBytes(): number {
    return this.#segments.reduce((t, s) => t + s.size, 0);
  }

  /**
   * Opens (or creates) the journal, locks it, reads what an earlier run left unsent, and starts the pump.
   * Throws an {@linkcode AlumetError} naming the path when the directory cannot be used or another agent holds
   * it. The backend is not contacted here: one that is down is no start error.
   */
  open(): void {
    if (this.#lock !== undefined) return;
    try {
      Deno.mkdirSync(this.#dir, { recursive: true });
      this.#lock = Deno.openSync(`${this.#dir}/lock`, { write: true, create: true });
    } catch (e) {
      throw new AlumetError(`Cannot open the journal "${this.#dir}": ${messageOf(e)}`, { cause: e });
    }
    if (!tryLockFor(this.#lock, LOCK_WAIT_MS)) {
      this.#lock.close();
      this.#lock = undefined;
      throw new AlumetError(
        `Cannot use the journal "${this.#dir}": another agent is using it (it is locked); give each agent its own`,
      );
    }
    try {
      this.#load();
    } catch (e) {
      this.#lock.close();
      this.#lock = undefined;
      throw new AlumetError(`Cannot read the journal "${this.#dir}": ${messageOf(e)}`, { cause: e });
    }
    if (this.#pendingPoints > 0) {
      this.replayedPoints = this.#pendingPoints;
      this.#log.info(
        `The journal ${this.#dir} holds ${this.#pendingPoints} points not yet delivered to ${this.#target}; ` +
          `sending them first`,
      );
    }
    this.#pump = this.#run();
  }

  #load(): void {
    let ackSeq = 0;
    let ackOff = 0;
    try {
      const [a, b] = Deno.readTextFileSync(`${this.#dir}/ack`).trim().split(/\s+/);
      ackSeq = Number(a) || 0;
      ackOff = Number(b) || 0;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    const seqs: number[] = [];
    for (const entry of Deno.readDirSync(this.#dir)) {
      const m = /^(\d{12})\.seg$/.exec(entry.name);
      if (m && entry.isFile) seqs.push(Number(m[1]));
    }
    seqs.sort((x, y) => x - y);
    for (const seq of seqs) {
      const path = this.#segPath(seq);
      if (seq < ackSeq) {
        Deno.removeSync(path);
        continue;
      }
      const bytes = Deno.readFileSync(path);
      const scan = scanSegment(bytes, path);
      if (scan.version === 1) {
        this.#log.info(
          `The journal segment ${path} has the format of an earlier version (no checksums): reading it`,
        );
      }
      for (const r of scan.records) {
        if (seq > ackSeq || r.end > ackOff) {
          const rec: Rec = {
            seg: seq,
            end: r.end,
            len: r.payload.length,
            payload: undefined,
            points: r.points,
          };
          this.#hold(rec, r.payload);
          this.#queue.push(rec);
          this.#pendingPoints += r.points;
          this.#pendingBytes += rec.len;
        }
      }
      if (scan.damaged > 0 || scan.tornBytes > 0) {
        const parts: string[] = [];
        if (scan.damaged > 0) {
          parts.push(`${scan.damaged} damaged records (bad checksum or length, ${scan.damagedBytes} bytes)`);
        }
        if (scan.tornBytes > 0) parts.push(`a last record cut short by a crash (${scan.tornBytes} bytes)`);
        const why = `the journal segment ${path} holds ${parts.join(" and ")}: skipped` +
          (scan.unknown ? ` (some of their point counts are unreadable: not counted)` : "") +
          (scan.damaged > 0 ? `; the records after them are replayed` : "");
        // A damaged record that is still unsent is found again (and counted again) at the next start; a torn
        // tail is cut off now.
        if (scan.lostPoints > 0) this.#drop(scan.lostPoints, why);
        else this.#log.warn(`Lost an unknown number of points: ${why}`);
        if (scan.tornBytes > 0) Deno.truncateSync(path, bytes.length - scan.tornBytes);
      }
      this.#segments.push({ seq, size: bytes.length - scan.tornBytes });
    }
  }

  #segPath(seq: number): string {
    return `${this.#dir}/${String(seq).padStart(12, "0")}.seg`;
  }

  /**
   * Appends one record (a payload of `points` points) to the journal, syncs it (with `fsync: "batch"`), and
   * wakes the pump. When the journal would grow past its size, the oldest segment is dropped first and its
   * unsent points counted. On a failed write the segment is cut back and the error rethrown (nothing half
   * written stays).
   */
  append(payload: Uint8Array, points: number): void {
    if (this.#lock === undefined) throw new Error(`The journal "${this.#dir}" is not open`);
    if (this.#closing) throw new Error(`The journal "${this.#dir}" is closed`);
    const size = HEADER + payload.length;
    if (size > this.#maxBytes / 2) {
      this.#drop(points, `a record of ${size} bytes is more than half the journal's size`);
      return;
    }
    let cur = this.#segments.at(-1);
    // After a restart the last segment is left as it is: new records go to a new one.
    if (
      cur === undefined || this.#tail === undefined ||
      (cur.size > SEG_HEADER && cur.size + size > this.#segmentBytes)
    ) {
      cur = this.#rotate();
    }
    while (this.journalBytes + size > this.#maxBytes && this.#segments.length > 1) this.#dropOldestSegment();
    const record = new Uint8Array(size);
    const view = new DataView(record.buffer);
    view.setUint32(0, payload.length, true);
    view.setUint32(4, points, true);
    view.setUint32(8, crc32(payload, crc32(record.subarray(0, 8))), true);
    record.set(payload, HEADER);
    const file = this.#tail!;
    const before = cur.size;
    try {
      let done = 0;
      while (done < size) done += file.writeSync(record.subarray(done));
      if (this.#fsync) {
        file.syncDataSync();
        this.#syncs++;
      }
    } catch (e) {
      try {
        file.truncateSync(before);
        file.seekSync(before, Deno.SeekMode.Start);
      } catch {
        // the error below says what failed first
      }
      throw e;
    }
    cur.size = before + size;
    const rec: Rec = { seg: cur.seq, end: cur.size, len: payload.length, payload: undefined, points };
    this.#hold(rec, payload);
    this.#queue.push(rec);
    this.#pendingPoints += points;
    this.#pendingBytes += payload.length;
    this.#wake?.();
  }

  /** Starts a new segment file and makes it the tail. */
  #rotate(): Segment {
    this.#tail?.close();
    const seq = (this.#segments.at(-1)?.seq ?? 0) + 1;
    const path = this.#segPath(seq);
    this.#tail = Deno.openSync(path, { write: true, create: true, truncate: true });
    const header = new Uint8Array(SEG_HEADER);
    header.set(MAGIC);
    new DataView(header.buffer).setUint32(4, FORMAT_VERSION, true);
    let done = 0;
    while (done < SEG_HEADER) done += this.#tail.writeSync(header.subarray(done));
    // The new file's directory entry: without it a power cut could lose the whole segment. (The header is
    // synced with the segment's first record.)
    this.#syncDir();
    const seg = { seq, size: SEG_HEADER };
    this.#segments.push(seg);
    return seg;
  }

  /** With `fsync: "batch"`, syncs the journal's directory (its entries: a new segment, a renamed `ack`). */
  #syncDir(): void {
    if (!this.#fsync) return;
    try {
      const d = Deno.openSync(this.#dir, { read: true });
      try {
        d.syncSync();
        this.#syncs++;
      } finally {
        d.close();
      }
    } catch {
      // Some file systems cannot sync a directory; the files themselves are still synced.
    }
  }

  /**
   * Records where the unsent records begin, atomically (write `ack.tmp`, rename it over `ack`); with
   * `fsync: "batch"` the file and then the directory are synced, so a power cut cannot bring back an older ack.
   */
  #writeAck(seg: number, end: number): void {
    const tmp = `${this.#dir}/ack.tmp`;
    const f = Deno.openSync(tmp, { write: true, create: true, truncate: true });
    try {
      const text = new TextEncoder().encode(`${seg} ${end}\n`);
      let done = 0;
      while (done < text.length) done += f.writeSync(text.subarray(done));
      if (this.#fsync) {
        f.syncDataSync();
        this.#syncs++;
      }
    } finally {
      f.close();
    }
    Deno.renameSync(tmp, `${this.#dir}/ack`);
    this.#syncDir();
  }

  /**
   * Deletes the oldest segment (not the tail), counting its unsent records as dropped. Records of it that the
   * pump is sending right now are not counted yet: they are delivered if that send succeeds, and dropped (and
   * counted) only if it fails — never both.
   */
  #dropOldestSegment(): void {
    const seg = this.#segments.shift()!;
    let i = this.#head;
    // The records in flight are the first ones of the queue.
    while (i < this.#queue.length && this.#queue[i]!.seg === seg.seq && this.#inflight.has(this.#queue[i]!)) {
      this.#doomed.add(this.#queue[i]!);
      i++;
    }
    let j = i;
    let points = 0;
    while (j < this.#queue.length && this.#queue[j]!.seg === seg.seq) {
      const r = this.#queue[j++]!;
      points += r.points;
      this.#pendingPoints -= r.points;
      this.#pendingBytes -= r.len;
      this.#release(r);
    }
    if (j > i) this.#queue.splice(i, j - i);
    try {
      Deno.removeSync(this.#segPath(seg.seq));
    } catch (e) {
      this.#log.warn(`Cannot delete the journal segment ${this.#segPath(seg.seq)}: ${messageOf(e)}`);
    }
    if (points > 0) this.#drop(points, this.#fullWhy(j - i));
  }

  #fullWhy(records: number): string {
    return `the journal ${this.#dir} is full (${this.#maxBytes} bytes) while ${this.#target} is unreachable: ` +
      `dropped its oldest ${records} batches`;
  }

  /** After a failed send: the records in flight whose segment was dropped meanwhile are dropped now. */
  #dropDoomed(): void {
    if (this.#doomed.size === 0) return;
    let points = 0;
    let records = 0;
    while (this.#head < this.#queue.length && this.#doomed.has(this.#queue[this.#head]!)) {
      const r = this.#queue[this.#head]!;
      this.#queue[this.#head++] = undefined as unknown as Rec;
      points += r.points;
      records++;
      this.#pendingPoints -= r.points;
      this.#pendingBytes -= r.len;
      this.#release(r);
    }
    this.#doomed.clear();
    this.#compact();
    if (points > 0) this.#drop(points, this.#fullWhy(records));
  }

  /**
   * Counts a loss. Warned at most once a minute (a backend that refuses every batch would otherwise print a
   * line per batch); the drops in between are logged at debug level and summed in the next warning.
   */
  #drop(points: number, why: string): void {
    this.droppedPoints += points;
    const now = performance.now();
    if (now - this.#lastDropWarn >= REPEAT_WARN_MS) {
      const since = this.#quietDrops > 0
        ? ` (${this.#quietDrops} drops since the last warning, logged at debug level)`
        : "";
      this.#lastDropWarn = now;
      this.#quietDrops = 0;
      this.#log.warn(`Dropped ${points} points: ${why}; ${this.droppedPoints} points lost so far${since}`);
    } else {
      this.#quietDrops++;
      this.#log.debug(`Dropped ${points} points: ${why}; ${this.droppedPoints} points lost so far`);
    }
    this.#onDrop?.(points, why);
  }

  #compact(): void {
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }

  /** Records from the head, up to `maxSendBytes` (at least one). */
  /**
   * The records of the next send, from the head, up to `maxSendBytes`, with their payloads in memory (read
   * from the segments when not held; kept until acknowledged). A record that cannot be read back is dropped and
   * counted (its segment was damaged or removed under the agent).
   */
  #take(): Rec[] {
    for (;;) {
      const out: Rec[] = [];
      let bytes = 0;
      for (let i = this.#head; i < this.#queue.length; i++) {
        const r = this.#queue[i]!;
        if (out.length > 0 && bytes + r.len > this.#maxSendBytes) break;
        out.push(r);
        bytes += r.len;
      }
      const missing = out.filter((r) => r.payload === undefined);
      if (missing.length === 0) return out;
      try {
        const payloads = this.#readPayloads(missing);
        missing.forEach((r, i) => {
          r.payload = payloads[i]!;
          this.#memBytes += r.len;
        });
        return out;
      } catch (e) {
        // Drop the first unreadable record and try again.
        const bad = missing[0]!;
        const at = this.#queue.indexOf(bad, this.#head);
        this.#queue.splice(at, 1);
        this.#pendingPoints -= bad.points;
        this.#pendingBytes -= bad.len;
        this.#drop(
          bad.points,
          `a journal record cannot be read back from ${this.#segPath(bad.seg)}: ${messageOf(e)}`,
        );
        if (this.#head >= this.#queue.length) return [];
      }
    }
  }

  /** Marks the first `n` records (those just taken) as done: delivered, or dropped when rejected. */
  #ack(taken: readonly Rec[]): void {
    // The records may have been dropped meanwhile (journal full): only those still at the head are acked.
    for (const r of taken) {
      if (this.#queue[this.#head] !== r) continue;
      this.#queue[this.#head++] = undefined as unknown as Rec;
      this.#pendingPoints -= r.points;
      this.#pendingBytes -= r.len;
      this.#release(r);
    }
    this.#compact();
    const last = taken.at(-1)!;
    try {
      this.#writeAck(last.seg, last.end);
    } catch (e) {
      this.#log.warn(
        `Cannot update ${this.#dir}/ack (a restart will send some points again): ${messageOf(e)}`,
      );
    }
    // Segments wholly acknowledged, except the tail, are deleted.
    const next = this.#queue[this.#head];
    while (this.#segments.length > 1 && this.#segments[0]!.seq < (next?.seg ?? this.#segments.at(-1)!.seq)) {
      const seg = this.#segments.shift()!;
      try {
        Deno.removeSync(this.#segPath(seg.seq));
      } catch (e) {
        this.#log.warn(`Cannot delete the journal segment ${this.#segPath(seg.seq)}: ${messageOf(e)}`);
      }
    }
  }

  async #run(): Promise<void> {
    let delay = this.#minBackoff;
    for (;;) {
      if (this.#head >= this.#queue.length) {
        if (this.#closing) return;
        await new Promise<void>((r) => (this.#wake = r));
        this.#wake = undefined;
        continue;
      }
      if (performance.now() >= this.#deadline) return;
      const taken = this.#take();
      if (taken.length === 0) continue;
      this.#inflight = new Set(taken);
      try {
        await this.#send(taken.map((r) => r.payload!), this.#abort.signal);
      } catch (e) {
        this.#inflight.clear();
        if (e instanceof RejectedError) {
          const points = taken.reduce((t, r) => t + r.points, 0);
          this.#doomed.clear();
          this.#ack(taken);
          this.#drop(points, `${this.#target} rejected them: ${messageOf(e)}`);
          continue;
        }
        this.#dropDoomed();
        this.#failures++;
        const now = performance.now();
        if (this.#failingSince === undefined) this.#failingSince = now;
        if (now - this.#lastWarn >= REPEAT_WARN_MS) {
          this.#lastWarn = now;
          this.#log.warn(
            `Cannot deliver to ${this.#target}: ${messageOf(e)}; ${this.#pendingPoints} points kept in the ` +
              `journal ${this.#dir}, retrying (back-off up to ${this.#maxBackoff / 1000} s)`,
          );
        } else this.#log.debug(`Delivery to ${this.#target} failed again: ${messageOf(e)}`);
        if (this.#closing && performance.now() >= this.#deadline) return;
        // Equal jitter: half the delay fixed, half random, so that agents that lost the same backend spread out.
        await this.#sleep(delay / 2 + Math.random() * delay / 2);
        delay = Math.min(delay * 2, this.#maxBackoff);
        continue;
      }
      this.#inflight.clear();
      // Records whose segment was dropped during the send were delivered all the same: not lost.
      this.#doomed.clear();
      delay = this.#minBackoff;
      this.deliveredPoints += taken.reduce((t, r) => t + r.points, 0);
      this.#ack(taken);
      if (this.#failingSince !== undefined) {
        const secs = ((performance.now() - this.#failingSince) / 1000).toFixed(1);
        this.#log.info(
          `Delivering to ${this.#target} again after ${secs} s and ${this.#failures} failed attempts; ` +
            `${this.#pendingPoints} points still to replay from the journal`,
        );
        this.#failingSince = undefined;
        this.#failures = 0;
        this.#lastWarn = -Infinity;
      }
    }
  }

  /** Waits `ms`, or until the close wakes it (then at most until the final deadline). */
  async #sleep(ms: number): Promise<void> {
    if (this.#closing) ms = Math.max(0, Math.min(ms, this.#deadline - performance.now()));
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      this.#wakeSleep = resolve;
      timer = setTimeout(resolve, ms);
    });
    clearTimeout(timer);
    this.#wakeSleep = undefined;
  }

  /**
   * Stops taking records, gives the pump one bounded final attempt (`finalAttemptMs`), then closes the
   * journal: what is still unsent stays there for the next start, and one line says how much. Idempotent.
   *
   * @returns the points left in the journal
   */
  async close(): Promise<number> {
    if (this.#lock === undefined) return this.#pendingPoints;
    if (!this.#closing) {
      this.#closing = true;
      this.#deadline = performance.now() + this.#finalMs;
      const timer = setTimeout(() => {
        this.#abort.abort(new AlumetError(`the final attempt's ${this.#finalMs} ms ran out`));
        this.#wake?.();
        this.#wakeSleep?.();
      }, this.#finalMs);
      this.#wake?.();
      this.#wakeSleep?.();
      try {
        await this.#pump;
      } finally {
        clearTimeout(timer);
      }
    }
    this.#tail?.close();
    this.#tail = undefined;
    this.#lock.close();
    this.#lock = undefined;
    if (this.#pendingPoints > 0) {
      this.#log.warn(
        `${this.#pendingPoints} points (${this.#pendingBytes} bytes) not delivered to ${this.#target} wait in ` +
          `the journal ${this.#dir}: they are sent when the agent starts again with this journal`,
      );
    }
    return this.#pendingPoints;
  }
}

/**
 * How long `open` keeps trying a lock that another holder has, ms. A journal this process has just closed can
 * stay locked for a moment when a child process was being forked at that instant (the child holds a copy of the
 * descriptor until its exec closes it), which a busy machine makes longer; another agent holds it for good.
 */
const LOCK_WAIT_MS = 1000;

const NAP = new Int32Array(new SharedArrayBuffer(4));

/** `tryLockSync(true)`, again every 10 ms for up to `ms`. */
function tryLockFor(file: Deno.FsFile, ms: number): boolean {
  const deadline = performance.now() + ms;
  for (;;) {
    if (file.tryLockSync(true)) return true;
    if (performance.now() >= deadline) return false;
    Atomics.wait(NAP, 0, 0, 10);
  }
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/**
 * CRC-32 as zlib computes it (`crc32(data, value)` continues from an earlier result). A table-driven loop, so
 * that the journal does not load `node:zlib` (about 30 ms of start-up here).
 *
 * @example
 * ```ts
 * import { crc32 } from "./delivery.ts";
 * import assert from "node:assert/strict";
 * assert.equal(crc32(new TextEncoder().encode("hello")), 0x3610a686);
 * ```
 */
export function crc32(data: Uint8Array, value = 0): number {
  let c = ~value >>> 0;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** What {@linkcode scanSegment} found in a segment file. */
interface SegmentScan {
  readonly version: number;
  readonly records: { readonly end: number; readonly payload: Uint8Array; readonly points: number }[];
  /** Records skipped for a bad checksum or length (then the bytes up to the next good record). */
  readonly damaged: number;
  readonly damagedBytes: number;
  /** Bytes of a record cut short at the end (a crash during its write). */
  readonly tornBytes: number;
  /** Points of the damaged and torn records, as far as their headers can be read. */
  readonly lostPoints: number;
  /** Some damaged bytes had no readable point count. */
  readonly unknown: boolean;
}

/**
 * Reads a segment's records. Version 2: each record's CRC32 (over its length, points and payload) is checked;
 * a damaged one is skipped and the scan goes on at the next good record (found by its checksum when the length
 * itself is damaged); a record cut short at the end is reported as torn. Version 1 (no header): records are
 * read as they are. Throws when the segment says it has a newer format.
 */
function scanSegment(bytes: Uint8Array, path: string): SegmentScan {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.length;
  const records: { end: number; payload: Uint8Array; points: number }[] = [];
  const hasMagic = MAGIC.every((b, i) => i >= n || bytes[i] === b);
  if (!hasMagic) {
    // Version 1: no header, no checksum.
    let off = 0;
    while (off + HEADER_V1 <= n) {
      const len = view.getUint32(off, true);
      const end = off + HEADER_V1 + len;
      if (end > n) break;
      records.push({
        end,
        payload: bytes.slice(off + HEADER_V1, end),
        points: view.getUint32(off + 4, true),
      });
      off = end;
    }
    const torn = n - off;
    const points = torn >= HEADER_V1 ? view.getUint32(off + 4, true) : 0;
    return {
      version: 1,
      records,
      damaged: 0,
      damagedBytes: 0,
      tornBytes: torn,
      lostPoints: points,
      unknown: torn > 0 && torn < HEADER_V1,
    };
  }
  if (n < SEG_HEADER) {
    // Created, and cut short by a crash before its header was complete: empty.
    return {
      version: FORMAT_VERSION,
      records,
      damaged: 0,
      damagedBytes: 0,
      tornBytes: n,
      lostPoints: 0,
      unknown: false,
    };
  }
  const version = view.getUint32(4, true);
  if (version !== FORMAT_VERSION) {
    throw new AlumetError(
      `the segment ${path} has journal format ${version}, which this version of the agent cannot read ` +
        `(it reads formats 1 and ${FORMAT_VERSION}); use the agent that wrote it, or move the journal away`,
    );
  }
  /** The record at `off` if it is whole and its checksum matches. */
  const good = (off: number): number | undefined => {
    if (off + HEADER > n) return undefined;
    const len = view.getUint32(off, true);
    const end = off + HEADER + len;
    if (end > n) return undefined;
    const crc = crc32(bytes.subarray(off + HEADER, end), crc32(bytes.subarray(off, off + 8)));
    return crc === view.getUint32(off + 8, true) ? end : undefined;
  };
  let off = SEG_HEADER;
  let damaged = 0;
  let damagedBytes = 0;
  let lostPoints = 0;
  let unknown = false;
  let tornBytes = 0;
  while (off < n) {
    const end = good(off);
    if (end !== undefined) {
      records.push({ end, payload: bytes.slice(off + HEADER, end), points: view.getUint32(off + 4, true) });
      off = end;
      continue;
    }
    // A damaged record: where does the next good one begin? Right after it when only its payload or points
    // are damaged (its length is right); else the first offset where a whole record checks out.
    const len = off + HEADER <= n ? view.getUint32(off, true) : Infinity;
    const claimedEnd = off + HEADER + len;
    let next: number | undefined;
    if (claimedEnd === n || (claimedEnd < n && good(claimedEnd) !== undefined)) next = claimedEnd;
    else {
      for (let p = off + 1; p + HEADER <= n; p++) {
        if (good(p) !== undefined) {
          next = p;
          break;
        }
      }
    }
    if (next === undefined) {
      // Nothing good after it: a record cut short at the end.
      tornBytes = n - off;
      if (off + HEADER <= n) lostPoints += view.getUint32(off + 4, true);
      else unknown = true;
      break;
    }
    damaged++;
    damagedBytes += next - off;
    if (next === claimedEnd) lostPoints += view.getUint32(off + 4, true);
    else unknown = true;
    off = next;
  }
  return { version, records, damaged, damagedBytes, tornBytes, lostPoints, unknown };
}

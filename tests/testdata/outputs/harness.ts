/**
 * Shared by tests/outputs_restart_test.ts and tests/outputs_bad_endpoints_test.ts: the agent run through the
 * CLI (the `alumet` task's `deno run` line, `--config <toml> run`) in a process group of its own, and a
 * reader of an output's journal directory (the format documented in src/pipeline/delivery.ts).
 *
 * @module
 */

import assert from "node:assert/strict";
import { crc32 } from "../../../src/pipeline/delivery.ts";
import { alumetRunLine } from "../exec/cli.ts";

export const ROOT: string = new URL("../../..", import.meta.url).pathname.replace(/\/$/, "");

/** Waits until `ready()` is true, polling every 50 ms, up to `ms` (60 s: the machine may be loaded). */
export async function until(
  ready: () => boolean | Promise<boolean>,
  what: () => string,
  ms = 60_000,
): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await ready())) {
    if (performance.now() > deadline) throw new Error(`after ${ms / 1000} s: ${what()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The procfs `kernel` source alone, every 100 ms: a fast, real source (about 13 points per poll here). */
export const FAST_SOURCE = `[plugins.procfs.kernel]
poll_interval = "100ms"
[plugins.procfs.memory]
enabled = false
[plugins.procfs.network]
enabled = false
[plugins.procfs.processes]
enabled = false
`;

/**
 * The agent as the `alumet` task runs it (`alumetRunLine`, without `deno task` in between: the exit code is
 * the agent's own) with `--config <config> run`, started with `setsid` (its pid is its process group's id).
 */
export class AgentProcess {
  readonly child: Deno.ChildProcess;
  #stderr = "";
  readonly #done: Promise<void>;

  constructor(config: string, options: { cwd: string; env?: Record<string, string> }) {
    const child = new Deno.Command("setsid", {
      args: [...alumetRunLine(), "--config", config, "run"],
      cwd: ROOT,
      // Paths in the config resolve from INIT_CWD (not from an outer `deno task test`'s).
      env: { ALUMET_LOG: "info", NO_COLOR: "1", INIT_CWD: options.cwd, ...options.env },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    this.child = child;
    this.#done = (async () => {
      for await (const text of child.stderr.pipeThrough(new TextDecoderStream())) this.#stderr += text;
    })();
  }

  /** What the agent printed on stderr so far. */
  get stderr(): string {
    return this.#stderr;
  }

  /** The stderr lines matching `re`. */
  lines(re: RegExp): string[] {
    return this.#stderr.split("\n").filter((l) => re.test(l));
  }

  /** Waits until stderr matches `re` (or the agent exits first: then fails with its stderr). */
  async waitFor(re: RegExp, ms = 60_000): Promise<void> {
    let exited = false;
    void this.child.status.then(() => (exited = true));
    await until(() => re.test(this.#stderr) || exited, () => `${re} not on stderr:\n${this.#stderr}`, ms);
    if (!re.test(this.#stderr)) {
      throw new Error(`the agent exited before ${re} was on stderr:\n${this.#stderr}`);
    }
  }

  /** Sends `sig` to the whole process group (the agent and what it started), as a service manager does. */
  signal(sig: Deno.Signal): void {
    Deno.kill(-this.child.pid, sig);
  }

  /** Waits for the agent to exit by itself; its exit code (stderr read to the end). */
  async exited(): Promise<number> {
    const { code } = await this.child.status;
    await this.#done;
    return code;
  }

  /** SIGKILLs the whole group and waits for it. */
  async kill(): Promise<void> {
    this.signal("SIGKILL");
    await this.child.status;
    await this.#done;
  }

  /** SIGTERM to the group, then the exit code (the group is SIGKILLed after 60 s and the wait fails). */
  async stop(): Promise<number> {
    this.signal("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        try {
          this.signal("SIGKILL");
        } catch {
          // gone
        }
        reject(new Error(`the agent did not exit within 60 s of SIGTERM:\n${this.#stderr}`));
      }, 60_000);
    });
    try {
      const { code } = await Promise.race([this.child.status, timeout]);
      await this.#done;
      return code;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** One record of a journal: its payload and the points it holds. */
export interface JournalRecord {
  readonly payload: Uint8Array;
  readonly points: number;
}

/**
 * The records not yet delivered in a journal directory, read as src/pipeline/delivery.ts documents the format:
 * segments `<seq>.seg` (12 digits) past the `ack` file's `<seq> <offset>`. Format 2: `AJNL`, `u32` version 2,
 * then records of `u32` payload bytes, `u32` points, `u32` CRC32 (over the length, points and payload), all
 * little-endian, then the payload; format 1 (no header): records of `u32` bytes, `u32` points, payload.
 * A torn last record is ignored (the journal cuts it off when opened); a bad CRC fails the read.
 */
export function readJournal(dir: string): JournalRecord[] {
  let ackSeq = 0;
  let ackOff = 0;
  try {
    const [a, b] = Deno.readTextFileSync(`${dir}/ack`).trim().split(/\s+/);
    ackSeq = Number(a);
    ackOff = Number(b);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const seqs: number[] = [];
  try {
    for (const entry of Deno.readDirSync(dir)) {
      const m = /^(\d{12})\.seg$/.exec(entry.name);
      if (m) seqs.push(Number(m[1]));
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  seqs.sort((x, y) => x - y);
  const out: JournalRecord[] = [];
  for (const seq of seqs) {
    if (seq < ackSeq) continue;
    const path = `${dir}/${String(seq).padStart(12, "0")}.seg`;
    const bytes = Deno.readFileSync(path);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const v2 = bytes.length >= 4 && new TextDecoder().decode(bytes.subarray(0, 4)) === "AJNL";
    if (v2 && bytes.length >= 8) assert.equal(view.getUint32(4, true), 2, `${path}: format version`);
    const header = v2 ? 12 : 8;
    let off = v2 ? 8 : 0;
    while (off + header <= bytes.length) {
      const len = view.getUint32(off, true);
      const points = view.getUint32(off + 4, true);
      const end = off + header + len;
      if (end > bytes.length) break;
      const payload = bytes.slice(off + header, end);
      if (v2) {
        const crc = crc32(payload, crc32(bytes.subarray(off, off + 8)));
        assert.equal(view.getUint32(off + 8, true), crc, `${path}: CRC of the record at ${off}`);
      }
      if (seq > ackSeq || end > ackOff) out.push({ payload, points });
      off = end;
    }
  }
  return out;
}

/** The points in `records`. */
export function pointsOf(records: readonly JournalRecord[]): number {
  return records.reduce((t, r) => t + r.points, 0);
}

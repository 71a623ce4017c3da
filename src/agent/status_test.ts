import assert from "node:assert/strict";
import { Agent } from "./agent.ts";
import { formatStatus, StatusLine } from "./status.ts";

Deno.test("formatStatus shows elapsed time, points, losses and late ticks", () => {
  assert.equal(
    formatStatus(65_432, { measured: 12345, written: 12340, lost: 0, late: 2, missed: 1 }),
    "alumet 00:01:05 · measured 12,345 · written 12,340 · lost 0 · late ticks 3",
  );
});

Deno.test("StatusLine writes nothing when stderr is not a terminal", () => {
  const written: Uint8Array[] = [];
  const out = { writeSync: (b: Uint8Array) => (written.push(b), b.length), isTerminal: () => false };
  using s = new StatusLine(new Agent({ plugins: [] }), out);
  s.stop();
  assert.equal(written.length, 0);
});

Deno.test("StatusLine draws on a terminal and clears itself when stopped", async () => {
  let text = "";
  const out = {
    writeSync: (b: Uint8Array) => (text += new TextDecoder().decode(b), b.length),
    isTerminal: () => true,
  };
  const s = new StatusLine(new Agent({ plugins: [] }), out);
  await new Promise((r) => setTimeout(r, 600));
  s.stop();
  // deno-lint-ignore no-control-regex
  assert.match(text, /\r\x1b\[2Kalumet 00:00:00 · measured 0/);
  assert.ok(text.endsWith("\r\x1b[2K"), "the line was not cleared");
});

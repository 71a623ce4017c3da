import assert from "node:assert/strict";
import { Agent } from "./agent.ts";
import { formatCount } from "./format.ts";
import { formatStatus, StatusLine } from "./status.ts";

Deno.test("formatStatus shows elapsed time, losses first, points and late ticks", () => {
  assert.equal(
    formatStatus(65_432, { measured: 12345, written: 12340, lost: 0, late: 2, missed: 1 }),
    "alumet 00:01:05 · lost 0 · measured 12,345 · written 12,340 · late ticks 3",
  );
});

Deno.test("formatStatus keeps the losses on a 40-column terminal", async (t) => {
  const cases = [
    { measured: 12, written: 12, lost: 0, late: 0, missed: 0 },
    { measured: 123_456_789, written: 123_000_000, lost: 0, late: 12, missed: 3 },
    { measured: 123_456_789, written: 100_000_000, lost: 23_456_789, late: 0, missed: 0 },
  ];
  for (const totals of cases) {
    await t.step(`lost ${totals.lost}, measured ${totals.measured}`, () => {
      const line = formatStatus(3_723_000, totals, 40);
      assert.ok([...line].length <= 39, `${line}: ${[...line].length} characters`);
      assert.ok(line.includes(`lost ${formatCount(totals.lost)}`), line);
      assert.ok(line.startsWith("01:02:03"), line);
    });
  }
  await t.step("a short line in a narrow terminal is the full one", () => {
    const zero = { measured: 0, written: 0, lost: 0, late: 0, missed: 0 };
    assert.equal(formatStatus(0, zero, 100), formatStatus(0, zero));
  });
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
  assert.match(text, /\r\x1b\[2Kalumet 00:00:00 · lost 0 · measured 0/);
  assert.ok(text.endsWith("\r\x1b[2K"), "the line was not cleared");
});

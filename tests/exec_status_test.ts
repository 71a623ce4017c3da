/**
 * The live status line: `exec` draws none (the program writes to the same terminal, and a line redrawn over
 * it would overwrite its output; the summary comes at the end), `run` keeps it. Run in a pseudo-terminal
 * made by `script`.
 */
import assert from "node:assert/strict";
import { needs, testWith } from "../src/testing/needs.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** Runs `alumet ARGS` in a terminal (`script`), for about `seconds` at most; returns what the terminal got. */
async function inTerminal(args: string, seconds?: number, columns?: number): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "alumet-exec-status-" });
  try {
    const alumet = `'${Deno.execPath()}' run --quiet -A '${ROOT}/src/agent/main.ts' ${args}`;
    const timed = seconds === undefined ? alumet : `timeout -s INT ${seconds} ${alumet}`;
    const line = columns === undefined ? timed : `stty cols ${columns}; ${timed}`;
    const out = await new Deno.Command("script", {
      args: ["-qec", line, "/dev/null"],
      cwd: dir,
      env: { ALUMET_LOG: "info", COLUMNS: "200" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    return new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

testWith([needs.command("script")], "exec draws no status line over the program's output", async () => {
  const text = await inTerminal(
    `--plugins procfs,csv exec -- sh -c 'echo first; sleep 1.3; echo second'`,
  );
  assert.match(text, /first\r?\n/);
  assert.match(text, /second\r?\n/);
  assert.match(text, /Measured for/);
  assert.doesNotMatch(text, /alumet \d\d:\d\d:\d\d ·/, JSON.stringify(text));
});

testWith(
  [needs.command("script"), needs.command("timeout")],
  "run keeps its status line on a terminal",
  async () => {
    const text = await inTerminal(`--plugins procfs,csv run`, 2.5);
    assert.match(text, /alumet 00:00:0\d · lost 0 · measured/, JSON.stringify(text));
  },
);

testWith(
  [needs.command("script"), needs.command("timeout"), needs.command("stty")],
  "run's status line on a 40-column terminal fits and shows the points lost",
  async () => {
    const text = await inTerminal(`--plugins procfs,csv run`, 2.5, 40);
    // Each redraw: "\r\x1b[2K" then the line.
    const draws = text.split("\r\x1b[2K").map((d) => d.split(/\r?\n/)[0]!).filter((d) =>
      /^\d\d:\d\d:\d\d /.test(d)
    );
    assert.ok(draws.length > 0, JSON.stringify(text));
    for (const d of draws) {
      assert.ok([...d].length <= 39, `${JSON.stringify(d)}: ${[...d].length} characters`);
      assert.match(d, /^00:00:0\d · lost 0 · measured/);
    }
  },
);

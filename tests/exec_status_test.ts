/**
 * The live status line: `exec` draws none (the program writes to the same terminal, and a line redrawn over
 * it would overwrite its output; the summary comes at the end), `run` keeps it. Run in a pseudo-terminal
 * made by `script`.
 */
import assert from "node:assert/strict";
import { needs, testWith } from "../src/testing/needs.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** Runs `alumet ARGS` in a terminal (`script`), for about `seconds` at most; returns what the terminal got. */
async function inTerminal(args: string, seconds?: number): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "alumet-exec-status-" });
  try {
    const alumet = `'${Deno.execPath()}' run --quiet -A '${ROOT}/src/agent/main.ts' ${args}`;
    const line = seconds === undefined ? alumet : `timeout -s INT ${seconds} ${alumet}`;
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
    assert.match(text, /alumet 00:00:0\d · measured/, JSON.stringify(text));
  },
);

/**
 * Every script in examples/ runs, from the working tree and imported by URL from a local HTTP server.
 */
import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const examples = [...Deno.readDirSync(`${ROOT}/examples`)].filter((e) => e.name.endsWith(".ts")).map((e) =>
  e.name
);

async function run(args: string[]): Promise<{ code: number; out: string }> {
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...args],
    cwd: await Deno.makeTempDir(),
    env: { ALUMET_LOG: "warn", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: o.code, out: dec.decode(o.stdout) + dec.decode(o.stderr) };
}

for (const name of examples) {
  Deno.test(`example ${name} runs from the working tree`, async () => {
    const r = await run(["--allow-all", `${ROOT}/examples/${name}`]);
    assert.equal(r.code, 0, r.out);
  });
}

Deno.test("examples run when the module is imported by URL (no deno.json, full npm: specifiers)", async () => {
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen() {} },
    async (req) => {
      const path = decodeURIComponent(new URL(req.url).pathname);
      if (path.includes("..")) return new Response("bad path", { status: 400 });
      try {
        const body = await Deno.readFile(`${ROOT}${path}`);
        return new Response(body, { headers: { "content-type": "application/typescript" } });
      } catch {
        return new Response("not found", { status: 404 });
      }
    },
  );
  try {
    const base = `http://127.0.0.1:${server.addr.port}`;
    for (const name of examples) {
      const r = await run([
        "--allow-read",
        "--allow-write",
        "--allow-env",
        "--allow-ffi",
        "--allow-import=127.0.0.1",
        "--no-lock",
        // Remote modules are cached by URL: a port used by an earlier run would serve its stale copy.
        `--reload=${base}`,
        `${base}/examples/${name}`,
      ]);
      assert.equal(r.code, 0, `${name} by URL:\n${r.out}`);
    }
  } finally {
    ac.abort();
    await server.finished;
  }
});

/**
 * End-to-end: the network outputs (`influxdb`, `prometheus-remote-write`, `opentelemetry`) facing a bad
 * endpoint, through the CLI (the `alumet` task's `deno run` line with `--config <toml> run`, procfs `kernel`
 * every 100 ms). One agent runs the three outputs at once, each against its own endpoint of the same kind:
 *
 * - refused: a free loopback port with nothing listening;
 * - 400 and 500: a server that answers every request so;
 * - timeout: a server that accepts connections and never answers (the outputs' `timeout` is set to 1 s);
 * - TLS error: `https://` to a server that speaks plain HTTP.
 *
 * For each output: the agent keeps running while the endpoint fails again and again (counted: requests or
 * connections at the server, or the delivery's debug lines), logs one clear warning naming the endpoint and
 * the cause — one, not one per retry — prints no stack trace, and on SIGTERM exits as documented: 0 when the
 * points wait in the journal (one line says how many), 3 when they were lost (a 400 refuses them for good; one
 * error line per output says how many).
 *
 * Also the `prometheus-exporter` on a port already taken: the agent stops with one clear message.
 */
import assert from "node:assert/strict";
import { freeLoopbackPort } from "../src/testing/servers.ts";
import { AgentProcess, FAST_SOURCE, pointsOf, readJournal, until } from "./testdata/outputs/harness.ts";

/** An endpoint that fails in one way, counting the attempts that reached it (when something listens). */
interface BadEndpoint {
  /** `http://127.0.0.1:<port>` or `https://…`. */
  readonly base: string;
  /** Requests or connections it received (undefined: nothing listens, attempts are not seen). */
  attempts(): number | undefined;
  close(): Promise<void>;
}

/** A free port that nothing listens on. */
function refusing(): BadEndpoint {
  return { base: `http://127.0.0.1:${freeLoopbackPort()}`, attempts: () => undefined, close: async () => {} };
}

/** A server answering `status` with a short text body to every request. */
function answering(status: number, body: string): BadEndpoint {
  let n = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    n++;
    await req.body?.cancel();
    return new Response(body, { status, headers: { "content-type": "text/plain" } });
  });
  return {
    base: `http://127.0.0.1:${server.addr.port}`,
    attempts: () => n,
    close: () => server.shutdown(),
  };
}

/**
 * A TCP server that accepts connections and then does something raw with each: `"hang"` reads and never
 * answers; `"plain-http"` answers what it read with a plain HTTP 400, as a web server does to a TLS ClientHello.
 */
function raw(mode: "hang" | "plain-http", scheme: "http" | "https"): BadEndpoint {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  let n = 0;
  const handle = async (conn: Deno.Conn) => {
    const buf = new Uint8Array(65536);
    try {
      if (mode === "plain-http") {
        await conn.read(buf);
        await conn.write(
          new TextEncoder().encode(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 11\r\nconnection: close\r\n\r\n" +
              "bad request",
          ),
        );
        conn.close();
        conns.delete(conn);
      } else {
        while ((await conn.read(buf)) !== null) {
          // swallow the request, answer nothing
        }
      }
    } catch {
      // closed by the client or by close()
    }
  };
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        n++;
        conns.add(conn);
        void handle(conn);
      }
    } catch {
      // listener closed
    }
  })();
  return {
    base: `${scheme}://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    attempts: () => n,
    close: async () => {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // already closed
        }
      }
      await accepting;
    },
  };
}

/** The three outputs, how each builds its URL from an endpoint's base, and its TOML section. */
const OUTPUTS = {
  influxdb: {
    target: (base: string) => `${base}/write`,
    section: (base: string, journal: string) =>
      `[plugins.influxdb]
host = "${base}"
api_version = "v1"
database = "alumet"
timeout = "1s"
journal_path = "${journal}"
max_backoff = "300ms"
final_attempt = "2s"
`,
  },
  "prometheus-remote-write": {
    target: (base: string) => `${base}/api/v1/write`,
    section: (base: string, journal: string) =>
      `[plugins.prometheus-remote-write]
endpoint = "${base}/api/v1/write"
timeout = "1s"
journal_path = "${journal}"
max_backoff = "300ms"
final_attempt = "2s"
`,
  },
  opentelemetry: {
    target: (base: string) => `${base}/v1/metrics`,
    section: (base: string, journal: string) =>
      `[plugins.opentelemetry]
collector_host = "${base}"
timeout = "1s"
journal_path = "${journal}"
max_backoff = "300ms"
final_attempt = "2s"
`,
  },
} as const;
type OutputName = keyof typeof OUTPUTS;
const NAMES = Object.keys(OUTPUTS) as OutputName[];

/** A regular expression matching `s` literally. */
const literal = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

interface BadCase {
  /** Makes one endpoint (a new one per output). */
  endpoint: () => BadEndpoint;
  /** What the warning must say of the cause. */
  cause: RegExp;
  /** The points are refused for good (a 400): lost, exit code 3; else they wait in the journal, exit code 0. */
  lost?: boolean;
}

/**
 * Runs one agent with the three outputs, each against its own endpoint from `c`, until each failed at least 4
 * times, then stops it with SIGTERM and checks the log lines and the exit code.
 */
async function badEndpoint(t: Deno.TestContext, c: BadCase): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "alumet-bad-endpoint-" });
  const endpoints = Object.fromEntries(NAMES.map((n) => [n, c.endpoint()])) as Record<
    OutputName,
    BadEndpoint
  >;
  try {
    const config = `${dir}/alumet-config.toml`;
    await Deno.writeTextFile(
      config,
      FAST_SOURCE + NAMES.map((n) => OUTPUTS[n].section(endpoints[n].base, `${dir}/journal-${n}`)).join(""),
    );
    // Debug lines show each retry ("failed again"), which counts the attempts at a port nothing listens on.
    const agent = new AgentProcess(config, { cwd: dir, env: { ALUMET_LOG: "debug" } });
    const attempts = (n: OutputName) => {
      const seen = endpoints[n].attempts();
      if (seen !== undefined) return seen;
      const target = literal(OUTPUTS[n].target(endpoints[n].base));
      return agent.lines(new RegExp(`(Cannot deliver to|Delivery to) ${target}`)).length;
    };
    let code: number;
    try {
      await agent.waitFor(/press Ctrl-C to stop/);
      await until(
        () => NAMES.every((n) => attempts(n) >= 4),
        () => `attempts ${NAMES.map((n) => `${n}: ${attempts(n)}`).join(", ")}; stderr:\n${agent.stderr}`,
      );
    } finally {
      code = await agent.stop();
    }
    const stderr = agent.stderr;
    const context = `\n--- stderr:\n${stderr}`;

    await t.step(`the agent ran on, printed no stack trace, and exited ${c.lost ? 3 : 0}`, () => {
      assert.doesNotMatch(stderr, /^\s+at /m, `no stack trace${context}`);
      assert.equal(agent.lines(/uncaught|unhandled|panic/i).length, 0, `no crash${context}`);
      assert.equal(code, c.lost ? 3 : 0, `exit code${context}`);
    });
    for (const n of NAMES) {
      const target = OUTPUTS[n].target(endpoints[n].base);
      const problems = agent.lines(new RegExp(`(WARN|ERROR) +${n}: .*${literal(target)}`))
        .filter((l) => !/ wait in the journal /.test(l));
      await t.step(`${n}: a warning names the endpoint and says the cause`, () => {
        assert.ok(problems.length >= 1, `${n}: a warning naming ${target}${context}`);
        assert.match(problems[0]!, c.cause, `${n}: the warning says the cause${context}`);
      });
      await t.step(`${n}: one warning for all the failed attempts`, () => {
        assert.ok(attempts(n) >= 4, `${n}: ${attempts(n)} attempts`);
        assert.equal(
          problems.length,
          1,
          `${n}: one warning for ${attempts(n)} failed attempts, not one per attempt or batch:\n${
            problems.join("\n")
          }${context}`,
        );
      });
      await t.step(`${n}: ${c.lost ? "the loss is counted" : "the points wait in the journal"}`, () => {
        const waiting = agent.lines(new RegExp(`WARN +${n}: \\d+ points .* wait in the journal`));
        const left = pointsOf(readJournal(`${dir}/journal-${n}`));
        if (c.lost) {
          assert.equal(
            agent.lines(new RegExp(`ERROR .*${n}/.* lost \\d+ points?`)).length,
            1,
            `${n}${context}`,
          );
          assert.equal(left, 0, `${n}: nothing refused is kept`);
        } else {
          assert.equal(waiting.length, 1, `${n}: one line says what waits in the journal${context}`);
          assert.match(waiting[0]!, new RegExp(`: ${left} points`), `${n}: the journal holds them${context}`);
          assert.ok(left > 0, `${n}: points are journaled`);
          assert.equal(agent.lines(/ lost /).length, 0, `nothing reported lost${context}`);
        }
      });
    }
  } finally {
    await Promise.all(NAMES.map((n) => endpoints[n].close()));
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("network outputs, connection refused: one warning each, points kept in the journal, exit 0", async (t) => {
  await badEndpoint(t, {
    endpoint: refusing,
    cause: /[Cc]onnection refused/,
  });
});

Deno.test("network outputs, a server answering 500: one warning each, points kept in the journal, exit 0", async (t) => {
  await badEndpoint(t, {
    endpoint: () => answering(500, "internal trouble"),
    cause: /500.*internal trouble/,
  });
});

Deno.test("network outputs, a server that never answers: a timeout, one warning each, exit 0", async (t) => {
  await badEndpoint(t, { endpoint: () => raw("hang", "http"), cause: /timeout|timed out/i });
});

Deno.test("network outputs, https to a plain HTTP server: a TLS error, one warning each, exit 0", async (t) => {
  await badEndpoint(t, {
    endpoint: () => raw("plain-http", "https"),
    cause: /TLS|tls|InvalidContentType|corrupt message/,
  });
});

Deno.test("network outputs, a server answering 400: the points are refused, counted as lost, exit 3", async (t) => {
  await badEndpoint(t, {
    endpoint: () => answering(400, "malformed input"),
    cause: /400.*malformed input/,
    lost: true,
  });
});

Deno.test("prometheus-exporter on a port already taken: one clear message, no stack trace", async () => {
  const dir = await Deno.makeTempDir({ prefix: "alumet-bad-endpoint-" });
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  try {
    const config = `${dir}/alumet-config.toml`;
    await Deno.writeTextFile(
      config,
      FAST_SOURCE + `[plugins.prometheus-exporter]\nhost = "127.0.0.1"\nport = ${port}\n`,
    );
    const agent = new AgentProcess(config, { cwd: dir });
    const code = await agent.exited();
    const stderr = agent.stderr;
    assert.notEqual(code, 0, stderr);
    assert.doesNotMatch(stderr, /^\s+at /m, `no stack trace:\n${stderr}`);
    const errors = stderr.split("\n").filter((l) => l.trim() !== "");
    assert.equal(errors.length, 1, `one message:\n${stderr}`);
    assert.match(errors[0]!, new RegExp(`127\\.0\\.0\\.1:${port}`), stderr);
    assert.match(errors[0]!, /in use|taken/i, stderr);
  } finally {
    taken.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * URL helpers shared by the network outputs (`influxdb`, `prometheus-remote-write`, `opentelemetry`): the
 * check of a configured base URL, for their config schemas, and the redaction of a URL before it is logged or
 * put in an error.
 *
 * @module
 */

/**
 * A URL as it may be shown: the user and password (`user:password@`) become `***@` and each query value
 * becomes `***`; the rest is kept as written. Works on text that is not a valid URL too.
 *
 * @param text a URL, or what a user wrote as one
 * @returns the text without credentials nor query values
 *
 * @example
 * ```ts
 * import { redactUrl } from "./url.ts";
 * import assert from "node:assert/strict";
 * assert.equal(redactUrl("http://user:hunter2@db:8086/x?token=abc&b=1#f"), "http://***@db:8086/x?token=***&b=***#f");
 * assert.equal(redactUrl("user:pw@db:8086"), "***@db:8086");
 * assert.equal(redactUrl("http://db:8086"), "http://db:8086");
 * ```
 */
export function redactUrl(text: string): string {
  return text
    .replace(/^(\s*(?:[A-Za-z][A-Za-z0-9+.-]*:)?\/\/)?[^/?#\s]*@/, "$1***@")
    .replace(/([?&][^=&#\s]*=)[^&#\s]*/g, "$1***");
}

/** How {@linkcode baseUrlProblem} checks and words. */
export interface BaseUrlOptions {
  /** Whose URL it is, put before `URL` in the message: `InfluxDB's`. */
  readonly whose: string;
  /** Whether a query (`?…`) is allowed. Default false. */
  readonly query?: boolean;
  /** What to use instead of credentials in the URL, for the message (`use token, or username and password`). */
  readonly credentials: string;
  /** An example of a good value, for the message. */
  readonly example: string;
}

/**
 * Why `text` is not an acceptable http(s) base URL, as the `expected …` part of a config error (with the value
 * redacted); `undefined` when it is acceptable. Credentials in the URL are refused: `fetch` cannot send them,
 * and they would end up in log lines.
 *
 * @example
 * ```ts
 * import { baseUrlProblem } from "./url.ts";
 * import assert from "node:assert/strict";
 * const o = { whose: "InfluxDB's", credentials: "use token", example: "http://localhost:8086" };
 * assert.equal(baseUrlProblem("http://db:8086", o), undefined);
 * assert.equal(
 *   baseUrlProblem("db:8086", o),
 *   `InfluxDB's http:// or https:// URL, such as "http://localhost:8086", not "db:8086"`,
 * );
 * assert.equal(
 *   baseUrlProblem("http://u:secret@db:8086", o),
 *   `InfluxDB's URL without credentials (use token), not "http://***@db:8086"`,
 * );
 * ```
 */
export function baseUrlProblem(text: string, options: BaseUrlOptions): string | undefined {
  const shown = JSON.stringify(redactUrl(text));
  const whose = options.whose;
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    // below
  }
  if (url === undefined || (url.protocol !== "http:" && url.protocol !== "https:") || url.hostname === "") {
    return `${whose} http:// or https:// URL, such as "${options.example}", not ${shown}`;
  }
  if (url.username !== "" || url.password !== "") {
    return `${whose} URL without credentials (${options.credentials}), not ${shown}`;
  }
  if (!options.query && url.search !== "") return `${whose} base URL, without a query (?…), not ${shown}`;
  if (url.hash !== "") return `${whose} URL without a fragment (#…), not ${shown}`;
  return undefined;
}

/**
 * HTTP header names (RFC 9110 tokens); used by the schemas of the outputs' `headers` tables.
 *
 * @example
 * ```ts
 * import { HEADER_NAME } from "./url.ts";
 * import assert from "node:assert/strict";
 * assert.ok(HEADER_NAME.test("X-Scope-OrgID"));
 * assert.ok(!HEADER_NAME.test("bad header"));
 * ```
 */
export const HEADER_NAME: RegExp = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Header values: no line break nor NUL (`fetch` refuses them). */
export const HEADER_VALUE: RegExp = /^[^\r\n\0]*$/;

/**
 * The few POSIX path helpers the config needs, so that the agent does not load `node:path` (and Node's
 * compatibility layer) at start-up. Paths are `/`-separated; there is no Windows form.
 *
 * @module
 */

/**
 * Whether `path` is absolute (starts with `/`).
 *
 * @param path a path
 * @returns whether it is absolute
 *
 * @example
 * ```ts
 * import { isAbsolute } from "./paths.ts";
 * import assert from "node:assert/strict";
 * assert.equal(isAbsolute("/opt/p.ts"), true);
 * assert.equal(isAbsolute("./p.ts"), false);
 * ```
 */
export function isAbsolute(path: string): boolean {
  return path.startsWith("/");
}

/**
 * The absolute, normalized path of `paths` joined right to left until one is absolute, against the working
 * directory when none is (`.` and `..` segments resolved, repeated and trailing slashes removed), as
 * `node:path`'s `resolve`.
 *
 * @param paths the paths, the last one relative to the ones before it; empty strings are skipped
 * @returns an absolute path
 *
 * @example
 * ```ts
 * import { resolve } from "./paths.ts";
 * import assert from "node:assert/strict";
 * assert.equal(resolve("/etc/alumet", "./plugins/../p.ts"), "/etc/alumet/p.ts");
 * assert.equal(resolve("/etc/alumet", "/opt//p.ts/"), "/opt/p.ts");
 * assert.equal(resolve("."), Deno.cwd());
 * ```
 */
export function resolve(...paths: string[]): string {
  let joined = "";
  for (let i = paths.length - 1; i >= 0 && !isAbsolute(joined); i--) {
    const path = paths[i]!;
    if (path !== "") joined = joined === "" ? path : `${path}/${joined}`;
  }
  if (!isAbsolute(joined)) joined = `${Deno.cwd()}/${joined}`;
  const segments: string[] = [];
  for (const seg of joined.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") segments.pop();
    else segments.push(seg);
  }
  return `/${segments.join("/")}`;
}

/**
 * The directory part of `path`, as `node:path`'s `dirname`: `"."` when there is none, `"/"` for the root.
 *
 * @param path a path
 * @returns its directory
 *
 * @example
 * ```ts
 * import { dirname } from "./paths.ts";
 * import assert from "node:assert/strict";
 * assert.equal(dirname("/etc/alumet/alumet-config.toml"), "/etc/alumet");
 * assert.equal(dirname("/a.toml"), "/");
 * assert.equal(dirname("a.toml"), ".");
 * ```
 */
export function dirname(path: string): string {
  const trimmed = path.replace(/(?<=.)\/+$/, "");
  const slash = trimmed.lastIndexOf("/");
  if (slash < 0) return ".";
  const dir = trimmed.slice(0, slash).replace(/\/+$/, "");
  return dir === "" ? "/" : dir;
}

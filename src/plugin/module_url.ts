/**
 * The URL of a module of this project from its path in the repository, for what a Worker imports by URL
 * (`new Worker(...)`, a sampled source's `module`). `new URL("./kernel.ts", import.meta.url)` is right in the
 * sources but not in the CLI's bundle (src/agent/bundle.ts), where `import.meta.url` is a chunk's: the
 * chunks are two directories under the project's root, as this module is, so the root is found the same way
 * from both, and the Worker imports the sources.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { projectModule } from "./module_url.ts";
 * const url = projectModule("plugins/procfs/kernel.ts");
 * assert.ok(url.href.endsWith("/plugins/procfs/kernel.ts") && Deno.statSync(url).isFile);
 * ```
 *
 * @module
 */

const ROOT = new URL("../../", import.meta.url);

/** The URL of `path` (relative to the project's root, e.g. `"plugins/procfs/kernel.ts"`). */
export function projectModule(path: string): URL {
  return new URL(path, ROOT);
}

/**
 * Every external dependency of the runtime, pinned, with full specifiers so that a script importing
 * `mod.ts` by URL resolves them without this project's `deno.json`.
 *
 * @module
 */
export { parse as parseToml, stringify as stringifyToml, TomlError } from "npm:smol-toml@1.9.1";

/**
 * What file outputs (csv, sqlite) share in `alumet doctor`.
 *
 * @module
 */
import { messageOf } from "../errors.ts";
import type { Diagnosis } from "./plugin.ts";

/**
 * Whether an output can write `path`: a temporary file is made and removed in its directory (an output such
 * as SQLite also writes companion files next to it, so the directory must be writable, not only the file).
 *
 * @param plugin the plugin's name, for the fix (`plugins.<plugin>.output_path`)
 */
export function diagnoseOutputFile(path: string, plugin: string): Diagnosis[] {
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) || "/" : ".";
  try {
    Deno.removeSync(Deno.makeTempFileSync({ dir, prefix: ".alumet-doctor-" }));
    return [{ check: "output file", ok: true, detail: `${path} can be written` }];
  } catch (e) {
    return [{
      check: "output file",
      ok: false,
      detail: `cannot write in ${dir}: ${messageOf(e)}`,
      fix: `set plugins.${plugin}.output_path (or --output-file) to a writable place`,
    }];
  }
}

/**
 * Entry point of the `alumet` command: `deno task alumet …`.
 *
 * @module
 */
import { main } from "./cli.ts";

if (import.meta.main) {
  const code = await main(Deno.args);
  Deno.exit(code);
}

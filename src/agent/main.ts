/**
 * Entry point of the `alumet` command: `deno task alumet …`. It runs the CLI from its bundle when that is up
 * to date with the sources, else from the sources (./bundle.ts says when and why). The CLI is imported by a
 * computed specifier, so that Deno does not load the sources' whole module graph before it runs.
 *
 * @module
 */
import { cliModule } from "./bundle.ts";

if (import.meta.main) {
  const from = await cliModule(Deno.args);
  const { main }: typeof import("./cli.ts") = await import(from.url);
  const code = await main(Deno.args, from);
  Deno.exit(code);
}

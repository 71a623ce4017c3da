import assert from "node:assert/strict";
import { ConfigError, PluginError } from "./errors.ts";

Deno.test("PluginError takes the exit code of an AlumetError cause: a plugin's config error exits 2", () => {
  const config = new ConfigError({ source: "a.toml", key: "plugins.x.host", expected: "an http(s) URL" });
  assert.equal(new PluginError("x", "init", config).exitCode, 2);
  assert.equal(new PluginError("x", "start", new Error("boom")).exitCode, 1);
  assert.match(
    new PluginError("x", "init", config).message,
    /^Plugin "x" failed in init: Invalid config in a\.toml/,
  );
});

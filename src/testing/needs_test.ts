import assert from "node:assert/strict";
import { decide, needs } from "./needs.ts";

Deno.test("decide runs a test whose needs are met, ignores it elsewhere, and fails it under CI", () => {
  assert.deepEqual(decide([], false), { mode: "run" });
  assert.deepEqual(decide([], true), { mode: "run" });
  assert.deepEqual(decide(["gcc: missing"], false), { mode: "ignore", reason: "gcc: missing" });
  assert.deepEqual(decide(["gcc: missing", "root: no"], true), {
    mode: "fail",
    reason: "gcc: missing; root: no",
  });
});

Deno.test("needs.command finds programs on PATH and explains a missing one", () => {
  assert.equal(needs.command("sh").missing(), undefined);
  assert.match(needs.command("no-such-tool-xyz").missing()!, /"no-such-tool-xyz" is not on PATH/);
});

import assert from "node:assert/strict";
import { decide, needs } from "./needs.ts";
import { detectLayout } from "../sys/cgroup_layout.ts";

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

Deno.test("needs.cgroupV2 is met exactly where the plugins find a cgroup v2 hierarchy", () => {
  let v2: boolean | undefined;
  try {
    v2 = detectLayout().v2 !== undefined;
  } catch {
    v2 = undefined; // no readable mount table
  }
  const missing = needs.cgroupV2.missing();
  assert.equal(needs.cgroupV2.what, "cgroup v2");
  if (v2 === true) assert.equal(missing, undefined);
  else if (v2 === false) assert.equal(missing, "no cgroup2 mount in /proc/mounts");
  else assert.match(missing!, /^cannot read \/proc\/mounts: /);
});

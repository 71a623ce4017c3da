import assert from "node:assert/strict";
import { parseCommandLine } from "./cli.ts";

Deno.test("parseCommandLine splits command, options and the program", async (t) => {
  await t.step("exec with -- and options before and after the command", () => {
    const p = parseCommandLine([
      "--config",
      "a.toml",
      "exec",
      "--ignore-exit-code",
      "--",
      "ls",
      "-l",
      "--color",
    ]);
    assert.equal(p.command, "exec");
    assert.deepEqual(p.program, ["ls", "-l", "--color"]);
    assert.deepEqual(p.values, { config: "a.toml", "ignore-exit-code": true });
  });
  await t.step("exec without -- takes the first non-option as the program", () => {
    const p = parseCommandLine(["exec", "sh", "-c", "exit 3"]);
    assert.deepEqual(p.program, ["sh", "-c", "exit 3"]);
  });
  await t.step("--name=value, short flags, repeated options", () => {
    const p = parseCommandLine([
      "--config=x.toml",
      "-h",
      "--config-override",
      "a.b=1",
      "--config-override=c.d=2",
      "watch",
      "42",
    ]);
    assert.equal(p.command, "watch");
    assert.deepEqual(p.positionals, ["42"]);
    assert.deepEqual(p.values, { config: "x.toml", help: true, "config-override": ["a.b=1", "c.d=2"] });
  });
  await t.step("run is the default command", () => {
    assert.equal(parseCommandLine([]).command, "run");
  });
  await t.step("usage errors", () => {
    assert.throws(() => parseCommandLine(["exec", "--config"]), /Option --config needs a value/);
    assert.throws(() => parseCommandLine(["exec", "--config", "--", "ls"]), /Option --config needs a value/);
    assert.throws(() => parseCommandLine(["--help=yes"]), /Option --help takes no value/);
    assert.throws(
      () => parseCommandLine(["run", "--confg", "x"]),
      /Unknown option --confg.*did you mean --config\?/,
    );
    assert.throws(
      () => parseCommandLine(["watch", "--ignore-exit-code", "1"]),
      /Unknown option --ignore-exit-code for `alumet watch`/,
    );
  });
});

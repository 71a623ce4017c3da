import assert from "node:assert/strict";
import { GLOBAL_OPTIONS, helpOf, mainHelp, parseCommandLine } from "./cli.ts";

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

Deno.test("README's command block is exactly `alumet --help`", async () => {
  const readme = await Deno.readTextFile(new URL("../../README.md", import.meta.url));
  const block = /## The `alumet` command\n\n```text\n([\s\S]*?)\n```/.exec(readme)?.[1];
  assert.ok(block !== undefined, 'no ```text block under "## The `alumet` command" in README.md');
  assert.equal(block, mainHelp(), "README.md's help block differs from `alumet --help`: paste the new text");
});

Deno.test("the help and the parser derive from the declared options", async (t) => {
  await t.step("every global option is in `alumet --help`, with its value name", () => {
    for (const [name, spec] of Object.entries(GLOBAL_OPTIONS)) {
      const label = `--${name}${spec.type === "string" ? ` ${spec.valueName}` : ""}`;
      assert.match(mainHelp(), new RegExp(`^  (-\\w, )?${label} `, "m")); // labels hold no regex syntax
    }
  });
  await t.step("a command's own options are in its help, and parsed", () => {
    assert.match(helpOf("exec")!, /^ {2}--ignore-exit-code +Exit with 0/m);
    assert.match(helpOf("exec")!, /^Usage: alumet exec /m);
    assert.equal(helpOf("nope"), undefined);
    assert.deepEqual(parseCommandLine(["exec", "--ignore-exit-code", "true"]).values, {
      "ignore-exit-code": true,
    });
  });
  await t.step("every command has a help, and is in `alumet --help`", () => {
    for (const name of ["run", "exec", "watch", "config", "plugins", "doctor"]) {
      assert.match(helpOf(name)!, new RegExp(`^Usage: alumet ${name}\\b`), name);
      assert.match(mainHelp(), new RegExp(`^  ${name}\\b`, "m"), name);
    }
  });
  await t.step("a value option before the command takes the next argument, even one like a command", () => {
    const p = parseCommandLine(["--plugins", "exec", "watch", "1"]);
    assert.equal(p.command, "watch");
    assert.deepEqual(p.values, { plugins: "exec" });
  });
});

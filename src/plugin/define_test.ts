import assert from "node:assert/strict";
import { v } from "./testdata/valibot.ts";
import { definePlugin } from "./define.ts";
import { defaultConfigOf, defaultsOf, validatePluginConfig } from "./config.ts";
import { duration, z } from "./schema.ts";
import { ConfigError } from "../errors.ts";

Deno.test("definePlugin derives defaultConfig from the schema, written once", () => {
  const schema = z.strictObject({
    poll_interval: duration().prefault("1s"),
    scale: z.number().default(2.5),
    path: z.string().optional(),
    nested: z.strictObject({
      enabled: z.boolean().prefault(true),
      list: z.array(z.string()).default(["a", "b"]),
    }).prefault({}),
    required: z.strictObject({ inner: z.int().prefault(3) }),
  });
  let received: unknown;
  const p = definePlugin({
    name: "demo",
    config: schema,
    init: (config) => {
      // The config's type comes from the schema: these lines would not type-check otherwise.
      const ms: number = config.poll_interval;
      const list: string[] = config.nested.list;
      received = { ms, list };
      return { start() {} };
    },
  });
  const expected = {
    poll_interval: "1s",
    scale: 2.5,
    nested: { enabled: true, list: ["a", "b"] },
    required: { inner: 3 },
  };
  assert.deepEqual(p.defaultConfig(), expected);
  assert.deepEqual(defaultConfigOf(p), expected);
  // A copy each time: changing one never changes the defaults.
  (p.defaultConfig().nested as { list: string[] }).list.push("c");
  assert.deepEqual(p.defaultConfig(), expected);
  // The defaults validate, and a default output from .default() is not shared between parses.
  const a = validatePluginConfig(p, { name: "demo", table: {} }, "t.toml");
  const b = validatePluginConfig(p, { name: "demo", table: {} }, "t.toml");
  assert.equal(a.poll_interval, 1000);
  a.nested.list.push("x");
  assert.deepEqual(b.nested.list, ["a", "b"]);
  p.init(a);
  assert.deepEqual(received, { ms: 1000, list: ["a", "b", "x"] });
});

Deno.test("z .default gives the value as it is, .prefault parses it", () => {
  const s = z.strictObject({ d: duration().prefault("2s"), n: z.number().default(7) });
  assert.deepEqual(s.parse({}), { d: 2000, n: 7 });
  assert.deepEqual(s.parse({ n: 8 }), { d: 2000, n: 8 });
  assert.equal(s.safeParse({ n: "8" }).success, false);
  assert.deepEqual(defaultsOf(s), { d: "2s", n: 7 });
  assert.equal(defaultsOf(z.string()), undefined);
});

Deno.test("our schemas are Standard Schemas", () => {
  const s = z.strictObject({ n: z.int().prefault(1) });
  const std = s["~standard"];
  assert.equal(std.version, 1);
  assert.deepEqual(std.validate({}), { value: { n: 1 } });
  const bad = std.validate({ n: "x" });
  assert.ok("issues" in bad && bad.issues !== undefined && bad.issues.length === 1);
});

Deno.test("a plugin may bring another Standard Schema library (valibot), with explicit defaults", async (t) => {
  const schema = v.strictObject({
    url: v.pipe(v.string(), v.url()),
    retries: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0)), 3),
  });
  const p = definePlugin({
    name: "sender",
    config: schema,
    defaults: { url: "http://127.0.0.1:9091/" },
    init: (config) => {
      const r: number = config.retries; // typed from valibot's output
      return { start() {}, stop: () => void r };
    },
  });
  await t.step("the given defaults are what config regen writes, and they validate", () => {
    assert.deepEqual(p.defaultConfig(), { url: "http://127.0.0.1:9091/" });
    assert.deepEqual(validatePluginConfig(p, { name: "sender", table: {} }, "a.toml"), {
      url: "http://127.0.0.1:9091/",
      retries: 3,
    });
  });
  await t.step("an issue becomes one ConfigError naming the key and the bad value", () => {
    assert.throws(
      () => validatePluginConfig(p, { name: "sender", table: { url: "not a url" } }, "a.toml"),
      (e) => {
        assert.ok(e instanceof ConfigError);
        assert.match(e.message, /a\.toml/);
        assert.match(e.message, /plugins\.sender\.url/);
        assert.match(e.message, /"not a url"/);
        return true;
      },
    );
  });
  await t.step("an async schema is refused with a clear message", () => {
    const asyncSchema = {
      "~standard": { version: 1 as const, vendor: "x", validate: () => Promise.resolve({ value: {} }) },
    };
    const q = definePlugin({ name: "slow", config: asyncSchema, defaults: {}, init: () => ({ start() {} }) });
    assert.throws(() => validatePluginConfig(q, { name: "slow", table: {} }, "a.toml"), /synchronously/);
  });
});

Deno.test("a plain metadata object, as plugins wrote them before definePlugin, still works", () => {
  const meta = {
    name: "old",
    version: "1.0.0",
    defaultConfig: () => ({ poll_interval: "5s" }),
    configSchema: z.strictObject({ poll_interval: duration() }),
    init: () => ({ start() {} }),
  };
  assert.deepEqual(defaultConfigOf(meta), { poll_interval: "5s" });
  assert.deepEqual(validatePluginConfig(meta, { name: "old", table: {} }, "a.toml"), { poll_interval: 5000 });
});

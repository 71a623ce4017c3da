import assert from "node:assert/strict";
import { DURATION_UNITS } from "../model/duration.ts";
import { duration, type Issue, type Schema, SchemaError, z } from "./schema.ts";

/** `true` when `A` and `B` are the same type. */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false;
/** Compiles only when its type argument is `true`. */
function typeCheck<_T extends true>(): void {}

/** The issues of a failed parse. */
function issuesOf(schema: Schema<unknown>, input: unknown): Issue[] {
  const result = schema.safeParse(input);
  assert.equal(result.success, false, `expected ${JSON.stringify(input)} to be rejected`);
  return result.error?.issues ?? [];
}

/** The first issue of a failed parse. */
function firstIssue(schema: Schema<unknown>, input: unknown): Issue {
  const issue = issuesOf(schema, input)[0];
  assert.ok(issue !== undefined);
  return issue;
}

Deno.test("z.string accepts strings and checks length and pattern", async (t) => {
  await t.step("a string passes, anything else is invalid_type", () => {
    assert.equal(z.string().parse("x"), "x");
    assert.deepEqual(firstIssue(z.string(), 5), {
      code: "invalid_type",
      expected: "string",
      path: [],
      message: "Invalid input: expected string, received number",
      input: 5,
    });
    assert.equal(firstIssue(z.string({ error: "a name" }), null).message, "a name");
  });

  await t.step("min(n) is too_small with origin string", () => {
    assert.equal(z.string().min(1).parse("a"), "a");
    assert.deepEqual(firstIssue(z.string().min(2, { error: "two" }), "a"), {
      code: "too_small",
      minimum: 2,
      origin: "string",
      inclusive: true,
      path: [],
      message: "two",
      input: "a",
    });
  });

  await t.step("regex is invalid_format with the pattern", () => {
    const s = z.string().regex(/^[a-z]+$/g);
    assert.equal(s.parse("abc"), "abc");
    assert.equal(s.parse("abc"), "abc", "a global regex matches again (lastIndex reset)");
    const issue = firstIssue(s, "A");
    assert.equal(issue.code, "invalid_format");
    assert.equal(issue.code === "invalid_format" && issue.pattern, "/^[a-z]+$/g");
  });

  await t.step("a failed check does not stop the next one; a type error skips them", () => {
    const s = z.string().min(3).regex(/^\d+$/);
    assert.deepEqual(issuesOf(s, "a").map((i) => i.code), ["too_small", "invalid_format"]);
    assert.deepEqual(issuesOf(s, 1).map((i) => i.code), ["invalid_type"]);
  });

  await t.step("adding a check returns a copy", () => {
    const base = z.string();
    const nonEmpty = base.min(1);
    assert.equal(base.safeParse("").success, true);
    assert.equal(nonEmpty.safeParse("").success, false);
  });
});

Deno.test("z.number and z.int check finite numbers, integers and bounds", async (t) => {
  await t.step("NaN and Infinity are not numbers", () => {
    assert.equal(z.number().parse(1.5), 1.5);
    for (const bad of [NaN, Infinity, "1", undefined]) {
      const issue = firstIssue(z.number(), bad);
      assert.equal(issue.code === "invalid_type" && issue.expected, "number");
    }
  });

  await t.step("int() is invalid_type expected int, and stops the next checks", () => {
    const pid = z.number().int().positive({ error: "a pid" });
    assert.equal(pid.parse(3), 3);
    const issues = issuesOf(pid, -1.5);
    assert.equal(issues.length, 1);
    assert.equal(issues[0]?.code === "invalid_type" && issues[0].expected, "int");
    assert.deepEqual(firstIssue(pid, 0), {
      code: "too_small",
      minimum: 0,
      origin: "number",
      inclusive: false,
      path: [],
      message: "a pid",
      input: 0,
    });
  });

  await t.step("an integer beyond 2^53 is out of the safe range", () => {
    const issue = firstIssue(z.int(), 2 ** 60);
    assert.equal(issue.code === "too_big" && issue.origin, "int");
    assert.equal(firstIssue(z.int(), -(2 ** 60)).code, "too_small");
  });

  await t.step("z.int({ error }) uses the message for the type and the integer check", () => {
    const size = z.int({ error: "a positive integer" });
    assert.equal(firstIssue(size, "x").message, "a positive integer");
    assert.equal(firstIssue(size, 1.5).message, "a positive integer");
    const issue = firstIssue(size, "x");
    assert.equal(issue.code === "invalid_type" && issue.expected, "number");
  });

  await t.step("min and max are inclusive", () => {
    const n = z.number().min(1).max(10);
    assert.equal(n.parse(1), 1);
    assert.equal(n.parse(10), 10);
    assert.deepEqual(firstIssue(n, 11), {
      code: "too_big",
      maximum: 10,
      origin: "number",
      inclusive: true,
      path: [],
      message: "Too big: expected number to be <=10",
      input: 11,
    });
    assert.equal(firstIssue(n, 0).message, "Too small: expected number to be >=1");
  });
});

Deno.test("z.boolean, z.enum and z.unknown", async (t) => {
  await t.step("z.boolean accepts true and false only", () => {
    assert.equal(z.boolean().parse(false), false);
    const issue = firstIssue(z.boolean(), "yes");
    assert.equal(issue.code === "invalid_type" && issue.expected, "boolean");
  });

  await t.step("z.enum is invalid_value with the allowed values", () => {
    const mode = z.enum(["quick", "slow"], { error: "quick or slow" });
    assert.equal(mode.parse("slow"), "slow");
    assert.deepEqual(firstIssue(mode, "fast"), {
      code: "invalid_value",
      values: ["quick", "slow"],
      path: [],
      message: "quick or slow",
      input: "fast",
    });
    assert.equal(firstIssue(z.enum(["a", "b"]), 1).message, 'Invalid option: expected one of "a"|"b"');
  });

  await t.step("z.unknown accepts anything", () => {
    for (const v of [undefined, null, 1, "x", [1], { a: 1 }]) assert.deepEqual(z.unknown().parse(v), v);
  });
});

Deno.test("z.array and z.record parse every element, with its index or key in the path", async (t) => {
  await t.step("an array is copied, element by element", () => {
    const input = ["1s", "2s"];
    const out = z.array(duration()).parse(input);
    assert.deepEqual(out, [1000, 2000]);
    assert.deepEqual(input, ["1s", "2s"]);
    assert.deepEqual(issuesOf(z.array(z.string()), ["a", 1, 2]).map((i) => i.path), [[1], [2]]);
    const issue = firstIssue(z.array(z.string()), { 0: "a" });
    assert.equal(issue.code === "invalid_type" && issue.expected, "array");
  });

  await t.step("a record is a table of any keys", () => {
    const r = z.record(z.string(), z.number());
    assert.deepEqual(r.parse({ a: 1, b: 2 }), { a: 1, b: 2 });
    assert.deepEqual(firstIssue(r, { a: 1, b: "2" }).path, ["b"]);
    for (const bad of [[1], null, new Date(0), 5]) {
      const issue = firstIssue(r, bad);
      assert.equal(issue.code === "invalid_type" && issue.expected, "record");
    }
  });

  await t.step("a __proto__ key is kept as an own key", () => {
    const input = JSON.parse('{"__proto__": 1}');
    const out = z.record(z.string(), z.number()).parse(input);
    assert.deepEqual(Object.keys(out), ["__proto__"]);
    assert.equal(Object.getPrototypeOf(out), Object.prototype);
  });
});

Deno.test("z.strictObject checks every key and rejects unknown ones", async (t) => {
  const s = z.strictObject({ name: z.string(), tag: z.string().optional(), n: z.number().prefault(1) });

  await t.step("a valid table is parsed into a new object", () => {
    const input = { name: "x" };
    assert.deepEqual(s.parse(input), { name: "x", n: 1 });
    assert.deepEqual(input, { name: "x" });
  });

  await t.step("an absent optional key stays absent; a missing required key is an issue", () => {
    assert.equal(Object.hasOwn(s.parse({ name: "x" }), "tag"), false);
    assert.deepEqual(s.parse({ name: "x", tag: "t" }), { name: "x", tag: "t", n: 1 });
    assert.deepEqual(firstIssue(s, {}).path, ["name"]);
  });

  await t.step("unknown keys are one issue, reported before the other issues of the object", () => {
    const issues = issuesOf(s, { name: 1, nme: "x", other: 2 });
    assert.deepEqual(issues.map((i) => [i.code, i.path]), [["unrecognized_keys", []], ["invalid_type", [
      "name",
    ]]]);
    assert.deepEqual(issues[0]?.code === "unrecognized_keys" && issues[0].keys, ["nme", "other"]);
    assert.equal(issues[0]?.message, 'Unrecognized keys: "nme", "other"');
  });

  await t.step("arrays, dates and null are not tables", () => {
    for (const bad of [[], new Date(0), null, "x"]) {
      const issue = firstIssue(s, bad);
      assert.equal(issue.code === "invalid_type" && issue.expected, "object");
    }
  });

  await t.step("issues in nested objects and arrays have the full path", () => {
    const nested = z.strictObject({
      groups: z.array(z.strictObject({ pid: z.int().optional(), period: duration().prefault("1s") })),
    });
    const issues = issuesOf(nested, { groups: [{}, { pid: 1.5 }, { pidd: 1 }, { period: 5 }] });
    assert.deepEqual(issues.map((i) => [i.code, i.path]), [
      ["invalid_type", ["groups", 1, "pid"]],
      ["unrecognized_keys", ["groups", 2]],
      ["invalid_type", ["groups", 3, "period"]],
    ]);
  });

  await t.step(".shape gives the schemas back", () => {
    assert.deepEqual(Object.keys(s.shape), ["name", "tag", "n"]);
    assert.equal(s.shape.tag.kind, "optional");
    assert.equal(s.shape.tag.unwrap().kind, "string");
    assert.equal(s.refine(() => true).shape, s.shape, "refine keeps the shape");
  });
});

Deno.test("optional, prefault, refine and transform wrap a schema", async (t) => {
  await t.step("optional accepts undefined", () => {
    assert.equal(z.number().optional().parse(undefined), undefined);
    assert.equal(z.number().optional().parse(2), 2);
    assert.equal(z.number().optional().safeParse(null).success, false);
  });

  await t.step("prefault parses its default, and each parse gets a fresh value", () => {
    assert.equal(duration().prefault("2s").parse(undefined), 2000);
    assert.equal(duration().prefault("2s").parse("1s"), 1000);
    const section = z.strictObject({ enabled: z.boolean().prefault(true), period: duration().prefault("5s") })
      .prefault({});
    const a = section.parse(undefined);
    assert.deepEqual(a, { enabled: true, period: 5000 });
    a.enabled = false;
    assert.deepEqual(section.parse(undefined), { enabled: true, period: 5000 });
    const list = z.array(z.string()).prefault(["a"]);
    list.parse(undefined).push("b");
    assert.deepEqual(list.parse(undefined), ["a"]);
  });

  await t.step("a bad prefault fails like a bad value", () => {
    assert.equal(duration().prefault("soon").safeParse(undefined).success, false);
  });

  await t.step("refine reports a custom issue at its path, and runs only on a well-typed value", () => {
    let calls = 0;
    const pair = z.strictObject({ a: z.string(), b: z.string() }).refine((v) => {
      calls++;
      return v.a !== v.b;
    }, { path: ["b"], error: "b different from a" });
    assert.deepEqual(pair.parse({ a: "x", b: "y" }), { a: "x", b: "y" });
    assert.deepEqual(firstIssue(pair, { a: "x", b: "x" }), {
      code: "custom",
      path: ["b"],
      message: "b different from a",
      input: { a: "x", b: "x" },
    });
    calls = 0;
    assert.deepEqual(issuesOf(pair, { a: "x", b: 1 }).map((i) => i.code), ["invalid_type"]);
    assert.equal(calls, 0);
    const nested = z.strictObject({ inner: pair });
    assert.deepEqual(firstIssue(nested, { inner: { a: "x", b: "x" } }).path, ["inner", "b"]);
    assert.equal(firstIssue(z.string().refine(() => false), "x").message, "Invalid input");
  });

  await t.step("transform converts the value, and reports the issues pushed to ctx.issues", () => {
    const regex = z.string().transform((text, ctx) => {
      try {
        return new RegExp(text);
      } catch {
        ctx.issues.push({ code: "custom", input: text, message: "a valid regular expression" });
        return z.NEVER;
      }
    });
    assert.ok(regex.parse("a+") instanceof RegExp);
    assert.deepEqual(firstIssue(z.strictObject({ re: regex }), { re: "(" }), {
      code: "custom",
      path: ["re"],
      message: "a valid regular expression",
      input: "(",
    });
    assert.equal(regex.unwrap().kind, "string");
  });

  await t.step("transform does not run when its schema failed", () => {
    let calls = 0;
    const s = z.string().min(2).transform((x) => {
      calls++;
      return x.length;
    });
    assert.equal(s.parse("abc"), 3);
    assert.deepEqual(issuesOf(s, "a").map((i) => i.code), ["too_small"]);
    assert.equal(calls, 1);
  });

  await t.step("unwrap gives the wrapped schema back", () => {
    const inner = z.strictObject({ a: z.number() });
    assert.equal(inner.optional().unwrap(), inner);
    assert.equal(inner.prefault({ a: 1 }).unwrap(), inner);
  });
});

Deno.test("parse throws a SchemaError naming the first issue; safeParse returns it", () => {
  const s = z.strictObject({ a: z.strictObject({ b: z.number() }) });
  assert.throws(() => s.parse({ a: { b: "x" } }), (e: unknown) => {
    assert.ok(e instanceof SchemaError);
    assert.equal(e.message, "a.b: Invalid input: expected number, received string");
    assert.equal(e.issues.length, 1);
    return true;
  });
  assert.throws(() => z.number().parse("x"), { message: "Invalid input: expected number, received string" });
  assert.throws(() => s.parse({ c: 1 }), { message: 'Unrecognized key: "c" (and 1 more)' });
  const ok = s.safeParse({ a: { b: 1 } });
  assert.deepEqual(ok, { success: true, data: { a: { b: 1 } } });
  const bad = s.safeParse(1);
  assert.equal(bad.success, false);
  assert.equal(bad.data, undefined);
  assert.equal(bad.error?.issues[0]?.path.length, 0);
});

Deno.test("duration parses humantime strings into milliseconds", async (t) => {
  await t.step("units and compound durations", () => {
    assert.equal(duration().parse("250us"), 0.25);
    assert.equal(duration().parse("5m 30s"), 330_000);
  });

  await t.step(
    "a period the sampler cannot serve, or a timer cannot wait, is rejected with the range",
    () => {
      for (const text of ["1ns", "10us", "99us", "99999999999999999999999d", "25d"]) {
        const issue = firstIssue(duration(), text);
        assert.match(issue.message, /from 100us to 24d/, text);
        assert.match(issue.message, new RegExp(`not "${text}"`));
      }
      assert.equal(duration().parse("100us"), 0.1);
      assert.equal(duration().parse("24d"), 24 * 86_400_000);
    },
  );

  await t.step("a number is rejected, with the units", () => {
    assert.deepEqual(firstIssue(duration(), 5), {
      code: "invalid_type",
      expected: "string",
      path: [],
      message: `a duration such as "1s" or "250ms" (units: ${DURATION_UNITS})`,
      input: 5,
    });
  });

  await t.step("a string that is not a positive duration is a custom issue", () => {
    for (const bad of ["soon", "0s", "", "5"]) {
      assert.deepEqual(firstIssue(duration(), bad), {
        code: "custom",
        path: [],
        message: `a positive duration such as "1s" or "250ms" (units: ${DURATION_UNITS}), not "${bad}"`,
        input: bad,
      });
    }
  });
});

Deno.test("z.infer gives the parsed type", () => {
  const schema = z.strictObject({
    name: z.string().min(1),
    count: z.int().positive().optional(),
    period: duration().prefault("1s"),
    mode: z.enum(["quick", "slow"]).prefault("quick"),
    flags: z.array(z.boolean()),
    extra: z.record(z.string(), z.unknown()).optional(),
    nested: z.strictObject({ re: z.string().transform((s) => new RegExp(s)) }).prefault({ re: "." }),
  }).refine((c) => c.name !== "");
  type Config = z.infer<typeof schema>;
  typeCheck<
    Equal<Config, {
      name: string;
      count?: number | undefined;
      period: number;
      mode: "quick" | "slow";
      flags: boolean[];
      extra?: Record<string, unknown> | undefined;
      nested: { re: RegExp };
    }>
  >();
  typeCheck<Equal<z.infer<ReturnType<typeof duration>>, number>>();
  const config: Config = schema.parse({ name: "x", flags: [true] });
  assert.deepEqual(config, { name: "x", period: 1000, mode: "quick", flags: [true], nested: { re: /./ } });
  // A schema is a Schema<Out> for its output type, as PluginMetadata.configSchema wants.
  const asSchema: Schema<Config> = schema;
  assert.equal(asSchema.safeParse({ name: "", flags: [] }).success, false);
  // @ts-expect-error a prefault must be a valid input of the schema
  z.number().prefault("1");
});

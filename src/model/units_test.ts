import assert from "node:assert/strict";
import { customUnit, parseUnit, sameUnit, unit } from "./units.ts";

Deno.test("unit gives UCUM codes and display names with SI prefixes", () => {
  assert.deepEqual([unit("J").code, unit("J", "milli").code, unit("s", "micro").code], ["J", "mJ", "us"]);
  assert.deepEqual([unit("s", "micro").display, unit("By").display, unit("Cel").display], ["μs", "B", "°C"]);
  assert.equal(unit("W", "kilo"), unit("W", "kilo"), "units are shared values");
  assert.throws(() => unit("1", "kilo"), /takes no prefix/);
});

Deno.test("parseUnit reads codes, display names and common spellings; others become custom", () => {
  for (
    const [text, code] of [
      ["mJ", "mJ"],
      ["us", "us"],
      ["µs", "us"],
      ["μs", "us"],
      ["B", "By"],
      ["Wh", "W.h"],
      ["%", "%"],
      ["1", "1"],
    ]
  ) {
    assert.equal(parseUnit(text!).code, code, text);
  }
  const p = parseUnit("packets");
  assert.ok(p.custom);
  assert.ok(sameUnit(p, customUnit("packets")));
  assert.ok(!sameUnit(unit("J"), unit("J", "milli")));
  assert.throws(() => customUnit(""), RangeError);
});

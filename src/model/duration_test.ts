import assert from "node:assert/strict";
import { formatDuration, parseDuration } from "./duration.ts";

Deno.test("parseDuration reads humantime durations into milliseconds", () => {
  const cases: [string, number][] = [
    ["100us", 0.1],
    ["250µs", 0.25],
    ["250μs", 0.25],
    ["2ms", 2],
    ["1s", 1000],
    ["1.5s", 1500],
    ["1min", 60_000],
    ["1h", 3_600_000],
    ["5m 30s", 330_000],
    ["1h30m", 5_400_000],
    ["10ns", 1e-5],
    [" 2 s ", 2000],
  ];
  for (const [text, ms] of cases) assert.equal(parseDuration(text), ms, text);
});

Deno.test("parseDuration rejects what is not a duration", () => {
  for (const text of ["", " ", "1", "s", "1 fortnight", "1e3s", "-1s", "1s 2", "1ss"]) {
    assert.equal(parseDuration(text), undefined, JSON.stringify(text));
  }
});

Deno.test("formatDuration writes whole units and round-trips", () => {
  for (const ms of [0.001, 0.25, 2, 1000, 61_000, 5_400_000]) {
    assert.equal(parseDuration(formatDuration(ms)), ms, formatDuration(ms));
  }
});

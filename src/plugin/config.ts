/**
 * A plugin's configuration, next to the plugin contract: the defaults a schema declares
 * ({@linkcode defaultsOf}), a plugin's default table ({@linkcode defaultConfigOf}, what `config regen`
 * writes), and the validation of a `[plugins.<name>]` table against the plugin's schema — one of ours, or any
 * Standard Schema (zod, valibot…) — with every problem turned into one {@linkcode ConfigError} naming the
 * dotted key, what was expected there and, for a near miss, `did you mean "…"?`.
 *
 * The agent (`src/agent/config.ts`) reads TOML, substitutes `${ENV}`, applies overrides and selects the
 * plugins; it calls {@linkcode validatePluginConfig} once per plugin, before `init`.
 *
 * @module
 */
import { closest, ConfigError } from "../errors.ts";
import type { ConfigTable, PluginMetadata } from "./plugin.ts";
import type { Issue, StandardSchemaV1, TooBigIssue, TooSmallIssue } from "./_schema.ts";

type Table = Record<string, unknown>;
/** A path in a table: keys, and indexes in arrays. */
export type Path = readonly (string | number)[];

/**
 * Marks metadata whose `defaultConfig()` is derived from its schema ({@linkcode definePlugin} sets it): the
 * schema applies those defaults itself, so validation merges only the ones that are inputs.
 */
export const DERIVED_DEFAULTS: unique symbol = Symbol("alumet.derivedDefaults");

/**
 * The defaults a schema of ours declares, in their TOML form: a `.prefault(v)` gives `v` (the input, e.g. a
 * duration string), a `.default(v)` gives `v`, and a table gives the defaults of its keys (merged under its own
 * prefault). Keys without a default (required or optional) are left out, and so is a `.default(v)` over a
 * transform: `v` is an output (`duration().default(1000)` gives 1000 ms, which the file cannot say as 1000),
 * so `config regen` leaves the key out and the schema applies the default. Walks schemas structurally (by
 * `kind`), so a schema built by another copy of this module (a plugin imported by URL) works too.
 *
 * @param schema a schema of ours; anything else has no defaults
 * @param mode `toml` (default): what `config regen` writes; `input`: only the defaults that are inputs
 *   (prefaults), which validation may merge under the user's table before parsing
 * @returns the default value, or `undefined` when the schema declares none
 *
 * @example
 * ```ts
 * import { defaultsOf } from "./config.ts";
 * import { duration, z } from "./schema.ts";
 * import assert from "node:assert/strict";
 * const schema = z.strictObject({
 *   poll_interval: duration().prefault("1s"),
 *   scale: z.number().default(2),
 *   timeout: duration().default(500),
 *   path: z.string(),
 *   kernel: z.strictObject({ enabled: z.boolean().prefault(true) }).prefault({}),
 * });
 * assert.deepEqual(defaultsOf(schema), { poll_interval: "1s", scale: 2, kernel: { enabled: true } });
 * assert.deepEqual(defaultsOf(schema, "input"), { poll_interval: "1s", kernel: { enabled: true } });
 * ```
 */
export function defaultsOf(schema: unknown, mode: "toml" | "input" = "toml"): unknown {
  const node = nodeOf(schema);
  switch (node.kind) {
    case "prefault": {
      const value = (node as { defaultInput?: unknown }).defaultInput;
      const inner = defaultsOf(node.unwrap?.(), mode);
      return isTable(value) && isTable(inner) ? deepMerge(inner, value) : toPlain(value);
    }
    case "default":
      return mode === "input" || transforms(node.unwrap?.())
        ? undefined
        : toPlain((node as { defaultValue?: unknown }).defaultValue);
    case "transform":
      return defaultsOf(node.unwrap?.(), mode);
    case "object": {
      if (!isTable(node.shape)) return undefined;
      const out: Table = {};
      for (const [key, child] of Object.entries(node.shape)) {
        const d = defaultsOf(child, mode);
        if (d !== undefined) setOwn(out, key, d);
      }
      return out;
    }
    default:
      return undefined;
  }
}

/** Whether a schema converts its input (a transform under its wrappers): its outputs are not inputs. */
function transforms(schema: unknown): boolean {
  let node = nodeOf(schema);
  for (let depth = 0; depth < 20; depth++) {
    if (node.kind === "transform") return true;
    if (typeof node.unwrap !== "function") return false;
    node = nodeOf(node.unwrap());
  }
  return false;
}

/**
 * A plugin's default `[plugins.<name>]` table: its `defaultConfig()` when it has one, else the defaults of its
 * schema ({@linkcode defaultsOf}).
 *
 * @param meta the plugin
 * @returns the table, `{}` when there is no default
 */
export function defaultConfigOf(meta: PluginMetadata<unknown>): ConfigTable {
  const given = meta.defaultConfig?.();
  if (given !== undefined) return toPlain(given) as ConfigTable;
  const derived = defaultsOf(meta.configSchema);
  return isTable(derived) ? derived : {};
}

/** Whether `schema` is a Standard Schema that is not one of ours (ours are walked for better messages). */
function isForeignStandard(schema: unknown): schema is StandardSchemaV1<unknown, unknown> {
  const node = nodeOf(schema);
  const std = (schema as { "~standard"?: { vendor?: unknown } } | undefined)?.["~standard"];
  return std !== undefined && (typeof node.kind !== "string" || std.vendor !== "alumet");
}

/**
 * Merges the plugin's default table ({@linkcode defaultConfigOf}) under the section's table (plain tables
 * merge key by key, anything else, arrays included, is replaced) and validates the result with
 * `meta.configSchema`, if any: a schema of ours, or any Standard Schema (whose `validate` must not be async).
 *
 * @param meta the plugin
 * @param section its name and its table as the user wrote it
 * @param source the name used in messages (the config file)
 * @param blame names another source (e.g. `--config-override`) for an issue at this path in the table, or
 *   `undefined` to name `source`
 * @returns the validated config, for `meta.init`
 * @throws {ConfigError} for the first problem, preferring an unknown key: the dotted key, what was expected
 *   and, for a near miss, `did you mean "…"?`
 *
 * @example
 * ```ts
 * import { validatePluginConfig } from "./config.ts";
 * import { duration, z } from "./schema.ts";
 * import assert from "node:assert/strict";
 * const meta = {
 *   name: "demo",
 *   version: "0.1.0",
 *   configSchema: z.strictObject({ poll_interval: duration().prefault("1s"), label: z.string().default("x") }),
 *   init: () => ({ start() {} }),
 * };
 * const config = validatePluginConfig(meta, { name: "demo", table: { label: "y" } }, "a.toml");
 * assert.deepEqual(config, { poll_interval: 1000, label: "y" });
 * assert.throws(
 *   () => validatePluginConfig(meta, { name: "demo", table: { labl: "y" } }, "a.toml"),
 *   /plugins\.demo\.labl: expected a known key \(one of: poll_interval, label\); did you mean "label"\?/,
 * );
 * ```
 */
export function validatePluginConfig<C>(
  meta: PluginMetadata<C>,
  section: { readonly name: string; readonly table: ConfigTable },
  source: string,
  blame?: (path: Path) => string | undefined,
): C {
  const derived = (meta as { [DERIVED_DEFAULTS]?: boolean })[DERIVED_DEFAULTS] === true;
  const base = derived
    ? defaultsOf(meta.configSchema, "input")
    : defaultConfigOf(meta as PluginMetadata<unknown>);
  const merged = deepMerge(isTable(base) ? base : {}, section.table);
  const schema: unknown = meta.configSchema;
  if (schema === undefined) return merged as C;
  const prefix = ["plugins", section.name];
  const sourceOf = (path: Path) => blame?.(path) ?? source;
  if (isForeignStandard(schema)) {
    const result = schema["~standard"].validate(merged);
    if (result instanceof Promise) {
      throw new ConfigError({
        source,
        key: dotted(prefix),
        expected: "a config schema that validates synchronously",
        suggestion: `plugin "${meta.name}" gives an async schema; use a synchronous one`,
      });
    }
    if (result.issues === undefined) return result.value as C;
    const first = result.issues[0];
    const path = (first?.path ?? []).map((seg) =>
      typeof seg === "object" && seg !== null ? String((seg as { key: PropertyKey }).key) : String(seg)
    );
    const value = valueAt(merged, path);
    return throwConfig(
      sourceOf(path),
      [...prefix, ...path],
      (first?.message ?? "a valid value") +
        (value === undefined ? "" : `, not ${show(value)}`),
    );
  }
  const result =
    (schema as { safeParse(v: unknown): { success: boolean; data?: C; error?: { issues: Issue[] } } })
      .safeParse(merged);
  if (result.success) return result.data as C;
  throw issueError(result.error!.issues, { schema, data: merged, prefix, source: sourceOf });
}

function throwConfig(source: string, path: Path, expected: string): never {
  throw new ConfigError({ source, key: dotted(path), expected });
}

// ---------------------------------------------------------------------------------------------------------
// Tables

export function isTable(value: unknown): value is Table {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

/** Sets a key as an own property, even `__proto__`. */
export function setOwn(table: Table, key: string, value: unknown): void {
  Object.defineProperty(table, key, { value, enumerable: true, writable: true, configurable: true });
}

/** A copy with plain objects for tables (TOML gives objects without a prototype). */
export function toPlain(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(toPlain);
  if (!isTable(value)) return value;
  const out: Table = {};
  for (const [k, v] of Object.entries(value)) setOwn(out, k, toPlain(v));
  return out;
}

/** `over` merged into a copy of `base`: tables merge key by key, anything else replaces. */
export function deepMerge(base: Table, over: Table): Table {
  const out: Table = {};
  for (const [k, v] of Object.entries(base)) setOwn(out, k, v);
  for (const [k, v] of Object.entries(over)) {
    const b = Object.hasOwn(out, k) ? out[k] : undefined;
    setOwn(out, k, isTable(v) ? deepMerge(isTable(b) ? b : {}, v) : v);
  }
  return out;
}

export function valueAt(data: unknown, path: Path): unknown {
  let v = data;
  for (const seg of path) {
    if (Array.isArray(v) && typeof seg === "number") v = v[seg];
    else if (isTable(v) && Object.hasOwn(v, String(seg))) v = v[String(seg)];
    else return undefined;
  }
  return v;
}

export function hasPath(data: unknown, path: Path): boolean {
  return path.length === 0 ? data !== undefined : valueAt(data, path) !== undefined;
}

export function isPrefix(prefix: Path, path: Path): boolean {
  return prefix.length <= path.length && prefix.every((seg, i) => String(seg) === String(path[i]));
}

// ---------------------------------------------------------------------------------------------------------
// Messages

export function keySegment(seg: string | number): string {
  if (typeof seg === "number") return `[${seg}]`;
  return /^[A-Za-z0-9_-]+$/.test(seg) ? seg : JSON.stringify(seg);
}

export function dotted(path: Path): string {
  return path.map((seg, i) => {
    const s = keySegment(seg);
    return i === 0 || typeof seg === "number" ? s : `.${s}`;
  }).join("");
}

export function show(value: unknown): string {
  if (typeof value === "string") {
    return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  }
  if (Array.isArray(value)) return "an array";
  if (value instanceof Date) return "a date";
  if (isTable(value)) return "a table";
  return String(value);
}

export interface IssueContext {
  readonly schema: unknown;
  readonly data: unknown;
  /** Path of the validated value in the file, e.g. `["plugins", "csv"]`. */
  readonly prefix: Path;
  /** The source to name, given the issue's path relative to the validated value. */
  readonly source: (path: Path) => string;
}

/** One ConfigError for the first issue, an unknown key first (a typo often also leaves a key missing). */
export function issueError(issues: readonly Issue[], ctx: IssueContext): ConfigError {
  const issue = issues.find((i) => i.code === "unrecognized_keys") ?? issues[0];
  if (issue === undefined) {
    return new ConfigError({ source: ctx.source([]), key: dotted(ctx.prefix), expected: "a valid value" });
  }
  const described = describe(issue, ctx);
  return new ConfigError({
    source: ctx.source(described.path),
    key: dotted([...ctx.prefix, ...described.path]),
    expected: described.expected,
    suggestion: described.suggestion,
  });
}

interface Described {
  path: Path;
  expected: string;
  suggestion?: string | undefined;
}

const DEFAULT_MESSAGE = /^(Invalid|Too (small|big)|Unrecognized)\b/;

function describe(issue: Issue, ctx: IssueContext): Described {
  const path = issue.path.map((p) => typeof p === "number" ? p : String(p));
  const custom = DEFAULT_MESSAGE.test(issue.message) ? undefined : issue.message;
  const value = valueAt(ctx.data, path);
  const not = value === undefined ? ", but the key is missing" : `, not ${show(value)}`;
  switch (issue.code) {
    case "unrecognized_keys": {
      const key = issue.keys[0] ?? "";
      const keys = knownKeys(ctx.schema, path);
      const near = closest(key, keys);
      let suggestion = near === undefined ? undefined : `did you mean "${near}"?`;
      const topLevelTable = ctx.prefix.length === 0 && path.length === 0 && isTable(valueAt(ctx.data, [key]));
      if (suggestion === undefined && topLevelTable) {
        suggestion = `plugin sections are written [plugins.${keySegment(key)}]`;
      }
      return {
        path: [...path, key],
        expected: keys.length > 0 ? `a known key (one of: ${keys.join(", ")})` : "no key here",
        suggestion,
      };
    }
    case "invalid_type":
      return { path, expected: (custom ?? typePhrase(issue.expected)) + not };
    case "invalid_value": {
      const values = issue.values.map((v) => typeof v === "string" ? JSON.stringify(v) : String(v));
      const phrase = values.length === 1 ? values[0]! : `one of ${values.join(", ")}`;
      const near = typeof value === "string"
        ? closest(value, issue.values.filter((v): v is string => typeof v === "string"))
        : undefined;
      return {
        path,
        expected: (custom ?? phrase) + not,
        suggestion: near === undefined ? undefined : `did you mean "${near}"?`,
      };
    }
    case "too_small":
    case "too_big":
      return { path, expected: (custom ?? boundPhrase(issue)) + (custom?.includes(" not ") ? "" : not) };
    case "invalid_format":
      return { path, expected: (custom ?? `a string matching ${issue.pattern}`) + not };
    case "custom":
      return { path, expected: issue.message };
  }
}

function typePhrase(expected: string): string {
  switch (expected) {
    case "int":
      return "an integer";
    case "object":
    case "record":
      return "a table";
    default:
      return /^[aeiou]/.test(expected) ? `an ${expected}` : `a ${expected}`;
  }
}

function boundPhrase(issue: TooSmallIssue | TooBigIssue): string {
  const small = issue.code === "too_small";
  const bound = small ? issue.minimum : issue.maximum;
  const inclusive = issue.inclusive;
  switch (issue.origin) {
    case "number":
    case "int": {
      const noun = issue.origin === "number" ? "a number" : "an integer";
      if (small && bound === 0 && !inclusive) return `a positive ${noun.replace(/^an? /, "")}`;
      return `${noun} ${small ? ">" : "<"}${inclusive ? "=" : ""} ${bound}`;
    }
    case "string":
      return `a string of ${small ? "at least" : "at most"} ${bound} characters`;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Walking a schema (best effort, for the keys that a "did you mean" can offer). Structural, by `kind`, so
// that it also walks schemas built by another copy of the schema module (a plugin imported by URL).

/** What the walk reads of a schema: `kind`, and `shape`, `element`, `valueType` or `unwrap()` by kind. */
interface SchemaNode {
  readonly kind?: unknown;
  readonly shape?: unknown;
  readonly element?: unknown;
  readonly valueType?: unknown;
  unwrap?(): unknown;
}

function nodeOf(schema: unknown): SchemaNode {
  return typeof schema === "object" && schema !== null ? schema : {};
}

/** The schema under wrappers (optional, prefault, transform). */
function unwrap(schema: unknown): SchemaNode {
  let node = nodeOf(schema);
  for (let depth = 0; depth < 20 && typeof node.unwrap === "function"; depth++) node = nodeOf(node.unwrap());
  return node;
}

function childSchema(schema: unknown, seg: string | number): unknown {
  const node = unwrap(schema);
  switch (node.kind) {
    case "object":
      return isTable(node.shape) && Object.hasOwn(node.shape, String(seg))
        ? node.shape[String(seg)]
        : undefined;
    case "record":
      return node.valueType;
    case "array":
      return node.element;
    default:
      return undefined;
  }
}

function knownKeys(schema: unknown, path: Path): string[] {
  let current = schema;
  for (const seg of path) current = childSchema(current, seg);
  const node = unwrap(current);
  return node.kind === "object" && isTable(node.shape) ? Object.keys(node.shape) : [];
}

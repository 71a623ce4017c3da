/**
 * The members of `z`: a small validation library with the part of zod's API that plugin config schemas use,
 * and zod's issue shapes. `schema.ts` re-exports this module as `z`; import it from there.
 *
 * Parsing builds a new value (objects and arrays are copied), so defaults and transforms never change the
 * input. Each schema first checks the type, then runs its checks (`min`, `regex`, `refine`…) in order; as in
 * zod, a type error skips the checks, and a failed check does not stop the next one (but a failed `int`).
 *
 * @module
 */

/** Where an issue is, from the parsed value: keys, and indexes in arrays. */
export type IssuePath = (string | number)[];

/** What every issue has. */
interface IssueBase {
  /** Where the bad value is, from the parsed value (`[]`: the value itself). */
  path: IssuePath;
  /** The schema's `error` when one was given, else a default message such as `Invalid input: …`. */
  message: string;
  /** The value that failed. */
  input?: unknown;
}

/** The value is not of the type the schema expects. */
export interface InvalidTypeIssue extends IssueBase {
  code: "invalid_type";
  /** `int` for a number that is not an integer, `object` for a strict object, `record` for a record. */
  expected: "string" | "number" | "int" | "boolean" | "array" | "object" | "record";
}

/** A strict object has keys its shape does not name. */
export interface UnrecognizedKeysIssue extends IssueBase {
  code: "unrecognized_keys";
  /** The unknown keys, in input order. */
  keys: string[];
}

/** A number below its minimum, or a string shorter than its minimum length. */
export interface TooSmallIssue extends IssueBase {
  code: "too_small";
  minimum: number;
  /** `int` for an integer outside the safe range. */
  origin: "number" | "int" | "string";
  /** Whether `minimum` itself is allowed. */
  inclusive: boolean;
}

/** A number above its maximum. */
export interface TooBigIssue extends IssueBase {
  code: "too_big";
  maximum: number;
  /** `int` for an integer outside the safe range. */
  origin: "number" | "int";
  /** Whether `maximum` itself is allowed. */
  inclusive: boolean;
}

/** A value outside an enum. */
export interface InvalidValueIssue extends IssueBase {
  code: "invalid_value";
  /** The allowed values. */
  values: string[];
}

/** A string that does not match a `regex`. */
export interface InvalidFormatIssue extends IssueBase {
  code: "invalid_format";
  format: "regex";
  origin: "string";
  /** The regular expression, as `/source/flags`. */
  pattern: string;
}

/** A failed `refine`, or an issue a `transform` reported. */
export interface CustomIssue extends IssueBase {
  code: "custom";
}

/** One problem found by a schema; `code` tells which. */
export type Issue =
  | InvalidTypeIssue
  | UnrecognizedKeysIssue
  | TooSmallIssue
  | TooBigIssue
  | InvalidValueIssue
  | InvalidFormatIssue
  | CustomIssue;

/** What a `transform` may report: a custom issue, at the transformed value unless `path` says deeper. */
export interface TransformIssue {
  code: "custom";
  message: string;
  input?: unknown;
  path?: IssuePath;
}

/** The second argument of a `transform` function. */
export interface TransformContext {
  /** Push an issue here, then return {@linkcode NEVER}, to make the parse fail. */
  readonly issues: TransformIssue[];
}

/** The message used instead of the default one: `{ error: "a positive integer" }`. */
export interface ErrorParams {
  /** Replaces the issue's default message. Default: a message such as `Invalid input: expected string`. */
  error?: string;
}

/** The result of `safeParse`: the parsed value, or the issues. */
export type SafeParseResult<T> =
  | { success: true; data: T; error?: never }
  | { success: false; error: SchemaError; data?: never };

/**
 * A parse failed: `issues` lists every problem, and the message names the first.
 *
 * @example
 * ```ts
 * import { z } from "./schema.ts";
 * import assert from "node:assert/strict";
 * assert.throws(() => z.strictObject({ n: z.number() }).parse({ n: "1" }), {
 *   name: "SchemaError",
 *   message: "n: Invalid input: expected number, received string",
 * });
 * ```
 */
export class SchemaError extends Error {
  override name = "SchemaError";
  /** Every issue, in the order found (a strict object's unknown keys before its other issues). */
  readonly issues: Issue[];
  /** @param issues the issues, at least one */
  constructor(issues: Issue[]) {
    const first = issues[0];
    const where = first === undefined || first.path.length === 0 ? "" : `${first.path.join(".")}: `;
    const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : "";
    super(`${where}${first?.message ?? "Invalid input"}${more}`);
    this.issues = issues;
  }
}

/**
 * The Standard Schema v1 properties (https://standardschema.dev), as `~standard` gives them: the common
 * interface of zod, valibot, arktype and these schemas.
 */
export interface StandardSchemaV1Props<In = unknown, Out = In> {
  readonly version: 1;
  readonly vendor: string;
  readonly validate: (
    value: unknown,
  ) => StandardSchemaV1Result<Out> | Promise<StandardSchemaV1Result<Out>>;
  readonly types?: { readonly input: In; readonly output: Out } | undefined;
}

/** What a Standard Schema's `validate` returns. */
export type StandardSchemaV1Result<Out> =
  | { readonly value: Out; readonly issues?: undefined }
  | {
    readonly issues: ReadonlyArray<
      {
        readonly message: string;
        readonly path?: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }> | undefined;
      }
    >;
  };

/** Any Standard Schema v1. */
export interface StandardSchemaV1<In = unknown, Out = In> {
  readonly "~standard": StandardSchemaV1Props<In, Out>;
}

/** The state of one parse: issues found so far, and where the parse is. Internal to this module. */
export interface ParseState {
  readonly issues: Issue[];
  /** The path of the value being parsed; schemas push and pop keys as they descend. */
  readonly path: IssuePath;
  /** Issues that let the next checks run (zod's `continue: true`); any other issue stops them. */
  readonly soft: Set<Issue>;
}

/** A check on a parsed value; a method type, so that a `Schema<string>` is also a `Schema<unknown>`. */
type Check<T> = { check(value: T, state: ParseState): void }["check"];

/** The value a schema produces: `z.infer<typeof schema>`. */
export type Output<S extends Schema<unknown, unknown>> = S["~output"];
/** The value a schema accepts (before defaults and transforms). */
export type Input<S extends Schema<unknown, unknown>> = S["~input"];
export type { Output as infer };

/**
 * A schema that parses an input `In` into an `Out`. The common methods: `parse`, `safeParse`, `optional`,
 * `prefault`, `refine`, `transform`.
 *
 * @typeParam Out what `parse` returns
 * @typeParam In what `parse` accepts
 */
export abstract class Schema<out Out, out In = unknown> {
  /** Type-level only: the output. */
  declare readonly "~output": Out;
  /** Type-level only: the input. */
  declare readonly "~input": In;
  /** What the schema is, for code that walks schemas: `object`, `array`, `optional`, `prefault`… */
  abstract readonly kind: string;
  /** The checks run after the type check, in order. */
  #checks: readonly Check<Out>[] = [];

  /** Checks the type and builds the value, without the checks. */
  protected abstract parseType(input: unknown, state: ParseState): Out;

  /**
   * Parses `input` within a larger parse: issues go to `state`. For schemas that contain schemas.
   *
   * @param input the value
   * @param state the parse's issues and current path
   * @returns the parsed value; meaningless when issues were added
   */
  run(input: unknown, state: ParseState): Out {
    const start = state.issues.length;
    const value = this.parseType(input, state);
    if (this.#checks.length > 0 && !stopped(state, start)) {
      for (const check of this.#checks) {
        const before = state.issues.length;
        check(value, state);
        if (stopped(state, before)) break;
      }
    }
    return value;
  }

  /**
   * Parses `input`.
   *
   * @param input the value
   * @returns the parsed value, or the issues
   */
  safeParse(input: unknown): SafeParseResult<Out> {
    const state: ParseState = { issues: [], path: [], soft: new Set() };
    const data = this.run(input, state);
    return state.issues.length === 0
      ? { success: true, data }
      : { success: false, error: new SchemaError(state.issues) };
  }

  /**
   * Parses `input`, or throws.
   *
   * @param input the value
   * @returns the parsed value
   * @throws {SchemaError} naming the first issue
   */
  parse(input: unknown): Out {
    const result = this.safeParse(input);
    if (result.success) return result.data;
    throw result.error;
  }

  /**
   * This schema, that also accepts `undefined` (and an absent key, which stays absent in the output).
   *
   * @returns the optional schema; `unwrap()` gives this one back
   */
  optional(): OptionalSchema<Out, In> {
    return new OptionalSchema(this);
  }

  /**
   * This schema, with `value` parsed in place of `undefined` (an absent key): the default goes through the
   * schema, so `duration().prefault("2s")` gives 2000.
   *
   * @param value the default input
   * @returns the schema with a default; `unwrap()` gives this one back
   */
  prefault(value: Exclude<In, undefined>): PrefaultSchema<Out, In> {
    return new PrefaultSchema(this, value);
  }

  /**
   * This schema, with `value` returned as it is in place of `undefined` (an absent key): zod's `.default`.
   * The value is an output, so it is not parsed; `config regen` writes it as it is, so give durations with
   * {@linkcode Schema.prefault} (their TOML form) instead.
   *
   * @param value the output used for an absent key
   * @returns the schema with a default; `unwrap()` gives this one back
   */
  default(value: Exclude<Out, undefined>): DefaultSchema<Out, In> {
    return new DefaultSchema(this, value);
  }

  /**
   * The Standard Schema interface (`~standard`, version 1), so that any library that accepts a Standard
   * Schema (and `definePlugin`) takes these schemas too.
   */
  get "~standard"(): StandardSchemaV1Props<In, Out> {
    return {
      version: 1,
      vendor: "alumet",
      validate: (value: unknown) => {
        const r = this.safeParse(value);
        return r.success ? { value: r.data } : { issues: r.error.issues };
      },
    };
  }

  /**
   * This schema, with a check on the parsed value. The check runs only when the value has the right type.
   *
   * @param check returns whether the value is acceptable
   * @param params `error`: the message; `path`: where to report the issue, from this value. Default: `[]`.
   * @returns a copy of this schema with the check added
   */
  refine(check: (value: Out) => boolean, params: ErrorParams & { path?: IssuePath } = {}): this {
    return this.withCheck((value, state) => {
      if (check(value)) return;
      softIssue(state, {
        code: "custom",
        path: [...state.path, ...(params.path ?? [])],
        message: params.error ?? "Invalid input",
        input: value,
      });
    });
  }

  /**
   * This schema, followed by a conversion of its value. To reject a value, push an issue to `ctx.issues`
   * and return {@linkcode NEVER}. The function runs only when the value passed this schema.
   *
   * @param fn converts the parsed value
   * @returns the transforming schema; `unwrap()` gives this one back
   */
  transform<T>(fn: (value: Out, ctx: TransformContext) => T): TransformSchema<Out, In, T> {
    return new TransformSchema(this, fn);
  }

  /** A copy of this schema with one more check. */
  protected withCheck(check: Check<Out>): this {
    const copy = this.copy();
    copy.#checks = [...this.#checks, check];
    return copy;
  }

  /** A new schema like this one, without its checks. */
  protected abstract copy(): this;
}

/** Whether an issue that stops the checks was added since `start`. */
function stopped(state: ParseState, start: number): boolean {
  for (let i = start; i < state.issues.length; i++) {
    if (!state.soft.has(state.issues[i]!)) return true;
  }
  return false;
}

function here(state: ParseState): IssuePath {
  return [...state.path];
}

/** A name for the type of `value`, for default messages. */
function received(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (value instanceof Date) return "date";
  if (typeof value === "number" && Number.isNaN(value)) return "NaN";
  return typeof value;
}

function typeIssue(
  state: ParseState,
  expected: InvalidTypeIssue["expected"],
  input: unknown,
  error: string | undefined,
): void {
  state.issues.push({
    code: "invalid_type",
    expected,
    path: here(state),
    message: error ?? `Invalid input: expected ${expected}, received ${received(input)}`,
    input,
  });
}

/** Adds an issue that lets the next checks run. */
function softIssue(state: ParseState, issue: Issue): void {
  state.issues.push(issue);
  state.soft.add(issue);
}

/** A plain table: an object that is not an array nor a date. */
function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

/** Sets a key as an own property, even `__proto__`. */
function setOwn(table: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(table, key, { value, enumerable: true, writable: true, configurable: true });
}

// ---------------------------------------------------------------------------------------------------------
// Scalars

/** A string; see {@linkcode string}. */
export class StringSchema extends Schema<string, string> {
  readonly kind = "string";
  readonly #error: string | undefined;

  /** @param error the message when the value is not a string */
  constructor(error?: string) {
    super();
    this.#error = error;
  }

  protected copy(): this {
    return new StringSchema(this.#error) as this;
  }

  protected parseType(input: unknown, state: ParseState): string {
    if (typeof input !== "string") typeIssue(state, "string", input, this.#error);
    return input as string;
  }

  /**
   * This schema, rejecting strings shorter than `length` (in UTF-16 code units).
   *
   * @param length the minimum length
   * @param params the message
   * @returns a copy with the check
   */
  min(length: number, params: ErrorParams = {}): this {
    return this.withCheck((value, state) => {
      if (value.length >= length) return;
      softIssue(state, {
        code: "too_small",
        minimum: length,
        origin: "string",
        inclusive: true,
        path: here(state),
        message: params.error ?? `Too small: expected string to have >=${length} characters`,
        input: value,
      });
    });
  }

  /**
   * This schema, rejecting strings that `pattern` does not match.
   *
   * @param pattern the regular expression (anchor it to match the whole string)
   * @param params the message
   * @returns a copy with the check
   */
  regex(pattern: RegExp, params: ErrorParams = {}): this {
    return this.withCheck((value, state) => {
      pattern.lastIndex = 0;
      if (pattern.test(value)) return;
      softIssue(state, {
        code: "invalid_format",
        format: "regex",
        origin: "string",
        pattern: String(pattern),
        path: here(state),
        message: params.error ?? `Invalid string: must match pattern ${pattern}`,
        input: value,
      });
    });
  }
}

/** A finite number; see {@linkcode number} and {@linkcode int}. */
export class NumberSchema extends Schema<number, number> {
  readonly kind = "number";
  readonly #error: string | undefined;

  /** @param error the message when the value is not a finite number */
  constructor(error?: string) {
    super();
    this.#error = error;
  }

  protected copy(): this {
    return new NumberSchema(this.#error) as this;
  }

  protected parseType(input: unknown, state: ParseState): number {
    if (typeof input !== "number" || !Number.isFinite(input)) typeIssue(state, "number", input, this.#error);
    return input as number;
  }

  /**
   * This schema, rejecting numbers that are not safe integers. A failure stops the next checks.
   *
   * @param params the message
   * @returns a copy with the check
   */
  int(params: ErrorParams = {}): this {
    return this.withCheck((value, state) => {
      if (!Number.isInteger(value)) {
        typeIssue(state, "int", value, params.error);
        return;
      }
      if (Number.isSafeInteger(value)) return;
      const path = here(state);
      softIssue(
        state,
        value > 0
          ? {
            code: "too_big",
            maximum: Number.MAX_SAFE_INTEGER,
            origin: "int",
            inclusive: true,
            path,
            message: params.error ?? "Too big: expected int to be a safe integer",
            input: value,
          }
          : {
            code: "too_small",
            minimum: Number.MIN_SAFE_INTEGER,
            origin: "int",
            inclusive: true,
            path,
            message: params.error ?? "Too small: expected int to be a safe integer",
            input: value,
          },
      );
    });
  }

  /**
   * This schema, rejecting numbers `<= 0`.
   *
   * @param params the message
   * @returns a copy with the check
   */
  positive(params: ErrorParams = {}): this {
    return this.#bound("too_small", 0, false, params);
  }

  /**
   * This schema, rejecting numbers below `minimum`.
   *
   * @param minimum the smallest number accepted
   * @param params the message
   * @returns a copy with the check
   */
  min(minimum: number, params: ErrorParams = {}): this {
    return this.#bound("too_small", minimum, true, params);
  }

  /**
   * This schema, rejecting numbers above `maximum`.
   *
   * @param maximum the largest number accepted
   * @param params the message
   * @returns a copy with the check
   */
  max(maximum: number, params: ErrorParams = {}): this {
    return this.#bound("too_big", maximum, true, params);
  }

  #bound(code: "too_small" | "too_big", bound: number, inclusive: boolean, params: ErrorParams): this {
    const op = code === "too_small" ? (inclusive ? ">=" : ">") : (inclusive ? "<=" : "<");
    const message = params.error ??
      `${code === "too_small" ? "Too small" : "Too big"}: expected number to be ${op}${bound}`;
    return this.withCheck((value, state) => {
      const ok = code === "too_small"
        ? (inclusive ? value >= bound : value > bound)
        : (inclusive ? value <= bound : value < bound);
      if (ok) return;
      const path = here(state);
      softIssue(
        state,
        code === "too_small"
          ? { code, minimum: bound, origin: "number", inclusive, path, message, input: value }
          : { code, maximum: bound, origin: "number", inclusive, path, message, input: value },
      );
    });
  }
}

/** `true` or `false`; see {@linkcode boolean}. */
export class BooleanSchema extends Schema<boolean, boolean> {
  readonly kind = "boolean";
  readonly #error: string | undefined;

  /** @param error the message when the value is not a boolean */
  constructor(error?: string) {
    super();
    this.#error = error;
  }

  protected copy(): this {
    return new BooleanSchema(this.#error) as this;
  }

  protected parseType(input: unknown, state: ParseState): boolean {
    if (typeof input !== "boolean") typeIssue(state, "boolean", input, this.#error);
    return input as boolean;
  }
}

/** One of a list of strings; see {@linkcode enumOf | enum}. */
export class EnumSchema<out T extends string> extends Schema<T, T> {
  readonly kind = "enum";
  /** The allowed values. */
  readonly options: readonly T[];
  readonly #error: string | undefined;

  /**
   * @param options the allowed values
   * @param error the message when the value is not one of them
   */
  constructor(options: readonly T[], error?: string) {
    super();
    this.options = options;
    this.#error = error;
  }

  protected copy(): this {
    return new EnumSchema(this.options, this.#error) as this;
  }

  protected parseType(input: unknown, state: ParseState): T {
    if (!(this.options as readonly unknown[]).includes(input)) {
      state.issues.push({
        code: "invalid_value",
        values: [...this.options],
        path: here(state),
        message: this.#error ??
          `Invalid option: expected one of ${this.options.map((v) => JSON.stringify(v)).join("|")}`,
        input,
      });
    }
    return input as T;
  }
}

/** Anything; see {@linkcode unknown}. */
export class UnknownSchema extends Schema<unknown, unknown> {
  readonly kind = "unknown";

  protected copy(): this {
    return new UnknownSchema() as this;
  }

  protected parseType(input: unknown): unknown {
    return input;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Containers

type AnySchema = Schema<unknown, unknown>;

/** The shape of a strict object: a schema per key. */
export type Shape = { readonly [key: string]: AnySchema };

type Simplify<T> = { [K in keyof T]: T[K] } & unknown;

/** The output of a strict object: the keys whose schema is `optional()` may be absent. */
export type ObjectOutput<S extends Shape> = Simplify<
  & { -readonly [K in keyof S as S[K] extends { readonly kind: "optional" } ? never : K]: Output<S[K]> }
  & { -readonly [K in keyof S as S[K] extends { readonly kind: "optional" } ? K : never]?: Output<S[K]> }
>;

/** The input of a strict object: the keys whose schema accepts `undefined` may be absent. */
export type ObjectInput<S extends Shape> = Simplify<
  & { -readonly [K in keyof S as undefined extends Input<S[K]> ? never : K]: Input<S[K]> }
  & { -readonly [K in keyof S as undefined extends Input<S[K]> ? K : never]?: Input<S[K]> }
>;

/** A table with exactly the keys of a shape; see {@linkcode strictObject}. */
export class ObjectSchema<S extends Shape> extends Schema<ObjectOutput<S>, ObjectInput<S>> {
  readonly kind = "object";
  /** The schema of each key. */
  readonly shape: S;
  readonly #error: string | undefined;

  /**
   * @param shape the schema of each key
   * @param error the message when the value is not a table
   */
  constructor(shape: S, error?: string) {
    super();
    this.shape = shape;
    this.#error = error;
  }

  protected copy(): this {
    return new ObjectSchema(this.shape, this.#error) as this;
  }

  protected parseType(input: unknown, state: ParseState): ObjectOutput<S> {
    if (!isTable(input)) {
      typeIssue(state, "object", input, this.#error);
      return input as ObjectOutput<S>;
    }
    const unknownKeys = Object.keys(input).filter((k) => !Object.hasOwn(this.shape, k));
    if (unknownKeys.length > 0) {
      const list = unknownKeys.map((k) => JSON.stringify(k)).join(", ");
      softIssue(state, {
        code: "unrecognized_keys",
        keys: unknownKeys,
        path: here(state),
        message: `Unrecognized key${unknownKeys.length > 1 ? "s" : ""}: ${list}`,
        input,
      });
    }
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(this.shape)) {
      const present = Object.hasOwn(input, key);
      state.path.push(key);
      const value = this.shape[key]!.run(present ? input[key] : undefined, state);
      state.path.pop();
      if (value !== undefined || present) setOwn(out, key, value);
    }
    return out as ObjectOutput<S>;
  }
}

/** A list of values of one schema; see {@linkcode array}. */
export class ArraySchema<out E extends AnySchema> extends Schema<Output<E>[], Input<E>[]> {
  readonly kind = "array";
  /** The schema of every element. */
  readonly element: E;
  readonly #error: string | undefined;

  /**
   * @param element the schema of every element
   * @param error the message when the value is not an array
   */
  constructor(element: E, error?: string) {
    super();
    this.element = element;
    this.#error = error;
  }

  protected copy(): this {
    return new ArraySchema(this.element, this.#error) as this;
  }

  protected parseType(input: unknown, state: ParseState): Output<E>[] {
    if (!Array.isArray(input)) {
      typeIssue(state, "array", input, this.#error);
      return input as Output<E>[];
    }
    return input.map((item: unknown, i) => {
      state.path.push(i);
      const value = this.element.run(item, state);
      state.path.pop();
      return value as Output<E>;
    });
  }
}

/** A table of any keys; see {@linkcode record}. */
export class RecordSchema<K extends Schema<string, unknown>, out V extends AnySchema>
  extends Schema<Record<Output<K>, Output<V>>, Record<Input<K> & string, Input<V>>> {
  readonly kind = "record";
  /** The schema of every key. */
  readonly keyType: K;
  /** The schema of every value. */
  readonly valueType: V;
  readonly #error: string | undefined;

  /**
   * @param keyType the schema of every key
   * @param valueType the schema of every value
   * @param error the message when the value is not a table
   */
  constructor(keyType: K, valueType: V, error?: string) {
    super();
    this.keyType = keyType;
    this.valueType = valueType;
    this.#error = error;
  }

  protected copy(): this {
    return new RecordSchema(this.keyType, this.valueType, this.#error) as this;
  }

  protected parseType(input: unknown, state: ParseState): Record<Output<K>, Output<V>> {
    if (!isTable(input)) {
      typeIssue(state, "record", input, this.#error);
      return input as Record<Output<K>, Output<V>>;
    }
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(input)) {
      state.path.push(key);
      const parsedKey = this.keyType.run(key, state);
      setOwn(out, parsedKey, this.valueType.run(item, state));
      state.path.pop();
    }
    return out as Record<Output<K>, Output<V>>;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Wrappers

/** A schema that also accepts `undefined`; see {@linkcode Schema.optional}. */
export class OptionalSchema<out Out, out In> extends Schema<Out | undefined, In | undefined> {
  readonly kind = "optional";
  readonly #inner: Schema<Out, In>;

  /** @param inner the schema of a value that is there */
  constructor(inner: Schema<Out, In>) {
    super();
    this.#inner = inner;
  }

  /** @returns the schema of a value that is there */
  unwrap(): Schema<Out, In> {
    return this.#inner;
  }

  protected copy(): this {
    return new OptionalSchema(this.#inner) as this;
  }

  protected parseType(input: unknown, state: ParseState): Out | undefined {
    return input === undefined ? undefined : this.#inner.run(input, state);
  }
}

/** A schema with a value for `undefined` (an absent key): the common part of prefault and default. */
abstract class WithDefault<out Out, out In> extends Schema<Out, In | undefined> {
  protected readonly inner: Schema<Out, In>;
  protected readonly value: unknown;

  /**
   * @param inner the schema
   * @param value what stands for `undefined`: an input to parse (prefault) or an output (default)
   */
  constructor(inner: Schema<Out, In>, value: unknown) {
    super();
    this.inner = inner;
    this.value = value;
  }

  /** @returns the schema without the default */
  unwrap(): Schema<Out, In> {
    return this.inner;
  }
}

/** A schema that parses a default in place of `undefined`; see {@linkcode Schema.prefault}. */
export class PrefaultSchema<out Out, out In> extends WithDefault<Out, In> {
  readonly kind = "prefault";

  /** The input parsed for an absent key, as the TOML file writes it (a copy). */
  get defaultInput(): unknown {
    return structuredClone(this.value);
  }

  protected copy(): this {
    return new PrefaultSchema(this.inner, this.value) as this;
  }

  protected parseType(input: unknown, state: ParseState): Out {
    return this.inner.run(input === undefined ? this.value : input, state);
  }
}

/** A schema that gives a default output in place of `undefined`; see {@linkcode Schema.default}. */
export class DefaultSchema<out Out, out In> extends WithDefault<Out, In> {
  readonly kind = "default";

  /** The output given for an absent key (a copy, so that a parse never shares it). */
  get defaultValue(): Out {
    return structuredClone(this.value) as Out;
  }

  protected copy(): this {
    return new DefaultSchema(this.inner, this.value) as this;
  }

  protected parseType(input: unknown, state: ParseState): Out {
    return input === undefined ? this.defaultValue : this.inner.run(input, state);
  }
}

/** A conversion; a method type, so that the schema's type parameters stay covariant. */
type TransformFn<T, U> = { transform(value: T, ctx: TransformContext): U }["transform"];

/** A schema followed by a conversion; see {@linkcode Schema.transform}. */
export class TransformSchema<out Mid, out In, out Out> extends Schema<Out, In> {
  readonly kind = "transform";
  readonly #inner: Schema<Mid, In>;
  readonly #fn: TransformFn<Mid, Out>;

  /**
   * @param inner the schema that parses the input
   * @param fn converts its value
   */
  constructor(inner: Schema<Mid, In>, fn: (value: Mid, ctx: TransformContext) => Out) {
    super();
    this.#inner = inner;
    this.#fn = fn;
  }

  /** @returns the schema that parses the input, before the conversion */
  unwrap(): Schema<Mid, In> {
    return this.#inner;
  }

  protected copy(): this {
    return new TransformSchema(this.#inner, this.#fn) as this;
  }

  protected parseType(input: unknown, state: ParseState): Out {
    const start = state.issues.length;
    const value = this.#inner.run(input, state);
    if (state.issues.length > start) return value as unknown as Out;
    const ctx: TransformContext = { issues: [] };
    const out = this.#fn(value, ctx);
    for (const issue of ctx.issues) {
      state.issues.push({
        code: "custom",
        path: [...state.path, ...(issue.path ?? [])],
        message: issue.message,
        input: issue.input,
      });
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------------------
// The z functions

/**
 * What a `transform` returns after pushing an issue: the value is discarded.
 *
 * @example
 * ```ts
 * import { z } from "./schema.ts";
 * import assert from "node:assert/strict";
 * const even = z.number().transform((n, ctx) => {
 *   if (n % 2 === 0) return n / 2;
 *   ctx.issues.push({ code: "custom", input: n, message: "an even number" });
 *   return z.NEVER;
 * });
 * assert.equal(even.parse(4), 2);
 * assert.equal(even.safeParse(3).error?.issues[0]?.message, "an even number");
 * ```
 */
export const NEVER: never = Object.freeze({ status: "aborted" }) as never;

/**
 * A string.
 *
 * @param params `error`: the message when the value is not a string
 * @returns the schema; `.min(n)` and `.regex(re)` add checks
 *
 * @example
 * ```ts
 * import { z } from "./schema.ts";
 * import assert from "node:assert/strict";
 * const name = z.string().min(1, { error: "a non-empty name" });
 * assert.equal(name.parse("rapl"), "rapl");
 * assert.equal(name.safeParse("").error?.issues[0]?.message, "a non-empty name");
 * ```
 */
export function string(params: ErrorParams = {}): StringSchema {
  return new StringSchema(params.error);
}

/**
 * A finite number (not NaN, not ±Infinity).
 *
 * @param params `error`: the message when the value is not a number
 * @returns the schema; `.int()`, `.positive()`, `.min(n)` and `.max(n)` add checks
 *
 * @example
 * ```ts
 * import { z } from "./schema.ts";
 * import assert from "node:assert/strict";
 * assert.equal(z.number().max(1).parse(0.5), 0.5);
 * assert.equal(z.number().positive().safeParse(0).success, false);
 * ```
 */
export function number(params: ErrorParams = {}): NumberSchema {
  return new NumberSchema(params.error);
}

/**
 * A safe integer: `z.number().int()`, with `error` for both the type and the integer check.
 *
 * @param params `error`: the message when the value is not an integer
 * @returns the schema
 *
 * @example
 * ```ts
 * import { z } from "./schema.ts";
 * import assert from "node:assert/strict";
 * const size = z.int({ error: "a positive integer" }).positive({ error: "a positive integer" });
 * assert.equal(size.parse(16), 16);
 * assert.equal(size.safeParse(1.5).error?.issues[0]?.message, "a positive integer");
 * ```
 */
export function int(params: ErrorParams = {}): NumberSchema {
  return new NumberSchema(params.error).int(params);
}

/**
 * `true` or `false`.
 *
 * @param params `error`: the message when the value is not a boolean
 * @returns the schema
 */
export function boolean(params: ErrorParams = {}): BooleanSchema {
  return new BooleanSchema(params.error);
}

/**
 * One of the given strings. Exported as `enum`.
 *
 * @param values the allowed values
 * @param params `error`: the message when the value is not one of them
 * @returns the schema
 *
 * @example
 * ```ts
 * import { z } from "./schema.ts";
 * import assert from "node:assert/strict";
 * const mode = z.enum(["append", "truncate"]);
 * const m: "append" | "truncate" = mode.parse("append");
 * assert.equal(m, "append");
 * assert.deepEqual(mode.safeParse("apend").error?.issues[0]?.code, "invalid_value");
 * ```
 */
function enumOf<const T extends readonly [string, ...string[]]>(
  values: T,
  params: ErrorParams = {},
): EnumSchema<T[number]> {
  return new EnumSchema<T[number]>(values, params.error);
}
export { enumOf as enum };

/**
 * Anything, `undefined` included.
 *
 * @returns the schema
 */
export function unknown(): UnknownSchema {
  return new UnknownSchema();
}

/**
 * An array whose elements all match `element`. Issues name the index: `["groups", 1, "pid"]`.
 *
 * @param element the schema of every element
 * @param params `error`: the message when the value is not an array
 * @returns the schema
 */
export function array<E extends AnySchema>(element: E, params: ErrorParams = {}): ArraySchema<E> {
  return new ArraySchema(element, params.error);
}

/**
 * A table of any keys, whose keys match `keyType` and values match `valueType`.
 *
 * @param keyType the schema of every key (`z.string()`)
 * @param valueType the schema of every value
 * @param params `error`: the message when the value is not a table
 * @returns the schema
 */
export function record<K extends Schema<string, unknown>, V extends AnySchema>(
  keyType: K,
  valueType: V,
  params: ErrorParams = {},
): RecordSchema<K, V> {
  return new RecordSchema(keyType, valueType, params.error);
}

/**
 * A table with exactly the keys of `shape`: an unknown key is an `unrecognized_keys` issue (reported before
 * the issues of the values), a missing key is parsed as `undefined` (so it must be `optional()` or have a
 * `prefault`). `.shape` gives the schemas back.
 *
 * @param shape the schema of each key
 * @param params `error`: the message when the value is not a table
 * @returns the schema
 *
 * @example
 * ```ts
 * import { z } from "./schema.ts";
 * import assert from "node:assert/strict";
 * const s = z.strictObject({ n: z.number().prefault(1), tag: z.string().optional() });
 * assert.deepEqual(s.parse({}), { n: 1 });
 * assert.deepEqual(s.safeParse({ tga: "x" }).error?.issues[0], {
 *   code: "unrecognized_keys",
 *   keys: ["tga"],
 *   path: [],
 *   message: 'Unrecognized key: "tga"',
 *   input: { tga: "x" },
 * });
 * ```
 */
export function strictObject<S extends Shape>(shape: S, params: ErrorParams = {}): ObjectSchema<S> {
  return new ObjectSchema(shape, params.error);
}

/**
 * A small, safe arithmetic expression language for Alumet's attribution formulas (`expr = "cpu_energy *
 * cpu_usage / 100.0"`). The text is parsed once, at config time, into a tree of closures; nothing is ever
 * handed to `eval` or `Function`, and a formula can only read the variables it is given.
 *
 * Grammar (lowest precedence first): comparisons `< <= > >= == !=` (1 or 0), `+ -`, `* / %`, unary `- +`,
 * `^` (power, right-associative), then numbers (`1`, `2.5`, `1e-3`), variables (`[A-Za-z_][A-Za-z0-9_]*`),
 * parentheses and the functions `min(a, b, …)`, `max(a, b, …)` and `abs(a)`. It covers the part of
 * `evalexpr` (the library Alumet uses) that attribution formulas need.
 *
 * @example
 * ```ts
 * import { compileExpr } from "./expr.ts";
 * import assert from "node:assert/strict";
 * const f = compileExpr("cpu_energy * cpu_usage / 100.0");
 * assert.deepEqual(f.variables, ["cpu_energy", "cpu_usage"]);
 * assert.equal(f.evaluate({ cpu_energy: 50, cpu_usage: 30 }), 15);
 * assert.throws(() => compileExpr("a * (b + 1"), /expected "\)", found the end of the expression at column 11/);
 * ```
 *
 * @module
 */

/** The text of an expression could not be parsed: the message names what and where (1-based column). */
export class ExprError extends SyntaxError {
  override name = "ExprError";
  /** 1-based column of the problem in the expression. */
  readonly column: number;
  constructor(message: string, column: number) {
    super(`${message} at column ${column}`);
    this.column = column;
  }
}

/** A compiled expression. */
export interface CompiledExpr {
  /** The source text. */
  readonly text: string;
  /** The variables it reads, in order of first appearance. */
  readonly variables: readonly string[];
  /**
   * Evaluates it. A variable missing from `values` reads as NaN (the result is then NaN).
   *
   * @param values the value of each variable
   */
  evaluate(values: Readonly<Record<string, number>>): number;
}

type Node = (vars: Readonly<Record<string, number>>) => number;

interface Token {
  readonly type: "num" | "id" | "op" | "end";
  readonly text: string;
  readonly value: number;
  /** 0-based offset. */
  readonly at: number;
}

const OPS = ["<=", ">=", "==", "!=", "<", ">", "+", "-", "*", "/", "%", "^", "(", ")", ","];
const NUMBER_RE = /^(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/;
const IDENT_RE = /^[A-Za-z_][A-Za-z0-9_]*/;

function tokenize(text: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === " " || c === "\t" || c === "\n" || c === "\r") {
      i++;
      continue;
    }
    const rest = text.slice(i);
    const num = NUMBER_RE.exec(rest);
    if (num !== null) {
      out.push({ type: "num", text: num[0], value: Number(num[0]), at: i });
      i += num[0].length;
      continue;
    }
    const id = IDENT_RE.exec(rest);
    if (id !== null) {
      out.push({ type: "id", text: id[0], value: 0, at: i });
      i += id[0].length;
      continue;
    }
    const op = OPS.find((o) => rest.startsWith(o));
    if (op === undefined) throw new ExprError(`unexpected character "${c}"`, i + 1);
    out.push({ type: "op", text: op, value: 0, at: i });
    i += op.length;
  }
  out.push({ type: "end", text: "end of expression", value: 0, at: text.length });
  return out;
}

const FUNCTIONS: Readonly<Record<string, { min: number; max: number; fn: (xs: number[]) => number }>> = {
  min: { min: 1, max: Infinity, fn: (xs) => Math.min(...xs) },
  max: { min: 1, max: Infinity, fn: (xs) => Math.max(...xs) },
  abs: { min: 1, max: 1, fn: (xs) => Math.abs(xs[0]!) },
};

class Parser {
  readonly #tokens: Token[];
  #pos = 0;
  readonly variables: string[] = [];

  constructor(text: string) {
    this.#tokens = tokenize(text);
  }

  #peek(): Token {
    return this.#tokens[this.#pos]!;
  }

  #next(): Token {
    return this.#tokens[this.#pos++]!;
  }

  #isOp(text: string): boolean {
    const t = this.#peek();
    return t.type === "op" && t.text === text;
  }

  #expect(text: string): void {
    const t = this.#peek();
    if (t.type !== "op" || t.text !== text) {
      throw new ExprError(`expected "${text}", found ${describe(t)}`, t.at + 1);
    }
    this.#pos++;
  }

  parse(): Node {
    const node = this.#comparison();
    const t = this.#peek();
    if (t.type !== "end") throw new ExprError(`unexpected ${describe(t)}`, t.at + 1);
    return node;
  }

  #comparison(): Node {
    const left = this.#additive();
    const t = this.#peek();
    if (t.type === "op" && ["<", "<=", ">", ">=", "==", "!="].includes(t.text)) {
      this.#pos++;
      const right = this.#additive();
      switch (t.text) {
        case "<":
          return (v) => left(v) < right(v) ? 1 : 0;
        case "<=":
          return (v) => left(v) <= right(v) ? 1 : 0;
        case ">":
          return (v) => left(v) > right(v) ? 1 : 0;
        case ">=":
          return (v) => left(v) >= right(v) ? 1 : 0;
        case "==":
          return (v) => left(v) === right(v) ? 1 : 0;
        default:
          return (v) => left(v) !== right(v) ? 1 : 0;
      }
    }
    return left;
  }

  #additive(): Node {
    let left = this.#multiplicative();
    for (;;) {
      if (this.#isOp("+")) {
        this.#pos++;
        const l = left, r = this.#multiplicative();
        left = (v) => l(v) + r(v);
      } else if (this.#isOp("-")) {
        this.#pos++;
        const l = left, r = this.#multiplicative();
        left = (v) => l(v) - r(v);
      } else return left;
    }
  }

  #multiplicative(): Node {
    let left = this.#unary();
    for (;;) {
      if (this.#isOp("*")) {
        this.#pos++;
        const l = left, r = this.#unary();
        left = (v) => l(v) * r(v);
      } else if (this.#isOp("/")) {
        this.#pos++;
        const l = left, r = this.#unary();
        left = (v) => l(v) / r(v);
      } else if (this.#isOp("%")) {
        this.#pos++;
        const l = left, r = this.#unary();
        left = (v) => l(v) % r(v);
      } else return left;
    }
  }

  #unary(): Node {
    if (this.#isOp("-")) {
      this.#pos++;
      const inner = this.#unary();
      return (v) => -inner(v);
    }
    if (this.#isOp("+")) {
      this.#pos++;
      return this.#unary();
    }
    return this.#power();
  }

  #power(): Node {
    const base = this.#primary();
    if (this.#isOp("^")) {
      this.#pos++;
      const exponent = this.#unary(); // right-associative: 2^3^2 = 2^(3^2)
      return (v) => base(v) ** exponent(v);
    }
    return base;
  }

  #primary(): Node {
    const t = this.#next();
    if (t.type === "num") {
      const value = t.value;
      return () => value;
    }
    if (t.type === "id") {
      if (this.#isOp("(")) return this.#call(t);
      const name = t.text;
      if (!this.variables.includes(name)) this.variables.push(name);
      // Own properties only: a variable named `constructor` or `__proto__` must not reach Object.prototype.
      return (v) => (Object.hasOwn(v, name) ? v[name]! : NaN);
    }
    if (t.type === "op" && t.text === "(") {
      const inner = this.#comparison();
      this.#expect(")");
      return inner;
    }
    throw new ExprError(`expected a number, a variable or "(", found ${describe(t)}`, t.at + 1);
  }

  #call(name: Token): Node {
    const f = Object.hasOwn(FUNCTIONS, name.text) ? FUNCTIONS[name.text] : undefined;
    if (f === undefined) {
      throw new ExprError(
        `unknown function "${name.text}" (known: ${Object.keys(FUNCTIONS).join(", ")})`,
        name.at + 1,
      );
    }
    this.#expect("(");
    const args: Node[] = [];
    if (!this.#isOp(")")) {
      args.push(this.#comparison());
      while (this.#isOp(",")) {
        this.#pos++;
        args.push(this.#comparison());
      }
    }
    this.#expect(")");
    if (args.length < f.min || args.length > f.max) {
      const want = f.max === f.min ? `${f.min}` : `at least ${f.min}`;
      throw new ExprError(`${name.text}() takes ${want} argument(s), got ${args.length}`, name.at + 1);
    }
    const fn = f.fn;
    return (v) => fn(args.map((a) => a(v)));
  }
}

function describe(t: Token): string {
  return t.type === "end" ? "the end of the expression" : `"${t.text}"`;
}

/**
 * Parses an expression.
 *
 * @param text the expression
 * @returns the compiled expression
 * @throws {ExprError} for a syntax error, naming the column
 */
export function compileExpr(text: string): CompiledExpr {
  const parser = new Parser(text);
  const root = parser.parse();
  return Object.freeze({
    text,
    variables: Object.freeze([...parser.variables]),
    evaluate: (values: Readonly<Record<string, number>>) => root(values),
  });
}

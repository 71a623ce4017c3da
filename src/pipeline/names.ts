/**
 * Element names (`kind/plugin/name`) and the patterns that select them.
 *
 * @module
 */

/** The kinds of pipeline elements. */
export type ElementKind = "source" | "transform" | "output";

/** The full name of an element. */
export interface ElementName {
  readonly kind: ElementKind;
  readonly plugin: string;
  readonly name: string;
}

/** `kind/plugin/name`. */
export function formatName(n: ElementName): string {
  return `${n.kind}/${n.plugin}/${n.name}`;
}

const KIND_ALIASES: Record<string, ElementKind | "*"> = {
  src: "source",
  source: "source",
  sources: "source",
  tra: "transform",
  transform: "transform",
  transforms: "transform",
  out: "output",
  output: "output",
  outputs: "output",
  "*": "*",
  all: "*",
  any: "*",
};

function globToRegExp(glob: string): RegExp {
  const escaped = glob.split("*").map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*");
  return new RegExp(`^${escaped}$`);
}

/**
 * A pattern over element names: `kind[/plugin[/name]]`, each part a glob where `*` matches any run of
 * characters (also in the middle: `source/procfs/pid-*`). Missing parts match anything. Kind aliases:
 * `src|source|sources`, `tra|transform|transforms`, `out|output|outputs`, `*|all|any`.
 *
 * @example
 * ```ts
 * import { ElementPattern } from "./names.ts";
 * import assert from "node:assert/strict";
 * const p = ElementPattern.parse("src/procfs/*");
 * assert.ok(p.matches({ kind: "source", plugin: "procfs", name: "kernel" }));
 * assert.ok(!p.matches({ kind: "output", plugin: "procfs", name: "kernel" }));
 * ```
 */
export class ElementPattern {
  readonly kind: ElementKind | "*";
  readonly #plugin: RegExp;
  readonly #name: RegExp;
  readonly text: string;

  private constructor(text: string, kind: ElementKind | "*", plugin: RegExp, name: RegExp) {
    this.text = text;
    this.kind = kind;
    this.#plugin = plugin;
    this.#name = name;
  }

  /** Parses a pattern. Throws a RangeError naming the bad kind or the extra part. */
  static parse(text: string): ElementPattern {
    const parts = text.trim().split("/");
    if (parts.length > 3) throw new RangeError(`Element pattern "${text}" has more than kind/plugin/name`);
    const kind = KIND_ALIASES[parts[0] ?? "*"];
    if (kind === undefined) {
      throw new RangeError(
        `Element pattern "${text}": unknown kind "${parts[0]}" (use source, transform, output or *)`,
      );
    }
    return new ElementPattern(text, kind, globToRegExp(parts[1] ?? "*"), globToRegExp(parts[2] ?? "*"));
  }

  /** True when `n` is selected. */
  matches(n: ElementName): boolean {
    return (this.kind === "*" || this.kind === n.kind) && this.#plugin.test(n.plugin) &&
      this.#name.test(n.name);
  }
}

/**
 * Turns any text (a cgroup path, a device name) into a part of an element name, injectively: letters, digits,
 * `.`, `@` and `-` stay, `/` becomes `:`, and every other character (including `_` and `:`) becomes `_` and its
 * UTF-8 bytes in hex. So `/a/b` and `/a_b` give `:a:b` and `:a_5fb`, never the same name.
 *
 * @param text the text
 * @returns a valid element name part
 *
 * @example
 * ```ts
 * import { encodeNamePart } from "./names.ts";
 * import assert from "node:assert/strict";
 * assert.equal(encodeNamePart("/system.slice/cron.service"), ":system.slice:cron.service");
 * assert.notEqual(encodeNamePart("/a/b"), encodeNamePart("/a_b"));
 * assert.equal(encodeNamePart("/a b"), ":a_20b");
 * ```
 */
export function encodeNamePart(text: string): string {
  let out = "";
  for (const ch of text) {
    if (/^[A-Za-z0-9.@-]$/.test(ch)) out += ch;
    else if (ch === "/") out += ":";
    else for (const b of encoder.encode(ch)) out += `_${b.toString(16).padStart(2, "0")}`;
  }
  return out;
}

const encoder = new TextEncoder();

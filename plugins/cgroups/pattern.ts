/**
 * Path patterns that choose which cgroups to follow, and the walk of a hierarchy limited to what they can
 * match.
 *
 * A pattern is a cgroup path relative to the hierarchy root (the leading `/` is optional), made of segments
 * separated by `/`:
 * - a literal segment matches that name (`system.slice`);
 * - `*` in a segment matches any run of characters other than `/`, `?` matches one (`kubepods*`, `*.service`);
 * - a segment that is exactly `**` matches zero or more segments, so `kubepods.slice/**` matches
 *   `kubepods.slice` itself and every cgroup below it, at any depth (and with a glob before it, every
 *   top-level cgroup whose name starts with `kubepods`, and everything below them);
 * - `/` alone is the root cgroup.
 *
 * @module
 */

/** One compiled segment: a literal name, a single-segment glob, or `**`. */
type Segment =
  | { readonly kind: "literal"; readonly name: string }
  | { readonly kind: "glob"; readonly re: RegExp }
  | { readonly kind: "any" };

/** Why a pattern is invalid, in words a config error can show after "expected". */
export class PatternError extends Error {
  override name = "PatternError";
}

function compileSegment(seg: string, pattern: string): Segment {
  if (seg === "**") return { kind: "any" };
  if (seg === "." || seg === "..") {
    throw new PatternError(`a cgroup path pattern without "." or ".." segments, not "${pattern}"`);
  }
  if (seg.includes("**")) {
    throw new PatternError(
      `a cgroup path pattern where "**" is a whole segment (as in "kubepods.slice/**"), not "${pattern}"`,
    );
  }
  if (!seg.includes("*") && !seg.includes("?")) return { kind: "literal", name: seg };
  const body = seg.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*").replace(/\?/g, "[^/]");
  return { kind: "glob", re: new RegExp(`^${body}$`, "s") };
}

/**
 * A compiled cgroup path pattern. Matching runs over the path's segments with a set of positions in the
 * pattern (a small NFA), so that a walk can ask, at each directory, both "does it match?" and "can anything
 * below it match?".
 *
 * @example
 * ```ts
 * import { PathPattern } from "./pattern.ts";
 * import assert from "node:assert/strict";
 * const p = new PathPattern(["kubepods*", "**"].join("/")); // any depth below kubepods*
 * assert.ok(p.matches("/kubepods.slice"));
 * assert.ok(p.matches("/kubepods.slice/pod1/ctr"));
 * assert.ok(!p.matches("/system.slice"));
 * assert.ok(new PathPattern("system.slice/*").matches("/system.slice/cron.service"));
 * assert.ok(!new PathPattern("system.slice/*").matches("/system.slice"));
 * assert.ok(new PathPattern("/").matches("/"));
 * ```
 */
export class PathPattern {
  /** The pattern as written. */
  readonly source: string;
  readonly #segments: readonly Segment[];

  /** Compiles `source`; throws a {@linkcode PatternError} when it is not a valid pattern. */
  constructor(source: string) {
    if (typeof source !== "string" || source.trim() === "") {
      throw new PatternError('a cgroup path pattern such as "/system.slice/*", not an empty string');
    }
    this.source = source;
    const parts = source.split("/").filter((s, i, all) => s !== "" || (i > 0 && i < all.length - 1));
    if (parts.includes("")) {
      throw new PatternError(`a cgroup path pattern without empty segments ("//"), not "${source}"`);
    }
    this.#segments = parts.map((s) => compileSegment(s, source));
  }

  /** The start states (before the first segment). */
  start(): number[] {
    return this.#closure([0]);
  }

  /** The states after consuming one more segment `name` from `states`. */
  step(states: readonly number[], name: string): number[] {
    const segs = this.#segments;
    const out: number[] = [];
    for (const s of states) {
      const seg = segs[s];
      if (seg === undefined) continue;
      if (seg.kind === "any") out.push(s);
      else if (seg.kind === "literal" ? seg.name === name : seg.re.test(name)) out.push(s + 1);
    }
    return this.#closure(out);
  }

  /** True when the path consumed so far matches the whole pattern. */
  accepts(states: readonly number[]): boolean {
    return states.includes(this.#segments.length);
  }

  /** True when a longer path (a descendant) could still match. */
  canDescend(states: readonly number[]): boolean {
    const n = this.#segments.length;
    return states.some((s) => s < n);
  }

  /** True when `path` (e.g. `/system.slice/x.service`, `/` for the root) matches. */
  matches(path: string): boolean {
    let states = this.start();
    for (const name of splitPath(path)) {
      states = this.step(states, name);
      if (states.length === 0) return false;
    }
    return this.accepts(states);
  }

  /** `**` also skips ahead without consuming: add those states, deduplicated and sorted. */
  #closure(states: number[]): number[] {
    const segs = this.#segments;
    const set = new Set<number>();
    for (let s of states) {
      set.add(s);
      while (segs[s]?.kind === "any") set.add(++s);
    }
    return [...set].sort((a, b) => a - b);
  }
}

/** The segments of a cgroup path: `/a/b` → `["a", "b"]`, `/` → `[]`. */
export function splitPath(path: string): string[] {
  return path.split("/").filter((s) => s !== "");
}

/** The cgroup path of a child: `/` + `a` → `/a`, `/a` + `b` → `/a/b`. */
export function childPath(parent: string, name: string): string {
  return parent === "/" ? `/${name}` : `${parent}/${name}`;
}

/** The states of every pattern at one directory of a walk. */
type WalkState = readonly (readonly number[])[];

/**
 * The cgroups under `root` (a hierarchy's mount point) whose paths match one of `patterns`, as paths relative
 * to the root (`/` for the root itself), in the order of the walk (depth first, in `readDir` order). Only
 * the directories that some pattern can still match below are listed, so `system.slice/*` lists the root
 * and `system.slice`, nothing else. A directory that disappears during the walk (or cannot be listed) is
 * skipped; a root that does not exist gives an empty list, and a root that cannot be listed otherwise (no
 * permission) throws.
 *
 * @param readDir lists the subdirectory names of a directory (replaceable in tests); throws when it is gone
 *
 * @example
 * ```ts
 * import { PathPattern, walkMatching } from "./pattern.ts";
 * import assert from "node:assert/strict";
 * const tree: Record<string, string[]> = { "/r": ["a", "b"], "/r/a": ["x"], "/r/b": [], "/r/a/x": [] };
 * const found = walkMatching("/r", [new PathPattern("a/*"), new PathPattern("/b")], (d) => tree[d] ?? []);
 * assert.deepEqual(found.sort(), ["/a/x", "/b"]);
 * ```
 */
export function walkMatching(
  root: string,
  patterns: readonly PathPattern[],
  readDir: (dir: string) => string[] = subdirectories,
): string[] {
  const out: string[] = [];
  const list = (dir: string): string[] | undefined => {
    try {
      return readDir(dir);
    } catch {
      return undefined; // removed while we walk, or unreadable
    }
  };
  const visit = (dir: string, path: string, states: WalkState, names?: string[]) => {
    if (patterns.some((p, i) => p.accepts(states[i]!))) out.push(path);
    if (!patterns.some((p, i) => p.canDescend(states[i]!))) return;
    for (const name of names ?? list(dir) ?? []) {
      const next = patterns.map((p, i) => p.step(states[i]!, name));
      if (next.every((s) => s.length === 0)) continue;
      visit(`${dir}/${name}`, childPath(path, name), next);
    }
  };
  // The root is listed first: a hierarchy that is not there has no cgroup, not even "/". Any other failure
  // (a permission) is the caller's to report: an unreadable hierarchy must not look empty.
  let rootNames: string[];
  try {
    rootNames = readDir(root);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return out;
    throw e;
  }
  visit(root, "/", patterns.map((p) => p.start()), rootNames);
  return out;
}

/** The names of the subdirectories of `dir` (cgroups are the directories of a cgroupfs), sorted. */
export function subdirectories(dir: string): string[] {
  const names: string[] = [];
  for (const e of Deno.readDirSync(dir)) if (e.isDirectory) names.push(e.name);
  return names.sort();
}

/**
 * Tests that need what a machine may lack (root, gcc, perf, a writable cgroup tree, a server): without it
 * they are ignored with a printed reason (ignored, not passed); under `CI=true` they fail instead, so CI
 * cannot go green by skipping.
 *
 * ```ts ignore
 * import { needs, testWith } from "./needs.ts";
 * testWith([needs.root, needs.command("perf")], "perf agrees with alumet", async () => { … });
 * ```
 *
 * @module
 */
import { detectLayout } from "../sys/cgroup_layout.ts";

/** Something a test needs, and how to tell whether this machine has it. */
export interface Need {
  readonly what: string;
  /** Undefined when available, else why not (and how to get it). */
  readonly missing: () => string | undefined;
}

function commandMissing(name: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return undefined;
    } catch {
      // not there
    }
  }
  return `"${name}" is not on PATH (.ci/run installs it; on Debian: apt-get install the package that has it)`;
}

/** Common needs. */
export const needs = {
  /** Running as root. */
  root: {
    what: "root",
    missing: () => (Deno.uid() === 0 ? undefined : "the test must run as root (uid 0)"),
  } as Need,
  /** An executable on PATH. */
  command: (name: string): Need => ({ what: name, missing: () => commandMissing(name) }),
  /** A cgroup v2 hierarchy, found in `/proc/mounts` as the plugins find it (`detectLayout`). */
  cgroupV2: {
    what: "cgroup v2",
    missing: () => {
      try {
        return detectLayout().v2 === undefined ? "no cgroup2 mount in /proc/mounts" : undefined;
      } catch (e) {
        return `cannot read /proc/mounts: ${(e as Error).message}`;
      }
    },
  } as Need,
} as const;

/** What to do with a test, given what is missing and whether this is CI. */
export function decide(
  missing: readonly string[],
  ci: boolean,
): { mode: "run" } | { mode: "ignore"; reason: string } | { mode: "fail"; reason: string } {
  if (missing.length === 0) return { mode: "run" };
  const reason = missing.join("; ");
  return ci ? { mode: "fail", reason } : { mode: "ignore", reason };
}

/** Registers a test that runs only where its needs are met (see the module doc). */
export function testWith(
  list: readonly Need[],
  name: string,
  fn: (t: Deno.TestContext) => void | Promise<void>,
): void {
  const missing = list.flatMap((n) => {
    const why = n.missing();
    return why === undefined ? [] : [`${n.what}: ${why}`];
  });
  const d = decide(missing, Deno.env.get("CI") === "true");
  if (d.mode === "run") Deno.test(name, fn);
  else if (d.mode === "fail") {
    Deno.test(name, () => {
      throw new Error(`Required under CI=true, but missing here: ${d.reason}`);
    });
  } else {
    // deno-lint-ignore no-console
    console.warn(`ignored "${name}": ${d.reason}`);
    Deno.test({ name, ignore: true, fn });
  }
}

/**
 * What is measured (a resource) and who uses it (a consumer).
 *
 * Both are small frozen `{ kind, id }` values. Create them once, outside the poll loop, and reuse them:
 * a batch stores references, so a poll that reuses its resources allocates nothing for them.
 *
 * @module
 */

/** Kinds of resource Alumet names; any other kind is a custom resource. */
// deno-lint-ignore ban-types -- `string & {}` keeps the known kinds in editor completions
export type ResourceKind = "local_machine" | "cpu_package" | "cpu_core" | "dram" | "gpu" | (string & {});

/** Kinds of consumer Alumet names; any other kind is a custom consumer. */
// deno-lint-ignore ban-types -- `string & {}` keeps the known kinds in editor completions
export type ConsumerKind = "local_machine" | "process" | "cgroup" | (string & {});

/** A hardware or software resource being measured. `id` is `""` for the local machine. */
export interface Resource {
  readonly kind: ResourceKind;
  readonly id: string;
}

/** The consumer of a resource: the whole machine, a process, a control group, or a custom one. */
export interface Consumer {
  readonly kind: ConsumerKind;
  readonly id: string;
}

const LOCAL: Resource & Consumer = Object.freeze({ kind: "local_machine", id: "" });

const interned = new Map<string, Readonly<{ kind: string; id: string }>>();
function intern(kind: string, id: string): Readonly<{ kind: string; id: string }> {
  const key = `${kind}\u0000${id}`;
  let v = interned.get(key);
  if (v === undefined) {
    v = Object.freeze({ kind, id });
    // Bounded: processes come and go; an unbounded table would grow for the life of the agent.
    if (interned.size >= 65_536) interned.clear();
    interned.set(key, v);
  }
  return v;
}

/** Resource constructors, mirroring Alumet's `Resource` enum. */
export const Resource = {
  /** The whole machine. */
  localMachine: (): Resource => LOCAL,
  /** A CPU socket. */
  cpuPackage: (id: number): Resource => intern("cpu_package", String(id)),
  /** A logical CPU. */
  cpuCore: (id: number): Resource => intern("cpu_core", String(id)),
  /** The memory attached to a socket. */
  dram: (pkgId: number): Resource => intern("dram", String(pkgId)),
  /** A GPU, by PCI bus id. */
  gpu: (busId: string): Resource => intern("gpu", busId),
  /** Any other resource. */
  custom: (kind: string, id: string): Resource => intern(kind, id),
} as const;

/** Consumer constructors, mirroring Alumet's `ResourceConsumer` enum. */
export const Consumer = {
  /** The whole machine. */
  localMachine: (): Consumer => LOCAL,
  /** A process, by pid. */
  process: (pid: number): Consumer => intern("process", String(pid)),
  /** A control group, by its path relative to the cgroupfs root (e.g. `/system.slice/x.service`). */
  cgroup: (path: string): Consumer => intern("cgroup", path),
  /** Any other consumer. */
  custom: (kind: string, id: string): Consumer => intern(kind, id),
} as const;

/** True when two resources (or two consumers) are the same. */
export function sameTarget(a: { kind: string; id: string }, b: { kind: string; id: string }): boolean {
  return a === b || (a.kind === b.kind && a.id === b.id);
}

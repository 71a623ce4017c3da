/**
 * The handle a plugin gets for each source it adds: control of that one source, without building
 * `source/<plugin>/<name>` patterns or naming its own plugin by hand. A handle is bound to the source it
 * added, not to its name: once that source has stopped, a new source with the same name (a reused pid) is
 * not this handle's to control.
 *
 * @module
 */
import type { SourceHandle } from "../plugin/plugin.ts";
import { type ElementName, formatName } from "./names.ts";
import type { SourceTask } from "./source.ts";
import { triggerIntervals } from "./pipeline.ts";

/**
 * A handle on one managed source of a pipeline.
 *
 * @param name the source's full name
 * @param added settles with the running source once it has been added (or rejects when it could not be)
 * @returns the handle; its methods wait for the source to be added, and do nothing when it was not
 */
export function sourceHandle(name: ElementName, added: Promise<SourceTask>): SourceHandle {
  let task: SourceTask | undefined;
  // The rejection is the caller's to see through `ready`; the handle's own methods must not leak it.
  const settled = added.then((t) => void (task = t), () => {});
  const ready = added.then(() => {});
  ready.catch(() => {}); // awaiting `ready` is optional: the agent logs a failure nobody awaited
  const when = async (fn: (t: SourceTask) => unknown): Promise<void> => {
    await settled;
    if (task !== undefined && task.state !== "stopped") await fn(task);
  };
  return {
    name: name.name,
    fullName: formatName(name),
    ready,
    get state() {
      return task?.state ?? "pending";
    },
    trigger: () => when((t) => t.triggerNow()),
    flush: () => when((t) => t.flushNow()),
    pause: () => when((t) => t.pause()),
    resume: () => when((t) => t.resume()),
    stop: () => when((t) => t.stop()),
    setPollInterval(interval) {
      const ms = triggerIntervals({ pollInterval: interval }).poll; // a bad interval throws here, at once
      if (task !== undefined) {
        if (task.state !== "stopped") task.setPollInterval(ms);
      } else void when((t) => t.setPollInterval(ms));
    },
  };
}

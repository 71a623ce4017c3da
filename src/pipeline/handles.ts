/**
 * The handle a plugin gets for each source it adds: control of that one source, without building
 * `source/<plugin>/<name>` patterns or naming its own plugin by hand.
 *
 * @module
 */
import type { SourceHandle } from "../plugin/plugin.ts";
import type { ControlHandle } from "./control.ts";
import { type ElementName, formatName } from "./names.ts";

/**
 * A handle on one managed source of a pipeline.
 *
 * @param control the pipeline's control handle
 * @param name the source's full name
 * @param ready settles when the source has been added (or could not be)
 * @returns the handle; its methods wait for `ready` and do nothing when the source was not added
 */
export function sourceHandle(control: ControlHandle, name: ElementName, ready: Promise<void>): SourceHandle {
  const full = formatName(name);
  let added = false;
  // The rejection is the caller's to see through `ready`; the handle's own methods must not leak it.
  const settled = ready.then(() => void (added = true), () => {});
  const when = async (fn: () => unknown): Promise<void> => {
    await settled;
    if (added) await fn();
  };
  return {
    name: name.name,
    fullName: full,
    ready,
    get state() {
      return added ? control.list(full)[0]?.state ?? "stopped" : "pending";
    },
    trigger: () => when(() => control.triggerNow(full)),
    flush: () => when(() => control.flushNow(full)),
    pause: () => when(() => control.pause(full)),
    resume: () => when(() => control.resume(full)),
    stop: () => when(() => control.stop(full)),
    setPollInterval(interval) {
      if (added) control.setPollInterval(full, interval);
      else void when(() => control.setPollInterval(full, interval)).catch(() => {});
    },
  };
}

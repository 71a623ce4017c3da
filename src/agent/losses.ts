/**
 * What a run lost, told once at the end: `run` and `watch` exit with {@linkcode EXIT_POINTS_LOST} when an
 * output or a source lost points; `exec` keeps the program's exit code and reports the loss in its summary.
 *
 * @module
 */
import type { Logger } from "../log.ts";
import type { Agent } from "./agent.ts";

/** The exit code of a run that stopped cleanly but lost points on the way (a full disk, a dead backend…). */
export const EXIT_POINTS_LOST = 3;

/**
 * Logs one error line per output and per source that lost points, after the agent stopped.
 *
 * @returns the total number of points known lost (0 when every point measured was written, and also when the
 *   only loss is of unknown size: see {@linkcode lostAny})
 */
export function reportLosses(agent: Pick<Agent, "losses">, log: Logger): number {
  const { total, byOutput, bySource } = agent.losses();
  for (const { output, points } of byOutput) {
    log.error(`${output} lost ${points} point${points === 1 ? "" : "s"} (see the warnings above for why)`);
  }
  for (const { source, points, unknown } of bySource) {
    const why = points === 0
      ? "an unknown number of points: it was cut off in a poll that never returned"
      : `${unknown ? "at least " : ""}${points} point${points === 1 ? "" : "s"}: its sampling Worker was ` +
        `terminated${unknown ? " in a poll that never returned" : ""}, before sending them`;
    log.error(`${source} lost ${why} (see the errors above)`);
  }
  return total;
}

/** Whether the run lost any point, counted or not: the exit code of `run` and `watch` follows it. */
export function lostAny(agent: Pick<Agent, "losses">): boolean {
  const { total, unknown } = agent.losses();
  return total > 0 || unknown;
}

/**
 * What a run lost, told once at the end: `run` and `watch` exit with {@linkcode EXIT_POINTS_LOST} when an
 * output lost points; `exec` keeps the program's exit code and reports the loss in its summary.
 *
 * @module
 */
import type { Logger } from "../log.ts";
import type { Agent } from "./agent.ts";

/** The exit code of a run that stopped cleanly but lost points on the way (a full disk, a dead backend…). */
export const EXIT_POINTS_LOST = 3;

/**
 * Logs one error line per output that lost points, after the agent stopped.
 *
 * @returns the total number of points lost (0 when every point measured was written)
 */
export function reportLosses(agent: Pick<Agent, "losses">, log: Logger): number {
  const { total, byOutput } = agent.losses();
  for (const { output, points } of byOutput) {
    log.error(`${output} lost ${points} point${points === 1 ? "" : "s"} (see the warnings above for why)`);
  }
  return total;
}

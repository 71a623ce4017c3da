/**
 * {@linkcode ReportInputError}: the input of `alumet report` cannot be used (missing, unreadable, not a file
 * of the csv or sqlite output). The CLI prints its message alone and exits with code 2.
 *
 * @module
 */
import { AlumetError, messageOf } from "../errors.ts";

/** The file given to `alumet report` cannot be read as a run. Exit code 2. */
export class ReportInputError extends AlumetError {
  override name = "ReportInputError";
  override readonly exitCode = 2;

  /** The error for a file that cannot be opened (`path` names it; the reason says why, plainly). */
  static cannotRead(path: string, e: unknown): ReportInputError {
    let why = messageOf(e);
    if (e instanceof Deno.errors.NotFound) why = "no such file";
    else if (e instanceof Deno.errors.PermissionDenied) why = "permission denied";
    else if (e instanceof Deno.errors.IsADirectory) why = "it is a directory";
    return new ReportInputError(
      `Cannot read ${path}: ${why} (give the file the csv or sqlite output wrote)`,
      { cause: e },
    );
  }
}

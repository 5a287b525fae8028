import { status } from '@grpc/grpc-js';
import { StartFailureKind, findStartFailureLine } from '../daemon/start-failure';
import { CsiError } from './errors';

/** Problems of the node, the name or the image are preconditions the operator can fix; the rest is ours. */
const CODE_OF_KIND: Record<StartFailureKind, status> = {
  environment: status.FAILED_PRECONDITION,
  'in-use': status.FAILED_PRECONDITION,
  image: status.FAILED_PRECONDITION,
  internal: status.INTERNAL,
};

/** How many of a log's last lines stand in for the cause when a server gave none (it crashed, say). */
const FALLBACK_LINES = 5;

/**
 * The CSI error for a device server (or standby) that exited before it served: the cause and step
 * it reported in its log, with the code its kind calls for; else INTERNAL with the log's last lines.
 */
export function serverExitError(
  what: string,
  device: string,
  pid: number | undefined,
  exit: string,
  logLines: readonly string[],
): CsiError {
  const failure = pid === undefined ? null : findStartFailureLine(logLines, device, pid);
  if (failure)
    return new CsiError(
      CODE_OF_KIND[failure.kind],
      `${what} for ${device} failed (${exit}): ${failure.error}`,
    );
  return new CsiError(status.INTERNAL, `${what} for ${device} failed (${exit}): ${logTail(logLines)}`);
}

/** A log's last lines on one line, for an error message. */
export function logTail(logLines: readonly string[], count = FALLBACK_LINES): string {
  return logLines.slice(-count).join(' | ') || '(no log)';
}

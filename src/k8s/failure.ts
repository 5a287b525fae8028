import { status } from '@grpc/grpc-js';
import { CsiError } from '../csi/errors';

/*
 * How the node agent tells the controller why it failed: status.message is "<Reason>: <detail>",
 * and the reason becomes the CSI code the controller answers with.
 */
const REASONS: [string, status][] = [
  ['NoSpace', status.RESOURCE_EXHAUSTED],
  ['InUse', status.FAILED_PRECONDITION],
  ['ImageLost', status.FAILED_PRECONDITION],
];

/** The status message for an error of the agent's image work. */
export function failureMessage(error: unknown): string {
  const code = error instanceof CsiError ? error.code : status.INTERNAL;
  const reason = REASONS.find(([, reasonCode]) => reasonCode === code)?.[0] ?? 'Failed';
  return `${reason}: ${error instanceof Error ? error.message : String(error)}`;
}

/** The CSI error for a failure the agent reported. */
export function failureError(what: string, message: string | undefined): CsiError {
  const reason = /^(\w+): /.exec(message ?? '')?.[1];
  const code = REASONS.find(([name]) => name === reason)?.[1] ?? status.INTERNAL;
  return new CsiError(code, `${what} failed on its node: ${message ?? 'no reason given'}`);
}

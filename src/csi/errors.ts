import { status } from '@grpc/grpc-js';

/** An error a CSI call answers with: a gRPC status code and a message for the CO's logs. */
export class CsiError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
    this.name = 'CsiError';
  }
}

export const invalidArgument = (message: string): CsiError => new CsiError(status.INVALID_ARGUMENT, message);
export const notFound = (message: string): CsiError => new CsiError(status.NOT_FOUND, message);
export const alreadyExists = (message: string): CsiError => new CsiError(status.ALREADY_EXISTS, message);
export const outOfRange = (message: string): CsiError => new CsiError(status.OUT_OF_RANGE, message);
export const failedPrecondition = (message: string): CsiError =>
  new CsiError(status.FAILED_PRECONDITION, message);
export const aborted = (message: string): CsiError => new CsiError(status.ABORTED, message);
export const resourceExhausted = (message: string): CsiError =>
  new CsiError(status.RESOURCE_EXHAUSTED, message);
export const internal = (message: string): CsiError => new CsiError(status.INTERNAL, message);

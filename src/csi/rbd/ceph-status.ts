import { status } from '@grpc/grpc-js';
import { CephError, CephErrorKind } from '../../backend/ceph-error';
import { CsiError } from '../errors';
import { UnknownClusterError } from './clusters';

const CODE_OF_KIND: Readonly<Record<CephErrorKind, status>> = {
  unavailable: status.UNAVAILABLE,
  permission: status.PERMISSION_DENIED,
  'not-found': status.NOT_FOUND,
  exists: status.ALREADY_EXISTS,
  busy: status.FAILED_PRECONDITION,
  fenced: status.FAILED_PRECONDITION,
  other: status.INTERNAL,
};

/** A Ceph failure as the CSI answer a CO acts on (retry, fix the secret, fix the class...). */
export function csiErrorOfCeph(error: unknown): unknown {
  if (error instanceof CsiError) return error;
  if (error instanceof UnknownClusterError) return new CsiError(status.FAILED_PRECONDITION, error.message);
  if (error instanceof CephError) return new CsiError(CODE_OF_KIND[error.kind], error.message);
  return error;
}

/** Runs Ceph work, answering its failures with their CSI codes. */
export async function withCephErrors<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw csiErrorOfCeph(error);
  }
}

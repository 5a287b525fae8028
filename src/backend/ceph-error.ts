import { SysError } from '../sys/errors';

/**
 * What a caller may do about a failure: retry later (unavailable), fix credentials (permission),
 * name existing storage (not-found), pick another name (exists), wait for or fence the other
 * client (busy), or give up the image because another client fenced this one (fenced).
 */
export type CephErrorKind =
  'unavailable' | 'permission' | 'not-found' | 'exists' | 'busy' | 'fenced' | 'other';

const KIND_OF_CODE: Readonly<Record<string, CephErrorKind>> = {
  ETIMEDOUT: 'unavailable',
  ENOTCONN: 'unavailable',
  ECONNREFUSED: 'unavailable',
  ECONNRESET: 'unavailable',
  EHOSTUNREACH: 'unavailable',
  ENETUNREACH: 'unavailable',
  EACCES: 'permission',
  EPERM: 'permission',
  ENOENT: 'not-found',
  EEXIST: 'exists',
  EBUSY: 'busy',
  // librbd's answer to a lock request or a write while another client holds the exclusive lock.
  EROFS: 'busy',
  // EBLOCKLISTED: the OSDs refuse this client since another one broke its lock.
  ESHUTDOWN: 'fenced',
};

const MEANING: Readonly<Record<CephErrorKind, string | undefined>> = {
  unavailable: 'the Ceph cluster could not be reached or did not answer in time',
  permission: 'the cluster refused the credentials or their capabilities',
  'not-found': 'no such pool, namespace or image',
  exists: 'it already exists',
  busy: 'in use by another client',
  fenced: 'this client was blocklisted: another client broke its lock',
  other: undefined,
};

function kindOfErrno(code: string): CephErrorKind {
  return KIND_OF_CODE[code] ?? 'other';
}

/**
 * A failed librados/librbd call: the operation, the errno name and what it means to a user. Never
 * built from a secret: operations name users, pools, images and paths, not keys.
 */
export class CephError extends SysError {
  declare readonly code: string;
  readonly kind: CephErrorKind;

  constructor(operation: string, errno: number, override?: { kind: CephErrorKind; meaning: string }) {
    super(operation, errno);
    this.name = 'CephError';
    // Node's errno table lacks ESHUTDOWN, Ceph's EBLOCKLISTED.
    if (errno === 108) this.code = 'ESHUTDOWN';
    this.kind = override?.kind ?? kindOfErrno(this.code);
    const meaning = override?.meaning ?? MEANING[this.kind];
    this.message = `${operation}: ${this.code}${meaning === undefined ? '' : ` (${meaning})`}`;
  }
}

/** `result` when it is not negative; otherwise throws a CephError for -result. */
export function checkCeph(result: number, operation: string): number {
  if (result < 0) throw new CephError(operation, -result);
  return result;
}

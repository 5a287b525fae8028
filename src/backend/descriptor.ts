import { resolve } from 'node:path';

/** An RBD image: pool, optional RADOS namespace, image name. */
export interface RbdLocation {
  pool: string;
  namespace?: string;
  image: string;
}

/**
 * How to reach and authenticate to a Ceph cluster; every field falls back to librados' defaults.
 * Paths and names only: device records hold these, so a secret never reaches one.
 */
export interface CephClientOptions {
  /** ceph.conf path. */
  conf?: string;
  /** cephx user without the "client." prefix. */
  user?: string;
  keyring?: string;
}

/**
 * How an RBD image is shared with servers on other nodes; absent: it is not, and the server holds
 * the exclusive lock for as long as it serves. 'read-only': the image is opened read-only and never
 * locked. 'multi-writer': no lock is taken explicitly, so librbd hands it between the writers on
 * every node as their writes need it.
 */
export type RbdSharing = 'read-only' | 'multi-writer';
const RBD_SHARINGS: readonly RbdSharing[] = ['read-only', 'multi-writer'];

/** The storage a device serves, as the CLI, the device record and a successor server name it. */
export type BackendDescriptor =
  | { kind: 'file'; path: string }
  | { kind: 'rbd'; location: RbdLocation; client: CephClientOptions; sharing?: RbdSharing };

export function isRbdSharing(value: unknown): value is RbdSharing {
  return (RBD_SHARINGS as readonly unknown[]).includes(value);
}

/** `value` as an RbdSharing (undefined stays undefined: not shared); anything else throws. */
export function checkRbdSharing(value: unknown): RbdSharing | undefined {
  if (value === undefined || isRbdSharing(value)) return value;
  throw new Error(`RBD sharing must be ${RBD_SHARINGS.join(' or ')}, not ${JSON.stringify(value)}`);
}

/**
 * Pool, namespace and image names as this driver accepts them: what Ceph allows is wider, but these
 * names reach command lines, logs and records, so nothing outside this set gets that far.
 */
const RBD_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

function checkRbdName(what: string, name: string): string {
  if (!RBD_NAME.test(name))
    throw new Error(
      `${what} ${JSON.stringify(name)} must be 1-128 of [A-Za-z0-9._-], not starting with . _ or -`,
    );
  return name;
}

/** Parses POOL/IMAGE or POOL/NAMESPACE/IMAGE. */
export function parseRbdLocation(text: string): RbdLocation {
  const parts = text.split('/');
  if (parts.length < 2 || parts.length > 3)
    throw new Error(`RBD image ${JSON.stringify(text)} must be POOL/IMAGE or POOL/NAMESPACE/IMAGE`);
  const pool = checkRbdName('RBD pool', parts[0]!);
  const image = checkRbdName('RBD image', parts[parts.length - 1]!);
  return parts.length === 3
    ? { pool, namespace: checkRbdName('RADOS namespace', parts[1]!), image }
    : { pool, image };
}

export function rbdLocationText(location: RbdLocation): string {
  const { pool, namespace, image } = location;
  return namespace === undefined ? `${pool}/${image}` : `${pool}/${namespace}/${image}`;
}

/** The storage in a form for logs and messages (never with credentials). */
export function describeBackend(backend: BackendDescriptor): string {
  return backend.kind === 'file' ? backend.path : `rbd:${rbdLocationText(backend.location)}`;
}

/** Whether two descriptors name the same storage (however the client reaches it). */
export function sameStorage(a: BackendDescriptor, b: BackendDescriptor): boolean {
  if (a.kind === 'file' && b.kind === 'file') return resolve(a.path) === resolve(b.path);
  if (a.kind === 'rbd' && b.kind === 'rbd')
    return rbdLocationText(a.location) === rbdLocationText(b.location);
  return false;
}

/**
 * Why a device serving `served` cannot serve `wanted` ("<served>, not <wanted>": other storage, or
 * the same shared otherwise), or undefined when it can.
 */
export function servingMismatch(served: BackendDescriptor, wanted: BackendDescriptor): string | undefined {
  if (!sameStorage(served, wanted)) return `${describeBackend(served)}, not ${describeBackend(wanted)}`;
  const [was, asked] = [sharingText(served), sharingText(wanted)];
  if (was !== asked) return `${describeBackend(served)} ${was}, not ${asked}`;
  return undefined;
}

function sharingText(backend: BackendDescriptor): string {
  return backend.kind === 'rbd' && backend.sharing !== undefined ? `shared ${backend.sharing}` : 'unshared';
}

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

/** The storage a device serves, as the CLI, the device record and a successor server name it. */
export type BackendDescriptor =
  { kind: 'file'; path: string } | { kind: 'rbd'; location: RbdLocation; client: CephClientOptions };

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

import { createHash } from 'node:crypto';
import { RbdLocation, parseRbdLocation } from '../../backend/descriptor';
import { VolumeKind } from '../validate';

/**
 * How a volume names its Ceph cluster: an entry of the plugin's cluster file (`--ceph-clusters`),
 * or the digest of a StorageClass's monitor list (the monitors themselves travel in volume_context).
 */
export type ClusterRef = { kind: 'id'; clusterId: string } | { kind: 'monitors'; digest: string };

/** What any node needs to find an RBD volume's image, read from its id alone. */
export interface RbdVolumeId {
  cluster: ClusterRef;
  location: RbdLocation;
}

/*
 * `rbd:c:<clusterID>:<pool>:<namespace>:<image>` or `rbd:m:<monitor digest>:<pool>:<namespace>:<image>`
 * (an empty namespace is the pool's default one). ':' is in none of the fields' character sets, so
 * the split is unambiguous; the id never becomes a path or device name itself (rbdDeviceName does).
 * A snapshot is `rbd-snap:` with the same fields and, last, the digest of its image's name
 * (`csi-snap-<digest>`), so a snapshot id is never longer than the ids of its class's volumes.
 */
const PREFIX = 'rbd:';
const SNAPSHOT_PREFIX = 'rbd-snap:';
const SNAPSHOT_IMAGE_PREFIX = 'csi-snap-';
const DIGEST = /^[0-9a-f]{32}$/;
const CLUSTER_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const MONITOR_DIGEST = /^[0-9a-f]{16}$/;
/** CSI's limit for a volume id (and a snapshot id). */
export const MAX_VOLUME_ID_BYTES = 128;

export function sameCluster(a: ClusterRef, b: ClusterRef): boolean {
  return a.kind === 'id'
    ? b.kind === 'id' && a.clusterId === b.clusterId
    : b.kind === 'monitors' && a.digest === b.digest;
}

export function isClusterId(text: string): boolean {
  return CLUSTER_ID.test(text);
}

export function isMonitorDigest(text: string): boolean {
  return MONITOR_DIGEST.test(text);
}

/** Whether an id is of the RBD kind (well-formed or not): such ids are never the file driver's. */
export function isRbdVolumeId(id: string): boolean {
  return id.startsWith(PREFIX);
}

/** Which access modes the volume of a (well-formed or not) id has. */
export function volumeKindOf(id: string): VolumeKind {
  return isRbdVolumeId(id) ? 'rbd' : 'file';
}

/** Whether a snapshot id is of the RBD kind (well-formed or not). */
export function isRbdSnapshotId(id: string): boolean {
  return id.startsWith(SNAPSHOT_PREFIX);
}

function idText(prefix: string, { cluster, location }: RbdVolumeId, last: string): string {
  const clusterPart = cluster.kind === 'id' ? `c:${cluster.clusterId}` : `m:${cluster.digest}`;
  return `${prefix}${clusterPart}:${location.pool}:${location.namespace ?? ''}:${last}`;
}

export function rbdVolumeIdText(volume: RbdVolumeId): string {
  return idText(PREFIX, volume, volume.location.image);
}

/** A snapshot's id; `snapshot.location.image` is its image, `csi-snap-<digest>`. */
export function rbdSnapshotIdText(snapshot: RbdVolumeId): string {
  return idText(SNAPSHOT_PREFIX, snapshot, snapshot.location.image.slice(SNAPSHOT_IMAGE_PREFIX.length));
}

/** The parts of an RBD volume id; throws (with a message naming what is wrong) when it is not one. */
export function parseRbdVolumeId(id: string): RbdVolumeId {
  return parseId(id, PREFIX, 'volume', (image) => image, rbdVolumeIdText);
}

/** The parts of an RBD snapshot id (its image in the location); throws when it is not one. */
export function parseRbdSnapshotId(id: string): RbdVolumeId {
  return parseId(
    id,
    SNAPSHOT_PREFIX,
    'snapshot',
    (digest) => {
      if (!DIGEST.test(digest)) throw new Error(`snapshot id ${JSON.stringify(id)} does not end in a digest`);
      return `${SNAPSHOT_IMAGE_PREFIX}${digest}`;
    },
    rbdSnapshotIdText,
  );
}

function parseId(
  id: string,
  expectedPrefix: string,
  what: string,
  imageOf: (last: string) => string,
  canonical: (parsed: RbdVolumeId) => string,
): RbdVolumeId {
  if (Buffer.byteLength(id, 'utf8') > MAX_VOLUME_ID_BYTES)
    throw new Error(`${what} id is longer than ${MAX_VOLUME_ID_BYTES} bytes`);
  if (!id.startsWith(expectedPrefix))
    throw new Error(`${what} id ${JSON.stringify(id)} does not start with ${expectedPrefix}`);
  const parts = id.slice(expectedPrefix.length).split(':');
  const [kind, cluster, pool, namespace, last] = parts;
  if (parts.length !== 5)
    throw new Error(
      `${what} id ${JSON.stringify(id)} is not ${expectedPrefix}c|m:<cluster>:<pool>:<namespace>:<${what === 'volume' ? 'image' : 'digest'}>`,
    );
  let ref: ClusterRef;
  if (kind === 'c' && isClusterId(cluster!)) ref = { kind: 'id', clusterId: cluster! };
  else if (kind === 'm' && isMonitorDigest(cluster!)) ref = { kind: 'monitors', digest: cluster! };
  else throw new Error(`${what} id ${JSON.stringify(id)} names no valid cluster`);
  const image = imageOf(last!);
  const location = parseRbdLocation(
    namespace === '' ? `${pool!}/${image}` : `${pool!}/${namespace!}/${image}`,
  );
  const parsed = { cluster: ref, location };
  // Only the canonical spelling is an id (one image, one id).
  if (canonical(parsed) !== id) throw new Error(`${what} id ${JSON.stringify(id)} is not canonical`);
  return parsed;
}

/** The first `hexDigits` hex digits of SHA-256 of `text`. */
export function sha256Hex(text: string, hexDigits: number): string {
  return createHash('sha256').update(text, 'utf8').digest('hex').slice(0, hexDigits);
}

/** The image a CO volume name gets: a retried CreateVolume finds the same one. */
export function rbdImageNameFor(coName: string): string {
  return `csi-vol-${sha256Hex(coName, 32)}`;
}

/** Whether an image name is one rbdSnapshotImageNameFor gives. */
export function isRbdSnapshotImageName(image: string): boolean {
  return image.startsWith(SNAPSHOT_IMAGE_PREFIX) && DIGEST.test(image.slice(SNAPSHOT_IMAGE_PREFIX.length));
}

/** The image a CO snapshot name gets (in its source volume's pool). */
export function rbdSnapshotImageNameFor(coName: string): string {
  return `${SNAPSHOT_IMAGE_PREFIX}${sha256Hex(coName, 32)}`;
}

/**
 * The VDUSE/vdpa device name (also the key of the node's records, sockets and logs) of an RBD
 * volume: the id itself holds ':' and may be up to 128 bytes, so a digest of it.
 */
export function rbdDeviceName(id: string): string {
  return `rbd-${sha256Hex(id, 32)}`;
}

const RBD_DEVICE_NAME = /^rbd-[0-9a-f]{32}$/;

export function isRbdDeviceName(name: string): boolean {
  return RBD_DEVICE_NAME.test(name);
}

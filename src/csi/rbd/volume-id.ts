import { createHash } from 'node:crypto';
import { RbdLocation, parseRbdLocation } from '../../backend/descriptor';

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
 */
const PREFIX = 'rbd:';
const CLUSTER_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const MONITOR_DIGEST = /^[0-9a-f]{16}$/;
/** CSI's limit for a volume id. */
export const MAX_VOLUME_ID_BYTES = 128;

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

export function rbdVolumeIdText(volume: RbdVolumeId): string {
  const { cluster, location } = volume;
  const clusterPart = cluster.kind === 'id' ? `c:${cluster.clusterId}` : `m:${cluster.digest}`;
  return `${PREFIX}${clusterPart}:${location.pool}:${location.namespace ?? ''}:${location.image}`;
}

/** The parts of an RBD volume id; throws (with a message naming what is wrong) when it is not one. */
export function parseRbdVolumeId(id: string): RbdVolumeId {
  if (Buffer.byteLength(id, 'utf8') > MAX_VOLUME_ID_BYTES)
    throw new Error(`volume id is longer than ${MAX_VOLUME_ID_BYTES} bytes`);
  const parts = id.split(':');
  const [prefix, kind, cluster, pool, namespace, image] = parts;
  if (parts.length !== 6 || `${prefix}:` !== PREFIX)
    throw new Error(`volume id ${JSON.stringify(id)} is not rbd:c|m:<cluster>:<pool>:<namespace>:<image>`);
  let ref: ClusterRef;
  if (kind === 'c' && isClusterId(cluster!)) ref = { kind: 'id', clusterId: cluster! };
  else if (kind === 'm' && isMonitorDigest(cluster!)) ref = { kind: 'monitors', digest: cluster! };
  else throw new Error(`volume id ${JSON.stringify(id)} names no valid cluster`);
  const location = parseRbdLocation(
    namespace === '' ? `${pool!}/${image!}` : `${pool!}/${namespace!}/${image!}`,
  );
  const volume = { cluster: ref, location };
  // Only the canonical spelling is an id (one image, one id).
  if (rbdVolumeIdText(volume) !== id) throw new Error(`volume id ${JSON.stringify(id)} is not canonical`);
  return volume;
}

/** The first `hexDigits` hex digits of SHA-256 of `text`. */
export function sha256Hex(text: string, hexDigits: number): string {
  return createHash('sha256').update(text, 'utf8').digest('hex').slice(0, hexDigits);
}

/** The image a CO volume name gets: a retried CreateVolume finds the same one. */
export function rbdImageNameFor(coName: string): string {
  return `csi-vol-${sha256Hex(coName, 32)}`;
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

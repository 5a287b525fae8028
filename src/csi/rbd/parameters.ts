import { RbdLocation, parseRbdLocation } from '../../backend/descriptor';
import { invalidArgument } from '../errors';
import { VolumeParameters, parametersContext, parseParameters } from '../parameters';
import { monHost, parseMonitorList } from './monitors';
import { isClusterId } from './volume-id';

/** The StorageClass key that picks the driver; absent or `file` is an image file on a node. */
export const BACKEND_KEY = 'backend';

/** Image features by name, as `rbd create --image-feature` spells them (bits of rbd/features.h). */
const FEATURE_BITS: Readonly<Record<string, bigint>> = {
  layering: 1n,
  'exclusive-lock': 4n,
  'object-map': 8n,
  'fast-diff': 16n,
  'deep-flatten': 32n,
};
/** What a feature needs beside it (librbd refuses the image otherwise). */
const FEATURE_NEEDS: Readonly<Record<string, string>> = {
  'object-map': 'exclusive-lock',
  'fast-diff': 'object-map',
};
const DEFAULT_FEATURES = ['layering', 'exclusive-lock', 'object-map', 'fast-diff', 'deep-flatten'];
/**
 * A volume made from a snapshot or a volume is flattened (made independent of its ancestors) when
 * it would have more: every read of a block it never wrote goes down the chain of ancestors.
 */
export const DEFAULT_MAX_CLONE_DEPTH = 8;
const MAX_CLONE_DEPTH_LIMIT = 32;

export type ClusterSpec = { kind: 'id'; clusterId: string } | { kind: 'monitors'; monitors: string[] };

/** An RBD StorageClass's parameters. */
export interface RbdParameters {
  cluster: ClusterSpec;
  location: Pick<RbdLocation, 'pool' | 'namespace'>;
  features: string[];
  /** The most ancestors a clone keeps; a deeper one is flattened before CreateVolume answers. */
  maxCloneDepth: number;
  /** How the device is served (queues, queue size, block size), as for image files. */
  serving: VolumeParameters;
}

/** Keys of ours for RBD; the serving ones go through the file driver's rules. */
const RBD_KEYS = [
  BACKEND_KEY,
  'pool',
  'radosNamespace',
  'imageFeatures',
  'clusterID',
  'monitors',
  'maxCloneDepth',
];
/** How the device is served: the file driver's rules check them. */
const SERVING_KEYS = ['queues', 'queueSize', 'blockSize'];
/** Space accounting of image files: a pool accounts for its own space. */
const FILE_ONLY_KEYS = ['overcommitRatio', 'provisioning'];
/** Keys the Kubernetes sidecars add (PVC name and namespace, PV name, secrets): not ours to check. */
const SIDECAR_PREFIX = 'csi.storage.k8s.io/';

/** True when the parameters ask for the RBD driver; INVALID_ARGUMENT for a backend nobody serves. */
export function wantsRbd(parameters: Record<string, string> | undefined): boolean {
  const backend = parameters?.[BACKEND_KEY];
  if (backend === undefined || backend === 'file') return false;
  if (backend === 'rbd') return true;
  throw invalidArgument(`parameter backend must be file or rbd, got ${JSON.stringify(backend)}`);
}

/** The parameters of a file class without the `backend: file` that may name it. */
export function fileParameters(parameters: Record<string, string> | undefined): Record<string, string> {
  const rest = { ...parameters };
  delete rest[BACKEND_KEY];
  return rest;
}

export function parseRbdParameters(parameters: Record<string, string>): RbdParameters {
  const serving: Record<string, string> = {};
  for (const [key, value] of Object.entries(parameters)) {
    if (FILE_ONLY_KEYS.includes(key))
      throw invalidArgument(`parameter ${key} is for image files; an RBD pool accounts for its own space`);
    if (SERVING_KEYS.includes(key)) serving[key] = value;
    else if (!RBD_KEYS.includes(key) && !key.startsWith(SIDECAR_PREFIX))
      throw invalidArgument(
        `unknown parameter ${JSON.stringify(key)} (known for RBD: ${[...RBD_KEYS, ...SERVING_KEYS].join(', ')})`,
      );
  }
  const { pool, radosNamespace, imageFeatures, clusterID, monitors, maxCloneDepth } = parameters;
  return {
    cluster: clusterSpec(clusterID, monitors),
    location: poolLocation(pool, radosNamespace),
    features: parseFeatures(imageFeatures),
    maxCloneDepth: parseCloneDepth(maxCloneDepth),
    serving: parseParameters(serving),
  };
}

function clusterSpec(clusterId: string | undefined, monitors: string | undefined): ClusterSpec {
  if ((clusterId === undefined) === (monitors === undefined))
    throw invalidArgument('an RBD StorageClass names its cluster with exactly one of clusterID and monitors');
  if (clusterId !== undefined) {
    if (!isClusterId(clusterId))
      throw invalidArgument(
        `parameter clusterID must be 1-64 of [A-Za-z0-9._-], not starting with . _ or -, got ${JSON.stringify(clusterId)}`,
      );
    return { kind: 'id', clusterId };
  }
  try {
    return { kind: 'monitors', monitors: parseMonitorList(monitors!) };
  } catch (error) {
    throw invalidArgument(`parameter monitors: ${(error as Error).message}`);
  }
}

function poolLocation(pool: string | undefined, namespace: string | undefined): RbdParameters['location'] {
  if (pool === undefined) throw invalidArgument('parameter pool is required for an RBD StorageClass');
  try {
    // The same rules as an image location: a placeholder image name checks pool and namespace.
    const checked = parseRbdLocation(namespace ? `${pool}/${namespace}/image` : `${pool}/image`);
    return namespace ? { pool: checked.pool, namespace: checked.namespace } : { pool: checked.pool };
  } catch (error) {
    throw invalidArgument(`parameters pool/radosNamespace: ${(error as Error).message}`);
  }
}

function parseFeatures(text: string | undefined): string[] {
  if (text === undefined) return DEFAULT_FEATURES;
  const features = text.split(',').map((feature) => feature.trim());
  for (const feature of features) {
    if (!(feature in FEATURE_BITS))
      throw invalidArgument(
        `parameter imageFeatures: unknown feature ${JSON.stringify(feature)} (known: ${Object.keys(FEATURE_BITS).join(', ')})`,
      );
    const needed = FEATURE_NEEDS[feature];
    if (needed !== undefined && !features.includes(needed))
      throw invalidArgument(`parameter imageFeatures: ${feature} needs ${needed}`);
  }
  if (!features.includes('exclusive-lock'))
    throw invalidArgument(
      'parameter imageFeatures must include exclusive-lock: the serving node holds the image exclusively',
    );
  return [...new Set(features)];
}

function parseCloneDepth(text: string | undefined): number {
  if (text === undefined) return DEFAULT_MAX_CLONE_DEPTH;
  const depth = /^[0-9]{1,2}$/.test(text) ? Number(text) : NaN;
  if (!(depth <= MAX_CLONE_DEPTH_LIMIT))
    throw invalidArgument(
      `parameter maxCloneDepth must be an integer from 0 to ${MAX_CLONE_DEPTH_LIMIT}, got ${JSON.stringify(text)}`,
    );
  return depth;
}

export function featureBits(features: readonly string[]): bigint {
  return features.reduce((bits, feature) => bits | FEATURE_BITS[feature]!, 0n);
}

/** Monitors of a volume whose class listed them travel to the node in volume_context. */
export const MONITORS_CONTEXT_KEY = 'monitors';

/** What an RBD volume's volume_context carries to the node. */
export function rbdVolumeContext(parameters: RbdParameters): Record<string, string> {
  return {
    ...parametersContext(parameters.serving),
    ...(parameters.cluster.kind === 'monitors'
      ? { [MONITORS_CONTEXT_KEY]: monHost(parameters.cluster.monitors) }
      : {}),
  };
}

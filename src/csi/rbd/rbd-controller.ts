import { claimContext, claimOfParameters } from '../claim';
import { status } from '@grpc/grpc-js';
import { CephError } from '../../backend/ceph-error';
import { RbdLocation, rbdLocationText } from '../../backend/descriptor';
import { RadosConnectOptions } from '../../backend/rados-client';
import { removeRbdImageChain } from '../../backend/rbd-chain';
import { RbdImage, createRbdImage, rbdImageSize } from '../../backend/rbd-image';
import { log } from '../../log';
import {
  CsiError,
  alreadyExists,
  failedPrecondition,
  invalidArgument,
  notFound,
  outOfRange,
} from '../errors';
import { CapacityRange, Snapshot, Volume, VolumeCapability, VolumeContentSource } from '../messages';
import { OperationLocks } from '../operation-locks';
import {
  XFS_MINIMUM_BYTES,
  ValidationRequest,
  capabilityProblems,
  chooseCapacity,
  fitsRange,
  requireCapabilities,
  requireField,
  requireName,
  validationAnswer,
} from '../validate';
import { CephClusters } from './clusters';
import { withCephErrors } from './ceph-status';
import { RbdParameters, featureBits, parseRbdParameters, rbdVolumeContext } from './parameters';
import { CephCredentials, cephCredentials } from './secrets';
import {
  ClusterRef,
  MAX_VOLUME_ID_BYTES,
  RbdVolumeId,
  parseRbdSnapshotId,
  parseRbdVolumeId,
  rbdImageNameFor,
  rbdSnapshotIdText,
  rbdSnapshotImageNameFor,
  rbdVolumeIdText,
  sameCluster,
} from './volume-id';
import { CloneSource, cloneSourceOf, makeClone } from './clones';
import { findImage, madeFrom } from './origin';
import { createRbdSnapshot, deleteRbdSnapshot, describeRbdSnapshot, listRbdSnapshotsOf } from './snapshots';
import { monHost, monitorDigest } from './monitors';

const MiB = 1024 * 1024;
const DEFAULT_VOLUME_BYTES = 1024 * MiB;
const MINIMUM_VOLUME_BYTES = MiB;
/** Growth is rounded to this: a multiple of every block size a class may pick. */
const GROWTH_GRANULE = 4096;
/**
 * The controller's calls wait at most this long for a cluster that does not answer (the CO retries
 * the call), instead of librados' 30 s.
 */
const CONTROLLER_TIMEOUTS = { mountSeconds: 20, monOpSeconds: 20, osdOpSeconds: 30 };

export interface RbdControllerOptions {
  clusters: CephClusters;
  locks: OperationLocks;
  maximumVolumeBytes: number;
}

interface CreateRequest {
  name?: string;
  capacity_range?: CapacityRange | null;
  volume_capabilities?: VolumeCapability[];
  parameters?: Record<string, string>;
  secrets?: Record<string, string>;
  volume_content_source?: VolumeContentSource | null;
  mutable_parameters?: Record<string, string>;
}

/**
 * The Controller calls for RBD volumes. It keeps no record of volumes: the pool is the state, and
 * the volume id names the cluster, pool, namespace and image, so every call finds its image from
 * the id and the request's secrets alone.
 */
export class RbdController {
  constructor(private readonly options: RbdControllerOptions) {}

  async createVolume(request: CreateRequest): Promise<{ volume: Volume }> {
    const name = requireName(request.name, 'name');
    const capabilities = requireCapabilities(request.volume_capabilities, 'rbd');
    const parameters = parseRbdParameters(request.parameters ?? {});
    if (Object.keys(request.mutable_parameters ?? {}).length > 0)
      throw invalidArgument('mutable_parameters are not supported');
    const volume = volumeFor(name, parameters);
    const source = request.volume_content_source?.type
      ? cloneSourceOf(request.volume_content_source, volume)
      : undefined;
    if (source && !parameters.features.includes('layering'))
      throw invalidArgument('a volume made from a snapshot or a volume needs the imageFeatures layering');
    const credentials = cephCredentials(request.secrets, 'CreateVolume of an RBD volume');
    const wantsXfs = capabilities.some((capability) => capability.mount?.fs_type === 'xfs');
    const limits = {
      blockSize: parameters.serving.blockSize,
      minimumBytes: wantsXfs ? XFS_MINIMUM_BYTES : MINIMUM_VOLUME_BYTES,
      maximumBytes: this.options.maximumVolumeBytes,
    };
    const capacityBytes = chooseCapacity(request.capacity_range, {
      ...limits,
      defaultBytes: DEFAULT_VOLUME_BYTES,
    });
    const id = rbdVolumeIdText(volume);
    if (parameters.cluster.kind === 'monitors') this.options.clusters.remember(parameters.cluster.monitors);
    return this.options.locks.run([`name:${name}`, id, ...(source ? [source.id] : [])], () =>
      withCephErrors(async () => {
        const connection = this.connection(volume.cluster, credentials);
        const image = volume.location.image;
        const made = await RbdImage.withPool(connection, volume.location, async (pool, client) => {
          const found = await findImage(pool, image);
          if (found !== undefined && !madeFrom(found, source))
            throw alreadyExists(
              `volume ${name} exists as RBD image ${rbdLocationText(volume.location)} with another content source`,
            );
          if (source) {
            const settings = {
              features: featureBits(parameters.features),
              maxDepth: parameters.maxCloneDepth,
              range: request.capacity_range,
              limits,
            };
            return makeClone(client, pool, image, source, settings, found);
          }
          if (found !== undefined) return found.bytes;
          try {
            await createRbdImage(pool, image, capacityBytes, featureBits(parameters.features));
            return capacityBytes;
          } catch (error) {
            if (!(error instanceof CephError && error.kind === 'exists')) throw error;
            return (await rbdImageSize(pool, image)) ?? capacityBytes;
          }
        });
        if (!fitsRange(made, request.capacity_range))
          throw alreadyExists(
            `volume ${name} exists as RBD image ${rbdLocationText(volume.location)} of ${made} bytes, outside the requested range`,
          );
        log.info('RBD volume ready', {
          volume: id,
          name,
          bytes: made,
          ...(source ? { source: source.id } : {}),
        });
        return {
          volume: {
            volume_id: id,
            capacity_bytes: made,
            volume_context: {
              ...rbdVolumeContext(parameters),
              ...claimContext(claimOfParameters(request.parameters)),
            },
            content_source: contentSourceOf(source),
            accessible_topology: [],
          },
        };
      }),
    );
  }

  async deleteVolume(id: string, secrets: Record<string, string> | undefined): Promise<object> {
    const volume = parsedOrUndefined(parseRbdVolumeId, id);
    if (volume === undefined) return {}; // an id that is not well-formed names no image
    const credentials = cephCredentials(secrets, 'DeleteVolume of an RBD volume');
    return this.options.locks.run([id], () =>
      withCephErrors(async () => {
        const connection = this.connection(volume.cluster, credentials);
        try {
          await RbdImage.withPool(connection, volume.location, (pool, client) =>
            removeRbdImageChain(client, pool, volume.location.image),
          );
        } catch (error) {
          if (error instanceof CephError && error.kind === 'busy')
            throw failedPrecondition(
              `RBD image ${rbdLocationText(volume.location)} of volume ${id} is still open on a node (${await holders(connection, volume.location)}): unstage it first`,
            );
          throw error;
        }
        log.info('RBD volume deleted', { volume: id });
        return {};
      }),
    );
  }

  async createSnapshot(request: {
    source_volume_id: string;
    name?: string;
    secrets?: Record<string, string>;
  }): Promise<{ snapshot: Snapshot }> {
    const sourceId = request.source_volume_id;
    const name = requireName(request.name, 'name');
    let volume: RbdVolumeId;
    try {
      volume = parseRbdVolumeId(sourceId);
    } catch (error) {
      throw notFound(`source volume ${JSON.stringify(sourceId)} does not exist: ${(error as Error).message}`);
    }
    const credentials = cephCredentials(request.secrets, 'CreateSnapshot of an RBD volume');
    const snapshotId = rbdSnapshotIdText({
      ...volume,
      location: { ...volume.location, image: rbdSnapshotImageNameFor(name) },
    });
    return this.options.locks.run([`snapshot-name:${name}`, snapshotId, sourceId], () =>
      withCephErrors(async () => ({
        snapshot: await RbdImage.withPool(
          this.connection(volume.cluster, credentials),
          volume.location,
          (pool, client) => createRbdSnapshot(client, pool, volume, sourceId, name),
        ),
      })),
    );
  }

  async deleteSnapshot(id: string, secrets: Record<string, string> | undefined): Promise<object> {
    const snapshot = parsedOrUndefined(parseRbdSnapshotId, id);
    if (snapshot === undefined) return {}; // an id that is not well-formed names no snapshot
    const credentials = cephCredentials(secrets, 'DeleteSnapshot of an RBD snapshot');
    return this.options.locks.run([id], () =>
      withCephErrors(async () => {
        await RbdImage.withPool(
          this.connection(snapshot.cluster, credentials),
          snapshot.location,
          (pool, client) => deleteRbdSnapshot(client, pool, snapshot.location.image),
        );
        log.info('RBD snapshot deleted', { snapshot: id });
        return {};
      }),
    );
  }

  /**
   * The snapshots ListSnapshots asks for by an RBD snapshot id or source volume id (the request's
   * secrets reach the pool the id names); an id no RBD snapshot or volume can have lists none.
   */
  async listSnapshots(
    filter: { snapshotId: string } | { volumeId: string },
    secrets: Record<string, string> | undefined,
  ): Promise<Snapshot[]> {
    const named =
      'snapshotId' in filter
        ? parsedOrUndefined(parseRbdSnapshotId, filter.snapshotId)
        : parsedOrUndefined(parseRbdVolumeId, filter.volumeId);
    if (named === undefined) return [];
    const credentials = cephCredentials(secrets, 'ListSnapshots of RBD snapshots');
    return withCephErrors(async () => {
      try {
        return await RbdImage.withPool(
          this.connection(named.cluster, credentials),
          named.location,
          async (pool) => {
            if ('volumeId' in filter) return listRbdSnapshotsOf(pool, named, filter.volumeId);
            const snapshot = await describeRbdSnapshot(pool, named);
            return snapshot === undefined ? [] : [snapshot];
          },
        );
      } catch (error) {
        if (error instanceof CephError && error.kind === 'not-found') return []; // no such pool
        throw error;
      }
    });
  }

  async expandVolume(
    id: string,
    range: CapacityRange | null | undefined,
    secrets: Record<string, string> | undefined,
  ): Promise<object> {
    const volume = this.requireVolume(id);
    if (!range || ((range.required_bytes ?? 0) <= 0 && (range.limit_bytes ?? 0) <= 0))
      throw invalidArgument('capacity_range is required');
    const credentials = cephCredentials(secrets, 'ControllerExpandVolume of an RBD volume');
    return this.options.locks.run([id], () =>
      withCephErrors(async () => {
        const image = await this.openImage(volume, credentials);
        try {
          const current = image.size();
          const required = range.required_bytes ?? 0;
          const wanted =
            required <= current ? current : Math.ceil(required / GROWTH_GRANULE) * GROWTH_GRANULE;
          if ((range.limit_bytes ?? 0) > 0 && wanted > range.limit_bytes!)
            throw outOfRange(
              `volume ${id} is ${current} bytes; it cannot shrink to fit limit_bytes ${range.limit_bytes}`,
            );
          if (wanted > this.options.maximumVolumeBytes)
            throw outOfRange(
              `${wanted} bytes is more than the largest volume, ${this.options.maximumVolumeBytes} bytes`,
            );
          if (wanted > current) await image.resize(wanted);
          // The device serving it lives on a node: NodeExpandVolume grows it (and its filesystem).
          return { capacity_bytes: wanted, node_expansion_required: true };
        } finally {
          await image.close();
        }
      }),
    );
  }

  async validateVolumeCapabilities(
    request: ValidationRequest & { volume_id?: string; secrets?: Record<string, string> },
  ): Promise<object> {
    const id = requireField(request.volume_id, 'volume_id');
    const volume = this.requireVolume(id);
    const capabilities = request.volume_capabilities ?? [];
    if (capabilities.length === 0) throw invalidArgument('volume_capabilities are required');
    const credentials = cephCredentials(request.secrets, 'ValidateVolumeCapabilities of an RBD volume');
    await withCephErrors(async () => (await this.openImage(volume, credentials)).close());
    const problems = capabilityProblems(capabilities, 'rbd');
    if (Object.keys(request.parameters ?? {}).length > 0) {
      try {
        const { cluster, location } = volumeFor('', parseRbdParameters(request.parameters!));
        const same =
          sameCluster(cluster, volume.cluster) &&
          location.pool === volume.location.pool &&
          location.namespace === volume.location.namespace;
        if (!same) problems.push("parameters name another cluster, pool or namespace than the volume's");
      } catch (error) {
        problems.push(error instanceof Error ? error.message : String(error));
      }
    }
    return validationAnswer(request, problems);
  }

  /** The id's parts; NOT_FOUND for an id no RBD volume can have. */
  requireVolume(id: string): RbdVolumeId {
    try {
      return parseRbdVolumeId(id);
    } catch (error) {
      throw notFound(`volume ${JSON.stringify(id)} does not exist: ${(error as Error).message}`);
    }
  }

  private connection(cluster: ClusterRef, credentials: CephCredentials): RadosConnectOptions {
    return {
      monHost: monHost(this.options.clusters.monitorsOf(cluster)),
      user: credentials.user,
      key: credentials.key,
      timeouts: CONTROLLER_TIMEOUTS,
    };
  }

  private async openImage(volume: RbdVolumeId, credentials: CephCredentials): Promise<RbdImage> {
    try {
      return await RbdImage.open(this.connection(volume.cluster, credentials), volume.location);
    } catch (error) {
      if (error instanceof CephError && error.kind === 'not-found')
        throw new CsiError(
          status.NOT_FOUND,
          `volume ${rbdVolumeIdText(volume)} does not exist: ${error.message}`,
        );
      throw error;
    }
  }
}

/** The volume a CO name gets in a class: its image name derives from the name. */
function volumeFor(name: string, parameters: RbdParameters): RbdVolumeId {
  const cluster: ClusterRef =
    parameters.cluster.kind === 'id'
      ? { kind: 'id', clusterId: parameters.cluster.clusterId }
      : { kind: 'monitors', digest: monitorDigest(parameters.cluster.monitors) };
  const volume = { cluster, location: { ...parameters.location, image: rbdImageNameFor(name) } };
  if (Buffer.byteLength(rbdVolumeIdText(volume), 'utf8') > MAX_VOLUME_ID_BYTES)
    throw invalidArgument(
      `the volume id would be longer than ${MAX_VOLUME_ID_BYTES} bytes: shorten the clusterID, pool or radosNamespace`,
    );
  return volume;
}

function parsedOrUndefined(parse: (id: string) => RbdVolumeId, id: string): RbdVolumeId | undefined {
  try {
    return parse(id);
  } catch {
    return undefined;
  }
}

function contentSourceOf(source: CloneSource | undefined): VolumeContentSource | null {
  if (!source) return null;
  return source.kind === 'snapshot'
    ? { snapshot: { snapshot_id: source.id } }
    : { volume: { volume_id: source.id } };
}

/** Who holds an image's lock, for a message; what could be read when that fails too. */
async function holders(connection: RadosConnectOptions, location: RbdLocation): Promise<string> {
  try {
    const image = await RbdImage.open(connection, location);
    try {
      const owners = await image.lockOwners();
      return owners.length > 0 ? `lock held by ${owners.join(', ')}` : 'open, lock not held';
    } finally {
      await image.close();
    }
  } catch (error) {
    return `holder unknown: ${error instanceof Error ? error.message : String(error)}`;
  }
}

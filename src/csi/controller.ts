import { status } from '@grpc/grpc-js';
import { log } from '../log';
import { claimOfParameters } from './claim';
import { CsiError, invalidArgument, alreadyExists, failedPrecondition, notFound, outOfRange } from './errors';
import { isSnapshotId, isVolumeId, snapshotIdFor, volumeIdFor } from './ids';
import {
  CapacityRange,
  Snapshot,
  Topology,
  TopologyRequirement,
  Volume,
  VolumeCapability,
  VolumeContentSource,
} from './messages';
import { OperationLocks } from './operation-locks';
import { paginate } from './pagination';
import { VolumeParameters, parametersContext, parseParameters, sameParameters } from './parameters';
import { RbdController } from './rbd/rbd-controller';
import { fileParameters, wantsRbd } from './rbd/parameters';
import { isRbdSnapshotId, isRbdVolumeId } from './rbd/volume-id';
import { NodePlacement } from './placement';
import { ProvisionedSpace } from './capacity';
import { Serial } from '../sys/serial';
import { VolumeRealizer } from './realizer';
import { SnapshotRecord, VolumeRecord, VolumeSource, VolumeStore } from './store';
import { nodeTopology } from './topology';
import {
  XFS_MINIMUM_BYTES,
  capabilityProblem,
  capabilityProblems,
  chooseCapacity,
  fitsRange,
  requireCapabilities,
  requireField,
  requireName,
  roundUp,
  validationAnswer,
} from './validate';

const MiB = 1024 * 1024;
export const DEFAULT_VOLUME_BYTES = 1024 * MiB;
export const MINIMUM_VOLUME_BYTES = MiB;

export const CONTROLLER_CAPABILITIES = [
  'CREATE_DELETE_VOLUME',
  'LIST_VOLUMES',
  'GET_CAPACITY',
  'CREATE_DELETE_SNAPSHOT',
  'LIST_SNAPSHOTS',
  'CLONE_VOLUME',
  'EXPAND_VOLUME',
  'GET_VOLUME',
  'VOLUME_CONDITION',
  'SINGLE_NODE_MULTI_WRITER',
] as const;

export interface ControllerOptions {
  /** The volumes and snapshots as they should be. */
  store: VolumeStore;
  /** Makes them so on their node. */
  realizer: VolumeRealizer;
  placement: NodePlacement;
  locks: OperationLocks;
  maximumVolumeBytes: number;
  /** RBD volumes (StorageClass `backend: rbd`); without it, such requests are refused. */
  rbd?: RbdController;
}

interface ResolvedSource {
  source: VolumeSource;
  bytes: number;
  nodeId: string;
}

interface CreateVolumeRequest {
  name?: string;
  secrets?: Record<string, string>;
  capacity_range?: CapacityRange | null;
  volume_capabilities?: VolumeCapability[];
  parameters?: Record<string, string>;
  volume_content_source?: VolumeContentSource | null;
  accessibility_requirements?: TopologyRequirement | null;
  mutable_parameters?: Record<string, string>;
}

interface ListRequest {
  max_entries?: number;
  starting_token?: string;
}

/**
 * The CSI Controller service: volume and snapshot lifecycle. A record goes into the store before
 * its image is made (so a retry after a crash finishes the job) and leaves it after the image is gone.
 */
export class ControllerService {
  /** Admitting a new or grown volume against its node's space: one at a time. */
  private readonly admissions = new Serial();

  constructor(private readonly options: ControllerOptions) {}

  async CreateVolume(request: CreateVolumeRequest): Promise<{ volume: Volume }> {
    if (wantsRbd(request.parameters)) return this.rbd().createVolume(request);
    const name = requireName(request.name, 'name');
    const capabilities = requireCapabilities(request.volume_capabilities, 'file');
    const parameters = parseParameters(fileParameters(request.parameters));
    if (Object.keys(request.mutable_parameters ?? {}).length > 0)
      throw invalidArgument('mutable_parameters are not supported');
    const resolved = await this.resolveSource(request.volume_content_source);
    const source = resolved?.source ?? null;
    const sourceBytes = resolved?.bytes ?? 0;
    const wantsXfs = capabilities.some((capability) => capability.mount?.fs_type === 'xfs');
    if (
      sourceBytes > 0 &&
      (request.capacity_range?.required_bytes ?? 0) > 0 &&
      request.capacity_range!.required_bytes! < sourceBytes
    )
      throw outOfRange(
        `the source is ${sourceBytes} bytes, more than the requested ${request.capacity_range!.required_bytes}`,
      );
    const id = volumeIdFor(name);
    return this.options.locks.run([`name:${name}`, id, ...(source ? [source.id] : [])], async () => {
      const existing = await this.options.store.findVolumeByName(name);
      if (existing) {
        const volume = this.describeExisting(existing, request.capacity_range, parameters, source);
        if (!(await this.withdrawnFromStoppedNode(existing))) {
          await this.realize(existing.id, () => this.options.realizer.createVolume(existing));
          return { volume };
        }
      }
      const capacityBytes = chooseCapacity(request.capacity_range, {
        blockSize: parameters.blockSize,
        defaultBytes: source ? sourceBytes : DEFAULT_VOLUME_BYTES,
        minimumBytes: Math.max(wantsXfs ? XFS_MINIMUM_BYTES : MINIMUM_VOLUME_BYTES, sourceBytes),
        maximumBytes: this.options.maximumVolumeBytes,
      });
      // Placed and recorded one volume at a time, so each one counts the ones before it.
      const record = await this.admissions.run(async () => {
        const space = await ProvisionedSpace.read(this.options.store, parameters.overcommitRatio);
        const placed: VolumeRecord = {
          id,
          name,
          capacityBytes,
          parameters,
          source,
          nodeId: await this.options.placement.nodeFor(
            request.accessibility_requirements,
            resolved?.nodeId ?? null,
            capacityBytes,
            space,
          ),
          createdAtMs: Date.now(),
          claim: claimOfParameters(request.parameters),
        };
        await this.options.store.putVolume(placed);
        return placed;
      });
      await this.realize(id, () => this.options.realizer.createVolume(record));
      return { volume: this.describe(record) };
    });
  }

  /**
   * A retried CreateVolume for a volume whose node stopped before it began making it: the volume
   * is withdrawn and placed again by this request's topology, instead of waiting for that node
   * (with WaitForFirstConsumer the CO retries with the node it scheduled the pod to next).
   */
  private async withdrawnFromStoppedNode(existing: VolumeRecord): Promise<boolean> {
    if (await this.options.placement.isServing(existing.nodeId)) return false;
    if (!(await this.options.realizer.withdrawUnstarted(existing))) return false;
    log.warn('volume placed again: its node stopped before it began making it', {
      volume: existing.id,
      node: existing.nodeId,
    });
    return true;
  }

  async DeleteVolume(request: { volume_id?: string; secrets?: Record<string, string> }): Promise<object> {
    const id = requireField(request.volume_id, 'volume_id');
    if (isRbdVolumeId(id)) return this.rbd().deleteVolume(id, request.secrets);
    if (!isVolumeId(id)) return {};
    return this.options.locks.run([id], async () => {
      await this.options.realizer.deleteVolume(id);
      await this.options.store.deleteVolume(id);
      return {};
    });
  }

  async ValidateVolumeCapabilities(request: {
    volume_id?: string;
    volume_context?: Record<string, string>;
    volume_capabilities?: VolumeCapability[];
    parameters?: Record<string, string>;
    mutable_parameters?: Record<string, string>;
    secrets?: Record<string, string>;
  }): Promise<object> {
    const id = requireField(request.volume_id, 'volume_id');
    if (isRbdVolumeId(id)) return this.rbd().validateVolumeCapabilities(request);
    const capabilities = request.volume_capabilities ?? [];
    if (capabilities.length === 0) throw invalidArgument('volume_capabilities are required');
    const volume = await this.requireVolume(id);
    const problems = capabilityProblems(capabilities, 'file');
    const context = parametersContext(volume.parameters);
    for (const [key, value] of Object.entries(request.volume_context ?? {})) {
      if (context[key] !== value) problems.push(`volume_context ${key}=${value} does not match the volume's`);
    }
    try {
      if (
        Object.keys(request.parameters ?? {}).length > 0 &&
        (wantsRbd(request.parameters) ||
          !sameParameters(parseParameters(fileParameters(request.parameters)), volume.parameters))
      )
        problems.push("parameters differ from the volume's");
    } catch (error) {
      problems.push(error instanceof Error ? error.message : String(error));
    }
    return validationAnswer(request, problems);
  }

  async ListVolumes(request: ListRequest): Promise<object> {
    const volumes = await this.options.store.listVolumes();
    const page = paginate(volumes, (volume) => volume.id, isVolumeId, request);
    const conditions = await this.options.realizer.volumeConditions(page.entries);
    return {
      entries: page.entries.map((volume, index) => ({
        volume: this.describe(volume),
        status: { published_node_ids: [], volume_condition: conditions[index] },
      })),
      next_token: page.next_token,
    };
  }

  async GetCapacity(request: {
    volume_capabilities?: VolumeCapability[];
    parameters?: Record<string, string>;
    accessible_topology?: Topology | null;
  }): Promise<object> {
    if (wantsRbd(request.parameters))
      throw new CsiError(
        status.UNIMPLEMENTED,
        "GetCapacity of an RBD pool is not supported: the request carries no secrets to read the pool's space with",
      );
    const parameters = parseParameters(fileParameters(request.parameters));
    const maximum = {
      maximum_volume_size: { value: this.options.maximumVolumeBytes },
      minimum_volume_size: { value: MINIMUM_VOLUME_BYTES },
    };
    const unsupported = (request.volume_capabilities ?? []).some(
      (capability) => capabilityProblem(capability, 'file') !== null,
    );
    if (unsupported) return { available_capacity: 0, ...maximum };
    const space = await ProvisionedSpace.read(this.options.store, parameters.overcommitRatio);
    const rooms = await this.options.placement.roomsIn(request.accessible_topology);
    return { available_capacity: space.largestAvailable(rooms), ...maximum };
  }

  ControllerGetCapabilities(): Promise<object> {
    return Promise.resolve({ capabilities: CONTROLLER_CAPABILITIES.map((type) => ({ rpc: { type } })) });
  }

  async ControllerGetVolume(request: { volume_id?: string }): Promise<object> {
    const id = requireField(request.volume_id, 'volume_id');
    if (isRbdVolumeId(id)) {
      this.rbd().requireVolume(id);
      throw new CsiError(
        status.UNIMPLEMENTED,
        `ControllerGetVolume of RBD volume ${id} is not supported: the request carries no secrets to read the pool with`,
      );
    }
    const volume = await this.requireVolume(id);
    const [condition] = await this.options.realizer.volumeConditions([volume]);
    return {
      volume: this.describe(volume),
      status: { published_node_ids: [], volume_condition: condition },
    };
  }

  async ControllerExpandVolume(request: {
    volume_id?: string;
    capacity_range?: CapacityRange | null;
    volume_capability?: VolumeCapability | null;
    secrets?: Record<string, string>;
  }): Promise<object> {
    const id = requireField(request.volume_id, 'volume_id');
    if (isRbdVolumeId(id)) return this.rbd().expandVolume(id, request.capacity_range, request.secrets);
    const range = request.capacity_range;
    if (!range || ((range.required_bytes ?? 0) <= 0 && (range.limit_bytes ?? 0) <= 0))
      throw invalidArgument('capacity_range is required');
    return this.options.locks.run([id], async () => {
      const volume = await this.requireVolume(id);
      const wanted = roundUp(
        Math.max(range.required_bytes ?? 0, volume.capacityBytes),
        volume.parameters.blockSize,
      );
      if ((range.limit_bytes ?? 0) > 0 && wanted > range.limit_bytes!) {
        throw outOfRange(
          `volume ${id} is ${volume.capacityBytes} bytes; it cannot shrink to fit limit_bytes ${range.limit_bytes}`,
        );
      }
      if (wanted > this.options.maximumVolumeBytes)
        throw outOfRange(
          `${wanted} bytes is more than the largest volume, ${this.options.maximumVolumeBytes} bytes`,
        );
      const grown = { ...volume, capacityBytes: wanted };
      if (wanted > volume.capacityBytes) await this.admitGrowth(volume, grown);
      await this.options.realizer.growVolume(grown);
      return {
        capacity_bytes: wanted,
        node_expansion_required: request.volume_capability?.access_type !== 'block',
      };
    });
  }

  async CreateSnapshot(request: {
    source_volume_id?: string;
    name?: string;
    parameters?: Record<string, string>;
    secrets?: Record<string, string>;
  }): Promise<object> {
    const sourceId = requireField(request.source_volume_id, 'source_volume_id');
    const unknown = Object.keys(request.parameters ?? {}).filter(
      (key) => !key.startsWith('csi.storage.k8s.io/'),
    );
    if (unknown.length > 0) throw invalidArgument(`unknown snapshot parameters: ${unknown.join(', ')}`);
    if (isRbdVolumeId(sourceId)) return this.rbd().createSnapshot({ ...request, source_volume_id: sourceId });
    const name = requireName(request.name, 'name');
    const id = snapshotIdFor(name);
    return this.options.locks.run([`snapshot-name:${name}`, id, sourceId], async () => {
      const existing = await this.options.store.findSnapshotByName(name);
      if (existing && existing.sourceVolumeId !== sourceId)
        throw alreadyExists(`snapshot ${name} exists with source volume ${existing.sourceVolumeId}`);
      let record = existing;
      if (!record) {
        const volume = await this.requireVolume(sourceId);
        record = {
          id,
          name,
          sourceVolumeId: sourceId,
          nodeId: volume.nodeId,
          sizeBytes: volume.capacityBytes,
          createdAtMs: Date.now(),
        };
        await this.options.store.putSnapshot(record);
      }
      const made = record;
      const snapshot = await this.realize(id, () => this.options.realizer.createSnapshot(made));
      return { snapshot: describeSnapshot(snapshot) };
    });
  }

  async DeleteSnapshot(request: { snapshot_id?: string; secrets?: Record<string, string> }): Promise<object> {
    const id = requireField(request.snapshot_id, 'snapshot_id');
    if (isRbdSnapshotId(id)) return this.rbd().deleteSnapshot(id, request.secrets);
    if (!isSnapshotId(id)) return {};
    return this.options.locks.run([id], async () => {
      await this.options.realizer.deleteSnapshot(id);
      await this.options.store.deleteSnapshot(id);
      return {};
    });
  }

  /**
   * Without a filter, the image-file snapshots only: RBD snapshots live in pools that only their
   * ids (and the request's secrets) lead to, so they are listed by snapshot_id or source_volume_id.
   */
  async ListSnapshots(
    request: ListRequest & {
      source_volume_id?: string;
      snapshot_id?: string;
      secrets?: Record<string, string>;
    },
  ): Promise<object> {
    const rbdFilter = request.snapshot_id
      ? isRbdSnapshotId(request.snapshot_id) && { snapshotId: request.snapshot_id }
      : request.source_volume_id &&
        isRbdVolumeId(request.source_volume_id) && { volumeId: request.source_volume_id };
    let snapshots: Snapshot[];
    if (rbdFilter) {
      snapshots = await this.rbd().listSnapshots(rbdFilter, request.secrets);
      if (request.source_volume_id)
        snapshots = snapshots.filter((snapshot) => snapshot.source_volume_id === request.source_volume_id);
    } else {
      let records = await this.options.store.listSnapshots();
      if (request.snapshot_id) records = records.filter((snapshot) => snapshot.id === request.snapshot_id);
      if (request.source_volume_id)
        records = records.filter((snapshot) => snapshot.sourceVolumeId === request.source_volume_id);
      snapshots = records.map(describeSnapshot);
    }
    const valid = rbdFilter ? isRbdSnapshotId : isSnapshotId;
    const page = paginate(snapshots, (snapshot) => snapshot.snapshot_id, valid, request);
    return {
      entries: page.entries.map((snapshot) => ({ snapshot })),
      next_token: page.next_token,
    };
  }

  /** Records a volume's new size once its node has the growth available (as CreateVolume admits). */
  private admitGrowth(volume: VolumeRecord, grown: VolumeRecord): Promise<void> {
    return this.admissions.run(async () => {
      const space = await ProvisionedSpace.read(this.options.store, volume.parameters.overcommitRatio);
      const [room] = await this.options.placement.roomsIn(nodeTopology(volume.nodeId));
      space.admitGrowth(volume.id, room, volume.nodeId, grown.capacityBytes - volume.capacityBytes);
      await this.options.store.putVolume(grown);
    });
  }

  private rbd(): RbdController {
    if (!this.options.rbd) throw failedPrecondition('this plugin serves no RBD volumes');
    return this.options.rbd;
  }

  private async requireVolume(id: string): Promise<VolumeRecord> {
    const volume = isVolumeId(id) ? await this.options.store.getVolume(id) : null;
    if (!volume) throw notFound(`volume ${JSON.stringify(id)} does not exist`);
    return volume;
  }

  private async resolveSource(
    source: VolumeContentSource | null | undefined,
  ): Promise<ResolvedSource | null> {
    if (!source?.type) return null;
    if (source.type === 'snapshot') {
      const id = requireField(source.snapshot?.snapshot_id, 'volume_content_source.snapshot.snapshot_id');
      if (isRbdSnapshotId(id))
        throw invalidArgument(`an image-file volume cannot be made from RBD snapshot ${id}`);
      const snapshot = isSnapshotId(id) ? await this.options.store.getSnapshot(id) : null;
      if (!snapshot) throw notFound(`source snapshot ${JSON.stringify(id)} does not exist`);
      return { source: { kind: 'snapshot', id }, bytes: snapshot.sizeBytes, nodeId: snapshot.nodeId };
    }
    const id = requireField(source.volume?.volume_id, 'volume_content_source.volume.volume_id');
    if (isRbdVolumeId(id))
      throw invalidArgument(`an image-file volume cannot be cloned from RBD volume ${id}`);
    const volume = await this.requireVolume(id);
    return { source: { kind: 'volume', id }, bytes: volume.capacityBytes, nodeId: volume.nodeId };
  }

  /**
   * Runs a realizer call for a new record. When it fails for good the record is dropped, so the
   * CO's retry starts afresh; when it is still under way (DEADLINE_EXCEEDED, ABORTED) it stays.
   */
  private async realize<T>(id: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      const underWay =
        error instanceof CsiError &&
        (error.code === status.DEADLINE_EXCEEDED || error.code === status.ABORTED);
      if (!underWay) {
        const drop = isVolumeId(id)
          ? this.options.store.deleteVolume(id)
          : this.options.store.deleteSnapshot(id);
        await drop.catch((dropError: unknown) =>
          log.warn('dropping the record of a failed create failed', { id, error: String(dropError) }),
        );
      }
      throw error;
    }
  }

  private describeExisting(
    existing: VolumeRecord,
    range: CapacityRange | null | undefined,
    parameters: VolumeParameters,
    source: VolumeSource | null,
  ): Volume {
    const problems: string[] = [];
    if (!fitsRange(existing.capacityBytes, range))
      problems.push(`its size is ${existing.capacityBytes} bytes`);
    if (!sameParameters(existing.parameters, parameters)) problems.push('its parameters differ');
    if (
      (existing.source?.kind ?? null) !== (source?.kind ?? null) ||
      (existing.source?.id ?? null) !== (source?.id ?? null)
    )
      problems.push('its content source differs');
    if (problems.length > 0)
      throw alreadyExists(`volume ${existing.name} exists and is incompatible: ${problems.join(', ')}`);
    return this.describe(existing);
  }

  private describe(volume: VolumeRecord): Volume {
    return {
      volume_id: volume.id,
      capacity_bytes: volume.capacityBytes,
      volume_context: parametersContext(volume.parameters),
      content_source: contentSource(volume.source),
      accessible_topology: [nodeTopology(volume.nodeId)],
    };
  }
}

function contentSource(source: VolumeSource | null): VolumeContentSource | null {
  if (!source) return null;
  return source.kind === 'snapshot'
    ? { snapshot: { snapshot_id: source.id } }
    : { volume: { volume_id: source.id } };
}

function describeSnapshot(snapshot: SnapshotRecord): Snapshot {
  return {
    snapshot_id: snapshot.id,
    source_volume_id: snapshot.sourceVolumeId,
    size_bytes: snapshot.sizeBytes,
    creation_time: {
      seconds: Math.floor(snapshot.createdAtMs / 1000),
      nanos: (snapshot.createdAtMs % 1000) * 1_000_000,
    },
    ready_to_use: true,
    group_snapshot_id: '',
  };
}

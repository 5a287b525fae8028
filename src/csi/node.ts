import { existsSync } from 'node:fs';
import { log } from '../log';
import { FilesystemMismatchError, growFilesystem, safeFormatAndMount, volumeStats } from '../node/filesystem';
import { ensureDirectory, ensureFile, mount, removeMountTarget, unmount } from '../node/mount';
import { isMountPoint, mountAt } from '../node/mountinfo';
import { ImageDirectory } from '../storage/images';
import { devicePath } from '../vduse/device';
import { status } from '@grpc/grpc-js';
import { CsiError, alreadyExists, failedPrecondition, internal, notFound, outOfRange } from './errors';
import { isVolumeId } from './ids';
import { CapacityRange, VolumeCapability, VolumeCondition } from './messages';
import { Publication, StagedVolume, deviceNameOf, podsOf, stagedVolumes } from './node-records';
import { podOfContext } from './pod';
import { VolumeParameters } from './parameters';
import { RbdNodeVolumes } from './rbd/rbd-node';
import { isRbdVolumeId, volumeKindOf } from './rbd/volume-id';
import { OperationLocks } from './operation-locks';
import { RecordDirectory } from './record-directory';
import { VolumeRecord, VolumeStore } from './store';
import { TOPOLOGY_KEY } from './topology';
import { ParsedCapability, parseCapability, requireField, requirePath, roundUp } from './validate';
import { ServeSpec, ServerStatus, StartedServer, VolumeServers } from './volume-servers';
import { DeviceWatch } from './device-watch';
import { VolumeEventSink, deviceEvent } from './volume-events';

export const NODE_CAPABILITIES = [
  'STAGE_UNSTAGE_VOLUME',
  'GET_VOLUME_STATS',
  'EXPAND_VOLUME',
  'VOLUME_CONDITION',
  'SINGLE_NODE_MULTI_WRITER',
] as const;

export interface NodeOptions {
  store: VolumeStore;
  images: ImageDirectory;
  servers: VolumeServers;
  locks: OperationLocks;
  stateDir: string;
  nodeId: string;
  maxVolumes: number;
  /** RBD volumes; without it, staging one is refused. */
  rbd?: RbdNodeVolumes;
  /**
   * Told the device a volume is staged as (/dev/vdX): after each NodeStageVolume, for each staged
   * volume when supervising starts, and undefined after each NodeUnstageVolume. In a cluster the
   * node agent writes it on the volume's status. A failure is logged, never the CSI call's.
   */
  onDevice?(volumeId: string, devicePath: string | undefined): Promise<void> | void;
  /** Told of takeovers, failed requests and failed stages of this node's volumes. */
  events?: VolumeEventSink;
}

const SUPERVISE_INTERVAL_MS = 1000;
/** How long a CSI call waits for onDevice: a hook that hangs (an unreachable API server) must not hold it. */
const DEVICE_HOOK_WAIT_MS = 5000;
const RESTART_BACKOFF_MAX_MS = 30_000;
const STANDBY_GRACE_MS = 5000;

/**
 * The CSI Node service: stages a volume by having the node's device daemon serve it and mounting
 * /dev/vdX, publishes it with bind mounts, and sees that every staged volume stays served.
 */
export class NodeService {
  private readonly staged: RecordDirectory<StagedVolume>;
  private readonly restarts = new Map<string, { failures: number; notBefore: number }>();
  private readonly missingSince = new Map<string, number>();
  private readonly startedAtMs = Date.now();
  private supervisor: NodeJS.Timeout | undefined;
  private readonly deviceWatch: DeviceWatch;

  constructor(private readonly options: NodeOptions) {
    this.staged = stagedVolumes(options.stateDir);
    this.deviceWatch = new DeviceWatch(
      () => options.servers.daemonFacts(),
      (observation) => {
        const staged = this.staged.get(observation.device);
        if (staged)
          options.events?.(
            deviceEvent(observation, {
              volumeId: staged.volumeId,
              claim: staged.claim,
              pods: podsOf(staged),
            }),
          );
      },
    );
  }

  /** Adopts what a previous plugin left staged and serves again what lost its daemon meanwhile. */
  startSupervising(): void {
    for (const staged of this.staged.list()) {
      log.info('found a staged volume', {
        volume: staged.volumeId,
        staging: staged.stagingPath,
        device: staged.devicePath,
      });
      void this.announceDevice(staged.volumeId, staged.devicePath);
    }
    const tick = (): void => {
      void this.superviseOnce().finally(() => {
        if (this.supervisor) this.supervisor = setTimeout(tick, SUPERVISE_INTERVAL_MS);
      });
    };
    this.supervisor = setTimeout(tick, 0);
    if (this.options.events) this.deviceWatch.start();
  }

  /** The volumes staged on this node, as recorded. */
  stagedVolumes(): StagedVolume[] {
    return this.staged.list();
  }

  stopSupervising(): void {
    clearTimeout(this.supervisor);
    this.supervisor = undefined;
    this.deviceWatch.stop();
  }

  async NodeStageVolume(request: {
    volume_id?: string;
    staging_target_path?: string;
    volume_capability?: VolumeCapability | null;
    volume_context?: Record<string, string>;
    secrets?: Record<string, string>;
  }): Promise<object> {
    const id = requireField(request.volume_id, 'volume_id');
    const stagingPath = requirePath(request.staging_target_path, 'staging_target_path');
    const capability = parseCapability(request.volume_capability, 'volume_capability', volumeKindOf(id));
    let claim: StagedVolume['claim'];
    return this.options.locks
      .run([id], async () => {
        const deviceName = deviceNameOf(id);
        const existing = this.staged.get(deviceName);
        const { spec, parameters, record } = isRbdVolumeId(id)
          ? this.rbd().prepare(id, request, capability)
          : await this.fileStage(id, capability.readOnly);
        claim = record.claim;
        if (existing) checkSameStaging(existing, stagingPath, capability);
        let started: StartedServer;
        try {
          started = await this.options.servers.start(spec);
        } catch (error) {
          if (!existing) this.options.rbd?.release(id);
          throw error;
        }
        const server = started.status;
        const fresh = !existing && !started.wasServed;
        // A new device over an image nothing ever wrote needs no blkid before mkfs: under 16
        // stages at once that probe took seconds each.
        const knownBlank =
          fresh &&
          capability.accessType === 'mount' &&
          !isRbdVolumeId(id) &&
          this.options.images.holdsNoData('volumes', id);
        try {
          await ensureDirectory(stagingPath);
          if (capability.accessType === 'mount') {
            await safeFormatAndMount(server.path, stagingPath, capability.fsType, {
              // Volumes restored from a snapshot share the source's xfs UUID; xfs refuses that without nouuid.
              mountOptions:
                capability.fsType === 'xfs' ? [...capability.mountFlags, 'nouuid'] : capability.mountFlags,
              readOnly: capability.readOnly,
              knownBlank,
            });
          }
        } catch (error) {
          if (fresh) {
            await this.options.servers.stop(spec).catch(() => undefined);
            this.options.rbd?.release(id);
          }
          if (error instanceof FilesystemMismatchError) throw failedPrecondition(error.message);
          throw internal(`staging ${id} failed: ${error instanceof Error ? error.message : String(error)}`);
        }
        this.staged.put({
          volumeId: id,
          ...record,
          parameters,
          stagingPath,
          accessType: capability.accessType,
          fsType: capability.fsType,
          mountFlags: capability.mountFlags,
          readOnly: capability.readOnly,
          devicePath: server.path,
          publications: existing?.publications ?? {},
        });
        log.info('volume staged', {
          volume: id,
          device: server.path,
          staging: stagingPath,
          type: capability.accessType,
        });
        await this.announceDevice(id, server.path);
        return {};
      })
      .catch((error: unknown) => {
        const message = error instanceof Error ? error.message : String(error);
        this.options.events?.({
          volumeId: id,
          claim,
          // NodeStageVolume does not say for which pod.
          pods: [],
          type: 'Warning',
          reason: 'StageFailed',
          message,
          count: 1,
        });
        throw error;
      });
  }

  async NodeUnstageVolume(request: { volume_id?: string; staging_target_path?: string }): Promise<object> {
    const id = requireField(request.volume_id, 'volume_id');
    const stagingPath = requirePath(request.staging_target_path, 'staging_target_path');
    return this.options.locks.run([id], async () => {
      const deviceName = deviceNameOf(id);
      const staged = this.staged.get(deviceName);
      const volume = isVolumeId(id) ? await this.options.store.getVolume(id) : null;
      const rbd = isRbdVolumeId(id) && this.rbd().isWellFormed(id);
      const served =
        (isVolumeId(id) || rbd) &&
        ((await this.options.servers.status(deviceName)) !== null || existsSync(devicePath(deviceName)));
      if (!staged && !served) {
        if (!volume && !rbd) throw notFound(`volume ${JSON.stringify(id)} does not exist`);
        // A stage that stopped before its record was written may have left the volume's key.
        if (rbd) this.rbd().release(id);
        await this.announceDevice(id, undefined);
        return {};
      }
      // Stopping the server while its filesystem stays mounted elsewhere would fail that mount's I/O.
      if (staged && staged.stagingPath !== stagingPath)
        throw failedPrecondition(`volume ${id} is staged at ${staged.stagingPath}, not at ${stagingPath}`);
      const stillPublished: string[] = [];
      for (const target of Object.keys(staged?.publications ?? {})) {
        if (await isMountPoint(target)) stillPublished.push(target);
      }
      if (stillPublished.length > 0)
        throw failedPrecondition(`volume ${id} is still published at ${stillPublished.join(', ')}`);
      while (await isMountPoint(stagingPath)) await unmount(stagingPath);
      const spec = staged ? this.specOf(staged) : volume ? this.serveSpec(volume, false) : null;
      if (!spec)
        throw failedPrecondition(`volume ${id} is served but has no record: cannot tell how to stop it`);
      await this.options.servers.stop(spec);
      // The key goes before the record: a record without files is restaged, files without one would linger.
      this.options.rbd?.release(id);
      this.staged.delete(deviceName);
      this.restarts.delete(id);
      log.info('volume unstaged', { volume: id });
      await this.announceDevice(id, undefined);
      return {};
    });
  }

  async NodePublishVolume(request: {
    volume_id?: string;
    staging_target_path?: string;
    target_path?: string;
    volume_capability?: VolumeCapability | null;
    readonly?: boolean;
    volume_context?: Record<string, string>;
  }): Promise<object> {
    const id = requireField(request.volume_id, 'volume_id');
    const stagingPath = requirePath(request.staging_target_path, 'staging_target_path');
    const target = requirePath(request.target_path, 'target_path');
    const pod = podOfContext(request.volume_context);
    const capability = parseCapability(request.volume_capability, 'volume_capability', volumeKindOf(id));
    const readOnly = (request.readonly ?? false) || capability.readOnly;
    return this.options.locks.run([id], async () => {
      await this.requireVolume(id);
      const staged = this.staged.get(deviceNameOf(id));
      if (!staged || staged.stagingPath !== stagingPath)
        throw failedPrecondition(`volume ${id} is not staged at ${stagingPath}`);
      if (staged.accessType !== capability.accessType)
        throw failedPrecondition(
          `volume ${id} is staged for ${staged.accessType} access, not ${capability.accessType}`,
        );
      const published = staged.publications[target];
      if (published && (await isMountPoint(target))) {
        if (published.readOnly !== readOnly)
          throw alreadyExists(
            `volume ${id} is already published at ${target} with readonly=${published.readOnly}`,
          );
        return {};
      }
      const singleWriter = capability.accessMode === 'SINGLE_NODE_SINGLE_WRITER';
      if (!readOnly) await requireNoOtherWriter(staged, target, singleWriter);
      if (staged.accessType === 'mount') {
        await ensureDirectory(target);
        await mount(stagingPath, target, { bind: true, readOnly, options: capability.mountFlags });
      } else {
        await ensureFile(target);
        await mount(staged.devicePath, target, { bind: true, readOnly });
      }
      const publication: Publication = {
        readOnly,
        ...(singleWriter ? { singleWriter } : {}),
        ...(pod ? { pod } : {}),
      };
      this.staged.put({ ...staged, publications: { ...staged.publications, [target]: publication } });
      log.info('volume published', { volume: id, target, readOnly });
      return {};
    });
  }

  async NodeUnpublishVolume(request: { volume_id?: string; target_path?: string }): Promise<object> {
    const id = requireField(request.volume_id, 'volume_id');
    const target = requirePath(request.target_path, 'target_path');
    return this.options.locks.run([id], async () => {
      const staged = this.staged.get(deviceNameOf(id));
      if (!staged && isRbdVolumeId(id)) await this.requireVolume(id);
      else if (!staged && !(isVolumeId(id) && (await this.options.store.getVolume(id))))
        throw notFound(`volume ${JSON.stringify(id)} does not exist`);
      while (await isMountPoint(target)) await unmount(target);
      await removeMountTarget(target);
      if (staged?.publications[target]) {
        const publications = { ...staged.publications };
        delete publications[target];
        this.staged.put({ ...staged, publications });
      }
      log.info('volume unpublished', { volume: id, target });
      return {};
    });
  }

  async NodeGetVolumeStats(request: { volume_id?: string; volume_path?: string }): Promise<object> {
    const id = requireField(request.volume_id, 'volume_id');
    const volumePath = requireField(request.volume_path, 'volume_path').replace(/(.)\/+$/, '$1');
    const staged = this.staged.get(deviceNameOf(id));
    if (!staged) {
      await this.requireVolume(id);
      throw notFound(`volume ${id} is not staged on this node`);
    }
    requireVolumePath(staged, volumePath);
    if (!existsSync(volumePath)) throw notFound(`${volumePath} does not exist`);
    const condition = await this.condition(staged);
    // statfs on a device nobody serves would hang: report the condition only.
    if (condition.abnormal) return { usage: [], volume_condition: condition };
    if (staged.accessType === 'block' || !(await isMountPoint(volumePath))) {
      const stats = await volumeStats(staged.devicePath);
      return {
        usage: [{ unit: 'BYTES', total: stats.totalBytes, available: 0, used: 0 }],
        volume_condition: condition,
      };
    }
    const stats = await volumeStats(volumePath);
    if (stats.kind !== 'filesystem') throw internal(`${volumePath} is not a filesystem`);
    return {
      usage: [
        { unit: 'BYTES', total: stats.totalBytes, available: stats.availableBytes, used: stats.usedBytes },
        { unit: 'INODES', total: stats.totalInodes, available: stats.freeInodes, used: stats.usedInodes },
      ],
      volume_condition: condition,
    };
  }

  async NodeExpandVolume(request: {
    volume_id?: string;
    volume_path?: string;
    staging_target_path?: string;
    capacity_range?: CapacityRange | null;
  }): Promise<object> {
    const id = requireField(request.volume_id, 'volume_id');
    const volumePath = requireField(request.volume_path, 'volume_path').replace(/(.)\/+$/, '$1');
    return this.options.locks.run([id], async () => {
      const volume = isRbdVolumeId(id) ? null : await this.requireVolume(id);
      const staged = this.staged.get(deviceNameOf(id));
      if (!staged) {
        if (!volume) await this.requireVolume(id);
        throw failedPrecondition(`volume ${id} is not staged on this node`);
      }
      requireVolumePath(staged, volumePath);
      const required = roundUp(request.capacity_range?.required_bytes ?? 0, staged.parameters.blockSize);
      const server = await this.options.servers.status(deviceNameOf(id));
      if (!server) throw failedPrecondition(`volume ${id} is not served by a running device daemon`);
      // An RBD volume has no record here: the CO's request says what the controller grew it to.
      const capacity = volume?.capacityBytes ?? Math.max(required, server.capacityBytes);
      if (required > capacity)
        throw outOfRange(`volume ${id} is ${capacity} bytes: expand it with ControllerExpandVolume first`);
      const limit = request.capacity_range?.limit_bytes ?? 0;
      if (limit > 0 && capacity > limit)
        throw outOfRange(`volume ${id} is ${capacity} bytes, above limit_bytes ${limit}`);
      if (server.capacityBytes < capacity) await this.options.servers.resize(deviceNameOf(id), capacity);
      if (staged.accessType === 'mount')
        await growFilesystem(staged.devicePath, staged.stagingPath, staged.fsType);
      log.info('volume expanded', { volume: id, bytes: capacity });
      return { capacity_bytes: capacity };
    });
  }

  NodeGetCapabilities(): Promise<object> {
    return Promise.resolve({ capabilities: NODE_CAPABILITIES.map((type) => ({ rpc: { type } })) });
  }

  NodeGetInfo(): Promise<object> {
    return Promise.resolve({
      node_id: this.options.nodeId,
      max_volumes_per_node: this.options.maxVolumes,
      accessible_topology: { segments: { [TOPOLOGY_KEY]: this.options.nodeId } },
    });
  }

  /**
   * Restarts (with backoff) the server of every staged volume whose server died. The volume is
   * locked only for a restart, so the CO's own calls are not turned away by routine checks.
   */
  private async superviseOnce(): Promise<void> {
    await this.options.servers
      .rotateDaemonLog()
      .catch((error: unknown) => log.warn('rotating the device daemon log failed', { error: String(error) }));
    for (const staged of this.staged.list()) {
      const restart = this.restarts.get(staged.volumeId);
      if (restart && Date.now() < restart.notBefore) continue;
      const running = await this.options.servers.status(deviceNameOf(staged.volumeId));
      // Only servers older than this plugin: while an old and a new plugin overlap (a rolling
      // upgrade), the old one must not take the devices back.
      if (
        running &&
        this.options.servers.managesDaemon &&
        running.build !== this.options.servers.ownBuild &&
        running.startedAtMs < this.startedAtMs
      ) {
        await this.upgradeServer(staged, running);
        continue;
      }
      if (running) {
        this.missingSince.delete(staged.volumeId);
        continue;
      }
      // A standby server is likely taking over right now: give it time before starting another.
      const missingSince = this.missingSince.get(staged.volumeId) ?? Date.now();
      this.missingSince.set(staged.volumeId, missingSince);
      if (Date.now() - missingSince < STANDBY_GRACE_MS) continue;
      try {
        await this.options.locks.run([staged.volumeId], async () => {
          const deviceName = deviceNameOf(staged.volumeId);
          const current = this.staged.get(deviceName);
          if (!current || (await this.options.servers.status(deviceName))) return;
          log.warn('a staged volume is not served: serving it again', { volume: current.volumeId });
          await this.options.servers.start(this.specOf(current));
          this.restarts.delete(current.volumeId);
          this.missingSince.delete(current.volumeId);
        });
      } catch (error) {
        if (error instanceof CsiError && error.code === status.ABORTED) continue;
        const failures = (restart?.failures ?? 0) + 1;
        const delay = Math.min(RESTART_BACKOFF_MAX_MS, 1000 * 2 ** (failures - 1));
        this.restarts.set(staged.volumeId, { failures, notBefore: Date.now() + delay });
        log.error('serving a staged volume again failed', {
          volume: staged.volumeId,
          failures,
          retryInMs: delay,
          error: String(error),
        });
      }
    }
  }

  /** A server of another build (the plugin was upgraded) hands its device to one of ours. */
  private async upgradeServer(staged: StagedVolume, running: ServerStatus): Promise<void> {
    try {
      await this.options.locks.run([staged.volumeId], () =>
        this.options.servers.upgrade(this.specOf(staged), running),
      );
    } catch (error) {
      if (error instanceof CsiError && error.code === status.ABORTED) return;
      log.error('handing a device over to this build failed; the old server keeps serving it', {
        volume: staged.volumeId,
        error: String(error),
      });
    }
  }

  private async announceDevice(volumeId: string, devicePath: string | undefined): Promise<void> {
    // RBD volumes have no VduseVolume object to report a device on: the pool is their state.
    if (isRbdVolumeId(volumeId)) return;
    const context = { volume: volumeId, device: devicePath };
    const announced = (async () => this.options.onDevice?.(volumeId, devicePath))().catch((error: unknown) =>
      log.warn('reporting the device of a volume failed', { ...context, error: String(error) }),
    );
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        log.warn('reporting the device of a volume takes long: not waiting for it', context);
        resolve();
      }, DEVICE_HOOK_WAIT_MS);
    });
    await Promise.race([announced, late]);
    clearTimeout(timer);
  }

  private async condition(staged: StagedVolume): Promise<VolumeCondition> {
    const server = await this.options.servers.status(deviceNameOf(staged.volumeId));
    if (!server)
      return { abnormal: true, message: `no process serves ${staged.devicePath}: I/O to the volume waits` };
    if (server.path !== staged.devicePath)
      return { abnormal: true, message: `served as ${server.path}, staged as ${staged.devicePath}` };
    if (staged.accessType === 'mount' && !(await mountAt(staged.stagingPath)))
      return { abnormal: true, message: `staging path ${staged.stagingPath} is not mounted` };
    return { abnormal: false, message: `served as ${server.path} by process ${server.pid}` };
  }

  /** An image-file volume's record, or null for a well-formed RBD volume id; NOT_FOUND otherwise. */
  private async requireVolume(id: string): Promise<VolumeRecord | null> {
    if (isRbdVolumeId(id)) {
      if (!this.rbd().isWellFormed(id)) throw notFound(`volume ${JSON.stringify(id)} does not exist`);
      return null;
    }
    const volume = isVolumeId(id) ? await this.options.store.getVolume(id) : null;
    if (!volume || !this.options.images.exists('volumes', id))
      throw notFound(`volume ${JSON.stringify(id)} does not exist`);
    return volume;
  }

  private rbd(): RbdNodeVolumes {
    if (!this.options.rbd) throw failedPrecondition('this plugin serves no RBD volumes');
    return this.options.rbd;
  }

  /** What staging an image-file volume serves, and what its record keeps. */
  private async fileStage(
    id: string,
    readOnly: boolean,
  ): Promise<{
    spec: ServeSpec;
    parameters: VolumeParameters;
    record: Pick<StagedVolume, 'imagePath' | 'claim'>;
  }> {
    const volume = (await this.requireVolume(id))!;
    const spec = this.serveSpec(volume, readOnly);
    return {
      spec,
      parameters: volume.parameters,
      record: {
        imagePath: this.options.images.path('volumes', id),
        ...(volume.claim ? { claim: { ...volume.claim } } : {}),
      },
    };
  }

  private serveSpec(volume: VolumeRecord, readOnly: boolean): ServeSpec {
    return {
      deviceName: volume.id,
      storage: { kind: 'file', path: this.options.images.path('volumes', volume.id) },
      parameters: volume.parameters,
      readOnly,
    };
  }

  private specOf(staged: StagedVolume): ServeSpec {
    if (staged.rbd) return this.rbd().specOf(staged.volumeId, staged.rbd, staged.parameters, staged.readOnly);
    if (staged.imagePath === undefined)
      throw new Error(
        `the staging record of ${staged.volumeId} names neither an image file nor an RBD image`,
      );
    return {
      deviceName: staged.volumeId,
      storage: { kind: 'file', path: staged.imagePath },
      parameters: staged.parameters,
      readOnly: staged.readOnly,
    };
  }
}

/** Only the staging path and publish targets of a volume are its paths; anything else is NOT_FOUND. */
function requireVolumePath(staged: StagedVolume, volumePath: string): void {
  if (volumePath !== staged.stagingPath && !(volumePath in staged.publications))
    throw notFound(`${volumePath} is not a path of volume ${staged.volumeId} on this node`);
}

/**
 * SINGLE_NODE_SINGLE_WRITER allows one read-write publication at a time: a new writer is refused
 * while another target holds the volume read-write, if either of them asked for a single writer.
 */
async function requireNoOtherWriter(
  staged: StagedVolume,
  target: string,
  singleWriter: boolean,
): Promise<void> {
  for (const [other, publication] of Object.entries(staged.publications)) {
    if (other === target || publication.readOnly) continue;
    if (!(singleWriter || publication.singleWriter) || !(await isMountPoint(other))) continue;
    throw failedPrecondition(
      `volume ${staged.volumeId} is single-writer and already published read-write at ${other}`,
    );
  }
}

function checkSameStaging(existing: StagedVolume, stagingPath: string, capability: ParsedCapability): void {
  if (existing.stagingPath !== stagingPath)
    throw failedPrecondition(`volume ${existing.volumeId} is already staged at ${existing.stagingPath}`);
  const same =
    existing.accessType === capability.accessType &&
    existing.readOnly === capability.readOnly &&
    (existing.rbd?.sharing !== undefined) === capability.multiNode &&
    (capability.accessType === 'block' || existing.fsType === capability.fsType);
  if (!same)
    throw alreadyExists(`volume ${existing.volumeId} is staged at ${stagingPath} with another capability`);
}

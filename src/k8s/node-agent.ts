import { log } from '../log';
import { VolumeRealizer } from '../csi/realizer';
import { SnapshotRecord } from '../csi/store';
import { ImageDirectory } from '../storage/images';
import {
  ConditionState,
  IMAGE_HEALTHY,
  READY,
  findCondition,
  sameCondition,
  setCondition,
} from './conditions';
import { CustomResource, Selector } from './custom-resource';
import { failureMessage } from './failure';
import { imageCondition } from './image-check';
import { LatestPerKey } from './latest-per-key';
import { NodeCapacity, NodeSpaceReport } from './node-capacity';
import { ResourceWatch } from './resource-watch';
import {
  FINALIZER,
  KubeObject,
  NODE_LABEL,
  SnapshotObject,
  SnapshotStatus,
  VolumeObject,
  VolumeStatus,
  isDeleting,
  nodeLabel,
  snapshotRecord,
  volumeRecord,
} from './resources';

export interface NodeAgentOptions {
  nodeId: string;
  volumes: CustomResource<VolumeObject>;
  snapshots: CustomResource<SnapshotObject>;
  images: ImageDirectory;
  /** The image work on this node (a LocalRealizer). */
  realizer: VolumeRealizer;
  capacity: NodeCapacity;
  /** How often to report free space (which tells the controller the agent runs) and check images. */
  capacityIntervalMs: number;
  /** When to try again: to delete a volume that was still staged, or work whose API request failed. */
  retryMs: number;
}

type WorkKind = 'volume' | 'snapshot' | 'device';

/** A device to write on a volume's status, and the reportDevice calls waiting for it. */
interface DeviceReport {
  path: string | undefined;
  waiting: { resolve: () => void; reject: (error: unknown) => void }[];
}

/**
 * Runs beside the node service in a cluster: realises the VduseVolume and VduseSnapshot objects of
 * this node on its image directory and reports on their status; removes the finalizer once an
 * object's image is gone. Every step is idempotent, so objects seen again after a restart or a
 * relist are simply brought to their state again, and work that failed is tried again.
 */
export class NodeAgent {
  private readonly queue = new LatestPerKey((key) => this.work(key));
  private readonly selector: Selector;
  private readonly watches: ResourceWatch<KubeObject>[];
  private readonly timers = new Set<NodeJS.Timeout>();
  /** Devices to write on volumes' status (reportDevice), latest per volume, until written. */
  private readonly devices = new Map<string, DeviceReport>();
  private publishing: Promise<unknown> = Promise.resolve();
  private intervalWork: Promise<unknown> = Promise.resolve();
  private stopped = false;

  constructor(private readonly options: NodeAgentOptions) {
    this.selector = { labelSelector: `${NODE_LABEL}=${nodeLabel(options.nodeId)}` };
    this.watches = (['volume', 'snapshot'] as const).map((kind) => {
      const resource: CustomResource<KubeObject> = kind === 'volume' ? options.volumes : options.snapshots;
      const push = (object: KubeObject): void => this.queue.push(`${kind}/${object.metadata.name}`);
      return new ResourceWatch(resource, this.selector, {
        listed: (items) => items.forEach(push),
        changed: (object, deleted) => {
          if (!deleted) push(object);
        },
      });
    });
  }

  start(): void {
    this.options.images.removeLeftovers('volumes');
    this.options.images.removeLeftovers('snapshots');
    for (const watch of this.watches) watch.start();
    this.everyInterval();
  }

  /**
   * Writes on a volume's status the device it is staged as, or none (undefined) once unstaged; a
   * later report replaces one not yet written. Resolves once written; rejects when the first
   * attempt failed, and the agent tries again until the write succeeds.
   */
  reportDevice(volumeId: string, devicePath: string | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      const waiting = [...(this.devices.get(volumeId)?.waiting ?? []), { resolve, reject }];
      this.devices.set(volumeId, { path: devicePath, waiting });
      this.queue.push(`device/${volumeId}`);
    });
  }

  /** Stops watching and waits for work under way. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const watch of this.watches) watch.stop();
    for (const timer of this.timers) clearTimeout(timer);
    await this.intervalWork;
    await this.queue.idle();
    await this.publishing;
  }

  /** An API server that fails a request (5xx, a dropped connection) is asked again later. */
  private async work(key: string): Promise<void> {
    try {
      await this.reconcile(key);
    } catch (error) {
      log.warn('node agent work failed: trying again', {
        key,
        retryInMs: this.options.retryMs,
        error: String(error),
      });
      this.later(this.options.retryMs, () => this.queue.push(key));
    }
  }

  private async reconcile(key: string): Promise<void> {
    const [kind, name] = key.split('/') as [WorkKind, string];
    if (kind === 'device') {
      await this.writeDevice(name);
    } else if (kind === 'volume') {
      const object = await this.options.volumes.get(name);
      if (object?.spec.nodeId === this.options.nodeId) await this.reconcileVolume(object);
    } else {
      const object = await this.options.snapshots.get(name);
      if (object?.spec.nodeId === this.options.nodeId) await this.reconcileSnapshot(object);
    }
  }

  private async reconcileVolume(object: VolumeObject): Promise<void> {
    const id = object.metadata.name;
    const generation = object.metadata.generation ?? 1;
    const state = object.status;
    if (isDeleting(object)) {
      if (!object.metadata.finalizers?.includes(FINALIZER)) return;
      if (state?.phase !== 'Failed') await this.volumeStatus(id, generation, 'Deleting');
      try {
        await this.options.realizer.deleteVolume(id);
      } catch (error) {
        await this.volumeStatus(id, generation, 'Failed', { message: failureMessage(error) });
        this.later(this.options.retryMs, () => this.queue.push(`volume/${id}`));
        return;
      }
      await this.dropFinalizer(this.options.volumes, id);
      return;
    }
    const observed = (state?.observedGeneration ?? 0) >= generation;
    if (observed && state?.phase === 'Ready') {
      if (this.imageChange(object)) await this.reportImage(id);
      return;
    }
    if (observed && state?.phase === 'Failed') return;
    const record = volumeRecord(object);
    const creating = !this.options.images.exists('volumes', id);
    // Made once (a Ready status recorded its size) and gone since: making it again would hide the loss.
    if (creating && state?.capacityBytes !== undefined) {
      await this.volumeStatus(id, generation, 'Failed', {
        message: `ImageLost: the image of volume ${id} is gone from node ${this.options.nodeId}; its data is lost, and it is not made again empty`,
      });
      return;
    }
    await this.volumeStatus(id, generation, creating ? 'Creating' : 'Resizing');
    try {
      await this.options.realizer.createVolume(record);
      await this.options.realizer.growVolume(record);
    } catch (error) {
      log.warn('realising a volume failed', { volume: id, error: String(error) });
      await this.volumeStatus(id, generation, 'Failed', { message: failureMessage(error) });
      return;
    }
    await this.volumeStatus(id, generation, 'Ready', {
      capacityBytes: this.options.images.size('volumes', id) ?? 0,
    });
    log.info('volume realised', { volume: id, bytes: record.capacityBytes });
    void this.publishCapacity();
  }

  private async reconcileSnapshot(object: SnapshotObject): Promise<void> {
    const id = object.metadata.name;
    if (isDeleting(object)) {
      if (!object.metadata.finalizers?.includes(FINALIZER)) return;
      await this.options.realizer.deleteSnapshot(id);
      await this.dropFinalizer(this.options.snapshots, id);
      return;
    }
    if (object.status?.phase === 'Ready' || object.status?.phase === 'Failed') return;
    await this.snapshotStatus(id, { phase: 'Creating' });
    const cutAt = new Date().toISOString();
    let made: SnapshotRecord;
    try {
      made = await this.options.realizer.createSnapshot(snapshotRecord(object));
    } catch (error) {
      log.warn('making a snapshot failed', { snapshot: id, error: String(error) });
      await this.snapshotStatus(id, { phase: 'Failed', readyToUse: false, message: failureMessage(error) });
      void this.publishCapacity();
      return;
    }
    // Outside the try: a failed write is tried again (the copy is kept), it does not fail the snapshot.
    await this.snapshotStatus(id, {
      phase: 'Ready',
      sizeBytes: made.sizeBytes,
      readyToUse: true,
      creationTime: cutAt,
    });
    log.info('snapshot made', { snapshot: id, source: object.spec.sourceVolumeId });
    void this.publishCapacity();
  }

  private async volumeStatus(
    id: string,
    generation: number,
    phase: NonNullable<VolumeStatus['phase']>,
    extra: Pick<VolumeStatus, 'capacityBytes' | 'message'> = {},
  ): Promise<void> {
    await this.options.volumes.update(
      id,
      (current) => {
        const previous = current.status ?? {};
        const message = extra.message ?? '';
        if (
          previous.phase === phase &&
          previous.observedGeneration === generation &&
          previous.message === message
        )
          return null;
        let conditions = setCondition(previous.conditions, {
          type: READY,
          status: phase === 'Ready' ? 'True' : 'False',
          observedGeneration: generation,
          reason: phase,
          message: message || phase,
        });
        if (phase === 'Ready')
          conditions = setCondition(
            conditions,
            imageCondition(this.options.images, id, extra.capacityBytes ?? 0, generation),
          );
        current.status = {
          ...previous,
          ...extra,
          phase,
          message,
          observedGeneration: generation,
          conditions,
        };
        return current;
      },
      'status',
    );
  }

  /** Writes on a Ready volume's status whether its image is still as it was made (ImageHealthy). */
  private async reportImage(id: string): Promise<void> {
    await this.options.volumes.update(
      id,
      (current) => {
        const condition = this.imageChange(current);
        if (!condition) return null;
        if (condition.status === 'False')
          log.warn('the image of a volume is not as it was made', { volume: id, problem: condition.message });
        current.status = {
          ...current.status,
          conditions: setCondition(current.status?.conditions, condition),
        };
        return current;
      },
      'status',
    );
  }

  /** The ImageHealthy condition a Ready volume of this node should have, when it has another; else null. */
  private imageChange(object: VolumeObject): ConditionState | null {
    const state = object.status;
    const generation = object.metadata.generation ?? 1;
    if (isDeleting(object) || state?.phase !== 'Ready' || (state.observedGeneration ?? 0) < generation)
      return null;
    const condition = imageCondition(
      this.options.images,
      object.metadata.name,
      state.capacityBytes ?? 0,
      generation,
    );
    return sameCondition(findCondition(state, IMAGE_HEALTHY), condition) ? null : condition;
  }

  /** Queues the volumes of this node whose image is not as their status says (reportImage). */
  private async checkImages(): Promise<void> {
    try {
      for (const object of (await this.options.volumes.list(this.selector)).items) {
        if (object.spec.nodeId === this.options.nodeId && this.imageChange(object))
          this.queue.push(`volume/${object.metadata.name}`);
      }
    } catch (error) {
      log.warn('could not list the volumes of this node to check their images', { error: String(error) });
    }
  }

  /** A promise settles once: the waiters rejected by a failed attempt are not told of later ones. */
  private async writeDevice(id: string): Promise<void> {
    const wanted = this.devices.get(id);
    if (!wanted) return;
    try {
      await this.options.volumes.update(
        id,
        (current) => {
          if (current.spec.nodeId !== this.options.nodeId || current.status?.device === wanted.path)
            return null;
          current.status = { ...current.status, device: wanted.path };
          return current;
        },
        'status',
      );
    } catch (error) {
      for (const waiter of wanted.waiting) waiter.reject(error);
      throw error;
    }
    for (const waiter of wanted.waiting) waiter.resolve();
    if (this.devices.get(id) === wanted) this.devices.delete(id);
  }

  private async snapshotStatus(id: string, status: SnapshotStatus): Promise<void> {
    await this.options.snapshots.update(
      id,
      (current) => {
        current.status = { message: '', ...status };
        return current;
      },
      'status',
    );
  }

  private async dropFinalizer(resource: CustomResource<KubeObject>, name: string): Promise<void> {
    await resource.update(name, (current) => {
      const finalizers = current.metadata.finalizers ?? [];
      if (!finalizers.includes(FINALIZER)) return null;
      current.metadata.finalizers = finalizers.filter((finalizer) => finalizer !== FINALIZER);
      return current;
    });
    log.info('image removed', { object: `${resource.kind.kind}/${name}` });
    void this.publishCapacity();
  }

  /**
   * Every capacity interval: reports the free space, which also tells the controller that this
   * agent runs (so a failed report is tried again after retryMs), and checks the images.
   */
  private everyInterval(): void {
    this.intervalWork = Promise.all([this.publishCapacity(), this.checkImages()]).then(([published]) => {
      const { capacityIntervalMs, retryMs } = this.options;
      this.later(published ? capacityIntervalMs : Math.min(retryMs, capacityIntervalMs), () =>
        this.everyInterval(),
      );
    });
  }

  /** Reports this node's space, one report at a time; false when the report failed. */
  private publishCapacity(): Promise<boolean> {
    const published = this.publishing.then(() => this.stopped || this.publishSpace());
    this.publishing = published;
    return published;
  }

  private async publishSpace(): Promise<boolean> {
    try {
      await this.options.capacity.publish(this.options.nodeId, await this.space());
      return true;
    } catch (error) {
      log.warn('could not publish the free space of this node', { error: String(error) });
      return false;
    }
  }

  /** An unusable data directory has no room; the agent still runs and says so. */
  private async space(): Promise<NodeSpaceReport> {
    try {
      const { images } = this.options;
      return { freeBytes: await images.freeBytes(), roomBytes: await images.roomBytes() };
    } catch (error) {
      log.warn('cannot tell the free space of the data directory: reporting none', {
        dataDir: this.options.images.dataDir,
        error: String(error),
      });
      return { freeBytes: 0, roomBytes: 0 };
    }
  }

  private later(ms: number, action: () => void): void {
    if (this.stopped) return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      action();
    }, ms);
    this.timers.add(timer);
  }
}

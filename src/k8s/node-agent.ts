import { log } from '../log';
import { VolumeRealizer } from '../csi/realizer';
import { ImageDirectory } from '../storage/images';
import { CustomResource } from './custom-resource';
import { failureMessage } from './failure';
import { LatestPerKey } from './latest-per-key';
import { NodeCapacity } from './node-capacity';
import { ResourceWatch } from './resource-watch';
import {
  Condition,
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
  capacityIntervalMs: number;
  /** When to try again to delete a volume that was still staged. */
  retryMs: number;
}

/**
 * Runs beside the node service in a cluster: realises the VduseVolume and VduseSnapshot objects of
 * this node on its image directory and reports on their status; removes the finalizer once an
 * object's image is gone. Every step is idempotent, so objects seen again after a restart or a
 * relist are simply brought to their state again.
 */
export class NodeAgent {
  private readonly queue = new LatestPerKey((key) => this.reconcile(key));
  private readonly watches: ResourceWatch<KubeObject>[];
  private readonly timers = new Set<NodeJS.Timeout>();
  private publishing: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(private readonly options: NodeAgentOptions) {
    const selector = { labelSelector: `${NODE_LABEL}=${nodeLabel(options.nodeId)}` };
    this.watches = (['volume', 'snapshot'] as const).map((kind) => {
      const resource: CustomResource<KubeObject> = kind === 'volume' ? options.volumes : options.snapshots;
      const push = (object: KubeObject): void => this.queue.push(`${kind}/${object.metadata.name}`);
      return new ResourceWatch(resource, selector, {
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
    this.publishCapacityEvery(this.options.capacityIntervalMs);
  }

  /** Stops watching and waits for work under way. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const watch of this.watches) watch.stop();
    for (const timer of this.timers) clearTimeout(timer);
    await this.queue.idle();
    await this.publishing;
  }

  private async reconcile(key: string): Promise<void> {
    const [kind, name] = key.split('/') as ['volume' | 'snapshot', string];
    if (kind === 'volume') {
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
    if (
      (state?.observedGeneration ?? 0) >= generation &&
      (state?.phase === 'Ready' || state?.phase === 'Failed')
    )
      return;
    const record = volumeRecord(object);
    const creating = !this.options.images.exists('volumes', id);
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
    try {
      const made = await this.options.realizer.createSnapshot(snapshotRecord(object));
      await this.snapshotStatus(id, {
        phase: 'Ready',
        sizeBytes: made.sizeBytes,
        readyToUse: true,
        creationTime: cutAt,
      });
      log.info('snapshot made', { snapshot: id, source: object.spec.sourceVolumeId });
    } catch (error) {
      log.warn('making a snapshot failed', { snapshot: id, error: String(error) });
      await this.snapshotStatus(id, { phase: 'Failed', readyToUse: false, message: failureMessage(error) });
    }
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
        const ready = readyCondition(phase, message, generation, previous.conditions);
        current.status = {
          ...previous,
          ...extra,
          phase,
          message,
          observedGeneration: generation,
          conditions: [ready],
        };
        return current;
      },
      'status',
    );
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

  private publishCapacityEvery(intervalMs: number): void {
    void this.publishCapacity().finally(() =>
      this.later(intervalMs, () => this.publishCapacityEvery(intervalMs)),
    );
  }

  private publishCapacity(): Promise<void> {
    if (this.stopped) return this.publishing;
    const publish = async (): Promise<void> => {
      try {
        await this.options.capacity.publish(this.options.nodeId, await this.options.images.freeBytes());
      } catch (error) {
        log.warn('could not publish the free space of this node', { error: String(error) });
      }
    };
    this.publishing = this.publishing.then(publish);
    return this.publishing;
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

/** The Ready condition: kubectl wait --for=condition=Ready works on volumes. */
function readyCondition(
  phase: string,
  message: string,
  generation: number,
  previous: Condition[] | undefined,
): Condition {
  const status = phase === 'Ready' ? 'True' : 'False';
  const before = previous?.find((condition) => condition.type === 'Ready');
  return {
    type: 'Ready',
    status,
    observedGeneration: generation,
    lastTransitionTime: before?.status === status ? before.lastTransitionTime : new Date().toISOString(),
    reason: phase,
    message: message || phase,
  };
}

import { status } from '@grpc/grpc-js';
import { CsiError, aborted } from '../csi/errors';
import { VolumeCondition } from '../csi/messages';
import { VolumeRealizer } from '../csi/realizer';
import { SnapshotRecord, VolumeRecord } from '../csi/store';
import { CountedEvents } from './counted-events';
import { IMAGE_HEALTHY, findCondition } from './conditions';
import { CustomResource } from './custom-resource';
import { failureError } from './failure';
import { ResourceWatch } from './resource-watch';
import { FINALIZER, KubeObject, SnapshotObject, VolumeObject, isDeleting, snapshotRecord } from './resources';

export interface KubeRealizerOptions {
  volumes: CustomResource<VolumeObject>;
  snapshots: CustomResource<SnapshotObject>;
  events: CountedEvents;
  /** How long to wait for the node agent before answering DEADLINE_EXCEEDED (the CO retries). */
  timeoutMs: number;
}

/** What a wait concludes from the object's latest state: a value when done, undefined to go on. */
type Decide<T, R> = (object: T | null) => { value: R } | undefined;

/**
 * The controller's side of cluster mode: the store has written the object's spec; this waits,
 * watching the object, until the node agent reports on its status that the image is made (or gone).
 */
export class KubeRealizer implements VolumeRealizer {
  constructor(private readonly options: KubeRealizerOptions) {}

  async createVolume(record: VolumeRecord): Promise<void> {
    try {
      await this.waitForVolume(record, 'creating');
    } catch (error) {
      if (record.claim)
        await this.options.events.warn(record.claim, 'CreateVolumeFailed', String((error as Error).message));
      throw error;
    }
  }

  async growVolume(record: VolumeRecord): Promise<void> {
    await this.waitForVolume(record, 'growing');
  }

  async deleteVolume(id: string): Promise<void> {
    await this.options.volumes.delete(id);
    await this.waitFor(this.options.volumes, id, `deleting volume ${id}`, (object) => {
      if (!object) return { value: undefined };
      if (isDeleting(object) && object.status?.phase === 'Failed' && observedCurrent(object))
        throw failureError(`deleting volume ${id}`, object.status.message);
      return undefined;
    });
  }

  /**
   * The agent writes a status before it touches the image: an object without one was never
   * started. Dropping the finalizer is a write with the object's resourceVersion, so an agent that
   * starts meanwhile wins (409, then a status is there) and the object stays.
   */
  async withdrawUnstarted(record: VolumeRecord): Promise<boolean> {
    let unstarted = false;
    await this.options.volumes.update(record.id, (current) => {
      unstarted = current.status === undefined && !isDeleting(current);
      if (!unstarted) return null;
      current.metadata.finalizers = (current.metadata.finalizers ?? []).filter((name) => name !== FINALIZER);
      return current;
    });
    if (unstarted) await this.options.volumes.delete(record.id);
    return unstarted;
  }

  async createSnapshot(record: SnapshotRecord): Promise<SnapshotRecord> {
    const what = `snapshot ${record.id}`;
    return this.waitFor(this.options.snapshots, record.id, `creating ${what}`, (object) => {
      if (!object || isDeleting(object)) throw aborted(`${what} is being deleted`);
      if (object.status?.phase === 'Failed') throw failureError(`creating ${what}`, object.status.message);
      return object.status?.phase === 'Ready' ? { value: snapshotRecord(object) } : undefined;
    });
  }

  async deleteSnapshot(id: string): Promise<void> {
    await this.options.snapshots.delete(id);
    await this.waitFor(this.options.snapshots, id, `deleting snapshot ${id}`, (object) =>
      object ? undefined : { value: undefined },
    );
  }

  async volumeConditions(records: VolumeRecord[]): Promise<VolumeCondition[]> {
    if (records.length === 0) return [];
    const objects = new Map(
      (await this.options.volumes.list()).items.map((object) => [object.metadata.name, object]),
    );
    return records.map((record): VolumeCondition => {
      const state = objects.get(record.id)?.status;
      if (state?.phase === 'Ready' && (state.capacityBytes ?? 0) >= record.capacityBytes) {
        const image = findCondition(state, IMAGE_HEALTHY);
        if (image?.status === 'False')
          return { abnormal: true, message: `node ${record.nodeId} reports: ${image.message}` };
        return { abnormal: false, message: `image present on node ${record.nodeId}` };
      }
      return {
        abnormal: true,
        message: `image on node ${record.nodeId} is ${state?.phase ?? 'not reported'}${state?.message ? `: ${state.message}` : ''}`,
      };
    });
  }

  /** Until the agent has seen this generation of the spec and made an image of at least its capacity. */
  private waitForVolume(record: VolumeRecord, doing: string): Promise<void> {
    const what = `${doing} volume ${record.id}`;
    return this.waitFor(this.options.volumes, record.id, what, (object) => {
      if (!object || isDeleting(object)) throw aborted(`volume ${record.id} is being deleted`);
      const state = object.status;
      if (!state || !observedCurrent(object)) return undefined;
      if (state.phase === 'Failed') throw failureError(what, state.message);
      const done = state.phase === 'Ready' && (state.capacityBytes ?? 0) >= record.capacityBytes;
      return done ? { value: undefined } : undefined;
    });
  }

  private waitFor<T extends KubeObject<unknown, { message?: string }>, R>(
    resource: CustomResource<T>,
    name: string,
    what: string,
    decide: Decide<T, R>,
  ): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      let last: T | null = null;
      const finish = (): void => {
        clearTimeout(timer);
        watch.stop();
      };
      const consider = (object: T | null): void => {
        last = object;
        try {
          const decided = decide(object);
          if (!decided) return;
          finish();
          resolve(decided.value);
        } catch (error) {
          finish();
          reject(error);
        }
      };
      const watch = new ResourceWatch(
        resource,
        { fieldSelector: `metadata.name=${name}` },
        {
          listed: (items) => consider(items[0] ?? null),
          changed: (object, deleted) => consider(deleted ? null : object),
        },
      );
      const timer = setTimeout(() => {
        finish();
        const lastWord = last?.status?.message ? ` (last report: ${last.status.message})` : '';
        reject(
          new CsiError(
            status.DEADLINE_EXCEEDED,
            `${what}: the node agent did not finish within ${this.options.timeoutMs} ms${lastWord}; retry`,
          ),
        );
      }, this.options.timeoutMs);
      watch.start();
    });
  }
}

/** Whether the status speaks of the object's current generation (spec, or the deletion request). */
function observedCurrent(object: VolumeObject): boolean {
  return (object.status?.observedGeneration ?? 0) >= (object.metadata.generation ?? 1);
}

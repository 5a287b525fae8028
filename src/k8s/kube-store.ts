import { aborted } from '../csi/errors';
import { isSnapshotId, isVolumeId, snapshotIdFor, volumeIdFor } from '../csi/ids';
import { SnapshotRecord, VolumeRecord, VolumeStore } from '../csi/store';
import { CustomResource, isStatus } from './custom-resource';
import {
  KubeObject,
  SnapshotObject,
  VolumeObject,
  isDeleting,
  snapshotObject,
  snapshotRecord,
  volumeObject,
  volumeRecord,
} from './resources';

/**
 * The cluster store: one VduseVolume or VduseSnapshot per record, named by its id (so a lookup by
 * name is a get of the id derived from it). Objects being deleted are already gone for the CSI
 * services. Only a volume's capacity ever changes; snapshots are immutable.
 */
export class KubeStore implements VolumeStore {
  constructor(
    private readonly volumes: CustomResource<VolumeObject>,
    private readonly snapshots: CustomResource<SnapshotObject>,
  ) {}

  async getVolume(id: string): Promise<VolumeRecord | null> {
    const object = isVolumeId(id) ? live(await this.volumes.get(id)) : null;
    return object ? volumeRecord(object) : null;
  }

  async findVolumeByName(name: string): Promise<VolumeRecord | null> {
    const volume = await this.getVolume(volumeIdFor(name));
    return volume?.name === name ? volume : null;
  }

  async listVolumes(): Promise<VolumeRecord[]> {
    return liveSorted((await this.volumes.list()).items).map(volumeRecord);
  }

  async putVolume(record: VolumeRecord): Promise<void> {
    if (await create(this.volumes, volumeObject(record))) return;
    await this.volumes.update(record.id, (current) => {
      if (isDeleting(current)) throw beingDeleted(record.id);
      if (current.spec.capacityBytes === record.capacityBytes) return null;
      // The rest of the spec as it is: the CRD refuses any other change (parameters an older
      // build left out stay out).
      return { ...current, spec: { ...current.spec, capacityBytes: record.capacityBytes } };
    });
  }

  async deleteVolume(id: string): Promise<void> {
    await this.volumes.delete(id);
  }

  async getSnapshot(id: string): Promise<SnapshotRecord | null> {
    const object = isSnapshotId(id) ? live(await this.snapshots.get(id)) : null;
    return object ? snapshotRecord(object) : null;
  }

  async findSnapshotByName(name: string): Promise<SnapshotRecord | null> {
    const snapshot = await this.getSnapshot(snapshotIdFor(name));
    return snapshot?.name === name ? snapshot : null;
  }

  async listSnapshots(): Promise<SnapshotRecord[]> {
    return liveSorted((await this.snapshots.list()).items).map(snapshotRecord);
  }

  async putSnapshot(record: SnapshotRecord): Promise<void> {
    if (await create(this.snapshots, snapshotObject(record))) return;
    const current = await this.snapshots.get(record.id);
    if (current && isDeleting(current)) throw beingDeleted(record.id);
  }

  async deleteSnapshot(id: string): Promise<void> {
    await this.snapshots.delete(id);
  }
}

/** Creates the object; false when one of that name exists already. */
async function create<T extends KubeObject>(resource: CustomResource<T>, object: T): Promise<boolean> {
  try {
    await resource.create(object);
    return true;
  } catch (error) {
    if (isStatus(error, 409)) return false;
    throw error;
  }
}

function live<T extends KubeObject>(object: T | null): T | null {
  return object && !isDeleting(object) ? object : null;
}

function liveSorted<T extends KubeObject>(objects: T[]): T[] {
  return objects
    .filter((object) => !isDeleting(object))
    .sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0));
}

/** A failed attempt's object is still being cleaned up by its node agent: the CO retries later. */
function beingDeleted(id: string): Error {
  return aborted(`${id} is still being deleted on its node; retry later`);
}

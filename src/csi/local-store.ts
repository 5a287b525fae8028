import { join } from 'node:path';
import { isSnapshotId, isVolumeId } from './ids';
import { storedParameters } from './parameters';
import { RecordDirectory } from './record-directory';
import { SnapshotRecord, VolumeRecord, VolumeStore } from './store';

/** The single-host store: volumes and snapshots as record files under `<stateDir>/store`. */
export class LocalStore implements VolumeStore {
  private readonly volumes: RecordDirectory<VolumeRecord>;
  private readonly snapshots: RecordDirectory<SnapshotRecord>;

  constructor(stateDir: string) {
    this.volumes = new RecordDirectory(join(stateDir, 'store', 'volumes'), isVolumeId, (volume) => volume.id);
    this.snapshots = new RecordDirectory(
      join(stateDir, 'store', 'snapshots'),
      isSnapshotId,
      (snapshot) => snapshot.id,
    );
  }

  async getVolume(id: string): Promise<VolumeRecord | null> {
    const volume = this.volumes.get(id);
    return volume && withStoredParameters(volume);
  }

  async findVolumeByName(name: string): Promise<VolumeRecord | null> {
    return (await this.listVolumes()).find((volume) => volume.name === name) ?? null;
  }

  async listVolumes(): Promise<VolumeRecord[]> {
    return this.volumes.list().map(withStoredParameters);
  }

  async putVolume(record: VolumeRecord): Promise<void> {
    this.volumes.put(record);
  }

  async deleteVolume(id: string): Promise<void> {
    this.volumes.delete(id);
  }

  async getSnapshot(id: string): Promise<SnapshotRecord | null> {
    return this.snapshots.get(id);
  }

  async findSnapshotByName(name: string): Promise<SnapshotRecord | null> {
    return this.snapshots.list().find((snapshot) => snapshot.name === name) ?? null;
  }

  async listSnapshots(): Promise<SnapshotRecord[]> {
    return this.snapshots.list();
  }

  async putSnapshot(record: SnapshotRecord): Promise<void> {
    this.snapshots.put(record);
  }

  async deleteSnapshot(id: string): Promise<void> {
    this.snapshots.delete(id);
  }
}

/** Records written before some parameters existed read with their defaults. */
function withStoredParameters(volume: VolumeRecord): VolumeRecord {
  return { ...volume, parameters: storedParameters(volume.parameters) };
}

import { VolumeParameters } from './parameters';

export interface VolumeSource {
  kind: 'snapshot' | 'volume';
  id: string;
}

export interface VolumeRecord {
  id: string;
  name: string;
  capacityBytes: number;
  parameters: VolumeParameters;
  source: VolumeSource | null;
  /** The node the volume's image lives on. */
  nodeId: string;
  createdAtMs: number;
  /** The claim it was provisioned for (external-provisioner's --extra-create-metadata), when known. */
  claim?: { name: string; namespace: string; /** Its PersistentVolume's name. */ volumeName?: string } | null;
}

export interface SnapshotRecord {
  id: string;
  name: string;
  sourceVolumeId: string;
  /** The node holding the copy: its source volume's node. */
  nodeId: string;
  sizeBytes: number;
  createdAtMs: number;
}

/** Where the controller keeps volumes and snapshots (a state directory, or the Kubernetes API). */
export interface VolumeStore {
  getVolume(id: string): Promise<VolumeRecord | null>;
  findVolumeByName(name: string): Promise<VolumeRecord | null>;
  /** Sorted by id. */
  listVolumes(): Promise<VolumeRecord[]>;
  putVolume(record: VolumeRecord): Promise<void>;
  deleteVolume(id: string): Promise<void>;
  getSnapshot(id: string): Promise<SnapshotRecord | null>;
  findSnapshotByName(name: string): Promise<SnapshotRecord | null>;
  /** Sorted by id. */
  listSnapshots(): Promise<SnapshotRecord[]>;
  putSnapshot(record: SnapshotRecord): Promise<void>;
  deleteSnapshot(id: string): Promise<void>;
}

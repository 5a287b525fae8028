import { VolumeCondition } from './messages';
import { SnapshotRecord, VolumeRecord } from './store';

/**
 * Makes the store's records real as image files on their node: directly on this host
 * (LocalRealizer), or by asking the node's agent through the Kubernetes API (KubeRealizer).
 * Every method is idempotent: the controller calls it again when the CO retries.
 */
export interface VolumeRealizer {
  /** Returns once the volume's image exists with at least its capacity. */
  createVolume(record: VolumeRecord): Promise<void>;
  /** Grows the image (and a live device) to the record's capacity. */
  growVolume(record: VolumeRecord): Promise<void>;
  /** Returns once the image is gone; FAILED_PRECONDITION while the volume is staged. */
  deleteVolume(id: string): Promise<void>;
  /** Returns the snapshot as it was made (size, time of the copy). */
  createSnapshot(record: SnapshotRecord): Promise<SnapshotRecord>;
  deleteSnapshot(id: string): Promise<void>;
  /**
   * Removes the record of a volume its node never began to make, so it can be placed elsewhere;
   * false (nothing removed) once the node has reported on it.
   */
  withdrawUnstarted(record: VolumeRecord): Promise<boolean>;
  /** The condition of each volume, in the same order. */
  volumeConditions(records: VolumeRecord[]): Promise<VolumeCondition[]>;
}

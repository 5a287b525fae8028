import type { VolumeStore } from '../csi/store';

/** A volume or snapshot as the controller's metrics count it. */
export interface InventoryItem {
  nodeId: string;
  /** VduseVolume/VduseSnapshot status phase, `Pending` before its node reported, or `Unknown`. */
  phase: string;
  /** A volume's provisioned size, a snapshot's size on disk (0 until known). */
  bytes: number;
}

/** What the controller has recorded, read when the metrics are scraped. */
export interface ControllerInventory {
  /** Every phase an item may have. */
  phases: readonly string[];
  volumes(): Promise<InventoryItem[]>;
  snapshots(): Promise<InventoryItem[]>;
}

/** The phase of every record of a store that keeps none (`--store local`). */
export const UNKNOWN_PHASE = 'Unknown';

/**
 * The single-host store's records: they have no phase (a record is written before its image is
 * made and removed after it is gone), so every one counts as `Unknown`.
 */
export function storeInventory(store: VolumeStore): ControllerInventory {
  return {
    phases: [UNKNOWN_PHASE],
    volumes: async () =>
      (await store.listVolumes()).map((volume) => ({
        nodeId: volume.nodeId,
        phase: UNKNOWN_PHASE,
        bytes: volume.capacityBytes,
      })),
    snapshots: async () =>
      (await store.listSnapshots()).map((snapshot) => ({
        nodeId: snapshot.nodeId,
        phase: UNKNOWN_PHASE,
        bytes: snapshot.sizeBytes,
      })),
  };
}

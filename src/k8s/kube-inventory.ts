import type { ControllerInventory, InventoryItem } from '../metrics/inventory';
import type { CustomResource } from './custom-resource';
import { Phase, SnapshotObject, VolumeObject, isDeleting } from './resources';

/** The phases of the CRDs' status.phase enum. */
const PHASES: readonly Phase[] = ['Pending', 'Creating', 'Ready', 'Resizing', 'Deleting', 'Failed'];

/**
 * Every VduseVolume and VduseSnapshot (two lists per read), with the phase its node agent last
 * reported: `Deleting` from the moment deletion is asked, `Pending` before the agent reported.
 */
export function kubeInventory(
  volumes: CustomResource<VolumeObject>,
  snapshots: CustomResource<SnapshotObject>,
): ControllerInventory {
  return {
    phases: PHASES,
    volumes: async () =>
      (await volumes.list()).items.map((volume) => item(volume, volume.spec.capacityBytes)),
    snapshots: async () =>
      (await snapshots.list()).items.map((snapshot) => item(snapshot, snapshot.status?.sizeBytes ?? 0)),
  };
}

function item(object: VolumeObject | SnapshotObject, bytes: number): InventoryItem {
  return { nodeId: object.spec.nodeId, phase: phaseOf(object), bytes };
}

function phaseOf(object: VolumeObject | SnapshotObject): Phase {
  return isDeleting(object) ? 'Deleting' : (object.status?.phase ?? 'Pending');
}

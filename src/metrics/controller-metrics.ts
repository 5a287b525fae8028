import { Counter, Gauge, Registry } from 'prom-client';
import type { NodeRoom } from '../csi/capacity';
import type { NodePlacement } from '../csi/placement';
import { log } from '../log';
import { ControllerInventory, InventoryItem } from './inventory';
import { METRIC_PREFIX } from './registry';
import { SharedRead } from './shared-read';

export interface ControllerMetricsSources {
  inventory: ControllerInventory;
  /** The room of each node whose agent runs, as placement and GetCapacity see it. */
  placement: Pick<NodePlacement, 'roomsIn'>;
}

interface ControllerState {
  volumes: InventoryItem[];
  snapshots: InventoryItem[];
  rooms: NodeRoom[];
}

/** Deleted volumes no longer count for the space accounting (src/csi/capacity.ts). */
const DELETING = 'Deleting';

/**
 * What the controller knows of volumes, snapshots and nodes, read from its store and the nodes'
 * capacity reports once per scrape (never on a CSI call's path). A read that fails leaves these
 * series out of that scrape and counts the failure; the rest of the scrape is served.
 */
export function registerControllerMetrics(registry: Registry, sources: ControllerMetricsSources): void {
  const failures = new Counter({
    name: `${METRIC_PREFIX}inventory_read_failures_total`,
    help: 'Scrapes for which the controller could not read its volumes, snapshots or node capacity',
    registers: [registry],
    // Read once this scrape's read has settled, so that its failure is already counted.
    async collect() {
      await state.get();
    },
  });
  const state = new SharedRead(async (): Promise<ControllerState | null> => {
    try {
      const [volumes, snapshots, rooms] = await Promise.all([
        sources.inventory.volumes(),
        sources.inventory.snapshots(),
        sources.placement.roomsIn(null),
      ]);
      return { volumes, snapshots, rooms };
    } catch (error) {
      failures.inc();
      log.warn('cannot read the controller metrics', { error: String(error) });
      return null;
    }
  });
  const gauge = (
    name: string,
    help: string,
    label: 'phase' | 'node',
    values: (state: ControllerState) => Map<string, number>,
  ): void => {
    new Gauge({
      name: `${METRIC_PREFIX}${name}`,
      help,
      labelNames: [label],
      registers: [registry],
      async collect() {
        this.reset();
        const read = await state.get();
        if (read) for (const [value, amount] of values(read)) this.set({ [label]: value }, amount);
      },
    });
  };
  const { phases } = sources.inventory;
  gauge('volumes', 'Volumes the controller has recorded, by phase', 'phase', (read) =>
    countByPhase(phases, read.volumes),
  );
  gauge('snapshots', 'Snapshots the controller has recorded, by phase', 'phase', (read) =>
    countByPhase(phases, read.snapshots),
  );
  gauge(
    'provisioned_bytes',
    'Sum of the sizes of the volumes of each node (not being deleted), as the space accounting counts them',
    'node',
    (read) => sumByNode(read.volumes.filter((volume) => volume.phase !== DELETING)),
  );
  gauge(
    'snapshot_bytes',
    "Sum of the sizes of each node's snapshots (their source's size; a sparse copy takes less on disk)",
    'node',
    (read) => sumByNode(read.snapshots),
  );
  gauge(
    'node_room_bytes',
    'Room of each node whose agent runs: what its volume images take plus what its data directory has free',
    'node',
    (read) => new Map(read.rooms.map((room) => [room.node, room.roomBytes])),
  );
}

/** Every phase the store knows, 0 when no item has it (an alert on a phase then sees 0, not nothing). */
function countByPhase(phases: readonly string[], items: InventoryItem[]): Map<string, number> {
  const counts = new Map(phases.map((phase) => [phase, 0]));
  for (const { phase } of items) counts.set(phase, (counts.get(phase) ?? 0) + 1);
  return counts;
}

function sumByNode(items: InventoryItem[]): Map<string, number> {
  const sums = new Map<string, number>();
  for (const { nodeId, bytes } of items) sums.set(nodeId, (sums.get(nodeId) ?? 0) + bytes);
  return sums;
}

import { resourceExhausted } from '../csi/errors';
import { Topology, TopologyRequirement } from '../csi/messages';
import { NodePlacement } from '../csi/placement';
import { TOPOLOGY_KEY } from '../csi/topology';
import { NodeCapacity } from './node-capacity';

/**
 * A cluster: the CO's topology picks the node (preferred first, then requisite, as the CSI spec
 * asks); with no requirement at all, the node with the most free space its agent reported.
 */
export class KubePlacement implements NodePlacement {
  constructor(private readonly capacity: NodeCapacity) {}

  async nodeFor(
    requirement: TopologyRequirement | null | undefined,
    sourceNodeId: string | null,
  ): Promise<string> {
    const requisite = nodesOf(requirement?.requisite);
    const allowed = (node: string): boolean => requisite.length === 0 || requisite.includes(node);
    if (sourceNodeId !== null) {
      if (!allowed(sourceNodeId))
        throw resourceExhausted(`the source lives on node ${sourceNodeId}, outside the requisite topology`);
      return sourceNodeId;
    }
    const candidate = [...nodesOf(requirement?.preferred), ...requisite].find(allowed);
    if (candidate !== undefined) return candidate;
    const largest = [...(await this.capacity.read())].sort(([, a], [, b]) => b - a)[0];
    if (largest) return largest[0];
    throw resourceExhausted(
      'no node to place the volume on: no topology given and no node agent reports capacity',
    );
  }

  async availableBytes(topology: Topology | null | undefined): Promise<number> {
    const capacity = await this.capacity.read();
    const node = topology?.segments?.[TOPOLOGY_KEY];
    if (node !== undefined) return capacity.get(node) ?? 0;
    return Math.max(0, ...capacity.values());
  }
}

function nodesOf(topologies: Topology[] | undefined): string[] {
  return (topologies ?? [])
    .map((topology) => topology.segments?.[TOPOLOGY_KEY])
    .filter((node): node is string => node !== undefined);
}

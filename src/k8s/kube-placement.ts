import { resourceExhausted } from '../csi/errors';
import { Topology, TopologyRequirement } from '../csi/messages';
import { NodePlacement } from '../csi/placement';
import { TOPOLOGY_KEY } from '../csi/topology';
import { NodeCapacity } from './node-capacity';

/** A node the CO's topology names, and where it named it. */
interface NamedNode {
  node: string;
  from: ('preferred' | 'requisite')[];
}

/**
 * A cluster: the CO's topology picks the node (preferred first, then requisite, as the CSI spec
 * asks); with no requirement at all, the node with the most free space its agent reported. Only
 * nodes whose agent reports (NodeCapacity) are taken: on any other the volume would never be made,
 * so the CO hears RESOURCE_EXHAUSTED at once instead of a timeout.
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
      const reports = await this.capacity.read();
      if (!reports.isLive(sourceNodeId))
        throw resourceExhausted(
          `the volume must live on its source's node ${sourceNodeId}, but ${reports.absence(sourceNodeId)}`,
        );
      return sourceNodeId;
    }
    if ((requirement?.requisite ?? []).length > 0 && requisite.length === 0)
      throw resourceExhausted(`the requisite topology names no node (segment ${TOPOLOGY_KEY})`);
    const named = namedNodes(requirement).filter(({ node }) => allowed(node));
    const reports = await this.capacity.read();
    const live = named.find(({ node }) => reports.isLive(node));
    if (live) return live.node;
    const dead = named
      .map(({ node, from }) => `${node} (${from.join(' and ')} topology: ${reports.absence(node)})`)
      .join('; ');
    if (requisite.length > 0)
      throw resourceExhausted(`no node the topology allows has a running node agent: ${dead}`);
    // Preferred nodes are only a wish: any node with room will do.
    const largest = [...reports.freeBytes()].sort(([, a], [, b]) => b - a)[0];
    if (largest) return largest[0];
    throw resourceExhausted(
      `no node to place the volume on: no node agent reports capacity${dead ? ` (${dead})` : ''}`,
    );
  }

  async availableBytes(topology: Topology | null | undefined): Promise<number> {
    const capacity = (await this.capacity.read()).freeBytes();
    const node = topology?.segments?.[TOPOLOGY_KEY];
    if (node !== undefined) return capacity.get(node) ?? 0;
    return Math.max(0, ...capacity.values());
  }

  async isServing(nodeId: string): Promise<boolean> {
    return (await this.capacity.read()).isLive(nodeId);
  }
}

/** The nodes of the preferred topology, then those of the requisite one, each once. */
function namedNodes(requirement: TopologyRequirement | null | undefined): NamedNode[] {
  const named = new Map<string, NamedNode>();
  for (const from of ['preferred', 'requisite'] as const) {
    for (const node of nodesOf(requirement?.[from])) {
      const entry = named.get(node) ?? { node, from: [] };
      entry.from.push(from);
      named.set(node, entry);
    }
  }
  return [...named.values()];
}

function nodesOf(topologies: Topology[] | undefined): string[] {
  return (topologies ?? [])
    .map((topology) => topology.segments?.[TOPOLOGY_KEY])
    .filter((node): node is string => node !== undefined);
}

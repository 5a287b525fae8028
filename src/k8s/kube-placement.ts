import { resourceExhausted } from '../csi/errors';
import { Topology, TopologyRequirement } from '../csi/messages';
import { NodeRoom, ProvisionedSpace } from '../csi/capacity';
import { NodePlacement } from '../csi/placement';
import { TOPOLOGY_KEY } from '../csi/topology';
import { CapacityReports, NodeCapacity } from './node-capacity';

/** A node the CO's topology names, and where it named it. */
interface NamedNode {
  node: string;
  from: ('preferred' | 'requisite')[];
}

/**
 * A cluster: the CO's topology picks the node (preferred first, then requisite, as the CSI spec
 * asks), the first of them with room for the volume; with no requisite topology, any other node
 * with room too, the one with the most available first. Only nodes whose agent reports
 * (NodeCapacity) are taken: on any other the volume would never be made, so the CO hears
 * RESOURCE_EXHAUSTED at once instead of a timeout.
 */
export class KubePlacement implements NodePlacement {
  constructor(private readonly capacity: NodeCapacity) {}

  async nodeFor(
    requirement: TopologyRequirement | null | undefined,
    sourceNodeId: string | null,
    bytes: number,
    space: ProvisionedSpace,
  ): Promise<string> {
    const reports = await this.capacity.read();
    return space.firstWithRoom(candidates(requirement, sourceNodeId, reports, space), bytes);
  }

  async roomsIn(topology: Topology | null | undefined): Promise<NodeRoom[]> {
    const node = topology?.segments?.[TOPOLOGY_KEY];
    const rooms = (await this.capacity.read()).rooms();
    return node === undefined ? rooms : rooms.filter((room) => room.node === node);
  }

  async isServing(nodeId: string): Promise<boolean> {
    return (await this.capacity.read()).isLive(nodeId);
  }
}

/** The nodes a new volume may go to, in the order to try them; RESOURCE_EXHAUSTED when there is none. */
function candidates(
  requirement: TopologyRequirement | null | undefined,
  sourceNodeId: string | null,
  reports: CapacityReports,
  space: ProvisionedSpace,
): NodeRoom[] {
  const requisite = nodesOf(requirement?.requisite);
  const allowed = (node: string): boolean => requisite.length === 0 || requisite.includes(node);
  const rooms = reports.rooms();
  const roomsOf = (nodes: string[]): NodeRoom[] =>
    nodes.flatMap((node) => rooms.filter((room) => room.node === node));
  if (sourceNodeId !== null) {
    if (!allowed(sourceNodeId))
      throw resourceExhausted(`the source lives on node ${sourceNodeId}, outside the requisite topology`);
    if (!reports.isLive(sourceNodeId))
      throw resourceExhausted(
        `the volume must live on its source's node ${sourceNodeId}, but ${reports.absence(sourceNodeId)}`,
      );
    return roomsOf([sourceNodeId]);
  }
  if ((requirement?.requisite ?? []).length > 0 && requisite.length === 0)
    throw resourceExhausted(`the requisite topology names no node (segment ${TOPOLOGY_KEY})`);
  const named = namedNodes(requirement).filter(({ node }) => allowed(node));
  const live = roomsOf(named.map(({ node }) => node));
  const dead = named
    .filter(({ node }) => !reports.isLive(node))
    .map(({ node, from }) => `${node} (${from.join(' and ')} topology: ${reports.absence(node)})`)
    .join('; ');
  if (requisite.length > 0) {
    if (live.length > 0) return live;
    throw resourceExhausted(`no node the topology allows has a running node agent: ${dead}`);
  }
  // Preferred nodes are only a wish: any node with room will do, the most available first.
  const others = rooms
    .filter((room) => !live.includes(room))
    .sort((a, b) => space.availableOn(b) - space.availableOn(a));
  if (live.length + others.length > 0) return [...live, ...others];
  throw resourceExhausted(
    `no node to place the volume on: no node agent reports capacity${dead ? ` (${dead})` : ''}`,
  );
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

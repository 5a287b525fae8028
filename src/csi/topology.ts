import { Topology, TopologyRequirement } from './messages';

export const TOPOLOGY_KEY = 'topology.csi.vduse.dev/node';

export function nodeTopology(nodeId: string): Topology {
  return { segments: { [TOPOLOGY_KEY]: nodeId } };
}

/** Whether a topology segment set admits this node (segments of other keys are not ours to judge). */
function admits(topology: Topology, nodeId: string): boolean {
  const wanted = topology.segments?.[TOPOLOGY_KEY];
  return wanted === undefined || wanted === nodeId;
}

/** Whether a volume on this node satisfies the CO's accessibility requirements (preferred is only a wish). */
export function nodeSatisfies(requirement: TopologyRequirement | null | undefined, nodeId: string): boolean {
  const requisite = requirement?.requisite ?? [];
  return requisite.length === 0 || requisite.some((topology) => admits(topology, nodeId));
}

export function topologyAdmits(topology: Topology | null | undefined, nodeId: string): boolean {
  return !topology || admits(topology, nodeId);
}

import { ImageDirectory } from '../storage/images';
import { NodeRoom, ProvisionedSpace } from './capacity';
import { resourceExhausted } from './errors';
import { Topology, TopologyRequirement } from './messages';
import { nodeSatisfies, topologyAdmits } from './topology';

/** Which node a new volume goes to, and how much room the nodes have (GetCapacity, expansion). */
export interface NodePlacement {
  /**
   * The node for a new volume of `bytes` that has them available in `space`, or
   * RESOURCE_EXHAUSTED. A volume made from a snapshot or another volume must live on its source's
   * node (`sourceNodeId`): images are node-local.
   */
  nodeFor(
    requirement: TopologyRequirement | null | undefined,
    sourceNodeId: string | null,
    bytes: number,
    space: ProvisionedSpace,
  ): Promise<string>;
  /** The room of every node in `topology` (anywhere when it is absent) that can take volumes. */
  roomsIn(topology: Topology | null | undefined): Promise<NodeRoom[]>;
  /** Whether something runs on the node that makes its images. */
  isServing(nodeId: string): Promise<boolean>;
}

/** The single-host plugin: every volume lives on this node. */
export class SingleNode implements NodePlacement {
  constructor(
    private readonly nodeId: string,
    private readonly images: ImageDirectory,
  ) {}

  async nodeFor(
    requirement: TopologyRequirement | null | undefined,
    _sourceNodeId: string | null,
    bytes: number,
    space: ProvisionedSpace,
  ): Promise<string> {
    if (!nodeSatisfies(requirement, this.nodeId))
      throw resourceExhausted(
        `volumes can only be made on node ${this.nodeId}, outside the requisite topology`,
      );
    return space.firstWithRoom(await this.roomsIn(null), bytes);
  }

  async roomsIn(topology: Topology | null | undefined): Promise<NodeRoom[]> {
    if (!topologyAdmits(topology, this.nodeId)) return [];
    return [{ node: this.nodeId, roomBytes: await this.images.roomBytes() }];
  }

  /** This host makes its own images, within the call that asks for them. */
  isServing(): Promise<boolean> {
    return Promise.resolve(true);
  }
}

import { ImageDirectory } from '../storage/images';
import { resourceExhausted } from './errors';
import { Topology, TopologyRequirement } from './messages';
import { nodeSatisfies, topologyAdmits } from './topology';

/** Which node a new volume goes to, and how much room the nodes have (GetCapacity). */
export interface NodePlacement {
  /**
   * The node for a new volume, or RESOURCE_EXHAUSTED. A volume made from a snapshot or another
   * volume must live on its source's node (`sourceNodeId`): images are node-local.
   */
  nodeFor(requirement: TopologyRequirement | null | undefined, sourceNodeId: string | null): Promise<string>;
  /** Free bytes for images in `topology` (anywhere when it is absent). */
  availableBytes(topology: Topology | null | undefined): Promise<number>;
  /** Whether something runs on the node that makes its images. */
  isServing(nodeId: string): Promise<boolean>;
}

/** The single-host plugin: every volume lives on this node. */
export class SingleNode implements NodePlacement {
  constructor(
    private readonly nodeId: string,
    private readonly images: ImageDirectory,
  ) {}

  async nodeFor(requirement: TopologyRequirement | null | undefined): Promise<string> {
    if (!nodeSatisfies(requirement, this.nodeId))
      throw resourceExhausted(
        `volumes can only be made on node ${this.nodeId}, outside the requisite topology`,
      );
    return this.nodeId;
  }

  async availableBytes(topology: Topology | null | undefined): Promise<number> {
    return topologyAdmits(topology, this.nodeId) ? this.images.freeBytes() : 0;
  }

  /** This host makes its own images, within the call that asks for them. */
  isServing(): Promise<boolean> {
    return Promise.resolve(true);
  }
}

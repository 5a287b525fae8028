import { resourceExhausted } from './errors';
import { VolumeStore } from './store';

/** A node that can take volumes, and the room its data directory has for volume images. */
export interface NodeRoom {
  node: string;
  /** What the node's volume images take already plus what is free (ImageDirectory.roomBytes). */
  roomBytes: number;
}

/**
 * The space accounting for volumes of one StorageClass: every volume of a node counts with its
 * provisioned size (written or not), and a class may let that sum exceed the node's room by its
 * overcommit ratio. With ratio 1 a volume is made only when every volume of the node can be written
 * in full; snapshots are not in the room: they count with the space they really take, as any other
 * file beside the images.
 */
export class ProvisionedSpace {
  private constructor(
    private readonly byNode: ReadonlyMap<string, number>,
    readonly overcommitRatio: number,
  ) {}

  /** The provisioned sizes of the store's volumes, as a class with `overcommitRatio` sees them. */
  static async read(store: VolumeStore, overcommitRatio: number): Promise<ProvisionedSpace> {
    const byNode = new Map<string, number>();
    for (const volume of await store.listVolumes())
      byNode.set(volume.nodeId, (byNode.get(volume.nodeId) ?? 0) + volume.capacityBytes);
    return new ProvisionedSpace(byNode, overcommitRatio);
  }

  provisionedOn(node: string): number {
    return this.byNode.get(node) ?? 0;
  }

  /** Bytes a new volume, or the growth of one, may still take on the node. */
  availableOn({ node, roomBytes }: NodeRoom): number {
    return Math.max(0, Math.floor(roomBytes * this.overcommitRatio) - this.provisionedOn(node));
  }

  /** The most any one node of `rooms` has available (0 when there is none). */
  largestAvailable(rooms: NodeRoom[]): number {
    return Math.max(0, ...rooms.map((room) => this.availableOn(room)));
  }

  /** The first node with `bytes` available, or RESOURCE_EXHAUSTED naming each node and its bytes. */
  firstWithRoom(candidates: NodeRoom[], bytes: number): string {
    const fit = candidates.find((room) => this.availableOn(room) >= bytes);
    if (fit) return fit.node;
    throw resourceExhausted(
      `no room for a volume of ${bytes} bytes: ${candidates.map((room) => this.explain(room)).join('; ')}`,
    );
  }

  /** Refuses growing a volume by `bytes` on its node unless they are available there. */
  admitGrowth(volumeId: string, room: NodeRoom | undefined, node: string, bytes: number): void {
    if (!room)
      throw resourceExhausted(
        `volume ${volumeId} cannot grow: node ${node} does not report its room (its node agent does not run)`,
      );
    if (this.availableOn(room) < bytes)
      throw resourceExhausted(`volume ${volumeId} cannot grow by ${bytes} bytes: ${this.explain(room)}`);
  }

  /** How a node's available bytes come about. */
  private explain(room: NodeRoom): string {
    return (
      `node ${room.node} has ${this.availableOn(room)} bytes available ` +
      `(room ${room.roomBytes} bytes x overcommitRatio ${this.overcommitRatio}, ` +
      `${this.provisionedOn(room.node)} bytes provisioned)`
    );
  }
}

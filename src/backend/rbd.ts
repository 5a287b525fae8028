import { Segment } from '../virtio/memory';
import { RBD_WRITE_ZEROES_FLAG_THICK_PROVISION, Pointer } from './librbd';
import { CephError } from './ceph-error';
import { RadosConnectOptions } from './rados-client';
import { ImageCompletions } from './rbd-completions';
import { RbdLocation, RbdSharing } from './descriptor';
import { RbdImage, removeRbdImage } from './rbd-image';
import { BackendProvider, BlockBackend, FdWatcher, QueueBackendSpec } from './types';

export interface RbdBackendOptions {
  readOnly: boolean;
  /** DISCARD and WRITE_ZEROES never release space: a discard does nothing, zeroes are written. */
  keepAllocation?: boolean;
}

/**
 * One queue's view of an RBD image, in a queue thread: requests go to librbd asynchronously
 * straight from guest memory (the segments' addresses become the iovec), and complete through the
 * thread's poll loop. `image` is the handle the main thread's RbdImage opened.
 */
export class RbdBackend implements BlockBackend {
  private readonly completions: ImageCompletions;
  private closed = false;

  constructor(
    image: Pointer,
    private readonly options: RbdBackendOptions,
    watcher: FdWatcher,
  ) {
    this.completions = ImageCompletions.acquire(image, watcher);
  }

  read(offset: number, segments: readonly Segment[]): Promise<void> {
    return this.completions.submitVector('read', offset, segments);
  }

  write(offset: number, segments: readonly Segment[]): Promise<void> {
    this.refuseIfReadOnly('write');
    return this.completions.submitVector('write', offset, segments);
  }

  flush(): Promise<void> {
    return this.completions.flush();
  }

  discard(offset: number, length: number): Promise<void> | void {
    this.refuseIfReadOnly('discard');
    if (this.options.keepAllocation) return;
    return this.completions.discard(offset, length);
  }

  writeZeroes(offset: number, length: number, mayUnmap: boolean): Promise<void> {
    this.refuseIfReadOnly('write zeroes');
    const flags = mayUnmap && !this.options.keepAllocation ? 0 : RBD_WRITE_ZEROES_FLAG_THICK_PROVISION;
    return this.completions.writeZeroes(offset, length, flags);
  }

  /** Only once nothing of this backend is in flight (the queue thread's rule for every backend). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.completions.leave();
  }

  private refuseIfReadOnly(what: string): void {
    if (this.options.readOnly) throw new Error(`RBD ${what} refused: the device is read-only`);
  }
}

/**
 * An RBD image as the serving process's main thread holds it: its size, resizing, the exclusive
 * lock (`image`), and the handle the queue threads' RbdBackends serve through (`queueSpec`).
 */
export class RbdBackendProvider implements BackendProvider {
  readonly queuesShareOneThread = true;

  private constructor(
    readonly image: RbdImage,
    private readonly client: RadosConnectOptions,
    private readonly sharing: RbdSharing | undefined,
  ) {}

  /**
   * Opens the image, shared with other nodes' servers as `sharing` says (not at all: undefined).
   * With `sizeBytes`, a missing image is created and a smaller one grows; without it, a missing
   * image is an error.
   */
  static async open(
    client: RadosConnectOptions,
    location: RbdLocation,
    sizeBytes: number | undefined,
    sharing?: RbdSharing,
  ): Promise<RbdBackendProvider> {
    const image = await RbdImage.open(client, location, sizeBytes === undefined ? undefined : { sizeBytes }, {
      readOnly: sharing === 'read-only',
    });
    try {
      if (sizeBytes !== undefined && sizeBytes > image.size()) await image.resize(sizeBytes);
    } catch (error) {
      await image.close();
      throw error;
    }
    return new RbdBackendProvider(image, client, sharing);
  }

  /** The image handle is a BigInt, which a worker thread receives as is (structured clone). */
  get queueSpec(): QueueBackendSpec {
    return { kind: 'rbd', image: this.image.handle };
  }

  /** A read-only image is never locked, so there is nobody to fence after its server. */
  get lockHolder(): string | undefined {
    return this.sharing === 'read-only' ? undefined : this.image.myLockOwnerName();
  }

  /**
   * Fences the predecessors that still hold the lock, then acquires it: a live holder refuses at
   * once, one that stopped answering is broken by librbd once its watch expires. A multi-writer
   * image is not locked here: librbd takes the lock for each write and hands it to the other
   * writers on request, which it would refuse after an explicit acquire. Holders that are not
   * predecessors (the other nodes' writers) are never fenced.
   */
  async lock(predecessors: readonly string[]): Promise<void> {
    if (this.sharing === 'read-only') return;
    for (const owner of await this.image.lockOwners()) {
      if (!predecessors.includes(owner)) continue;
      try {
        await this.image.breakLockOf(owner);
      } catch (error) {
        // Released meanwhile: nothing left to fence.
        if (!(error instanceof CephError && error.kind === 'not-found')) throw error;
      }
    }
    if (this.sharing !== 'multi-writer') await this.image.acquireExclusiveLock();
  }

  size(): number {
    return this.image.size();
  }

  resize(bytes: number): Promise<void> {
    return this.image.resize(bytes);
  }

  /** Closes the image, after the queue threads closed their backends. */
  close(): Promise<void> {
    return this.image.close();
  }

  /** After close(), when serving could not start: an image open() created is removed again. */
  async removeIfCreated(): Promise<void> {
    if (!this.image.created) return;
    const { location } = this.image;
    await RbdImage.withPool(this.client, location, (pool) => removeRbdImage(pool, location.image));
  }
}

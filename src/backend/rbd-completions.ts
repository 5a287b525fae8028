import koffi from 'koffi';
import * as libc from '../sys/libc';
import { Segment } from '../virtio/memory';
import { CephError, checkCeph } from './ceph-error';
import { EVENT_TYPE_EVENTFD, Pointer, PointerCell, ceph } from './librbd';
import { FdWatcher } from './types';

/** iovec entries of a pooled table; a request with more segments gets a table of its own. */
const POOLED_IOVECS = 16;
/** Completions taken per rbd_poll_io_events call. */
const POLL_BATCH = 64;

/** struct iovec[] in native memory that librbd may read until the request completes. */
class IovecTable {
  readonly address: Pointer;
  private readonly words: Uint32Array;

  constructor(readonly capacity: number) {
    this.address = koffi.alloc('uint8_t', capacity * 16) as Pointer;
    this.words = new Uint32Array(koffi.view(this.address, capacity * 16));
  }

  /** Describes the segments; returns their total length. */
  describe(segments: readonly Segment[]): number {
    let total = 0;
    segments.forEach((segment, i) => {
      const length = segment.length;
      this.words[i * 4] = segment.address >>> 0;
      this.words[i * 4 + 1] = Math.floor(segment.address / 0x100000000);
      this.words[i * 4 + 2] = length;
      this.words[i * 4 + 3] = 0;
      total += length;
    });
    return total;
  }

  free(): void {
    koffi.free(this.address);
  }
}

/** The librbd calls a request may be, as its error messages name them. */
export type RbdOperation = 'read' | 'write' | 'flush' | 'discard' | 'write zeroes';

interface Pending {
  readonly operation: RbdOperation;
  readonly offset: number;
  /** Bytes: a read's is what a success must return. */
  readonly length: number;
  readonly table: IovecTable | undefined;
  resolve(): void;
  reject(error: Error): void;
}

/** "RBD read at 4096", "RBD discard [0, +4096)": built only when a request fails. */
function describe({ operation, offset, length }: Pick<Pending, 'operation' | 'offset' | 'length'>): string {
  if (operation === 'read' || operation === 'write') return `RBD ${operation} at ${offset}`;
  if (operation === 'flush') return 'RBD flush';
  return `RBD ${operation} [${offset}, +${length})`;
}

/**
 * The completions of one image in one thread: librbd signals each finished request on an eventfd
 * the thread's poll loop watches, and the loop collects them with rbd_poll_io_events, so no
 * JavaScript ever runs on librbd's threads. An image may have one such notification target, so
 * all queues of an image share one of these per thread (RbdBackend holds it through acquire()).
 */
export class ImageCompletions {
  private static readonly perImage = new Map<Pointer, ImageCompletions>();

  private readonly eventFd: number;
  private readonly pending = new Map<Pointer, Pending>();
  private readonly spareTables: IovecTable[] = [];
  private readonly completionCell = new PointerCell();
  private readonly lib = ceph();
  private readonly polled: Pointer;
  private readonly polledView: BigUint64Array;
  private users = 0;
  private closing = false;

  private constructor(
    private readonly image: Pointer,
    private readonly watcher: FdWatcher,
  ) {
    this.eventFd = libc.createEventFd();
    this.polled = koffi.alloc('void *', POLL_BATCH) as Pointer;
    this.polledView = new BigUint64Array(koffi.view(this.polled, POLL_BATCH * 8));
    try {
      checkCeph(
        this.lib.rbdSetImageNotification(image, this.eventFd, EVENT_TYPE_EVENTFD),
        'rbd_set_image_notification',
      );
      watcher.watch(this.eventFd, () => this.collect());
    } catch (error) {
      this.release();
      throw error;
    }
  }

  /** This thread's completions of `image`, created (and registered with librbd) by the first user. */
  static acquire(image: Pointer, watcher: FdWatcher): ImageCompletions {
    let completions = ImageCompletions.perImage.get(image);
    if (!completions) {
      completions = new ImageCompletions(image, watcher);
      ImageCompletions.perImage.set(image, completions);
    }
    completions.users++;
    completions.closing = false;
    return completions;
  }

  /** Lets go of one user; the last one unregisters, at once or when what is in flight completed. */
  leave(): void {
    if (--this.users > 0) return;
    this.closing = true;
    if (this.pending.size === 0) this.close();
  }

  /**
   * Reads or writes `segments` at `offset`. A read settles once every byte arrived (librbd returns
   * the count; within the image it is never short).
   */
  submitVector(operation: 'read' | 'write', offset: number, segments: readonly Segment[]): Promise<void> {
    const table = this.takeTable(segments.length);
    return this.start(operation, offset, table.describe(segments), table, segments.length);
  }

  flush(): Promise<void> {
    return this.start('flush', 0, 0, undefined, 0);
  }

  discard(offset: number, length: number): Promise<void> {
    return this.start('discard', offset, length, undefined, 0);
  }

  /** `zeroFlags`: rbd_aio_write_zeroes' (RBD_WRITE_ZEROES_FLAG_THICK_PROVISION or 0). */
  writeZeroes(offset: number, length: number, zeroFlags: number): Promise<void> {
    return this.start('write zeroes', offset, length, undefined, zeroFlags);
  }

  /** `detail`: a vector's iovec count, write zeroes' flags. */
  private start(
    operation: RbdOperation,
    offset: number,
    length: number,
    table: IovecTable | undefined,
    detail: number,
  ): Promise<void> {
    const lib = this.lib;
    let started = lib.rbdAioCreateCompletion(null, null, this.completionCell.address);
    const completion = this.completionCell.value;
    if (started >= 0) {
      started = this.call(completion, operation, offset, length, table, detail);
      if (started < 0) lib.rbdAioRelease(completion);
    }
    if (started < 0) {
      if (table) this.giveTable(table);
      return Promise.reject(new CephError(describe({ operation, offset, length }), -started));
    }
    return new Promise((resolve, reject) => {
      this.pending.set(completion, { operation, offset, length, table, resolve, reject });
    });
  }

  private call(
    completion: Pointer,
    operation: RbdOperation,
    offset: number,
    length: number,
    table: IovecTable | undefined,
    detail: number,
  ): number {
    const { lib, image } = this;
    switch (operation) {
      case 'read':
        return lib.rbdAioReadv(image, table!.address, detail, offset, completion);
      case 'write':
        return lib.rbdAioWritev(image, table!.address, detail, offset, completion);
      case 'flush':
        return lib.rbdAioFlush(image, completion);
      case 'discard':
        return lib.rbdAioDiscard(image, offset, length, completion);
      case 'write zeroes':
        return lib.rbdAioWriteZeroes(image, offset, length, completion, detail, 0);
    }
  }

  private collect(): void {
    const lib = this.lib;
    libc.drainEventFd(this.eventFd);
    for (;;) {
      const count = checkCeph(lib.rbdPollIoEvents(this.image, this.polled, POLL_BATCH), 'rbd_poll_io_events');
      for (let i = 0; i < count; i++) this.settle(this.polledView[i]!);
      if (count < POLL_BATCH) break;
    }
    if (this.closing && this.pending.size === 0) this.close();
  }

  private settle(completion: Pointer): void {
    const lib = this.lib;
    const result = Number(lib.rbdAioGetReturnValue(completion));
    lib.rbdAioRelease(completion);
    const request = this.pending.get(completion)!;
    this.pending.delete(completion);
    if (request.table) this.giveTable(request.table);
    if (result < 0) request.reject(new CephError(describe(request), -result));
    else if (request.operation === 'read' && result !== request.length)
      request.reject(new Error(`${describe(request)}: ${result} of ${request.length} bytes transferred`));
    else request.resolve();
  }

  private takeTable(count: number): IovecTable {
    if (count > POOLED_IOVECS) return new IovecTable(count);
    return this.spareTables.pop() ?? new IovecTable(POOLED_IOVECS);
  }

  private giveTable(table: IovecTable): void {
    if (table.capacity === POOLED_IOVECS && !this.closing) this.spareTables.push(table);
    else table.free();
  }

  private close(): void {
    ImageCompletions.perImage.delete(this.image);
    // A negative fd makes librbd stop signalling (and queueing) completions for this image.
    this.lib.rbdSetImageNotification(this.image, -1, EVENT_TYPE_EVENTFD);
    this.watcher.unwatch(this.eventFd);
    this.release();
  }

  private release(): void {
    libc.closeFd(this.eventFd);
    for (const table of this.spareTables.splice(0)) table.free();
    this.completionCell.free();
    koffi.free(this.polled);
  }
}

import { Segment } from '../virtio/memory';
import type { LargeIoPool } from './large-io-pool';

/** Completion of a backend operation: synchronous (void) or later (a Promise). Failures throw or reject. */
export type IoResult = void | Promise<void>;

/**
 * Storage behind a virtio-blk device. Offsets and lengths are in bytes and already checked against
 * the device's capacity. Segments point straight into guest buffers: read fills them, write takes
 * them, and neither may keep them after completing. A backend may complete synchronously (a local
 * file) or return a Promise (a network server); one instance serves one queue at a time.
 */
export interface BlockBackend {
  read(offset: number, segments: readonly Segment[]): IoResult;
  write(offset: number, segments: readonly Segment[]): IoResult;
  /** Makes every completed write durable. */
  flush(): IoResult;
  /** The range may read back as anything afterwards (virtio-blk DISCARD): its space may be released. */
  discard(offset: number, length: number): IoResult;
  /** The range must read back as zeroes; with mayUnmap its space may be released. */
  writeZeroes(offset: number, length: number, mayUnmap: boolean): IoResult;
  close(): void;
}

/**
 * The poll loop of the thread a backend serves on: an asynchronous backend learns of completions
 * through a descriptor the loop watches, so no completion ever runs on a library's own threads.
 */
export interface FdWatcher {
  watch(fd: number, onReadable: () => void): void;
  unwatch(fd: number): void;
}

/** What a queue thread needs to open its own instance of a backend (structured-clone friendly). */
export type QueueBackendSpec = { kind: 'file'; path: string } | { kind: 'rbd'; image: bigint };

export interface QueueBackendOptions {
  readOnly: boolean;
  /** DISCARD and WRITE_ZEROES never release space (a thick volume's reservation). */
  keepAllocation: boolean;
  watcher: FdWatcher;
  /** The thread's helpers for large transfers of image files. */
  largeIo?: LargeIoPool;
}

/**
 * A backend as the serving process's main thread holds it: its size, and what the queue threads
 * need to open their own instances.
 */
export interface BackendProvider {
  readonly queueSpec: QueueBackendSpec;
  /**
   * All queues of the device must be served by one thread: the backend's instances share state that
   * only one poll loop may drive (an RBD image's completion notifications).
   */
  readonly queuesShareOneThread: boolean;
  /**
   * Who this server is to the storage's exclusive lock; undefined when the storage has none (an
   * image file is guarded by its device's name and record instead).
   */
  readonly lockHolder: string | undefined;
  /**
   * Takes the storage's exclusive lock. A holder named in `predecessors` (an earlier server of this
   * device, dead since its device fd was free) is fenced first; a live holder refuses it.
   */
  lock(predecessors: readonly string[]): Promise<void>;
  /** Current size in bytes. */
  size(): number;
  /** Grows the storage to `bytes`; shrinking is refused. */
  resize(bytes: number): Promise<void>;
  /** After close(), when serving could not start: storage the opening made goes again. */
  removeIfCreated(): void | Promise<void>;
  /** Lets go of the storage (after the queue threads closed their instances). */
  close(): void | Promise<void>;
}

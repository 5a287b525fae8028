import { Segment } from '../virtio/memory';

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
export type QueueBackendSpec = { kind: 'file'; path: string };

export interface QueueBackendOptions {
  readOnly: boolean;
  /** DISCARD and WRITE_ZEROES never release space (a thick volume's reservation). */
  keepAllocation: boolean;
  watcher: FdWatcher;
}

/**
 * A backend as the serving process's main thread holds it: its size, and what the queue threads
 * need to open their own instances.
 */
export interface BackendProvider {
  readonly queueSpec: QueueBackendSpec;
  /** Current size in bytes. */
  size(): number;
  /** Grows the storage to `bytes`; shrinking is refused. */
  resize(bytes: number): Promise<void>;
  /** Undoes the opening when serving could not start: storage the opening made goes again. */
  removeIfCreated(): void;
  /** Lets go of the storage (after the queue threads closed their instances). */
  close(): void;
}

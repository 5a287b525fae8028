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

/** Opens further instances of a backend (one per queue) and owns its size. */
export interface BackendProvider {
  /** Current size in bytes. */
  size(): number;
  /** Grows the storage to `bytes`; shrinking is refused. */
  resize(bytes: number): Promise<void>;
  /** keepAllocation: DISCARD and WRITE_ZEROES never release space (a thick volume's reservation). */
  open(options: { readOnly: boolean; keepAllocation?: boolean }): BlockBackend;
}

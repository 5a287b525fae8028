import { existsSync, rmSync, statSync } from 'node:fs';
import { SysError } from '../sys/errors';
import * as libc from '../sys/libc';
import { Segment, segmentOf, totalLength } from '../virtio/memory';
import { JobKind } from './large-io-layout';
import { LARGE_IO_BYTES, LargeIoPool } from './large-io-pool';
import { BackendProvider, BlockBackend, IoResult, QueueBackendSpec } from './types';
import { IovecTable, VectorCall, transferSpans } from './vector-io';

const EOPNOTSUPP = 95;
/** Bytes of zeroes one iovec entry of writeZeroBytes points at. */
const ZERO_CHUNK = 1 << 20;

/**
 * A sparse image file: reads of holes return zeroes, DISCARD punches holes. With `keepAllocation`
 * (thick volumes) no request ever releases a block: DISCARD zeroes the range in place where the
 * filesystem can (and otherwise leaves it as it is: a discarded range may read back as anything),
 * WRITE_ZEROES zeroes it in place even when the driver allows unmapping.
 */
export class FileBackend implements BlockBackend {
  private readonly table = new IovecTable();
  private zeroes: libc.Mapping | undefined;

  constructor(
    readonly path: string,
    private readonly fd: number,
    private readonly keepAllocation = false,
    /** Helpers that take large reads and writes off the queue thread (none: all are done inline). */
    private readonly largeIo?: LargeIoPool,
  ) {}

  static open(path: string, readOnly: boolean, keepAllocation = false, largeIo?: LargeIoPool): FileBackend {
    const fd = libc.openPath(path, readOnly ? libc.O_RDONLY : libc.O_RDWR);
    return new FileBackend(path, fd, keepAllocation, largeIo);
  }

  read(offset: number, segments: readonly Segment[]): IoResult {
    const helped = this.helped(JobKind.Read, offset, segments);
    if (helped) return helped.then((done) => readEnded(segments, done));
    readEnded(segments, this.transfer(offset, segments, libc.raw.preadvAddr, 'preadv'));
  }

  write(offset: number, segments: readonly Segment[]): IoResult {
    const helped = this.helped(JobKind.Write, offset, segments);
    if (helped) return helped.then((done) => writeEnded(offset, done));
    this.writeInline(offset, segments);
  }

  flush(): void {
    libc.check(libc.raw.fdatasync(this.fd), 'fdatasync');
  }

  discard(offset: number, length: number): void {
    if (this.keepAllocation) this.zeroRangeIfSupported(offset, length);
    else this.punchHole(offset, length);
  }

  writeZeroes(offset: number, length: number, mayUnmap: boolean): void {
    if (mayUnmap && !this.keepAllocation) return this.punchHole(offset, length);
    if (this.zeroRangeIfSupported(offset, length)) return;
    // tmpfs and some others lack ZERO_RANGE.
    if (this.keepAllocation) return this.writeZeroBytes(offset, length);
    // Punch, then allocate again so the range stays reserved.
    this.punchHole(offset, length);
    this.fallocate(libc.FALLOC_FL_KEEP_SIZE, offset, length, 'allocate');
  }

  close(): void {
    libc.closeFd(this.fd);
    this.table.free();
    this.zeroes?.unmap();
  }

  private punchHole(offset: number, length: number): void {
    this.fallocate(libc.FALLOC_FL_PUNCH_HOLE | libc.FALLOC_FL_KEEP_SIZE, offset, length, 'punch hole');
  }

  /** Zeroes the range keeping its blocks allocated; false where the filesystem cannot (EOPNOTSUPP). */
  private zeroRangeIfSupported(offset: number, length: number): boolean {
    try {
      this.fallocate(libc.FALLOC_FL_ZERO_RANGE | libc.FALLOC_FL_KEEP_SIZE, offset, length, 'zero range');
      return true;
    } catch (error) {
      if (error instanceof SysError && error.errno === EOPNOTSUPP) return false;
      throw error;
    }
  }

  /** Writes zero bytes over the range, from one untouched anonymous mapping (the zero page). */
  private writeZeroBytes(offset: number, length: number): void {
    this.zeroes ??= libc.mapAnonymous(ZERO_CHUNK);
    const zeroes = this.zeroes;
    const segments: Segment[] = [];
    for (let at = 0; at < length; at += ZERO_CHUNK) {
      const bytes = Math.min(ZERO_CHUNK, length - at);
      segments.push(segmentOf(zeroes.bytes, zeroes.address, 0, bytes));
    }
    this.writeInline(offset, segments);
  }

  private writeInline(offset: number, segments: readonly Segment[]): void {
    writeEnded(offset, this.transfer(offset, segments, libc.raw.pwritevAddr, 'pwritev'));
  }

  /** A large transfer handed to a helper thread, or null when it is done here. */
  private helped(kind: JobKind, offset: number, segments: readonly Segment[]): Promise<number> | null {
    if (!this.largeIo || totalLength(segments) < LARGE_IO_BYTES) return null;
    const what = `${kind === JobKind.Read ? 'preadv' : 'pwritev'} ${this.path}`;
    return this.largeIo.submit(kind, this.fd, offset, segments, what);
  }

  private transfer(offset: number, segments: readonly Segment[], call: VectorCall, what: string): number {
    return transferSpans(
      this.fd,
      this.table,
      segments,
      segments.length,
      offset,
      call,
      `${what} ${this.path}`,
    );
  }

  private fallocate(mode: number, offset: number, length: number, what: string): void {
    libc.check(
      libc.raw.fallocate(this.fd, mode, offset, length),
      `${what} ${this.path} [${offset}, +${length})`,
    );
  }
}

/** After a read: past the end of the file (a file shorter than the device), holes read as zeroes. */
function readEnded(segments: readonly Segment[], done: number): void {
  if (done >= 0) zeroFrom(segments, done);
}

function writeEnded(offset: number, done: number): void {
  if (done >= 0) throw new Error(`short write at ${offset}`);
}

function zeroFrom(segments: readonly Segment[], from: number): void {
  let position = 0;
  for (const segment of segments) {
    const end = position + segment.length;
    if (end > from) segment.bytes.fill(0, Math.max(0, from - position));
    position = end;
  }
}

/** Serves an image file, creating it sparse when it does not exist. */
export class FileBackendProvider implements BackendProvider {
  constructor(
    readonly path: string,
    private readonly created: boolean,
  ) {}

  /**
   * Creates the image (sparse) when missing and a size is given; never shrinks an existing one.
   * Without a size a missing image is an error: serving a fresh empty one in its place would hide
   * the loss of the data it held.
   */
  static create(path: string, sizeBytes: number | undefined): FileBackendProvider {
    const created = !existsSync(path);
    if (created && sizeBytes === undefined)
      throw new Error(`image ${path} does not exist (a new image is made only when a size is given)`);
    const fd = libc.openPath(path, libc.O_RDWR | libc.O_CREAT, 0o600);
    try {
      const current = statSync(path).size;
      if (sizeBytes !== undefined && sizeBytes > current) {
        libc.check(libc.raw.ftruncate(fd, sizeBytes), `truncate ${path}`);
      }
    } finally {
      libc.closeFd(fd);
    }
    return new FileBackendProvider(path, created);
  }

  /** Undoes create() when serving could not start: an image this provider made is removed. */
  removeIfCreated(): void {
    if (this.created) rmSync(this.path, { force: true });
  }

  size(): number {
    return statSync(this.path).size;
  }

  async resize(bytes: number): Promise<void> {
    const current = this.size();
    if (bytes < current)
      throw new RangeError(`refusing to shrink ${this.path} from ${current} to ${bytes} bytes`);
    const fd = libc.openPath(this.path, libc.O_RDWR);
    try {
      libc.check(libc.raw.ftruncate(fd, bytes), `truncate ${this.path}`);
      libc.check(libc.raw.fdatasync(fd), `fdatasync ${this.path}`);
    } finally {
      libc.closeFd(fd);
    }
  }

  readonly queuesShareOneThread = false;
  readonly lockHolder = undefined;

  async lock(): Promise<void> {}

  get queueSpec(): QueueBackendSpec {
    return { kind: 'file', path: this.path };
  }

  /** Holds nothing open: each queue thread opens the file itself. */
  close(): void {}
}

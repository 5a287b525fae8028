import { BlockBackend, IoResult } from '../../backend/types';
import { Chain, QueueBrokenError } from '../split-queue';
import { Segment, segmentOf, totalLength } from '../memory';
import {
  BlkRequestType,
  BlkStatus,
  DISCARD_SEGMENT_SIZE,
  REQUEST_HEADER_SIZE,
  SECTOR_SIZE,
  SERIAL_SIZE,
  WRITE_ZEROES_FLAG_UNMAP,
} from './spec';

/** What the device promised the driver in its config space; requests are held to it. */
export interface BlkLimits {
  readOnly: boolean;
  blockSize: number;
  serial: Buffer;
  maxDiscardSectors: number;
  maxDiscardSegments: number;
  maxWriteZeroesSectors: number;
  maxWriteZeroesSegments: number;
}

/** Capacity in bytes, read at each request because an online resize may change it. */
export type CapacitySource = () => number;

/** A request's outcome: bytes written into the chain's writable buffers, status byte included. */
export type Completion = number | Promise<number>;

class RequestError extends Error {
  constructor(
    readonly status: BlkStatus,
    message: string,
  ) {
    super(message);
  }
}

/** Turns one descriptor chain into a backend operation and writes the status byte (5.2.6). */
export class BlkRequestHandler {
  private readonly header = new DataView(new ArrayBuffer(REQUEST_HEADER_SIZE));
  private readonly headerBytes = new Uint8Array(this.header.buffer);

  constructor(
    private readonly backend: BlockBackend,
    private readonly limits: BlkLimits,
    private readonly capacity: CapacitySource,
    /** A request failed: its chain's head, what failed, and the error the backend threw, if one did. */
    private readonly onError: (head: number, message: string, cause: unknown) => void,
    private readonly observer?: RequestObserver,
  ) {}

  /** `startedAt`: when the request was taken (a performance.now() reading, passed on to the observer). */
  handle(chain: Chain, startedAt: number): Completion {
    const status = this.statusByte(chain);
    const request: RequestFacts = { head: chain.head, status, type: UNKNOWN_TYPE, dataBytes: 0, startedAt };
    if (chain.fault !== undefined) return this.fail(request, BlkStatus.IoError, chain.fault);
    try {
      if (copyOut(chain.readable, 0, this.headerBytes) < REQUEST_HEADER_SIZE) {
        throw new RequestError(BlkStatus.IoError, 'request header shorter than 16 bytes');
      }
      const type = (request.type = this.header.getUint32(0, true));
      const sector = this.header.getUint32(8, true) + this.header.getUint32(12, true) * 0x100000000;
      const dataIn = sliceSegments(chain.writable, 0, totalLength(chain.writable) - 1);
      const dataOut = sliceSegments(chain.readable, REQUEST_HEADER_SIZE, totalLength(chain.readable));
      request.dataBytes = dataBytes(type, dataIn, dataOut);
      const result = this.dispatch(type, sector, dataIn, dataOut);
      const written = 1 + writtenData(type, totalLength(dataIn));
      if (result === undefined) return this.succeed(request, written);
      return result.then(
        () => this.succeed(request, written),
        (error: unknown) => this.fail(request, BlkStatus.IoError, describe(error), error),
      );
    } catch (error) {
      const code = error instanceof RequestError ? error.status : BlkStatus.IoError;
      return this.fail(request, code, describe(error), error);
    }
  }

  private dispatch(type: number, sector: number, dataIn: Segment[], dataOut: Segment[]): IoResult {
    switch (type) {
      case BlkRequestType.In:
        return this.backend.read(this.checkRange(sector, totalLength(dataIn)), dataIn);
      case BlkRequestType.Out:
        this.checkWritable();
        return this.backend.write(this.checkRange(sector, totalLength(dataOut)), dataOut);
      case BlkRequestType.Flush:
        return this.backend.flush();
      case BlkRequestType.GetId:
        copyIn(dataIn, this.limits.serial.subarray(0, SERIAL_SIZE));
        return undefined;
      case BlkRequestType.Discard:
      case BlkRequestType.WriteZeroes:
        this.checkWritable();
        return this.rangeCommands(type, dataOut);
      default:
        throw new RequestError(BlkStatus.Unsupported, `unsupported request type ${type}`);
    }
  }

  private rangeCommands(type: BlkRequestType, payload: Segment[]): IoResult {
    const discard = type === BlkRequestType.Discard;
    const bytes = totalLength(payload);
    const count = bytes / DISCARD_SEGMENT_SIZE;
    const maxSegments = discard ? this.limits.maxDiscardSegments : this.limits.maxWriteZeroesSegments;
    const maxSectors = discard ? this.limits.maxDiscardSectors : this.limits.maxWriteZeroesSectors;
    if (count === 0 || !Number.isInteger(count) || count > maxSegments) {
      throw new RequestError(
        BlkStatus.IoError,
        `bad ${discard ? 'discard' : 'write-zeroes'} payload of ${bytes} bytes`,
      );
    }
    const table = new Uint8Array(bytes);
    copyOut(payload, 0, table);
    const view = new DataView(table.buffer);
    const operations: Array<() => IoResult> = [];
    for (let i = 0; i < count; i++) {
      const at = i * DISCARD_SEGMENT_SIZE;
      const sector = view.getUint32(at, true) + view.getUint32(at + 4, true) * 0x100000000;
      const sectors = view.getUint32(at + 8, true);
      const flags = view.getUint32(at + 12, true);
      const unmap = (flags & WRITE_ZEROES_FLAG_UNMAP) !== 0;
      if ((discard && flags !== 0) || (!discard && (flags & ~WRITE_ZEROES_FLAG_UNMAP) !== 0)) {
        throw new RequestError(BlkStatus.Unsupported, `unsupported range flags ${flags}`);
      }
      if (sectors > maxSectors)
        throw new RequestError(BlkStatus.IoError, `range of ${sectors} sectors over the limit`);
      const offset = this.checkRange(sector, sectors * SECTOR_SIZE);
      const length = sectors * SECTOR_SIZE;
      operations.push(() =>
        discard ? this.backend.discard(offset, length) : this.backend.writeZeroes(offset, length, unmap),
      );
    }
    return runInOrder(operations);
  }

  private checkRange(sector: number, length: number): number {
    const offset = sector * SECTOR_SIZE;
    const blockSize = this.limits.blockSize;
    if (length % SECTOR_SIZE !== 0)
      throw new RequestError(BlkStatus.IoError, `length ${length} not in whole sectors`);
    if (offset % blockSize !== 0 || length % blockSize !== 0) {
      throw new RequestError(BlkStatus.IoError, `[${offset}, +${length}) not aligned to ${blockSize}`);
    }
    if (!Number.isSafeInteger(offset + length) || offset + length > this.capacity()) {
      throw new RequestError(BlkStatus.IoError, `[${offset}, +${length}) beyond capacity ${this.capacity()}`);
    }
    return offset;
  }

  private checkWritable(): void {
    if (this.limits.readOnly) throw new RequestError(BlkStatus.IoError, 'write to a read-only device');
  }

  /** The status byte is the last byte of the chain's last, device-writable descriptor. */
  private statusByte(chain: Chain): Segment {
    const last = chain.writable[chain.writable.length - 1];
    if (!chain.tailWritable || !last) {
      throw new QueueBrokenError(`chain ${chain.head} has no writable status byte to report into`);
    }
    return last;
  }

  private succeed(request: RequestFacts, written: number): number {
    return this.complete(request, BlkStatus.Ok, written);
  }

  private fail(request: RequestFacts, code: BlkStatus, message: string, cause?: unknown): number {
    if (code !== BlkStatus.Unsupported) this.onError(request.head, message, cause);
    return this.complete(request, code, 1);
  }

  private complete(request: RequestFacts, code: BlkStatus, written: number): number {
    const status = request.status;
    status.bytes[status.bytes.byteLength - 1] = code;
    this.observer?.finished(request.type, request.dataBytes, code === BlkStatus.Ok, request.startedAt);
    return written;
  }
}

/** Told of every request as it completes (metrics); must be cheap: it runs on the queue's thread. */
export interface RequestObserver {
  /**
   * `type` is the request's virtio-blk type (-1 when its header could not be read); `startedAt` is
   * what `handle` was given.
   */
  finished(type: number, dataBytes: number, ok: boolean, startedAt: number): void;
}

const UNKNOWN_TYPE = -1;

/** What completing a request needs to know of it. */
interface RequestFacts {
  head: number;
  status: Segment;
  type: number;
  dataBytes: number;
  startedAt: number;
}

/** Bytes of data a read or write moves (0 for the other requests). */
function dataBytes(type: number, dataIn: Segment[], dataOut: Segment[]): number {
  if (type === BlkRequestType.In) return totalLength(dataIn);
  if (type === BlkRequestType.Out) return totalLength(dataOut);
  return 0;
}

function writtenData(type: number, available: number): number {
  if (type === BlkRequestType.In) return available;
  if (type === BlkRequestType.GetId) return Math.min(available, SERIAL_SIZE);
  return 0;
}

function runInOrder(operations: Array<() => IoResult>): IoResult {
  for (let i = 0; i < operations.length; i++) {
    const pending = operations[i]!();
    if (pending) return pending.then(() => runInOrder(operations.slice(i + 1)));
  }
  return undefined;
}

/** The bytes [start, end) of a segment list, as segments, without copying. */
export function sliceSegments(segments: readonly Segment[], start: number, end: number): Segment[] {
  const result: Segment[] = [];
  let position = 0;
  for (const segment of segments) {
    const length = segment.length;
    const from = Math.max(start - position, 0);
    const to = Math.min(end - position, length);
    if (to > from) {
      result.push(
        from === 0 && to === length ? segment : segmentOf(segment.bytes, segment.address, from, to - from),
      );
    }
    position += length;
    if (position >= end) break;
  }
  return result;
}

/** Copies from segments, starting `skip` bytes in, into `target`; returns bytes copied. */
function copyOut(segments: readonly Segment[], skip: number, target: Uint8Array): number {
  let copied = 0;
  for (const { bytes } of sliceSegments(segments, skip, skip + target.byteLength)) {
    target.set(bytes, copied);
    copied += bytes.byteLength;
  }
  return copied;
}

function copyIn(segments: readonly Segment[], source: Uint8Array): void {
  let offset = 0;
  for (const { bytes } of segments) {
    if (offset >= source.byteLength) break;
    const chunk = source.subarray(offset, offset + bytes.byteLength);
    bytes.set(chunk);
    offset += chunk.byteLength;
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

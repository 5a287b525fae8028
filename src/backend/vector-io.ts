import { SysError } from '../sys/errors';
import * as libc from '../sys/libc';

/** iovec entries one preadv/pwritev may take (IOV_MAX). */
export const IOV_MAX = 1024;
const EINTR = 4;

/** A run of process memory by address: a guest buffer (Segment) is one. */
export interface Span {
  readonly address: number;
  readonly length: number;
}

/** preadv or pwritev through the process's libc, taking the iovec table's address. */
export type VectorCall = (fd: number, iov: number, count: number, offset: number) => number;

/** A table of struct iovec in memory with a stable address, for preadv/pwritev. */
export class IovecTable {
  private readonly memory = libc.mapAnonymous(IOV_MAX * 16);
  private readonly words = new Uint32Array(
    this.memory.bytes.buffer,
    this.memory.bytes.byteOffset,
    IOV_MAX * 4,
  );

  get address(): number {
    return this.memory.address;
  }

  /**
   * Describes spans[first, end) (skipping `skip` bytes of the first); returns the entries and bytes
   * used.
   */
  fill(spans: readonly Span[], first: number, end: number, skip: number): { count: number; bytes: number } {
    let count = 0;
    let bytes = 0;
    for (let i = first; i < end && count < IOV_MAX; i++, count++) {
      const span = spans[i]!;
      const start = i === first ? skip : 0;
      const length = span.length - start;
      const address = span.address + start;
      this.words[count * 4] = address >>> 0;
      this.words[count * 4 + 1] = Math.floor(address / 0x100000000);
      this.words[count * 4 + 2] = length;
      this.words[count * 4 + 3] = 0;
      bytes += length;
    }
    return { count, bytes };
  }

  free(): void {
    this.memory.unmap();
  }
}

/**
 * Moves the first `count` spans between memory and the file at `offset` with as few system calls as
 * possible. Returns -1 when everything moved, otherwise how many bytes moved before the file ended.
 */
export function transferSpans(
  fd: number,
  table: IovecTable,
  spans: readonly Span[],
  count: number,
  offset: number,
  call: VectorCall,
  what: string,
): number {
  let moved = 0;
  let first = 0;
  let skip = 0;
  while (first < count) {
    const { count: entries, bytes: batch } = table.fill(spans, first, count, skip);
    const result = call(fd, table.address, entries, offset + moved);
    if (result < 0) {
      if (libc.errno() === EINTR) continue;
      throw new SysError(`${what} at ${offset + moved}`, libc.errno());
    }
    if (result === 0 && batch > 0) return moved;
    moved += result;
    // Advance past what moved; a short transfer resumes inside a span.
    let advance = result;
    while (first < count) {
      const remaining = spans[first]!.length - skip;
      if (advance < remaining) {
        skip += advance;
        break;
      }
      advance -= remaining;
      first++;
      skip = 0;
    }
  }
  return -1;
}

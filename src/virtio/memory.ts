/** Direction of a guest buffer from the device's point of view. */
export const enum Access {
  Read = 1,
  Write = 2,
}

/** A run of guest memory the device may touch, already translated to process memory. */
export interface Segment {
  /** Exactly the bytes of the buffer, without a copy. */
  readonly bytes: Uint8Array;
  /** Process address of bytes[0], for system calls that take it directly (preadv, pwritev). */
  readonly address: number;
  /** bytes.byteLength, known without making the view. */
  readonly length: number;
}

/**
 * A segment of a larger view, whose own view is made on first use only: the buffers of a large
 * request go to preadv/pwritev by address, and a view each (a typed array) would cost more than
 * the rest of their descriptor's handling.
 */
class LazySegment implements Segment {
  private view: Uint8Array | undefined;

  constructor(
    private readonly whole: Uint8Array,
    private readonly offset: number,
    readonly length: number,
    readonly address: number,
  ) {}

  get bytes(): Uint8Array {
    return (this.view ??= this.whole.subarray(this.offset, this.offset + this.length));
  }
}

/** The bytes of all the segments together. */
export function totalLength(segments: readonly Segment[]): number {
  let total = 0;
  for (const segment of segments) total += segment.length;
  return total;
}

/** The `length` bytes at `offset` of `whole`, which starts at process address `wholeAddress`. */
export function segmentOf(whole: Uint8Array, wholeAddress: number, offset: number, length: number): Segment {
  return new LazySegment(whole, offset, length, wholeAddress + offset);
}

/** Translates guest I/O virtual addresses into process memory. */
export interface GuestMemory {
  /** The span [iova, iova + length) if one mapping holds all of it with the access asked for. */
  translate(iova: number, length: number, access: Access): Segment | null;
}

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
}

/** Translates guest I/O virtual addresses into process memory. */
export interface GuestMemory {
  /** The span [iova, iova + length) if one mapping holds all of it with the access asked for. */
  translate(iova: number, length: number, access: Access): Segment | null;
}

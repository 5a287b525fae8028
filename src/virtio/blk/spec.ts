/** virtio-blk constants (virtio 1.x, 5.2). */
export const enum BlkFeature {
  SizeMax = 1,
  SegMax = 2,
  Geometry = 4,
  ReadOnly = 5,
  BlkSize = 6,
  Flush = 9,
  Topology = 10,
  ConfigWce = 11,
  MultiQueue = 12,
  Discard = 13,
  WriteZeroes = 14,
}

export const enum BlkRequestType {
  In = 0,
  Out = 1,
  Flush = 4,
  GetId = 8,
  Discard = 11,
  WriteZeroes = 13,
}

export const enum BlkStatus {
  Ok = 0,
  IoError = 1,
  Unsupported = 2,
}

export const SECTOR_SIZE = 512;
export const REQUEST_HEADER_SIZE = 16;
export const DISCARD_SEGMENT_SIZE = 16;
export const SERIAL_SIZE = 20;
export const WRITE_ZEROES_FLAG_UNMAP = 1;

/** Offsets in struct virtio_blk_config. */
export const configOffset = {
  capacity: 0,
  sizeMax: 8,
  segMax: 12,
  blkSize: 20,
  physicalBlockExp: 24,
  alignmentOffset: 25,
  minIoSize: 26,
  optIoSize: 28,
  numQueues: 34,
  maxDiscardSectors: 36,
  maxDiscardSeg: 40,
  discardSectorAlignment: 44,
  maxWriteZeroesSectors: 48,
  maxWriteZeroesSeg: 52,
  writeZeroesMayUnmap: 56,
  /** Everything up to and including write_zeroes_may_unmap and its padding. */
  end: 60,
} as const;

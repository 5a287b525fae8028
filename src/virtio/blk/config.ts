import {
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
  featureMask,
} from '../features';
import { BlkLimits } from './request-handler';
import { BlkFeature, SECTOR_SIZE, SERIAL_SIZE, configOffset } from './spec';

export interface BlkGeometry {
  capacityBytes: number;
  queues: number;
  queueSize: number;
  blockSize: number;
  readOnly: boolean;
  serial: string;
  /**
   * DISCARD and WRITE_ZEROES never release the image's blocks (a thick volume keeps its
   * reservation); the config space then says write-zeroes does not unmap.
   */
  keepAllocation: boolean;
}

/** Largest DISCARD / WRITE_ZEROES range per request, in sectors (32 MiB). */
const MAX_RANGE_SECTORS = 65536;

export function blkFeatures(geometry: BlkGeometry): bigint {
  const bits = [
    VIRTIO_F_VERSION_1,
    VIRTIO_F_ACCESS_PLATFORM,
    VIRTIO_F_EVENT_IDX,
    VIRTIO_F_INDIRECT_DESC,
    BlkFeature.SegMax,
    BlkFeature.BlkSize,
    BlkFeature.Topology,
    BlkFeature.Flush,
    BlkFeature.Discard,
    BlkFeature.WriteZeroes,
  ];
  if (geometry.queues > 1) bits.push(BlkFeature.MultiQueue);
  if (geometry.readOnly) bits.push(BlkFeature.ReadOnly);
  return featureMask(...bits);
}

export function blkLimits(geometry: BlkGeometry): BlkLimits {
  const serial = Buffer.alloc(SERIAL_SIZE);
  Buffer.from(geometry.serial, 'utf8').copy(serial, 0, 0, SERIAL_SIZE);
  return {
    readOnly: geometry.readOnly,
    blockSize: geometry.blockSize,
    serial,
    maxDiscardSectors: MAX_RANGE_SECTORS,
    maxDiscardSegments: 1,
    maxWriteZeroesSectors: MAX_RANGE_SECTORS,
    maxWriteZeroesSegments: 1,
  };
}

/** Capacity as the config space holds it: 512-byte sectors, rounded down to whole blocks. */
export function capacitySectors(bytes: number, blockSize: number): number {
  return Math.floor(bytes / blockSize) * (blockSize / SECTOR_SIZE);
}

export function encodeCapacity(bytes: number, blockSize: number): Buffer {
  const field = Buffer.alloc(8);
  field.writeBigUInt64LE(BigInt(capacitySectors(bytes, blockSize)));
  return field;
}

export function encodeBlkConfig(geometry: BlkGeometry): Buffer {
  const config = Buffer.alloc(configOffset.end);
  const sectorsPerBlock = geometry.blockSize / SECTOR_SIZE;
  encodeCapacity(geometry.capacityBytes, geometry.blockSize).copy(config, configOffset.capacity);
  // Two descriptors of each chain carry the header and the status byte.
  config.writeUInt32LE(geometry.queueSize - 2, configOffset.segMax);
  config.writeUInt32LE(geometry.blockSize, configOffset.blkSize);
  config.writeUInt8(0, configOffset.physicalBlockExp);
  config.writeUInt16LE(1, configOffset.minIoSize);
  config.writeUInt16LE(geometry.queues, configOffset.numQueues);
  config.writeUInt32LE(MAX_RANGE_SECTORS, configOffset.maxDiscardSectors);
  config.writeUInt32LE(1, configOffset.maxDiscardSeg);
  config.writeUInt32LE(sectorsPerBlock, configOffset.discardSectorAlignment);
  config.writeUInt32LE(MAX_RANGE_SECTORS, configOffset.maxWriteZeroesSectors);
  config.writeUInt32LE(1, configOffset.maxWriteZeroesSeg);
  config.writeUInt8(geometry.keepAllocation ? 0 : 1, configOffset.writeZeroesMayUnmap);
  return config;
}

import assert from 'node:assert/strict';
import {
  BlkGeometry,
  blkFeatures,
  blkLimits,
  capacitySectors,
  encodeBlkConfig,
  encodeCapacity,
} from '../../src/virtio/blk/config';
import { featureMask, hasFeature } from '../../src/virtio/features';

/* Offsets and bits from struct virtio_blk_config and the virtio 1.x spec (5.2.3, 5.2.4, 6). */
const VERSION_1 = 32;
const ACCESS_PLATFORM = 33;
const EVENT_IDX = 29;
const INDIRECT_DESC = 28;
const SEG_MAX = 2;
const RO = 5;
const BLK_SIZE = 6;
const FLUSH = 9;
const TOPOLOGY = 10;
const CONFIG_WCE = 11;
const MQ = 12;
const DISCARD = 13;
const WRITE_ZEROES = 14;

function geometry(overrides: Partial<BlkGeometry> = {}): BlkGeometry {
  return {
    capacityBytes: 1 << 30,
    queues: 1,
    queueSize: 256,
    blockSize: 512,
    readOnly: false,
    keepAllocation: false,
    serial: 'vol-1',
    ...overrides,
  };
}

describe('virtio-blk config', () => {
  it('counts capacity in 512-byte sectors, rounded down to whole blocks', () => {
    assert.equal(capacitySectors(1 << 30, 512), 2097152);
    assert.equal(capacitySectors((1 << 30) + 511, 512), 2097152);
    assert.equal(capacitySectors((1 << 30) + 4095, 4096), 2097152);
    assert.equal(capacitySectors((1 << 30) + 512, 4096), 2097152, 'a partial 4 KiB block is not counted');
    assert.equal(capacitySectors(4095, 4096), 0);
    assert.equal(capacitySectors(2 ** 50, 4096), 2 ** 41);
    assert.equal(encodeCapacity(3 * 4096 + 100, 4096).toString('hex'), '1800000000000000');
    assert.equal(encodeCapacity(2 ** 52, 512).readBigUInt64LE(0), 2n ** 43n);
  });

  it('lays out struct virtio_blk_config byte for byte', () => {
    const config = encodeBlkConfig(
      geometry({ capacityBytes: 10 * 4096 + 1000, queues: 4, queueSize: 128, blockSize: 4096 }),
    );
    const expected = Buffer.alloc(60);
    expected.writeBigUInt64LE(80n, 0); // capacity: 10 blocks of 8 sectors
    expected.writeUInt32LE(0, 8); // size_max (feature not offered)
    expected.writeUInt32LE(126, 12); // seg_max = queue size - 2
    // geometry@16..19 unused
    expected.writeUInt32LE(4096, 20); // blk_size
    expected.writeUInt8(0, 24); // physical_block_exp
    expected.writeUInt8(0, 25); // alignment_offset
    expected.writeUInt16LE(1, 26); // min_io_size (in blocks)
    expected.writeUInt32LE(0, 28); // opt_io_size
    expected.writeUInt8(0, 32); // writeback
    expected.writeUInt16LE(4, 34); // num_queues
    expected.writeUInt32LE(65536, 36); // max_discard_sectors
    expected.writeUInt32LE(1, 40); // max_discard_seg
    expected.writeUInt32LE(8, 44); // discard_sector_alignment, in sectors
    expected.writeUInt32LE(65536, 48); // max_write_zeroes_sectors
    expected.writeUInt32LE(1, 52); // max_write_zeroes_seg
    expected.writeUInt8(1, 56); // write_zeroes_may_unmap
    assert.equal(config.toString('hex'), expected.toString('hex'));
  });

  it('writes seg_max, num_queues and the capacity for other geometries', () => {
    const config = encodeBlkConfig(geometry({ capacityBytes: (1 << 20) + 300, queueSize: 1024, queues: 1 }));
    assert.equal(config.length, 60);
    assert.equal(config.readBigUInt64LE(0), 2048n);
    assert.equal(config.readUInt32LE(12), 1022);
    assert.equal(config.readUInt32LE(20), 512);
    assert.equal(config.readUInt16LE(34), 1);
    assert.equal(config.readUInt32LE(44), 1);
  });

  it('says write-zeroes does not unmap when the device keeps its allocation (DISCARD still offered)', () => {
    const kept = geometry({ keepAllocation: true });
    assert.equal(encodeBlkConfig(kept).readUInt8(56), 0);
    assert.equal(blkFeatures(kept), blkFeatures(geometry()));
  });

  it('offers VERSION_1, ACCESS_PLATFORM and the data-path features always', () => {
    const features = blkFeatures(geometry());
    assert.equal(
      features,
      featureMask(
        VERSION_1,
        ACCESS_PLATFORM,
        EVENT_IDX,
        INDIRECT_DESC,
        SEG_MAX,
        BLK_SIZE,
        TOPOLOGY,
        FLUSH,
        DISCARD,
        WRITE_ZEROES,
      ),
    );
    assert.equal(features, 0x3_3000_6644n);
    assert.equal(hasFeature(features, CONFIG_WCE), false);
  });

  it('offers MQ only with more than one queue', () => {
    assert.equal(hasFeature(blkFeatures(geometry({ queues: 1 })), MQ), false);
    assert.equal(hasFeature(blkFeatures(geometry({ queues: 2 })), MQ), true);
    assert.equal(blkFeatures(geometry({ queues: 8 })) ^ blkFeatures(geometry({ queues: 1 })), 1n << 12n);
  });

  it('offers RO only for a read-only device', () => {
    assert.equal(hasFeature(blkFeatures(geometry({ readOnly: false })), RO), false);
    const ro = blkFeatures(geometry({ readOnly: true }));
    assert.equal(hasFeature(ro, RO), true);
    assert.equal(hasFeature(ro, VERSION_1) && hasFeature(ro, ACCESS_PLATFORM), true);
  });

  it('derives request limits matching the config space', () => {
    const limits = blkLimits(geometry({ blockSize: 4096, readOnly: true, serial: 'abc' }));
    assert.equal(limits.readOnly, true);
    assert.equal(limits.blockSize, 4096);
    assert.deepEqual(limits.serial, Buffer.concat([Buffer.from('abc'), Buffer.alloc(17)]));
    assert.equal(limits.maxDiscardSectors, 65536);
    assert.equal(limits.maxDiscardSegments, 1);
    assert.equal(limits.maxWriteZeroesSectors, 65536);
    assert.equal(limits.maxWriteZeroesSegments, 1);
    const long = blkLimits(geometry({ serial: 'ABCDEFGHIJKLMNOPQRSTUVWXYZ' }));
    assert.equal(long.serial.toString('latin1'), 'ABCDEFGHIJKLMNOPQRST');
  });
});

import assert from 'node:assert/strict';
import {
  DEV_CONFIG_HEADER_SIZE,
  MESSAGE_SIZE,
  RequestType,
  decodeIotlbEntry,
  decodeRequest,
  decodeVqInfo,
  encodeDeviceConfig,
  encodeIotlbQuery,
  encodeName,
  encodeResponse,
  encodeVqConfig,
  ioctls,
} from '../../src/vduse/uapi';

/* Expected values are derived here from include/uapi/linux/vduse.h, not from the code under test. */

/** _IOC(dir, type, nr, size) on x86_64: dir 30..31 (1 write, 2 read), size 16..29, type 8..15. */
function ioc(dir: 0 | 1 | 2 | 3, nr: number, size: number): number {
  return ((dir << 30) >>> 0) + size * 0x10000 + 0x81 * 0x100 + nr;
}
const IO = (nr: number) => ioc(0, nr, 0);
const IOW = (nr: number, size: number) => ioc(1, nr, size);
const IOR = (nr: number, size: number) => ioc(2, nr, size);
const IOWR = (nr: number, size: number) => ioc(3, nr, size);

describe('VDUSE uapi', () => {
  it('uses the ioctl numbers of vduse.h', () => {
    assert.deepEqual(
      { ...ioctls },
      {
        GET_API_VERSION: IOR(0x00, 8), // __u64
        SET_API_VERSION: IOW(0x01, 8), // __u64
        CREATE_DEV: IOW(0x02, 336), // struct vduse_dev_config
        DESTROY_DEV: IOW(0x03, 256), // char[VDUSE_NAME_MAX]
        IOTLB_GET_FD: IOWR(0x10, 32), // struct vduse_iotlb_entry
        DEV_GET_FEATURES: IOR(0x11, 8), // __u64
        DEV_SET_CONFIG: IOW(0x12, 8), // struct vduse_config_data (offset, length)
        DEV_INJECT_CONFIG_IRQ: IO(0x13),
        VQ_SETUP: IOW(0x14, 32), // struct vduse_vq_config
        VQ_GET_INFO: IOWR(0x15, 48), // struct vduse_vq_info
        VQ_SETUP_KICKFD: IOW(0x16, 8), // struct vduse_vq_eventfd
        VQ_INJECT_IRQ: IOW(0x17, 4), // __u32
      },
    );
    assert.equal(ioctls.CREATE_DEV, 0x41508102);
    assert.equal(ioctls.VQ_GET_INFO, 0xc0308115);
  });

  it('encodes vduse_dev_config: name@0 vendor@256 device@260 features@264 vq_num@272 vq_align@276 config_size@332', () => {
    const config = Buffer.from([0xa1, 0xa2, 0xa3, 0xa4, 0xa5]);
    const buffer = encodeDeviceConfig({
      name: 'vduse-blk0',
      vendorId: 0x1af4,
      deviceId: 2,
      features: 0x0000_0003_3000_7e46n,
      queueCount: 4,
      queueAlign: 4096,
      config,
    });
    assert.equal(DEV_CONFIG_HEADER_SIZE, 336);
    assert.equal(buffer.length, 336 + 5);
    const expected = Buffer.alloc(341);
    expected.write('vduse-blk0', 0, 'latin1');
    expected.writeUInt32LE(0x1af4, 256);
    expected.writeUInt32LE(2, 260);
    expected.writeUInt32LE(0x30007e46, 264);
    expected.writeUInt32LE(0x00000003, 268);
    expected.writeUInt32LE(4, 272);
    expected.writeUInt32LE(4096, 276);
    expected.writeUInt32LE(5, 332);
    config.copy(expected, 336);
    assert.equal(buffer.toString('hex'), expected.toString('hex'));
    // reserved[13] between vq_align and config_size stays zero.
    assert.deepEqual(buffer.subarray(280, 332), Buffer.alloc(52));
  });

  it('encodes the name NUL-terminated and rejects empty or 256-byte names', () => {
    const field = encodeName('x'.repeat(255));
    assert.equal(field.length, 256);
    assert.equal(field[254], 0x78);
    assert.equal(field[255], 0);
    assert.throws(() => encodeName(''), RangeError);
    assert.throws(() => encodeName('x'.repeat(256)), RangeError);
    assert.throws(() => encodeName('é'.repeat(128)), RangeError, '256 bytes of UTF-8');
  });

  it('encodes vduse_vq_config: index u32@0, max_size u16@4, 32 bytes', () => {
    const buffer = encodeVqConfig(3, 256);
    assert.equal(buffer.toString('hex'), '03000000' + '0001' + '00'.repeat(26));
  });

  it('decodes vduse_vq_info: index@0 num@4 desc@8 driver@16 device@24 avail_index@32 ready@40', () => {
    const buffer = Buffer.alloc(48);
    buffer.writeUInt32LE(1, 0);
    buffer.writeUInt32LE(128, 4);
    buffer.writeBigUInt64LE(0x1122_3344_5566_7788n, 8);
    buffer.writeBigUInt64LE(0xffff_0000_0000_1000n, 16);
    buffer.writeBigUInt64LE(0x2000n, 24);
    buffer.writeUInt16LE(0xfffe, 32);
    buffer.writeUInt16LE(0x7777, 34); // packed-state bytes that a split queue must ignore
    buffer.writeUInt8(1, 40);
    assert.deepEqual(decodeVqInfo(buffer), {
      index: 1,
      num: 128,
      descAddr: 0x1122_3344_5566_7788n,
      driverAddr: 0xffff_0000_0000_1000n,
      deviceAddr: 0x2000n,
      availIndex: 0xfffe,
      ready: true,
    });
    buffer.writeUInt8(0, 40);
    assert.equal(decodeVqInfo(buffer).ready, false);
  });

  it('encodes the IOTLB query and decodes vduse_iotlb_entry: offset@0 start@8 last@16 perm@24', () => {
    const query = encodeIotlbQuery(0x1000n, 0xffff_ffff_ffff_ffffn);
    assert.equal(query.length, 32);
    assert.equal(
      query.toString('hex'),
      '00'.repeat(8) + '0010000000000000' + 'ff'.repeat(8) + '00'.repeat(8),
    );
    const entry = Buffer.alloc(32);
    entry.writeBigUInt64LE(0x40000n, 0);
    entry.writeBigUInt64LE(0x1000n, 8);
    entry.writeBigUInt64LE(0x1fffn, 16);
    entry.writeUInt8(3, 24);
    assert.deepEqual(decodeIotlbEntry(entry), { offset: 0x40000n, start: 0x1000n, last: 0x1fffn, perm: 3 });
  });

  describe('control messages (152 bytes: type@0 request_id@4 reserved[4] union@24)', () => {
    function message(type: number, id: number, fill: (m: Buffer) => void): Buffer {
      const m = Buffer.alloc(MESSAGE_SIZE);
      m.writeUInt32LE(type, 0);
      m.writeUInt32LE(id, 4);
      m.fill(0xcc, 8, 24); // reserved: must not be read
      fill(m);
      return m;
    }

    it('has the kernel size', () => {
      assert.equal(MESSAGE_SIZE, 152);
    });

    it('decodes GET_VQ_STATE with vq_state.index at 24', () => {
      const m = message(0, 0xdeadbeef, (b) => b.writeUInt32LE(2, 24));
      assert.deepEqual(decodeRequest(m), { type: RequestType.GetVqState, id: 0xdeadbeef, queue: 2 });
    });

    it('decodes SET_STATUS with the status byte at 24', () => {
      const m = message(1, 7, (b) => b.writeUInt8(0x0f, 24));
      assert.deepEqual(decodeRequest(m), { type: RequestType.SetStatus, id: 7, status: 0x0f });
    });

    it('decodes UPDATE_IOTLB with iova.start at 24 and iova.last at 32', () => {
      const m = message(2, 9, (b) => {
        b.writeBigUInt64LE(0x10000n, 24);
        b.writeBigUInt64LE(0xffff_ffff_ffff_ffffn, 32);
      });
      assert.deepEqual(decodeRequest(m), {
        type: RequestType.UpdateIotlb,
        id: 9,
        start: 0x10000n,
        last: 0xffff_ffff_ffff_ffffn,
      });
    });

    it('reports an unknown type with its raw value', () => {
      assert.deepEqual(decodeRequest(message(3, 11, () => {})), { type: 'unknown', id: 11, rawType: 3 });
    });

    it('encodes responses: request_id@0 result@4, vq_state.index@24 split.avail_index@28', () => {
      const ok = encodeResponse(0x01020304, true);
      assert.equal(ok.length, 152);
      assert.equal(ok.toString('hex'), '04030201' + '00000000' + '00'.repeat(144));
      const failed = encodeResponse(5, false);
      assert.equal(failed.readUInt32LE(4), 1);
      const state = encodeResponse(6, true, { queue: 3, availIndex: 0xabcd });
      const expected = Buffer.alloc(152);
      expected.writeUInt32LE(6, 0);
      expected.writeUInt32LE(3, 24);
      expected.writeUInt16LE(0xabcd, 28);
      assert.equal(state.toString('hex'), expected.toString('hex'));
    });
  });
});

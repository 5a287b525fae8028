import assert from 'node:assert/strict';
import {
  attr,
  decodeGenlMessage,
  encodeAttributes,
  encodeGenlMessage,
  NetlinkError,
  NetlinkFormatError,
  NLM_F_ACK,
  NLM_F_REQUEST,
  splitMessages,
} from '../../src/sys/netlink';
import { SysError } from '../../src/sys/errors';
import {
  decodeDeviceInfo,
  decodeManagementDevice,
  devNameAttributes,
  devNewAttributes,
  parseMgmtDev,
  validateDeviceName,
  VDPA_CMD_DEV_DEL,
  VDPA_CMD_DEV_NEW,
  VDPA_FAMILY_MISSING,
  VdpaError,
  VdpaNameError,
} from '../../src/vdpa';

function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}

/** A kernel reply carrying `attrs` (raw bytes), as one genl message. */
function reply(cmd: number, attrs: Buffer) {
  const header = Buffer.alloc(20);
  header.writeUInt32LE(20 + attrs.length, 0);
  header.writeUInt16LE(0x1c, 4);
  header.writeUInt32LE(1, 8);
  header.writeUInt8(cmd, 16);
  header.writeUInt8(1, 17);
  return decodeGenlMessage(splitMessages(Buffer.concat([header, attrs]))[0]);
}

describe('vdpa messages', () => {
  it('encodes DEV_NEW name vduse0 mgmtdev vduse byte for byte', () => {
    const message = encodeGenlMessage({
      familyId: 0x1c,
      cmd: VDPA_CMD_DEV_NEW,
      version: 1,
      flags: NLM_F_REQUEST | NLM_F_ACK,
      seq: 0x12345678,
      attrs: devNewAttributes('vduse0', 'vduse'),
    });
    assert.deepEqual(
      message,
      hex(`
        2c 00 00 00  1c 00  05 00  78 56 34 12  00 00 00 00
        03 01 00 00
        0b 00 04 00  76 64 75 73 65 30 00 00
        0a 00 02 00  76 64 75 73 65 00 00 00`),
    );
  });

  it('encodes a bus/device management handle as MGMTDEV_BUS_NAME + MGMTDEV_DEV_NAME', () => {
    assert.deepEqual(
      encodeAttributes(devNewAttributes('v', 'pci/0000:00:04.0')),
      hex(`
        06 00 04 00  76 00 00 00
        08 00 01 00  70 63 69 00
        11 00 02 00  30 30 30 30 3a 30 30 3a 30 34 2e 30 00 00 00 00`),
    );
  });

  it('encodes DEV_DEL with the device name only', () => {
    const message = encodeGenlMessage({
      familyId: 0x1c,
      cmd: VDPA_CMD_DEV_DEL,
      version: 1,
      flags: NLM_F_REQUEST | NLM_F_ACK,
      seq: 2,
      attrs: devNameAttributes('a.b-c_9'),
    });
    assert.deepEqual(
      message,
      hex(`
        20 00 00 00  1c 00  05 00  02 00 00 00  00 00 00 00
        04 01 00 00
        0c 00 04 00  61 2e 62 2d 63 5f 39 00`),
    );
  });

  it('decodes a management device, skipping the 64-bit pad attribute', () => {
    const attrs = encodeAttributes([
      attr.string(2, 'vduse'),
      attr.flag(0), // VDPA_ATTR_PAD before the u64
      attr.u64(3, (1n << 1n) | (1n << 2n)),
      attr.u32(15, 65535),
      attr.flag(0),
      attr.u64(16, 1n << 32n),
    ]);
    assert.deepEqual(decodeManagementDevice(reply(1, attrs)), {
      devName: 'vduse',
      handle: 'vduse',
      supportedClassIds: [1, 2],
      supportedClasses: ['net', 'block'],
      maxVqs: 65535,
      supportedFeatures: 1n << 32n,
    });
    const pci = decodeManagementDevice(
      reply(1, encodeAttributes([attr.string(1, 'pci'), attr.string(2, '0000:00:04.0')])),
    );
    assert.deepEqual(pci, { busName: 'pci', devName: '0000:00:04.0', handle: 'pci/0000:00:04.0' });
  });

  it('decodes DEV_GET', () => {
    const attrs = encodeAttributes([
      attr.string(4, 'vduse0'),
      attr.string(2, 'vduse'),
      attr.u32(5, 2),
      attr.u32(6, 0x1af4),
      attr.u32(7, 2),
      attr.u16(8, 256),
      attr.u16(9, 1),
      attr.u32(99, 7), // unknown attributes are ignored
    ]);
    assert.deepEqual(decodeDeviceInfo(reply(3, attrs)), {
      name: 'vduse0',
      mgmtdev: 'vduse',
      deviceId: 2,
      deviceClass: 'block',
      vendorId: 0x1af4,
      maxVqs: 2,
      maxVqSize: 256,
      minVqSize: 1,
    });
  });

  it('rejects a DEV_GET reply without required attributes', () => {
    assert.throws(
      () => decodeDeviceInfo(reply(3, encodeAttributes([attr.string(4, 'x'), attr.string(2, 'vduse')]))),
      (e: unknown) => e instanceof NetlinkFormatError && /without DEV_ID/.test(e.message),
    );
  });
});

describe('vdpa name validation', () => {
  it('accepts ordinary names and the 255-byte maximum', () => {
    for (const name of ['vduse0', 'pvc-3f2a.blk_1', 'A', '-', 'x'.repeat(255)]) {
      assert.equal(validateDeviceName(name), name);
    }
  });

  it('rejects empty, too long, path-like and non-ASCII names', () => {
    const bad = ['', 'x'.repeat(256), 'a/b', '../x', '.', '..', 'a b', 'a\0b', 'é', 'a:b', 'name\n'];
    for (const name of bad)
      assert.throws(() => validateDeviceName(name), VdpaNameError, JSON.stringify(name));
  });

  it('validates before building any message', () => {
    assert.throws(() => devNewAttributes('bad/name', 'vduse'), VdpaNameError);
    assert.throws(() => devNewAttributes('ok', 'a/b/c'), VdpaNameError);
    assert.throws(() => devNewAttributes('ok', ''), VdpaNameError);
    assert.throws(() => devNameAttributes(''), VdpaNameError);
  });

  it('parses management device handles', () => {
    assert.deepEqual(parseMgmtDev('vduse'), { devName: 'vduse' });
    assert.deepEqual(parseMgmtDev('pci/0000:00:04.0'), { busName: 'pci', devName: '0000:00:04.0' });
    for (const bad of ['/x', 'x/', 'a b', 'a/b/c']) assert.throws(() => parseMgmtDev(bad), VdpaNameError);
  });
});

describe('vdpa errors', () => {
  it('keeps the errno name and adds the kernel message', () => {
    const error = new VdpaError(
      'DEV_NEW',
      17,
      { message: 'device exists' },
      'a vdpa device named "x" already exists',
      'x',
    );
    assert.ok(error instanceof NetlinkError && error instanceof SysError);
    assert.equal(error.code, 'EEXIST');
    assert.equal(error.command, 'DEV_NEW');
    assert.equal(error.device, 'x');
    assert.equal(
      error.message,
      'vdpa: a vdpa device named "x" already exists; kernel: device exists (EEXIST)',
    );
  });

  it('names the missing family clearly', () => {
    const error = new VdpaError('GETFAMILY', 2, {}, VDPA_FAMILY_MISSING);
    assert.equal(
      error.message,
      'vdpa: the vdpa generic netlink family is not available (modprobe vdpa / vduse?) (ENOENT)',
    );
  });
});

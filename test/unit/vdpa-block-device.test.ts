import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BlockDeviceTimeoutError,
  findBlockDeviceName,
  splitRdev,
  VdpaNameError,
  virtioProbeFailed,
  waitForBlockDevice,
  waitForBlockDeviceGone,
} from '../../src/vdpa';
import { skipBecause } from '../support/skips';

describe('vdpa block device lookup', function () {
  // Real directories and polling: up to 0.33 s for a case or hook here under load.
  this.timeout(5_000);
  let root: string;
  let sysfsRoot: string;
  let devRoot: string;

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'vdpa-blk-'));
    sysfsRoot = join(root, 'sys');
    devRoot = join(root, 'dev');
    mkdirSync(join(sysfsRoot, 'bus', 'vdpa', 'devices', 'vol1', 'driver'), { recursive: true });
    mkdirSync(devRoot);
  });

  afterEach(() => rmSync(root, { recursive: true, force: true }));

  function addDisk(vdpa: string, virtio: string, disk: string): void {
    mkdirSync(join(sysfsRoot, 'bus', 'vdpa', 'devices', vdpa, virtio, 'block', disk), { recursive: true });
  }

  it('returns null when the vdpa device or its block device is missing', () => {
    assert.equal(findBlockDeviceName('vol1', { sysfsRoot }), null);
    assert.equal(findBlockDeviceName('nope', { sysfsRoot }), null);
    mkdirSync(join(sysfsRoot, 'bus', 'vdpa', 'devices', 'vol1', 'virtio3'));
    assert.equal(findBlockDeviceName('vol1', { sysfsRoot }), null);
  });

  it('finds virtio*/block/<vdX>', () => {
    addDisk('vol1', 'virtio3', 'vdb');
    assert.equal(findBlockDeviceName('vol1', { sysfsRoot }), 'vdb');
  });

  it('tells a virtio device no driver took (a failed probe) from one being served', () => {
    assert.equal(virtioProbeFailed('vol1', { sysfsRoot }), false, 'no virtio device yet');
    const virtio = join(sysfsRoot, 'bus', 'vdpa', 'devices', 'vol1', 'virtio3');
    mkdirSync(virtio);
    assert.equal(virtioProbeFailed('vol1', { sysfsRoot }), true);
    mkdirSync(join(virtio, 'driver'));
    assert.equal(virtioProbeFailed('vol1', { sysfsRoot }), false);
    assert.throws(() => virtioProbeFailed('../x', { sysfsRoot }), VdpaNameError);
  });

  it('validates the name before touching the filesystem', () => {
    assert.throws(() => findBlockDeviceName('../../etc', { sysfsRoot }), VdpaNameError);
  });

  it('times out with an error naming the vdpa device', async () => {
    const started = Date.now();
    await assert.rejects(
      waitForBlockDevice('vol1', { sysfsRoot, devRoot, timeoutMs: 100 }),
      (e: unknown) =>
        e instanceof BlockDeviceTimeoutError &&
        e.vdpaDevice === 'vol1' &&
        /vdpa device "vol1": no block device after 100 ms/.test(e.message),
    );
    assert.ok(Date.now() - started >= 100);
  });

  it('says why a vdpa device has no block device', async () => {
    const wait = (name: string) => waitForBlockDevice(name, { sysfsRoot, devRoot, timeoutMs: 20 });
    await assert.rejects(wait('gone'), /; the vdpa device does not exist\)$/);
    await assert.rejects(wait('vol1'), /; the virtio_vdpa driver is not loaded \(modprobe virtio_vdpa\)\)$/);
    mkdirSync(join(sysfsRoot, 'bus', 'vdpa', 'drivers', 'virtio_vdpa'), { recursive: true });
    mkdirSync(join(sysfsRoot, 'bus', 'vdpa', 'drivers', 'vhost_vdpa'), { recursive: true });
    await assert.rejects(wait('vol1'), /; it is bound to no driver\)$/);
    rmSync(join(sysfsRoot, 'bus', 'vdpa', 'devices', 'vol1', 'driver'), { recursive: true });
    symlinkSync('../../drivers/vhost_vdpa', join(sysfsRoot, 'bus', 'vdpa', 'devices', 'vol1', 'driver'));
    await assert.rejects(wait('vol1'), /; it is bound to vhost_vdpa, not virtio_vdpa\)$/);
  });

  it('keeps waiting while /dev/<vdX> is not a block device', async () => {
    addDisk('vol1', 'virtio0', 'vdc');
    writeFileSync(join(devRoot, 'vdc'), '');
    await assert.rejects(
      waitForBlockDevice('vol1', { sysfsRoot, devRoot, timeoutMs: 60 }),
      /sysfs shows block device vdc but .*vdc is not \(the right\) block device node/,
    );
  });

  it('returns the /dev path once a matching block device node exists', async function () {
    const disk = readdirSync('/dev').find((name) => {
      try {
        return statSync(join('/dev', name)).isBlockDevice();
      } catch {
        return false;
      }
    });
    if (!disk) skipBecause(this, 'no block device node on this machine to stand in for /dev/vdX');
    const { major, minor } = splitRdev(statSync(join('/dev', disk)).rdev);
    mkdirSync(join(sysfsRoot, 'class', 'block', disk), { recursive: true });
    writeFileSync(join(sysfsRoot, 'class', 'block', disk, 'dev'), `${major}:${minor}\n`);
    setTimeout(() => addDisk('vol1', 'virtio7', disk), 50);
    assert.equal(
      await waitForBlockDevice('vol1', { sysfsRoot, devRoot: '/dev', timeoutMs: 5000 }),
      `/dev/${disk}`,
    );
    // A node with other device numbers is not accepted.
    writeFileSync(join(sysfsRoot, 'class', 'block', disk, 'dev'), `${major + 1}:${minor}\n`);
    await assert.rejects(
      waitForBlockDevice('vol1', { sysfsRoot, devRoot: '/dev', timeoutMs: 60 }),
      BlockDeviceTimeoutError,
    );
  });

  it('waits for the block device to go away', async () => {
    addDisk('vol1', 'virtio1', 'vdd');
    setTimeout(
      () => rmSync(join(sysfsRoot, 'bus', 'vdpa', 'devices', 'vol1', 'virtio1'), { recursive: true }),
      50,
    );
    await waitForBlockDeviceGone('vol1', { sysfsRoot, timeoutMs: 5000 });
    addDisk('vol1', 'virtio2', 'vde');
    await assert.rejects(
      waitForBlockDeviceGone('vol1', { sysfsRoot, timeoutMs: 60 }),
      /block device vde still present/,
    );
  });

  it('splits dev_t like glibc', () => {
    assert.deepEqual(splitRdev((254 << 8) | 16), { major: 254, minor: 16 });
    assert.deepEqual(splitRdev(0x1000_5672_3489n), { major: 0x1234, minor: 0x56789 }); // makedev(0x1234, 0x56789)
  });
});

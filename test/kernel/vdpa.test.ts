import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  findBlockDeviceName,
  VdpaClient,
  VdpaError,
  waitForBlockDevice,
  waitForBlockDeviceGone,
} from '../../src/vdpa';

/*
 * Runs as root inside the test VM after `modprobe vduse virtio_vdpa`. A qemu-storage-daemon serves a
 * VDUSE block device; our netlink client does what `vdpa dev add/del/show` would.
 */

const CONTROL = '/dev/vduse/control';
const IMAGE_SIZE = 64 * 1024 * 1024;
const NAME = `vdpatest${process.pid}`;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function until(what: string, timeoutMs: number, probe: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** What the kernel shows about the vdpa device, for failure messages. */
function diagnostics(): string {
  const run = (cmd: string) => spawnSync('sh', ['-c', cmd], { encoding: 'utf8' }).stdout;
  return [
    run(`find /sys/bus/vdpa/devices/${NAME}/ -maxdepth 3 2>&1 | head -40`),
    run('lsmod | grep -E "virtio|vdpa|vduse"'),
    run('dmesg | tail -15'),
  ].join('\n');
}

function hasTool(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
}

describe('vdpa netlink client against the kernel (VDUSE + qemu-storage-daemon)', function () {
  this.timeout(60_000);

  let dir = '';
  let qsd: ChildProcess | null = null;
  let qsdLog = '';
  let client: VdpaClient | null = null;
  let pattern: Buffer;
  let devPath = '';

  before(async function () {
    if (!existsSync(CONTROL)) {
      throw new Error(
        `${CONTROL} is missing: this test must run as root in the test VM after "modprobe vduse virtio_vdpa"`,
      );
    }
    if (!existsSync('/sys/bus/vdpa/drivers/virtio_vdpa')) {
      // Note: `modprobe vduse virtio_vdpa` loads vduse only (virtio_vdpa becomes a module parameter).
      throw new Error('the virtio_vdpa driver is not loaded: run "modprobe -a vduse virtio_vdpa" first');
    }
    dir = mkdtempSync(join(tmpdir(), 'vdpa-kernel-'));
    const image = join(dir, 'disk.img');
    pattern = randomBytes(4096);
    writeFileSync(image, pattern);
    truncateSync(image, IMAGE_SIZE);

    const proc = spawn(
      'qemu-storage-daemon',
      [
        '--blockdev',
        `file,node-name=f,filename=${image}`,
        '--export',
        `vduse-blk,id=e,node-name=f,name=${NAME},writable=on`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    qsd = proc;
    proc.stdout?.on('data', (chunk: Buffer) => (qsdLog += chunk.toString()));
    proc.stderr?.on('data', (chunk: Buffer) => (qsdLog += chunk.toString()));
    let exited = false;
    proc.on('exit', () => (exited = true));
    await until(`/dev/vduse/${NAME}`, 30_000, () => {
      if (exited) throw new Error(`qemu-storage-daemon exited: ${qsdLog}`);
      return existsSync(`/dev/vduse/${NAME}`);
    });
    client = await VdpaClient.open();
  });

  after(async function () {
    this.timeout(60_000);
    if (client) {
      try {
        if (await client.getDevice(NAME)) await client.removeDevice(NAME);
      } finally {
        await client.close();
      }
    }
    if (qsd && qsd.exitCode === null && qsd.signalCode === null) {
      const proc = qsd;
      const gone = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      await gone;
      clearTimeout(timer);
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('lists the vduse management device with the block class', async () => {
    const mgmt = await client!.listManagementDevices();
    const vduse = mgmt.find((m) => m.handle === 'vduse');
    assert.ok(
      vduse,
      `no vduse management device in ${JSON.stringify(mgmt, (_k, v) => (typeof v === 'bigint' ? `${v}` : v))}`,
    );
    assert.equal(vduse.busName, undefined);
    assert.ok(vduse.supportedClasses?.includes('block'), `classes: ${vduse.supportedClasses}`);
  });

  it('adds the device: its block device appears, is readable and has the right size', async () => {
    // qsd creates /dev/vduse/NAME before it has set up every virtqueue; until then DEV_NEW says EINVAL.
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        await client!.addDevice(NAME);
        break;
      } catch (error) {
        if (!(error instanceof VdpaError && error.code === 'EINVAL') || Date.now() > deadline) throw error;
        await sleep(100);
      }
    }
    try {
      devPath = await waitForBlockDevice(NAME, { timeoutMs: 30_000 });
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${diagnostics()}`);
    }
    assert.match(devPath, /^\/dev\/vd[a-z]+$/);
    assert.equal(findBlockDeviceName(NAME), devPath.slice('/dev/'.length));

    const sectors = Number(readFileSync(`/sys/block/${devPath.slice(5)}/size`, 'utf8').trim());
    assert.equal(sectors * 512, IMAGE_SIZE);

    const fd = openSync(devPath, 'r');
    try {
      const head = Buffer.alloc(4096);
      assert.equal(readSync(fd, head, 0, head.length, 0), 4096);
      assert.ok(head.equals(pattern), 'the first 4 KiB of the block device differ from the image');
    } finally {
      closeSync(fd);
    }
  });

  it('getDevice and listDevices describe it', async () => {
    const info = await client!.getDevice(NAME);
    assert.ok(info);
    assert.equal(info.name, NAME);
    assert.equal(info.mgmtdev, 'vduse');
    assert.equal(info.deviceId, 2);
    assert.equal(info.deviceClass, 'block');
    assert.ok(info.maxVqs >= 1);
    assert.ok(info.maxVqSize >= 1);
    const all = await client!.listDevices();
    assert.deepEqual(
      all.find((d) => d.name === NAME),
      info,
    );
    if (hasTool('vdpa')) {
      // Cross-check with iproute2's tool (tests only).
      const shown = JSON.parse(execFileSync('vdpa', ['-j', 'dev', 'show', NAME], { encoding: 'utf8' }));
      const dev = shown.dev[NAME];
      assert.equal(dev.mgmtdev, 'vduse');
      assert.equal(dev.vendor_id, info.vendorId);
      assert.equal(dev.max_vqs, info.maxVqs);
      assert.equal(dev.max_vq_size, info.maxVqSize);
    }
  });

  it('refuses to add it twice with EEXIST', async () => {
    await assert.rejects(
      client!.addDevice(NAME),
      (e: unknown) =>
        e instanceof VdpaError &&
        e.code === 'EEXIST' &&
        e.command === 'DEV_NEW' &&
        e.message.startsWith(`vdpa: a vdpa device named "${NAME}" already exists`),
    );
  });

  it('refuses DEV_NEW without CAP_NET_ADMIN (EPERM)', () => {
    const script = `
      const { VdpaClient } = require(${JSON.stringify(join(__dirname, '../../src/vdpa'))});
      (async () => {
        const client = await VdpaClient.open();
        try { await client.addDevice('no-cap-test'); console.log(JSON.stringify({ ok: true })); }
        catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }
        finally { await client.close(); }
      })();`;
    const out = execFileSync(
      'setpriv',
      ['--inh-caps=-net_admin', '--bounding-set=-net_admin', '--', process.execPath, '-e', script],
      { encoding: 'utf8' },
    );
    const result = JSON.parse(out.trim());
    assert.equal(result.code, 'EPERM', out);
    assert.match(result.message, /needs CAP_NET_ADMIN/);
  });

  it('removes the device: the block device disappears', async () => {
    await client!.removeDevice(NAME);
    await waitForBlockDeviceGone(NAME, { timeoutMs: 30_000 });
    await until(`${devPath} to disappear`, 30_000, () => !existsSync(devPath));
    assert.equal(await client!.getDevice(NAME), null);
    assert.equal(
      (await client!.listDevices()).some((d) => d.name === NAME),
      false,
    );
  });

  it('removing it again is a not-found (ENODEV) error', async () => {
    await assert.rejects(
      client!.removeDevice(NAME),
      (e: unknown) =>
        e instanceof VdpaError &&
        e.code === 'ENODEV' &&
        e.message.startsWith(`vdpa: no vdpa device named "${NAME}"`),
    );
  });

  it('adding an unknown VDUSE name gives a clear error', async () => {
    await assert.rejects(
      client!.addDevice('no-such-dev'),
      (e: unknown) =>
        e instanceof VdpaError &&
        /^vdpa: no VDUSE device named "no-such-dev"/.test(e.message) &&
        e.code !== '',
    );
  });

  it('adding on an unknown management device gives ENODEV', async () => {
    await assert.rejects(
      client!.addDevice(NAME, 'no-such-mgmt'),
      (e: unknown) =>
        e instanceof VdpaError && e.code === 'ENODEV' && /management device "no-such-mgmt"/.test(e.message),
    );
  });
});

import assert from 'node:assert/strict';
import { readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BlkDeviceServer } from '../../src/daemon/blk-device-server';
import {
  ServedDevice,
  assertNoDevices,
  blockDeviceSize,
  requireVduse,
  run,
  runCli,
  scratchDir,
  serve,
  sh,
  sha256,
  vdpaDevices,
  vduseDevices,
  waitFor,
} from './support';

const MiB = 1024 * 1024;

interface FioReport {
  jobs: Array<{ error: number; write: { io_bytes: number }; read: { io_bytes: number } }>;
}

/** fio prints warnings (e.g. about several writers on one device) before its JSON. */
function fioJson(output: string): FioReport {
  return JSON.parse(output.slice(output.indexOf('{'))) as FioReport;
}

describe('vduse-csi blk serve on the real kernel', function () {
  this.timeout(300_000);
  let dir: string;
  let served: ServedDevice | undefined;

  before(() => requireVduse());
  beforeEach(() => {
    dir = scratchDir('blk');
  });
  afterEach(async () => {
    if (served) await served.stop();
    served = undefined;
    sh(`mountpoint -q ${dir}/mnt && umount ${dir}/mnt || true`);
    rmSync(dir, { recursive: true, force: true });
    assertNoDevices();
  });

  for (const fs of ['ext4', 'xfs'] as const) {
    it(`keeps ${fs} files across unmount, remount and a new server`, async () => {
      const image = join(dir, 'disk.img');
      const mnt = join(dir, 'mnt');
      served = await serve(['--file', image, '--size', '320M', '--name', `fs-${fs}`, '--queues', '2']);
      sh(
        `mkfs.${fs} -q ${fs === 'xfs' ? '-f' : '-F'} ${served.path} && mkdir -p ${mnt} && mount ${served.path} ${mnt}`,
      );
      sh(`head -c 5M /dev/urandom > ${mnt}/a.bin && seq 1 100000 > ${mnt}/b.txt && sync`);
      const before = [sha256(`${mnt}/a.bin`), sha256(`${mnt}/b.txt`)];
      sh(`umount ${mnt} && mount ${served.path} ${mnt}`);
      assert.deepEqual([sha256(`${mnt}/a.bin`), sha256(`${mnt}/b.txt`)], before);
      sh(`umount ${mnt}`);
      assert.equal(await served.stop(), 0);

      // The image file alone holds the filesystem: a new server over it shows the same files.
      served = await serve(['--file', image, '--name', `fs-${fs}-again`]);
      sh(`mount ${served.path} ${mnt}`);
      assert.deepEqual([sha256(`${mnt}/a.bin`), sha256(`${mnt}/b.txt`)], before);
      sh(`umount ${mnt}`);
    });
  }

  const verifyCases: Array<{ bs: string; helpers: boolean }> = [
    { bs: '4k', helpers: false },
    { bs: '64k', helpers: false },
    { bs: '1m', helpers: false },
    { bs: '1m', helpers: true },
  ];
  for (const { bs, helpers } of verifyCases) {
    const how = helpers ? ', large requests on helper threads' : '';
    it(`passes fio crc32c verification of ${bs} random writes at iodepth 32 on 2 queues${how}`, async () => {
      served = await serve([
        '--file',
        join(dir, 'fio.img'),
        '--size',
        '128M',
        '--name',
        `fio-${bs}${helpers ? '-helped' : ''}`,
        '--queues',
        '2',
        ...(helpers ? ['--large-io-helpers'] : []),
      ]);
      assert.deepEqual(readdirSync(`/sys/block/${served.path.slice(5)}/mq`).sort(), ['0', '1']);
      const report = fioJson(
        run('fio', [
          '--name=verify',
          `--filename=${served.path}`,
          '--rw=randwrite',
          `--bs=${bs}`,
          '--iodepth=32',
          '--ioengine=libaio',
          '--direct=1',
          '--numjobs=2',
          '--size=48M',
          '--offset_increment=64M',
          '--verify=crc32c',
          '--verify_fatal=1',
          '--group_reporting',
          '--output-format=json',
        ]),
      );
      const job = report.jobs[0]!;
      assert.equal(job.error, 0);
      assert.equal(job.write.io_bytes, 2 * 48 * MiB);
      assert.equal(job.read.io_bytes, 2 * 48 * MiB, 'every written block was read back and verified');
    });
  }

  it('makes fsync-ed writes durable before completing them (FLUSH), even if the server is then killed', async () => {
    const image = join(dir, 'flush.img');
    served = await serve(['--file', image, '--size', '64M', '--name', 'flush']);
    const device = served.path;
    const pattern = join(dir, 'pattern');
    sh(`head -c 1M /dev/urandom > ${pattern}`);
    // Buffered writes through the page cache, then fsync: the kernel sends FLUSH after the writes.
    sh(`dd if=${pattern} of=${device} bs=64k seek=16 conv=fsync,notrunc status=none`);
    served.process.kill('SIGKILL');
    await served.stop();
    const onDisk = readFileSync(image).subarray(MiB, 2 * MiB);
    assert.ok(onDisk.equals(readFileSync(pattern)), 'image holds the fsync-ed data');

    // A new server takes the orphaned device over; the same /dev node serves the same data.
    served = await serve(['--file', image, '--name', 'flush']);
    assert.equal(served.path, device);
    assert.equal(
      sh(`dd if=${device} bs=64k skip=16 count=16 iflag=direct status=none | sha256sum`),
      sh(`sha256sum < ${pattern}`),
    );
  });

  it('grows the device online and the mounted ext4 with it', async () => {
    const mnt = join(dir, 'mnt');
    served = await serve([
      '--file',
      join(dir, 'grow.img'),
      '--size',
      '128M',
      '--name',
      'grow',
      '--state-dir',
      dir,
    ]);
    sh(`mkfs.ext4 -q -F ${served.path} && mkdir -p ${mnt} && mount ${served.path} ${mnt}`);
    const path = served.path;
    assert.equal(blockDeviceSize(path), 128 * MiB);
    const reply = runCli(['blk', 'resize', '--name', 'grow', '--size', '256M', '--state-dir', dir]);
    assert.equal(reply.code, 0, reply.stderr);
    await waitFor('the new capacity', () => blockDeviceSize(path) === 256 * MiB);
    sh(`resize2fs ${path} >/dev/null 2>&1`);
    const blocks = Number(sh(`df --output=size -B1M ${mnt} | tail -1`).trim());
    assert.ok(blocks > 200, `ext4 grew to ${blocks} MiB`);
    assert.equal(statSync(join(dir, 'grow.img')).size, 256 * MiB);
    const shrink = runCli(['blk', 'resize', '--name', 'grow', '--size', '64M', '--state-dir', dir]);
    assert.notEqual(shrink.code, 0);
    assert.match(shrink.stderr, /refusing to shrink/);
    sh(`umount ${mnt}`);
  });

  it('reports its serial, block size and read-only flag to the kernel', async () => {
    const image = join(dir, 'ro.img');
    writeFileSync(image, Buffer.alloc(8 * MiB, 0xab));
    served = await serve(['--file', image, '--name', 'ro-4k', '--block-size', '4096', '--read-only']);
    const device = served.path;
    const disk = device.slice(5);
    assert.equal(readFileSync(`/sys/block/${disk}/serial`, 'utf8').trim(), 'ro-4k');
    assert.equal(readFileSync(`/sys/block/${disk}/queue/logical_block_size`, 'utf8').trim(), '4096');
    assert.equal(readFileSync(`/sys/block/${disk}/ro`, 'utf8').trim(), '1');
    assert.equal(
      sh(`dd if=${device} bs=4k count=1 status=none | od -An -tx1 | head -1`).trim().split(/\s+/)[0],
      'ab',
    );
    assert.throws(() => sh(`dd if=/dev/zero of=${device} bs=4k count=1 oflag=direct status=none`));
  });

  it('punches holes for discard and zeroes for write-zeroes', async () => {
    const image = join(dir, 'trim.img');
    served = await serve(['--file', image, '--size', '64M', '--name', 'trim']);
    sh(`dd if=/dev/urandom of=${served.path} bs=1M count=16 oflag=direct status=none`);
    const allocated = statSync(image).blocks * 512;
    assert.ok(allocated >= 16 * MiB);
    sh(`blkdiscard --offset 0 --length 8M ${served.path}`);
    assert.ok(statSync(image).blocks * 512 <= allocated - 8 * MiB, 'discard released the space');
    sh(`blkdiscard --zeroout --offset 8M --length 4M ${served.path}`);
    const zeroes = readFileSync(image).subarray(8 * MiB, 12 * MiB);
    assert.ok(zeroes.every((byte) => byte === 0));
  });

  it('refuses bad arguments, a missing image size and a name already served, leaving nothing behind', async () => {
    const image = join(dir, 'dup.img');
    for (const args of [
      ['blk', 'serve'],
      ['blk', 'serve', '--file', image, '--queues', '0'],
      ['blk', 'serve', '--file', image, '--queue-size', '100'],
      ['blk', 'serve', '--file', image, '--block-size', '1000'],
      ['blk', 'serve', '--file', image, '--name', '../etc'],
      ['blk', 'serve', '--file', image],
    ]) {
      const result = runCli(args);
      assert.equal(result.code, 1, args.join(' '));
      assert.match(result.stderr, /^vduse-csi: .+\n$/);
    }
    assert.deepEqual(readdirSync(dir), [], 'no image was created');
    assertNoDevices();

    served = await serve(['--file', image, '--size', '16M', '--name', 'dup']);
    const second = runCli(['blk', 'serve', '--file', image, '--name', 'dup']);
    assert.equal(second.code, 1);
    assert.match(second.stderr, /already served by another process/);
    const other = runCli([
      'blk',
      'serve',
      '--file',
      join(dir, 'other.img'),
      '--size',
      '16M',
      '--name',
      'dup',
    ]);
    assert.equal(other.code, 1);
    assert.match(other.stderr, /dup serves .*dup\.img, not .*other\.img/);
    assert.deepEqual(readdirSync(dir), ['dup.img']);
    assert.deepEqual(vduseDevices(), ['dup']);
    assert.deepEqual(vdpaDevices(), ['dup']);
    sh(`dd if=${served.path} of=/dev/null bs=1M count=1 iflag=direct status=none`);
  });

  it('serves several devices from one process and removes them all on SIGTERM', async () => {
    const names = ['multi0', 'multi1', 'multi2', 'multi3'];
    const args = names.flatMap((name) => ['--file', join(dir, `${name}.img`), '--name', name]);
    served = await serve([...args, '--size', '16M', '--queues', '2']);
    await waitFor('four devices', () => vdpaDevices().length === 4);
    const threads = readdirSync(`/proc/${served.process.pid}/task`).length;
    for (const name of names) {
      const disk = readdirSync(`/sys/bus/vdpa/devices/${name}`).find((entry) => entry.startsWith('virtio'));
      const block = readdirSync(`/sys/bus/vdpa/devices/${name}/${disk}/block`)[0]!;
      sh(`echo ${name} | dd of=/dev/${block} oflag=direct,sync bs=512 conv=sync status=none`);
      assert.equal(
        sh(`dd if=/dev/${block} bs=512 count=1 iflag=direct status=none | head -c ${name.length}`),
        name,
      );
    }
    assert.ok(threads < 20, `one process, shared threads (${threads} tasks)`);
    assert.equal(await served.stop(), 0);
    served = undefined;
    assertNoDevices();
  });

  it('releases every descriptor and device when stopped (library use)', async () => {
    // What each descriptor is, so a failure names what was left open.
    const openFds = (): string[] =>
      readdirSync('/proc/self/fd')
        .map((fd) => {
          try {
            return readlinkSync(`/proc/self/fd/${fd}`);
          } catch {
            return '(closed while listed)';
          }
        })
        .sort();
    const serveAndStop = async (round: number): Promise<void> => {
      const server = await BlkDeviceServer.start({
        name: `leak${round}`,
        backend: { kind: 'file', path: join(dir, `leak${round}.img`) },
        sizeBytes: 16 * MiB,
        queues: 2,
        queueSize: 128,
        blockSize: 512,
        readOnly: false,
        keepAllocation: false,
        copyDirs: [dir],
        logLevel: 'warn',
        stateDir: dir,
      });
      sh(`dd if=/dev/zero of=${server.path} bs=64k count=16 oflag=direct status=none`);
      await server.stop();
      assertNoDevices();
    };
    // The first server of a process opens what the process keeps for good (the shared device
    // threads; run alone, this test also saw a /dev/null descriptor appear): counted from after
    // it, 3 more must leave nothing behind.
    await serveAndStop(0);
    const baseline = openFds();
    for (let round = 1; round <= 3; round++) await serveAndStop(round);
    const after = openFds();
    assert.equal(
      after.length,
      baseline.length,
      `open before: ${baseline.join(' ')}\nafter: ${after.join(' ')}`,
    );
  });
});

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CsiHarness, MiB, Reply, blockCapability, mountCapability } from '../support/csi-harness';
import { Published, assertNothingLeft, stageAndPublish, unpublishAndUnstage } from '../e2e/kubelet-flow';
import { CLI, ServedDevice, assertNoDevices, requireVduse, scratchDir, serve, sh, waitFor } from './support';

/*
 * A thick volume keeps its reservation on the real kernel: a pod's fstrim on its ext4 filesystem
 * and blkdiscard on a Block volume reach the device server as DISCARD (and ext4's lazy inode table
 * init as WRITE_ZEROES with unmap), and the thick images keep every block allocated while the thin
 * ones beside them give the discarded blocks back. A server that takes a thick device over without
 * being told keeps the mode from the device record. The data directory is the rig's tmpfs scratch
 * (the VM cannot loop-mount an ext4 one): tmpfs has no ZERO_RANGE, so a thick device's discards do
 * nothing and its write-zeroes write zeroes; ZERO_RANGE on ext4 is covered by the unit test
 * file-backend-allocation.
 */

const MOUNT_BYTES = 64 * MiB;
const BLOCK_BYTES = 16 * MiB;
const WRITTEN_MIB = 8;

/** The bytes of the data directory's filesystem an image takes (stat -c %b, in 512-byte units). */
function allocatedBytes(image: string): number {
  return Number(sh(`stat -c %b ${image}`).trim()) * 512;
}

function run(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  assert.equal(result.status, 0, `${command} ${args.join(' ')} failed: ${result.stderr}`);
  return result.stdout;
}

describe("keep-allocation on the real kernel: discards never free a thick volume's blocks", function () {
  let root = '';
  let csi: CsiHarness | undefined;

  before(async () => {
    requireVduse();
    root = scratchDir('keep-allocation');
    csi = await CsiHarness.start({ cli: [process.execPath, CLI], root, mode: 'all', standby: false });
  });
  after(async () => {
    await csi?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  const image = (volumeId: string): string => join(csi!.options.dataDir, 'volumes', `${volumeId}.img`);
  const create = async (
    name: string,
    bytes: number,
    kind: 'ext4' | 'block',
    provisioning: string,
  ): Promise<string> => {
    const reply: Reply = await csi!.call('controller', 'CreateVolume', {
      name,
      capacity_range: { required_bytes: bytes },
      volume_capabilities: [kind === 'block' ? blockCapability() : mountCapability('ext4')],
      parameters: { provisioning },
    });
    return reply.volume.volume_id;
  };

  it('fstrim on ext4 and blkdiscard on a Block volume: thick images stay whole, thin ones shrink', async () => {
    const ids = {
      thickMount: await create('keep-thick-mount', MOUNT_BYTES, 'ext4', 'thick'),
      thinMount: await create('keep-thin-mount', MOUNT_BYTES, 'ext4', 'thin'),
      thickBlock: await create('keep-thick-block', BLOCK_BYTES, 'block', 'thick'),
      thinBlock: await create('keep-thin-block', BLOCK_BYTES, 'block', 'thin'),
    };
    assert.ok(allocatedBytes(image(ids.thickMount)) >= MOUNT_BYTES, 'the thick image is reserved when made');
    assert.ok(allocatedBytes(image(ids.thickBlock)) >= BLOCK_BYTES);
    const published: Published[] = [];
    for (const [id, kind] of [
      [ids.thickMount, 'ext4'],
      [ids.thinMount, 'ext4'],
      [ids.thickBlock, 'block'],
      [ids.thinBlock, 'block'],
    ] as const)
      published.push(await stageAndPublish(csi!, kind, id, `pod-${id}`));
    const [thickMount, thinMount, thickBlock, thinBlock] = published as [
      Published,
      Published,
      Published,
      Published,
    ];

    // A pod writes a file, deletes it and trims: the thin image gives the file's blocks back.
    for (const volume of [thickMount, thinMount]) {
      sh(`dd if=/dev/urandom of=${volume.target}/data bs=1M count=${WRITTEN_MIB} conv=fsync status=none`);
    }
    const thinWritten = allocatedBytes(image(ids.thinMount));
    assert.ok(thinWritten >= WRITTEN_MIB * MiB, `the thin image holds the file: ${thinWritten} bytes`);
    for (const volume of [thickMount, thinMount]) {
      sh(`rm ${volume.target}/data && sync -f ${volume.target}`);
      // DISCARD is still offered on a thick device: fstrim works there (and trims something).
      assert.match(run('fstrim', ['-v', volume.target]), /\([1-9]\d* bytes\) trimmed/);
    }
    const thinTrimmed = allocatedBytes(image(ids.thinMount));
    assert.ok(
      thinTrimmed <= thinWritten - (WRITTEN_MIB - 1) * MiB,
      `fstrim freed the thin image's blocks: ${thinWritten} -> ${thinTrimmed} bytes`,
    );
    assert.ok(
      allocatedBytes(image(ids.thickMount)) >= MOUNT_BYTES,
      `the thick image stays whole after fstrim: ${allocatedBytes(image(ids.thickMount))} of ${MOUNT_BYTES} bytes`,
    );

    // Block volumes: written, then all of them discarded.
    for (const volume of [thickBlock, thinBlock]) {
      sh(`dd if=/dev/urandom of=${volume.target} bs=1M count=${WRITTEN_MIB} oflag=direct status=none`);
    }
    assert.ok(allocatedBytes(image(ids.thinBlock)) >= WRITTEN_MIB * MiB);
    for (const volume of [thickBlock, thinBlock]) run('blkdiscard', [volume.target]);
    assert.ok(
      allocatedBytes(image(ids.thinBlock)) < MiB,
      `blkdiscard freed the thin image: ${allocatedBytes(image(ids.thinBlock))} bytes left`,
    );
    assert.ok(
      allocatedBytes(image(ids.thickBlock)) >= BLOCK_BYTES,
      `the thick image stays whole after blkdiscard: ${allocatedBytes(image(ids.thickBlock))} of ${BLOCK_BYTES} bytes`,
    );

    for (const volume of published) {
      await unpublishAndUnstage(csi!, volume);
      await csi!.call('controller', 'DeleteVolume', { volume_id: volume.volumeId });
    }
    assertNothingLeft(csi!);
  });

  it('a server that takes a thick device over keeps the mode from the device record', async () => {
    const dir = join(root, 'takeover');
    mkdirSync(dir, { recursive: true });
    const imagePath = join(dir, 'thick.img');
    sh(`fallocate -l ${BLOCK_BYTES} ${imagePath}`);
    const common = ['--file', imagePath, '--name', 'keepalloc', '--state-dir', join(dir, 'state')];
    let server: ServedDevice | undefined = await serve([...common, '--keep-allocation']);
    try {
      const record = JSON.parse(readFileSync(join(dir, 'state', 'devices', 'keepalloc.json'), 'utf8')) as {
        geometry: { keepAllocation: boolean };
      };
      assert.equal(record.geometry.keepAllocation, true, 'the device record has the mode');
      const killed = server.process;
      server = undefined;
      killed.kill('SIGKILL');
      await waitFor(
        'the killed server to exit',
        () => killed.exitCode !== null || killed.signalCode !== null,
      );
      // Taken over without --keep-allocation: the record says so.
      server = await serve(common);
      sh(`dd if=/dev/urandom of=${server.path} bs=1M count=${WRITTEN_MIB} oflag=direct status=none`);
      run('blkdiscard', [server.path]);
      assert.ok(
        statSync(imagePath).blocks * 512 >= BLOCK_BYTES,
        `the image stays whole after blkdiscard: ${statSync(imagePath).blocks * 512} of ${BLOCK_BYTES} bytes`,
      );
    } finally {
      if (server) assert.equal(await server.stop(), 0, server.stderr());
    }
    assertNoDevices();
  });
});

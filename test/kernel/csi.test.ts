import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CsiHarness, MiB, Reply, mountCapability } from '../support/csi-harness';
import { assertNothingLeft, createPublished, kubeletFlow, removePublished } from '../e2e/kubelet-flow';
import { CLI, requireVduse, scratchDir, sh, waitFor } from './support';

/** fio with crc32c verification of everything it wrote; resolves with its exit code and output. */
function startFio(
  directory: string,
  sizeMiB: number,
): { done: Promise<{ code: number | null; output: string }>; process: ChildProcess } {
  const child = spawn(
    'fio',
    [
      '--name=verify',
      `--directory=${directory}`,
      '--rw=randwrite',
      '--bs=4k',
      `--size=${sizeMiB}M`,
      '--ioengine=libaio',
      '--iodepth=32',
      '--direct=1',
      '--verify=crc32c',
      '--do_verify=1',
      '--verify_fatal=1',
      '--output-format=json',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  return {
    process: child,
    done: new Promise((resolve) => child.once('exit', (code) => resolve({ code, output }))),
  };
}

/**
 * The reference flow for NodeStageVolume latency: per volume, qemu-storage-daemon's vduse-blk
 * export, `vdpa dev add`, wait for /dev/vdX, mkfs.ext4 and mount; `count` of them at once, as in the
 * test. Returns each volume's milliseconds and removes everything again.
 */
async function qemuReferenceStages(root: string, count: number): Promise<number[]> {
  const stage = async (index: number): Promise<{ ms: number; daemon: ChildProcess; mountPoint: string }> => {
    const name = `qsd${index}`;
    const image = join(root, `${name}.img`);
    const mountPoint = join(root, `${name}-mnt`);
    mkdirSync(mountPoint);
    sh(`truncate -s 64M ${image}`);
    const started = performance.now();
    const daemon = spawn(
      'qemu-storage-daemon',
      [
        '--blockdev',
        `file,node-name=f,filename=${image}`,
        '--export',
        `vduse-blk,id=e,node-name=f,name=${name},num-queues=1,writable=on`,
      ],
      { stdio: 'ignore' },
    );
    await waitFor(`/dev/vduse/${name}`, () => existsSync(`/dev/vduse/${name}`), 120_000);
    sh(`vdpa dev add name ${name} mgmtdev vduse`);
    await waitFor(
      `the block device of ${name}`,
      () => sh(`ls /sys/bus/vdpa/devices/${name}/virtio*/block 2>/dev/null || true`).trim() !== '',
      120_000,
    );
    const device = `/dev/${sh(`ls /sys/bus/vdpa/devices/${name}/virtio*/block`).trim()}`;
    await waitFor(device, () => existsSync(device), 60_000);
    sh(
      `mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1,nodiscard ${device} && mount ${device} ${mountPoint}`,
    );
    return { ms: performance.now() - started, daemon, mountPoint };
  };
  const staged = await Promise.all(Array.from({ length: count }, (_, index) => stage(index)));
  for (const [index, { daemon, mountPoint }] of staged.entries()) {
    sh(`umount ${mountPoint} && vdpa dev del qsd${index}`);
    const exited = new Promise((resolve) => daemon.once('exit', resolve));
    daemon.kill('SIGTERM');
    await exited;
  }
  return staged.map(({ ms }) => ms);
}

function percentile(sorted: number[], fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)]!;
}

describe('CSI plugin on the real kernel', function () {
  this.timeout(1_200_000);
  let csi: CsiHarness;

  before(async () => {
    requireVduse();
    csi = await CsiHarness.start({ cli: [process.execPath, CLI], root: scratchDir('csi'), mode: 'all' });
  });
  after(async () => {
    await csi?.stop();
  });

  for (const kind of ['ext4', 'xfs', 'block'] as const) {
    it(`runs the kubelet flow for ${kind}: stage, publish, data, restage, expand, snapshot, restore, clean-up`, async () => {
      await kubeletFlow(csi, kind);
    });
  }

  it('keeps I/O going while the plugin is killed with SIGKILL, and the new plugin adopts the volume', async () => {
    const published = await createPublished(csi, 'ext4', 'kill-plugin');
    const { volumeId, target } = published;
    const fio = startFio(target, 96);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    await csi.stopPlugin('SIGKILL');
    await csi.startPlugin();
    const result = await fio.done;
    assert.equal(result.code, 0, result.output);
    const job = (JSON.parse(result.output.slice(result.output.indexOf('{'))) as Reply).jobs[0];
    assert.equal(job.error, 0);
    const stats = await csi.call('node', 'NodeGetVolumeStats', {
      volume_id: volumeId,
      volume_path: target,
    });
    assert.equal(stats.volume_condition.abnormal, false, stats.volume_condition.message);
    await removePublished(csi, published);
    assertNothingLeft(csi);
  });

  // Without standby servers: 32 node processes starting at once on the rig's two emulated CPUs take
  // longer than any sane NodeStage timeout; standby takeover has tests of its own (restart.test.ts).
  it('stages and publishes 16 volumes at once, then tears them all down without a leak', async () => {
    const csi = await CsiHarness.start({
      cli: [process.execPath, CLI],
      root: scratchDir('many'),
      mode: 'all',
      standby: false,
    });
    const capability = mountCapability();
    const volumes: Array<{ id: string; staging: string; target: string }> = [];
    for (let index = 0; index < 16; index++) {
      const { volume } = await csi.call('controller', 'CreateVolume', {
        name: `many-${index}`,
        capacity_range: { required_bytes: 64 * MiB },
        volume_capabilities: [capability],
      });
      const staging = join(csi.root, 'many', `staging-${index}`);
      mkdirSync(staging, { recursive: true });
      volumes.push({ id: volume.volume_id, staging, target: join(csi.root, 'many', `target-${index}`) });
    }
    const stageMs: number[] = [];
    await Promise.all(
      volumes.map(async ({ id, staging, target }) => {
        const started = performance.now();
        await csi.call('node', 'NodeStageVolume', {
          volume_id: id,
          staging_target_path: staging,
          volume_capability: capability,
        });
        stageMs.push(performance.now() - started);
        await csi.call('node', 'NodePublishVolume', {
          volume_id: id,
          staging_target_path: staging,
          target_path: target,
          volume_capability: capability,
        });
        writeFileSync(join(target, 'hello'), id);
      }),
    );
    await Promise.all(
      volumes.map(async ({ id, staging, target }) => {
        await csi.call('node', 'NodeUnpublishVolume', { volume_id: id, target_path: target });
        await csi.call('node', 'NodeUnstageVolume', { volume_id: id, staging_target_path: staging });
        await csi.call('controller', 'DeleteVolume', { volume_id: id });
      }),
    );
    assertNothingLeft(csi);
    await csi.stop();
    const qemuMs = await qemuReferenceStages(scratchDir('qemu-stage'), 16);
    const summary = (samples: number[]): object => {
      const sorted = [...samples].sort((a, b) => a - b);
      return { median: Math.round(percentile(sorted, 0.5)), p95: Math.round(percentile(sorted, 0.95)) };
    };
    const figures = {
      concurrentNodeStageMs: summary(stageMs),
      qemuStorageDaemonVdpaMkfsMountMs: summary(qemuMs),
      ratioMedian:
        percentile(
          [...stageMs].sort((a, b) => a - b),
          0.5,
        ) /
        percentile(
          [...qemuMs].sort((a, b) => a - b),
          0.5,
        ),
    };
    if (process.env.VDUSE_CSI_OUT)
      writeFileSync(join(process.env.VDUSE_CSI_OUT, 'csi-figures.json'), JSON.stringify(figures, null, 2));
  });
});

import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CsiHarness, MiB, mountCapability } from '../support/csi-harness';
import {
  assertNothingLeft,
  createPublished,
  kubeletFlow,
  readDigest,
  removePublished,
  writeData,
} from '../e2e/kubelet-flow';
import { CLI, requireVduse, scratchDir, sh, shAsync, waitFor } from './support';
import { fioLoop, readPasses } from './fio-loop';
import { daemonStatus } from '../support/daemon-processes';
import { waitForBlockDevice } from '../../src/vdpa';

/**
 * The reference flow for NodeStageVolume latency: per volume, qemu-storage-daemon's vduse-blk
 * export, `vdpa dev add`, wait for /dev/vdX, mkfs.ext4 and mount; `count` of them at once, as in the
 * test. Returns each volume's milliseconds and removes everything again.
 */
async function qemuReferenceStages(
  root: string,
  count: number,
  order: 'at once' | 'one after another',
): Promise<number[]> {
  const stage = async (index: number): Promise<{ ms: number; daemon: ChildProcess; mountPoint: string }> => {
    const name = `qsd${index}`;
    const image = join(root, `${name}.img`);
    const mountPoint = join(root, `${name}-mnt`);
    mkdirSync(mountPoint);
    await shAsync(`truncate -s 64M ${image}`);
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
    // Each step without blocking this process: at once, the 16 flows overlap as the 16 stages do.
    await shAsync(`vdpa dev add name ${name} mgmtdev vduse`);
    const device = await waitForBlockDevice(name, { timeoutMs: 120_000 });
    await shAsync(
      `mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1,nodiscard ${device} && mount ${device} ${mountPoint}`,
    );
    return { ms: performance.now() - started, daemon, mountPoint };
  };
  const staged: Array<Awaited<ReturnType<typeof stage>>> = [];
  if (order === 'at once')
    staged.push(...(await Promise.all(Array.from({ length: count }, (_, index) => stage(index)))));
  else for (let index = 0; index < count; index++) staged.push(await stage(index));
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

interface ManyVolume {
  id: string;
  staging: string;
  target: string;
}

/** Median and p95 of our NodeStageVolume and of the reference flow, and the ratio of the medians. */
function stageFigures(oursMs: number[], qemuMs: number[]): object {
  const summary = (samples: number[]): { median: number; p95: number } => {
    const sorted = [...samples].sort((a, b) => a - b);
    return { median: Math.round(percentile(sorted, 0.5)), p95: Math.round(percentile(sorted, 0.95)) };
  };
  const ours = summary(oursMs);
  const qemu = summary(qemuMs);
  return {
    nodeStageMs: ours,
    qemuStorageDaemonVdpaMkfsMountMs: qemu,
    ratioMedian: Math.round((ours.median / qemu.median) * 100) / 100,
    ratioP95: Math.round((ours.p95 / qemu.p95) * 100) / 100,
  };
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

  it('keeps I/O going while the plugin is killed with SIGKILL 5 times: the device daemon is never touched, each new plugin adopts the volume', async () => {
    const published = await createPublished(csi, 'ext4', 'kill-plugin');
    const { volumeId, target } = published;
    const daemonBefore = (await daemonStatus(csi.options.stateDir))!;
    const out = scratchDir('fio-kill-plugin');
    const stopFile = join(out, 'stop');
    const fio = fioLoop(target, false, out, stopFile);
    const fioDone = new Promise<number | null>((resolve) => fio.once('exit', resolve));
    for (let kill = 0; kill < 5; kill++) {
      await new Promise((resolve) => setTimeout(resolve, 1000 + Math.random() * 2000));
      await csi.stopPlugin('SIGKILL');
      await csi.startPlugin();
    }
    writeFileSync(stopFile, '');
    assert.equal(await fioDone, 0);
    const passes = readPasses(out);
    assert.ok(passes.length >= 1, 'fio completed a pass');
    assert.deepEqual(
      passes.filter((pass) => pass.errors !== 0),
      [],
    );
    const daemonAfter = (await daemonStatus(csi.options.stateDir))!;
    assert.equal(daemonAfter.pid, daemonBefore.pid, 'the same daemon served throughout');
    console.log(
      `      5 plugin kills: ${passes.length} fio passes, longest I/O ${Math.max(...passes.map((pass) => pass.maxLatencyMs)).toFixed(0)} ms`,
    );
    const stats = await csi.call('node', 'NodeGetVolumeStats', {
      volume_id: volumeId,
      volume_path: target,
    });
    assert.equal(stats.volume_condition.abnormal, false, stats.volume_condition.message);
    await removePublished(csi, published);
    assertNothingLeft(csi);
  });

  // NodeStageVolume latency is measured twice, beside the qemu-storage-daemon flow each time: 16
  // volumes at once (contention on the rig's two emulated CPUs), and 16 one after another.
  it('stages and publishes 16 volumes at once (each keeps its own data), then stages 16 one after another, tearing all down without a leak', async () => {
    const csi = await CsiHarness.start({
      cli: [process.execPath, CLI],
      root: scratchDir('many'),
      mode: 'all',
      standby: false,
    });
    const capability = mountCapability();
    const createVolumes = async (prefix: string, count = 16): Promise<ManyVolume[]> => {
      const volumes: ManyVolume[] = [];
      for (let index = 0; index < count; index++) {
        const { volume } = await csi.call('controller', 'CreateVolume', {
          name: `${prefix}-${index}`,
          capacity_range: { required_bytes: 64 * MiB },
          volume_capabilities: [capability],
        });
        const staging = join(csi.root, prefix, `staging-${index}`);
        mkdirSync(staging, { recursive: true });
        volumes.push({ id: volume.volume_id, staging, target: join(csi.root, prefix, `target-${index}`) });
      }
      return volumes;
    };
    const stage = async ({ id, staging }: ManyVolume): Promise<number> => {
      const started = performance.now();
      await csi.call('node', 'NodeStageVolume', {
        volume_id: id,
        staging_target_path: staging,
        volume_capability: capability,
      });
      return performance.now() - started;
    };
    const tearDown = (volumes: ManyVolume[]): Promise<unknown> =>
      Promise.all(
        volumes.map(async ({ id, staging, target }) => {
          await csi.call('node', 'NodeUnpublishVolume', { volume_id: id, target_path: target });
          await csi.call('node', 'NodeUnstageVolume', { volume_id: id, staging_target_path: staging });
          await csi.call('controller', 'DeleteVolume', { volume_id: id });
        }),
      );

    // In a cluster the node's device daemon runs before any stage (the chart's device-daemon pod);
    // here the plugin starts it at its first stage, so one volume goes through first: the figures
    // time stages, not the daemon's start.
    const [warmUp] = await createVolumes('warm-up', 1);
    await stage(warmUp!);
    await tearDown([warmUp!]);

    const concurrent = await createVolumes('many');
    const concurrentMs: number[] = [];
    await Promise.all(
      concurrent.map(async (volume) => {
        concurrentMs.push(await stage(volume));
        await csi.call('node', 'NodePublishVolume', {
          volume_id: volume.id,
          staging_target_path: volume.staging,
          target_path: volume.target,
          volume_capability: capability,
        });
      }),
    );
    // Written once all 16 are up (a write blocks this process, which times the stages), then read
    // back from every device (O_DIRECT): each volume holds its own data, nothing lost or crossed.
    const digests = concurrent.map(({ target }) => writeData('ext4', target, 'data', 0));
    for (const [index, { id, target }] of concurrent.entries())
      assert.equal(readDigest('ext4', target, 'data', 0), digests[index], `the data of ${id}`);
    await tearDown(concurrent);
    assertNothingLeft(csi);

    const sequential = await createVolumes('one-by-one');
    const sequentialMs: number[] = [];
    for (const volume of sequential) sequentialMs.push(await stage(volume));
    await tearDown(sequential);
    assertNothingLeft(csi);
    await csi.stop();

    const figures = {
      concurrent: stageFigures(
        concurrentMs,
        await qemuReferenceStages(scratchDir('qemu-stage'), 16, 'at once'),
      ),
      oneAfterAnother: stageFigures(
        sequentialMs,
        await qemuReferenceStages(scratchDir('qemu-stage-seq'), 16, 'one after another'),
      ),
    };
    if (process.env.VDUSE_CSI_OUT)
      writeFileSync(join(process.env.VDUSE_CSI_OUT, 'csi-figures.json'), JSON.stringify(figures, null, 2));
  });
});

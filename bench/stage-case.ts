import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { waitForBlockDevice } from '../src/vdpa';
import { CLI, sh, shAsync, waitFor } from '../test/kernel/support';
import { CsiHarness, MiB, mountCapability } from '../test/support/csi-harness';
import { log } from './log';

/** Median and 95th percentile of one series of stages, in ms. */
export interface StageTimes {
  median: number;
  p95: number;
}

export interface StageComparison {
  nodeStageMs: StageTimes;
  qemuStorageDaemonVdpaMkfsMountMs: StageTimes;
  ratioMedian: number;
  ratioP95: number;
}

export interface StageFigures {
  volumes: number;
  atOnce: StageComparison;
  oneAfterAnother: StageComparison;
}

type Order = 'at once' | 'one after another';

const VOLUME_MIB = 64;
const READY_TIMEOUT_MS = 120_000;

function percentile(sorted: number[], fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)]!;
}

function times(samples: number[]): StageTimes {
  const sorted = [...samples].sort((a, b) => a - b);
  return { median: Math.round(percentile(sorted, 0.5)), p95: Math.round(percentile(sorted, 0.95)) };
}

/** Our NodeStageVolume times beside the reference flow's, and the ratios of median and p95. */
export function compareStages(oursMs: number[], qemuMs: number[]): StageComparison {
  const ours = times(oursMs);
  const qemu = times(qemuMs);
  return {
    nodeStageMs: ours,
    qemuStorageDaemonVdpaMkfsMountMs: qemu,
    ratioMedian: Math.round((ours.median / qemu.median) * 100) / 100,
    ratioP95: Math.round((ours.p95 / qemu.p95) * 100) / 100,
  };
}

async function inOrder<T>(count: number, order: Order, step: (index: number) => Promise<T>): Promise<T[]> {
  if (order === 'at once') return Promise.all(Array.from({ length: count }, (_, index) => step(index)));
  const results: T[] = [];
  for (let index = 0; index < count; index++) results.push(await step(index));
  return results;
}

/**
 * NodeStageVolume of ext4 volumes through our plugin (mode all, local store, the node's device
 * daemon started by the plugin), `count` of them in `order`, each volume unstaged and deleted after.
 */
async function ourStages(csi: CsiHarness, prefix: string, count: number, order: Order): Promise<number[]> {
  const capability = mountCapability();
  const volumes = await inOrder(count, 'one after another', async (index) => {
    const { volume } = await csi.call('controller', 'CreateVolume', {
      name: `${prefix}-${index}`,
      capacity_range: { required_bytes: VOLUME_MIB * MiB },
      volume_capabilities: [capability],
    });
    const staging = join(csi.root, prefix, `staging-${index}`);
    mkdirSync(staging, { recursive: true });
    return { id: volume.volume_id as string, staging };
  });
  const stageMs = await inOrder(count, order, async (index) => {
    const { id, staging } = volumes[index]!;
    const started = performance.now();
    await csi.call('node', 'NodeStageVolume', {
      volume_id: id,
      staging_target_path: staging,
      volume_capability: capability,
    });
    return performance.now() - started;
  });
  for (const { id, staging } of volumes) {
    await csi.call('node', 'NodeUnstageVolume', { volume_id: id, staging_target_path: staging });
    await csi.call('controller', 'DeleteVolume', { volume_id: id });
  }
  return stageMs;
}

/**
 * The reference flow for NodeStageVolume: per volume, qemu-storage-daemon's vduse-blk export,
 * `vdpa dev add`, wait for /dev/vdX, mkfs.ext4 and mount; `count` of them in `order`. Returns each
 * volume's milliseconds and removes everything again.
 */
async function qemuStages(root: string, count: number, order: Order): Promise<number[]> {
  mkdirSync(root, { recursive: true });
  const stage = async (index: number): Promise<{ ms: number; daemon: ChildProcess; mountPoint: string }> => {
    const name = `qsd${index}`;
    const image = join(root, `${name}.img`);
    const mountPoint = join(root, `${name}-mnt`);
    mkdirSync(mountPoint);
    await shAsync(`truncate -s ${VOLUME_MIB}M ${image}`);
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
    await waitFor(`/dev/vduse/${name}`, () => existsSync(`/dev/vduse/${name}`), READY_TIMEOUT_MS);
    // Each step without blocking this process: at once, the flows overlap as our stages do.
    await shAsync(`vdpa dev add name ${name} mgmtdev vduse`);
    const device = await waitForBlockDevice(name, { timeoutMs: READY_TIMEOUT_MS });
    await shAsync(
      `mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1,nodiscard ${device} && mount ${device} ${mountPoint}`,
    );
    return { ms: performance.now() - started, daemon, mountPoint };
  };
  const staged = await inOrder(count, order, stage);
  for (const [index, { daemon, mountPoint }] of staged.entries()) {
    sh(`umount ${mountPoint} && vdpa dev del qsd${index}`);
    const exited = new Promise((resolve) => daemon.once('exit', resolve));
    daemon.kill('SIGTERM');
    await exited;
  }
  return staged.map(({ ms }) => ms);
}

/**
 * NodeStageVolume latency, `volumes` at once and as many one after another, beside the
 * qemu-storage-daemon flow doing the same. In a cluster the node's device daemon runs before any
 * stage (the chart's device-daemon pod); here the plugin starts it at its first stage, so one
 * volume goes through first, unmeasured.
 */
export async function stageCase(scratchDir: string, volumes: number): Promise<StageFigures> {
  const root = join(scratchDir, 'stage-case');
  const csi = await CsiHarness.start({
    cli: [process.execPath, CLI],
    root: join(root, 'plugin'),
    mode: 'all',
    standby: false,
  });
  let ours: Record<Order, number[]>;
  try {
    await ourStages(csi, 'warm-up', 1, 'at once');
    ours = {
      'at once': await ourStages(csi, 'at-once', volumes, 'at once'),
      'one after another': await ourStages(csi, 'one-by-one', volumes, 'one after another'),
    };
  } finally {
    await csi.stop();
  }
  const qemuAtOnce = await qemuStages(join(root, 'qemu-at-once'), volumes, 'at once');
  const qemuOneByOne = await qemuStages(join(root, 'qemu-one-by-one'), volumes, 'one after another');
  const figures = {
    volumes,
    atOnce: compareStages(ours['at once'], qemuAtOnce),
    oneAfterAnother: compareStages(ours['one after another'], qemuOneByOne),
  };
  log(`stage case: ${JSON.stringify(figures)}`);
  return figures;
}

import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
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
import { CLI, requireVduse, scratchDir } from './support';
import { fioLoop, readPasses } from './fio-loop';
import { daemonStatus } from '../support/daemon-processes';

interface ManyVolume {
  id: string;
  staging: string;
  target: string;
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

  // NodeStageVolume latency beside the qemu-storage-daemon flow is a benchmark figure (npm run
  // bench, the stage case); this is what 16 concurrent stages must get right.
  it('stages and publishes 16 volumes at once, each keeps its own data, and tears all down without a leak', async () => {
    const csi = await CsiHarness.start({
      cli: [process.execPath, CLI],
      root: scratchDir('many'),
      mode: 'all',
      standby: false,
    });
    const capability = mountCapability();
    const volumes: ManyVolume[] = [];
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
    await Promise.all(
      volumes.map(async ({ id, staging, target }) => {
        await csi.call('node', 'NodeStageVolume', {
          volume_id: id,
          staging_target_path: staging,
          volume_capability: capability,
        });
        await csi.call('node', 'NodePublishVolume', {
          volume_id: id,
          staging_target_path: staging,
          target_path: target,
          volume_capability: capability,
        });
      }),
    );
    // Read back from every device (O_DIRECT): each volume holds its own data, nothing lost or crossed.
    const digests = volumes.map(({ target }) => writeData('ext4', target, 'data', 0));
    for (const [index, { id, target }] of volumes.entries())
      assert.equal(readDigest('ext4', target, 'data', 0), digests[index], `the data of ${id}`);
    await Promise.all(
      volumes.map(async ({ id, staging, target }) => {
        await csi.call('node', 'NodeUnpublishVolume', { volume_id: id, target_path: target });
        await csi.call('node', 'NodeUnstageVolume', { volume_id: id, staging_target_path: staging });
        await csi.call('controller', 'DeleteVolume', { volume_id: id });
      }),
    );
    assertNothingLeft(csi);
    await csi.stop();
  });
});

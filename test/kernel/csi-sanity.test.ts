import assert from 'node:assert/strict';
import { findMounts } from '../../src/node/mountinfo';
import { CsiHarness, GiB, Reply } from '../support/csi-harness';
import { assertNothingLeft, sizeSeenByPod } from '../e2e/kubelet-flow';
import { REPEATS, SuiteCase, pathKind, suiteCapability } from '../support/sanity-suite';
import { CLI, requireVduse, scratchDir } from './support';

/*
 * The Node cases of the kubernetes-csi sanity suite (csi-test v5.4.0) that need a real device,
 * asked as the suite asks them, on real VDUSE devices: its 10 GiB volumes (sparse images), a mount
 * capability without fs_type or a block one, every stage and publish sent REPEATS times, expansion
 * to 11 GiB after publishing (the filesystem, made at 10 GiB, must grow), stats on the published
 * target, and its clean-up, after which its directories must be removable with rmdir.
 */

const VOLUME_BYTES = 10 * GiB;
const EXPANDED_BYTES = 11 * GiB;

async function mountsAt(path: string): Promise<number> {
  return (await findMounts((mount) => mount.mountPoint === path)).length;
}

describe('csi-sanity Node lifecycle cases on the real kernel', function () {
  let csi: CsiHarness;

  before(async () => {
    requireVduse();
    csi = await CsiHarness.start({ cli: [process.execPath, CLI], root: scratchDir('sanity'), mode: 'all' });
  });
  after(async () => {
    await csi?.stop();
  });

  let current: SuiteCase | undefined;
  afterEach(async function () {
    // After a failed case, the suite's clean-up (which a passing case ran itself), so the next case
    // starts clean and fails, if it does, for its own reasons.
    const failed = current && this.currentTest?.state === 'failed' ? current : undefined;
    current = undefined;
    if (!failed) return;
    // A clean-up error here only follows from the case's own failure, already reported: a hook that
    // failed would skip the cases after it.
    await failed
      .cleanUp()
      .catch((error: unknown) => console.log(`      (clean-up after the failed case: ${String(error)})`));
    await failed.scrub();
  });

  for (const accessType of ['mount', 'block'] as const) {
    it(`${accessType}: stage and publish ${REPEATS} times each, stats, expand after publish, unpublish removes the target, clean-up leaves nothing`, async () => {
      const suite = (current = new SuiteCase(csi));
      const capability = suiteCapability(accessType);
      const info: Reply = await csi.call('node', 'NodeGetInfo');
      const created: Reply = await suite.createVolume('sanity-node-full', accessType, {
        capacity_range: { required_bytes: VOLUME_BYTES },
        accessibility_requirements: { requisite: [info.accessible_topology] },
      });
      const volume_id: string = created.volume.volume_id;

      const volume_context = created.volume.volume_context;
      for (let i = 0; i < REPEATS; i++)
        await csi.call('node', 'NodeStageVolume', {
          volume_id,
          staging_target_path: suite.stagingDir,
          volume_capability: capability,
          volume_context,
        });
      for (let i = 0; i < REPEATS; i++)
        await csi.call('node', 'NodePublishVolume', {
          volume_id,
          staging_target_path: suite.stagingDir,
          target_path: suite.target,
          volume_capability: capability,
          volume_context,
        });
      assert.equal(
        await mountsAt(suite.stagingDir),
        accessType === 'mount' ? 1 : 0,
        'mounts on the staging dir',
      );
      assert.equal(await mountsAt(suite.target), 1, 'mounts on the target');
      assert.equal(pathKind(suite.target), accessType === 'mount' ? 'directory' : 'other');

      // Expanded once the filesystem exists: only NodeExpandVolume can grow it, and the pod must
      // see that on its target (statfs for a filesystem, the device's size for a block volume).
      const before = sizeSeenByPod(accessType, suite.target);
      if (accessType === 'mount') assert.ok(before <= VOLUME_BYTES, `a 10 GiB filesystem: ${before}`);
      else assert.equal(before, VOLUME_BYTES);
      const expanded: Reply = await csi.call('controller', 'ControllerExpandVolume', {
        volume_id,
        capacity_range: { required_bytes: EXPANDED_BYTES },
        volume_capability: capability,
      });
      assert.equal(Number(expanded.capacity_bytes), EXPANDED_BYTES);
      if (accessType === 'mount')
        assert.equal(
          sizeSeenByPod('mount', suite.target),
          before,
          'the filesystem waits for NodeExpandVolume',
        );

      const grown: Reply = await csi.call('node', 'NodeExpandVolume', {
        volume_id,
        volume_path: suite.target,
        capacity_range: { required_bytes: EXPANDED_BYTES },
      });
      assert.equal(Number(grown.capacity_bytes), EXPANDED_BYTES);
      const after = sizeSeenByPod(accessType, suite.target);
      if (accessType === 'mount')
        assert.ok(after > VOLUME_BYTES, `the filesystem grew past 10 GiB: ${before} -> ${after}`);
      else assert.equal(after, EXPANDED_BYTES, 'the device grew');

      const stats: Reply = await csi.call('node', 'NodeGetVolumeStats', {
        volume_id,
        volume_path: suite.target,
      });
      assert.equal(stats.volume_condition.abnormal, false, stats.volume_condition.message);
      const units = stats.usage.map((usage: Reply) => usage.unit).sort();
      assert.deepEqual(units, accessType === 'mount' ? ['BYTES', 'INODES'] : ['BYTES']);
      const bytes = stats.usage.find((usage: Reply) => usage.unit === 'BYTES');
      assert.equal(Number(bytes.total), after, 'stats report the size the pod sees');
      await csi.expectCode(
        'node',
        'NodeGetVolumeStats',
        { volume_id, volume_path: 'some/path' },
        'NOT_FOUND',
      );

      await csi.call('node', 'NodeUnpublishVolume', { volume_id, target_path: suite.target });
      assert.equal(pathKind(suite.target), 'not found');
      await suite.cleanUp();
      assertNothingLeft(csi);
    });
  }
});

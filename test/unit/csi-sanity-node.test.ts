import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stagedVolumes } from '../../src/csi/node-records';
import { DEFAULT_PARAMETERS } from '../../src/csi/parameters';
import { mount } from '../../src/node/mount';
import { isMountPoint } from '../../src/node/mountinfo';
import { CsiHarness, Reply } from '../support/csi-harness';
import { requireRoot } from '../support/skips';
import {
  REPEATS,
  SUITE_NODE_CAPABILITIES,
  SuiteCase,
  fakeVolumeId,
  pathKind,
  suiteCapability,
} from '../support/sanity-suite';

/*
 * The Node cases of the kubernetes-csi sanity suite (csi-test v5.4.0, CSI v1.12.0), asked as the
 * suite asks them: its requests, its made-up volume ids, and its set-up and clean-up around each
 * case. Staging a real device needs VDUSE, so the cases after NodeStageVolume run here on a staged
 * state written by hand (root only); the device-backed part of them is for the kernel tests.
 */

describe('csi-sanity Node cases over gRPC', function () {
  this.timeout(30_000);
  let csi: CsiHarness;
  let suite: SuiteCase;

  before(async () => {
    csi = await CsiHarness.start({ mode: 'all', nodeId: 'sanity-node' });
  });
  after(async () => {
    await csi.stop();
  });
  beforeEach(() => {
    suite = new SuiteCase(csi);
  });
  afterEach(async () => {
    try {
      await suite.cleanUp();
    } finally {
      await suite.scrub();
    }
  });

  it('NodeGetCapabilities: only RPC capabilities the suite knows, including those its Node cases need', async () => {
    const { capabilities } = await csi.call('node', 'NodeGetCapabilities');
    const types: string[] = capabilities.map((capability: Reply) => capability.rpc?.type);
    for (const type of types) assert.ok(SUITE_NODE_CAPABILITIES.includes(type), `unknown capability ${type}`);
    for (const needed of ['STAGE_UNSTAGE_VOLUME', 'GET_VOLUME_STATS', 'EXPAND_VOLUME'])
      assert.ok(types.includes(needed), `without ${needed} the suite skips its cases`);
  });

  it('NodeGetInfo: a node id, a volume limit that is not negative, and a topology volumes can require', async () => {
    const { capabilities } = await csi.call('identity', 'GetPluginCapabilities');
    const services = capabilities.map((capability: Reply) => capability.service?.type);
    assert.ok(services.includes('VOLUME_ACCESSIBILITY_CONSTRAINTS'));
    const info = await csi.call('node', 'NodeGetInfo');
    assert.equal(info.node_id, 'sanity-node');
    assert.ok(Number(info.max_volumes_per_node) >= 0);
    assert.ok(info.accessible_topology, 'the plugin announces accessibility constraints');
    // The lifecycle case creates its volume with the node's topology as the requisite one.
    const created = await suite.createVolume('sanity-node-full-1', 'mount', {
      accessibility_requirements: { requisite: [info.accessible_topology] },
    });
    assert.deepEqual(created.volume.accessible_topology, [info.accessible_topology]);
  });

  for (const accessType of ['mount', 'block'] as const) {
    describe(`with ${accessType} capabilities (--csi.testvolumeaccesstype=${accessType})`, () => {
      const capability = suiteCapability(accessType);

      it('NodePublishVolume: INVALID_ARGUMENT without volume id, target path or capability, and no path made', async () => {
        const staged = { staging_target_path: suite.stagingDir };
        for (const request of [
          { secrets: {} },
          { volume_id: fakeVolumeId(), secrets: {} },
          { volume_id: fakeVolumeId(), target_path: suite.target, secrets: {} },
          // The suite sends no staging path either: also with only the field it names missing.
          { volume_id: fakeVolumeId(), volume_capability: capability, ...staged },
          { volume_id: fakeVolumeId(), target_path: suite.target, ...staged },
        ])
          await csi.expectCode('node', 'NodePublishVolume', request, 'INVALID_ARGUMENT');
        assert.equal(pathKind(suite.target), 'not found');
      });

      it('NodeUnpublishVolume: INVALID_ARGUMENT without volume id or target path', async () => {
        await csi.expectCode('node', 'NodeUnpublishVolume', {}, 'INVALID_ARGUMENT');
        await csi.expectCode(
          'node',
          'NodeUnpublishVolume',
          { volume_id: fakeVolumeId() },
          'INVALID_ARGUMENT',
        );
      });

      it('NodeStageVolume: INVALID_ARGUMENT without volume id, staging path, or capability (of a real volume)', async () => {
        const publish_context = { device: '/dev/mock' };
        await csi.expectCode(
          'node',
          'NodeStageVolume',
          { staging_target_path: suite.stagingDir, volume_capability: capability, publish_context },
          'INVALID_ARGUMENT',
        );
        await csi.expectCode(
          'node',
          'NodeStageVolume',
          { volume_id: fakeVolumeId(), volume_capability: capability, publish_context },
          'INVALID_ARGUMENT',
        );
        const created = await suite.createVolume('sanity-node-stage-nocaps', accessType);
        await csi.expectCode(
          'node',
          'NodeStageVolume',
          { volume_id: created.volume.volume_id, staging_target_path: suite.stagingDir, publish_context },
          'INVALID_ARGUMENT',
        );
      });

      it('NodeUnstageVolume: INVALID_ARGUMENT without volume id or staging path', async () => {
        await csi.expectCode(
          'node',
          'NodeUnstageVolume',
          { staging_target_path: suite.stagingDir },
          'INVALID_ARGUMENT',
        );
        await csi.expectCode('node', 'NodeUnstageVolume', { volume_id: fakeVolumeId() }, 'INVALID_ARGUMENT');
      });

      it('NodeGetVolumeStats: INVALID_ARGUMENT without volume id or path, NOT_FOUND for an unknown volume', async () => {
        await csi.expectCode('node', 'NodeGetVolumeStats', { volume_path: 'some/path' }, 'INVALID_ARGUMENT');
        await csi.expectCode('node', 'NodeGetVolumeStats', { volume_id: fakeVolumeId() }, 'INVALID_ARGUMENT');
        await csi.expectCode(
          'node',
          'NodeGetVolumeStats',
          { volume_id: fakeVolumeId(), volume_path: 'some/path' },
          'NOT_FOUND',
        );
      });

      it('NodeExpandVolume: INVALID_ARGUMENT without volume id or path (of a real volume), NOT_FOUND for an unknown one', async () => {
        await csi.expectCode(
          'node',
          'NodeExpandVolume',
          { volume_path: suite.mountDir, volume_capability: capability },
          'INVALID_ARGUMENT',
        );
        const created = await suite.createVolume('sanity-node-expand-volume-valid-id', accessType);
        await csi.expectCode(
          'node',
          'NodeExpandVolume',
          { volume_id: created.volume.volume_id, volume_capability: capability },
          'INVALID_ARGUMENT',
        );
        await csi.expectCode(
          'node',
          'NodeExpandVolume',
          { volume_id: fakeVolumeId(), volume_path: 'some/path' },
          'NOT_FOUND',
        );
      });

      it('clean-up of a volume never staged: unpublish and unstage succeed, again and again; unknown ids are NOT_FOUND', async () => {
        const volume_id = (await suite.createVolume('sanity-node-never-staged', accessType)).volume.volume_id;
        for (let i = 0; i < 2; i++) {
          await csi.call('node', 'NodeUnpublishVolume', { volume_id, target_path: suite.target });
          await csi.call('node', 'NodeUnstageVolume', { volume_id, staging_target_path: suite.stagingDir });
        }
        const unknown = fakeVolumeId();
        await csi.expectCode(
          'node',
          'NodeUnpublishVolume',
          { volume_id: unknown, target_path: suite.target },
          'NOT_FOUND',
        );
        await csi.expectCode(
          'node',
          'NodeUnstageVolume',
          { volume_id: unknown, staging_target_path: suite.stagingDir },
          'NOT_FOUND',
        );
      });

      describe('after NodeStageVolume (staged state written by hand: no VDUSE here)', () => {
        before(function () {
          requireRoot(this, 'publishing mounts');
        });

        /**
         * What NodeStageVolume leaves, minus the device server: the node's record and, for a mount
         * volume, a filesystem (a tmpfs) on the staging directory. A regular file stands in for the
         * device that a block volume's target is bound to. The plugin's supervisor would start a
         * server for the record after 5 s; every case unstages long before.
         */
        async function stageWithoutDevice(created: Reply): Promise<string> {
          const volumeId: string = created.volume.volume_id;
          const devicePath = join(csi.root, `${volumeId}.device`);
          writeFileSync(devicePath, '');
          if (accessType === 'mount') await mount('tmpfs', suite.stagingDir, { fsType: 'tmpfs' });
          stagedVolumes(csi.options.stateDir).put({
            volumeId,
            imagePath: join(csi.options.dataDir, 'volumes', `${volumeId}.img`),
            parameters: DEFAULT_PARAMETERS,
            stagingPath: suite.stagingDir,
            accessType,
            fsType: 'ext4',
            mountFlags: [],
            readOnly: false,
            devicePath,
            publications: {},
          });
          return volumeId;
        }

        function publishRequest(created: Reply, target: string): object {
          return {
            volume_id: created.volume.volume_id,
            target_path: target,
            staging_target_path: suite.stagingDir,
            volume_capability: capability,
            volume_context: created.volume.volume_context,
            secrets: {},
          };
        }

        it('NodePublishVolume creates the target, repeatedly; NodeUnpublishVolume removes it', async () => {
          const created = await suite.createVolume('sanity-node-unpublish-volume', accessType);
          const volume_id = await stageWithoutDevice(created);
          for (let i = 0; i < REPEATS; i++)
            await csi.call('node', 'NodePublishVolume', publishRequest(created, suite.target));
          await csi.call('node', 'NodePublishVolume', publishRequest(created, `${suite.target}/`));
          assert.equal(pathKind(suite.target), accessType === 'mount' ? 'directory' : 'file');
          assert.ok(await isMountPoint(suite.target));
          await csi.call('node', 'NodeUnpublishVolume', { volume_id, target_path: suite.target });
          assert.equal(pathKind(suite.target), 'not found');
        });

        it('SINGLE_NODE_SINGLE_WRITER: a second read-write target is FAILED_PRECONDITION (csi-test v5.5 case), a read-only one is not', async () => {
          const created = await suite.createVolume('sanity-node-single-writer', accessType);
          const volume_id = await stageWithoutDevice(created);
          const singleWriter = { ...capability, access_mode: { mode: 'SINGLE_NODE_SINGLE_WRITER' } };
          const publish = (target: string, readonly = false): object => ({
            ...publishRequest(created, target),
            volume_capability: singleWriter,
            readonly,
          });
          const other = join(suite.mountDir, 'other_target');
          await csi.call('node', 'NodePublishVolume', publish(suite.target));
          await csi.call('node', 'NodePublishVolume', publish(suite.target));
          await csi.expectCode('node', 'NodePublishVolume', publish(other), 'FAILED_PRECONDITION');
          assert.equal(pathKind(other), 'not found');
          // A multi-writer publication is refused as well while the single writer holds the volume.
          await csi.expectCode(
            'node',
            'NodePublishVolume',
            publishRequest(created, other),
            'FAILED_PRECONDITION',
          );
          await csi.call('node', 'NodePublishVolume', publish(other, true));
          await csi.call('node', 'NodeUnpublishVolume', { volume_id, target_path: other });
          await csi.call('node', 'NodeUnpublishVolume', { volume_id, target_path: suite.target });
          await csi.call('node', 'NodePublishVolume', publish(other));
          await csi.call('node', 'NodeUnpublishVolume', { volume_id, target_path: other });
        });

        it('NodeUnstageVolume at another path than the staging one: FAILED_PRECONDITION, the staging left as it was', async () => {
          const created = await suite.createVolume('sanity-node-unstage-elsewhere', accessType);
          const volume_id = await stageWithoutDevice(created);
          const elsewhere = join(suite.mountDir, 'elsewhere');
          await csi.expectCode(
            'node',
            'NodeUnstageVolume',
            { volume_id, staging_target_path: elsewhere },
            'FAILED_PRECONDITION',
          );
          assert.equal(await isMountPoint(suite.stagingDir), accessType === 'mount');
          assert.ok(stagedVolumes(csi.options.stateDir).get(volume_id), 'still recorded as staged');
        });

        it('NodeGetVolumeStats: NOT_FOUND on a path that is not the volume, the volume on its target', async () => {
          const created = await suite.createVolume('sanity-node-get-volume-stats', accessType);
          const volume_id = await stageWithoutDevice(created);
          await csi.call('node', 'NodePublishVolume', publishRequest(created, suite.target));
          await csi.expectCode(
            'node',
            'NodeGetVolumeStats',
            { volume_id, volume_path: 'some/path' },
            'NOT_FOUND',
          );
          // No server serves this device: the volume is found, and reported abnormal.
          const stats = await csi.call('node', 'NodeGetVolumeStats', {
            volume_id,
            volume_path: `${suite.target}/`,
          });
          assert.equal(stats.volume_condition.abnormal, true);
        });
      });
    });
  }
});

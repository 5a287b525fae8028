import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { TOPOLOGY_KEY } from '../../src/csi/topology';
import { CsiHarness, MiB, Reply, blockCapability, mountCapability } from '../support/csi-harness';

/*
 * The Node service's answers to bad or out-of-order requests, over real gRPC. They are all decided
 * before any device is touched, so no kernel is needed; the kernel tests cover the happy paths.
 */
describe('CSI node over gRPC: validation and error codes', function () {
  this.timeout(30_000);
  let csi: CsiHarness;
  let volumeId: string;
  let staging: string;
  let target: string;

  before(async () => {
    csi = await CsiHarness.start({ mode: 'all', nodeId: 'worker-7' });
    const created: Reply = await csi.call('controller', 'CreateVolume', {
      name: 'node-errors',
      volume_capabilities: [mountCapability()],
      capacity_range: { required_bytes: 16 * MiB },
    });
    volumeId = created.volume.volume_id;
    staging = join(csi.root, 'staging');
    target = join(csi.root, 'target');
    mkdirSync(staging);
  });
  after(async () => {
    await csi.stop();
  });

  it('describes the node: id, volume limit, topology, capabilities', async () => {
    const info = await csi.call('node', 'NodeGetInfo');
    assert.equal(info.node_id, 'worker-7');
    assert.equal(info.max_volumes_per_node, 64);
    assert.deepEqual(info.accessible_topology.segments, { [TOPOLOGY_KEY]: 'worker-7' });
    const { capabilities } = await csi.call('node', 'NodeGetCapabilities');
    assert.deepEqual(capabilities.map((c: Reply) => c.rpc.type).sort(), [
      'EXPAND_VOLUME',
      'GET_VOLUME_STATS',
      'SINGLE_NODE_MULTI_WRITER',
      'STAGE_UNSTAGE_VOLUME',
      'VOLUME_CONDITION',
    ]);
  });

  it('NodeStageVolume: INVALID_ARGUMENT for missing fields, FAILED_PRECONDITION for multi-node modes, NOT_FOUND for unknown volumes', async () => {
    const valid = { volume_id: volumeId, staging_target_path: staging, volume_capability: mountCapability() };
    for (const request of [
      { ...valid, volume_id: '' },
      { ...valid, staging_target_path: '' },
      { ...valid, staging_target_path: 'relative/path' },
      { ...valid, staging_target_path: `${staging}/../../etc` },
      { ...valid, volume_capability: null },
      { ...valid, volume_capability: mountCapability('zfs') },
    ])
      await csi.expectCode('node', 'NodeStageVolume', request, 'INVALID_ARGUMENT');
    // CSI's code for a CO exceeding the volume's capabilities: an image file has no multi-node mode.
    for (const mode of ['MULTI_NODE_READER_ONLY', 'MULTI_NODE_MULTI_WRITER'] as const) {
      const message = await csi.expectCode(
        'node',
        'NodeStageVolume',
        { ...valid, volume_capability: blockCapability(mode) },
        'FAILED_PRECONDITION',
      );
      assert.match(message, /image-file volume is local to one node/);
    }
    await csi.expectCode(
      'node',
      'NodeStageVolume',
      { ...valid, volume_id: 'vol-does-not-exist' },
      'NOT_FOUND',
    );
    await csi.expectCode('node', 'NodeStageVolume', { ...valid, volume_id: '../../dev/sda' }, 'NOT_FOUND');
  });

  it('NodePublishVolume: INVALID_ARGUMENT, NOT_FOUND, and FAILED_PRECONDITION before staging', async () => {
    const valid = {
      volume_id: volumeId,
      staging_target_path: staging,
      target_path: target,
      volume_capability: blockCapability(),
    };
    for (const field of ['volume_id', 'staging_target_path', 'target_path', 'volume_capability'])
      await csi.expectCode(
        'node',
        'NodePublishVolume',
        { ...valid, [field]: field === 'volume_capability' ? null : '' },
        'INVALID_ARGUMENT',
      );
    await csi.expectCode('node', 'NodePublishVolume', { ...valid, volume_id: 'vol-unknown' }, 'NOT_FOUND');
    const message = await csi.expectCode('node', 'NodePublishVolume', valid, 'FAILED_PRECONDITION');
    assert.match(message, /not staged/);
    const multiNode = await csi.expectCode(
      'node',
      'NodePublishVolume',
      { ...valid, volume_capability: blockCapability('MULTI_NODE_MULTI_WRITER') },
      'FAILED_PRECONDITION',
    );
    assert.match(multiNode, /image-file volume is local to one node/);
  });

  it('NodeUnpublishVolume and NodeUnstageVolume: idempotent for a known volume, NOT_FOUND otherwise', async () => {
    await csi.call('node', 'NodeUnpublishVolume', { volume_id: volumeId, target_path: target });
    await csi.call('node', 'NodeUnstageVolume', { volume_id: volumeId, staging_target_path: staging });
    await csi.expectCode(
      'node',
      'NodeUnpublishVolume',
      { volume_id: 'vol-unknown', target_path: target },
      'NOT_FOUND',
    );
    await csi.expectCode(
      'node',
      'NodeUnstageVolume',
      { volume_id: 'vol-unknown', staging_target_path: staging },
      'NOT_FOUND',
    );
    await csi.expectCode('node', 'NodeUnpublishVolume', { volume_id: volumeId }, 'INVALID_ARGUMENT');
    await csi.expectCode('node', 'NodeUnpublishVolume', { target_path: target }, 'INVALID_ARGUMENT');
    await csi.expectCode('node', 'NodeUnstageVolume', { volume_id: volumeId }, 'INVALID_ARGUMENT');
    await csi.expectCode('node', 'NodeUnstageVolume', { staging_target_path: staging }, 'INVALID_ARGUMENT');
  });

  it('NodeGetVolumeStats and NodeExpandVolume: INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION', async () => {
    const cases: Array<[string, object, 'INVALID_ARGUMENT' | 'NOT_FOUND' | 'FAILED_PRECONDITION']> = [
      ['NodeGetVolumeStats', { volume_path: staging }, 'INVALID_ARGUMENT'],
      ['NodeGetVolumeStats', { volume_id: volumeId }, 'INVALID_ARGUMENT'],
      ['NodeGetVolumeStats', { volume_id: 'vol-unknown', volume_path: staging }, 'NOT_FOUND'],
      ['NodeGetVolumeStats', { volume_id: volumeId, volume_path: staging }, 'NOT_FOUND'],
      ['NodeGetVolumeStats', { volume_id: volumeId, volume_path: 'some/path' }, 'NOT_FOUND'],
      ['NodeExpandVolume', { volume_path: staging }, 'INVALID_ARGUMENT'],
      ['NodeExpandVolume', { volume_id: volumeId }, 'INVALID_ARGUMENT'],
      ['NodeExpandVolume', { volume_id: 'vol-unknown', volume_path: staging }, 'NOT_FOUND'],
      ['NodeExpandVolume', { volume_id: volumeId, volume_path: staging }, 'FAILED_PRECONDITION'],
    ];
    for (const [method, request, code] of cases) await csi.expectCode('node', method, request, code);
  });

  it('a node-only plugin has no controller service, and says it offers no controller RPC', async () => {
    const nodeOnly = await CsiHarness.start({ mode: 'node' });
    try {
      await nodeOnly.expectCode('controller', 'CreateVolume', { name: 'x' }, 'UNIMPLEMENTED');
      await nodeOnly.expectCode('controller', 'ListVolumes', {}, 'UNIMPLEMENTED');
      assert.deepEqual(await nodeOnly.call('controller', 'ControllerGetCapabilities'), { capabilities: [] });
      const { capabilities } = await nodeOnly.call('identity', 'GetPluginCapabilities');
      assert.ok(!capabilities.some((c: Reply) => c.service?.type === 'CONTROLLER_SERVICE'));
    } finally {
      await nodeOnly.stop();
    }
  });
});

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { monitorDigest } from '../../src/csi/rbd/monitors';
import { rbdImageNameFor } from '../../src/csi/rbd/volume-id';
import { CsiHarness, blockCapability, mountCapability } from '../support/csi-harness';

const KEY = 'AQBvaBNnAAAAABAAl1yBbPx6B8kq9dUm6nZb5g==';
const MONITORS = '10.0.0.1:6789';

/*
 * The node's answers for RBD volumes that are decided before any device server starts (so before
 * the kernel or a cluster is needed): the id, the secrets, the cluster, volume_context. A refused
 * stage leaves no key behind. The kernel test covers staging for real.
 */
describe('RBD volumes on the node over gRPC: validation and error codes', function () {
  this.timeout(30_000);
  let csi: CsiHarness;
  let staging: string;
  const image = rbdImageNameFor('pvc-node');
  const byMonitors = `rbd:m:${monitorDigest([MONITORS])}:rbd::${image}`;
  const byClusterId = `rbd:c:prod:rbd::${image}`;
  const secrets = { userID: 'csi', userKey: KEY };

  before(async () => {
    csi = await CsiHarness.start({ mode: 'node', nodeId: 'worker-r' });
    staging = join(csi.root, 'staging');
    mkdirSync(staging);
  });
  after(async () => {
    await csi.stop();
  });

  const stage = (request: object) => ({
    volume_id: byMonitors,
    staging_target_path: staging,
    volume_capability: mountCapability(),
    volume_context: { monitors: MONITORS },
    secrets,
    ...request,
  });

  it('NodeStageVolume refuses what it cannot serve, and keeps no key of it', async () => {
    const cases: [object, Parameters<CsiHarness['expectCode']>[3], RegExp][] = [
      [{ volume_id: 'rbd:c:prod:rbd::../x' }, 'NOT_FOUND', /does not exist/],
      [{ secrets: {} }, 'INVALID_ARGUMENT', /userID and userKey/],
      [{ secrets: { userID: 'csi', userKey: 'not a key' } }, 'INVALID_ARGUMENT', /not a base64 cephx key/],
      [{ volume_context: { monitors: '10.0.0.2:6789' } }, 'INVALID_ARGUMENT', /not the monitor set/],
      [{ volume_context: { monitors: 'x' } }, 'INVALID_ARGUMENT', /monitor address/],
      [{ volume_context: {} }, 'FAILED_PRECONDITION', /not known here/],
      [{ volume_context: { monitors: MONITORS, queues: '99' } }, 'INVALID_ARGUMENT', /queues/],
      [{ volume_id: byClusterId, volume_context: {} }, 'FAILED_PRECONDITION', /without --ceph-clusters/],
      [
        { volume_capability: mountCapability('ext4', 'MULTI_NODE_MULTI_WRITER') },
        'INVALID_ARGUMENT',
        /for Block volumes only/,
      ],
      [
        { volume_capability: blockCapability('MULTI_NODE_SINGLE_WRITER') },
        'FAILED_PRECONDITION',
        /MULTI_NODE_SINGLE_WRITER is not supported/,
      ],
    ];
    for (const [request, code, why] of cases) {
      const message = await csi.expectCode('node', 'NodeStageVolume', stage(request), code);
      assert.match(message, why);
      assert.ok(!message.includes(KEY), message);
    }
    const cephDir = join(csi.options.stateDir, 'ceph');
    assert.deepEqual(
      existsSync(cephDir) ? readdirSync(cephDir) : [],
      [],
      'a refused stage left client files',
    );
  });

  it('NodeUnstage, NodeUnpublish, stats and expansion of an RBD volume that is not staged here', async () => {
    await csi.call('node', 'NodeUnstageVolume', { volume_id: byMonitors, staging_target_path: staging });
    await csi.call('node', 'NodeUnpublishVolume', {
      volume_id: byMonitors,
      target_path: join(csi.root, 't'),
    });
    await csi.expectCode(
      'node',
      'NodeUnstageVolume',
      { volume_id: 'rbd:bad', staging_target_path: staging },
      'NOT_FOUND',
    );
    await csi.expectCode(
      'node',
      'NodeGetVolumeStats',
      { volume_id: byMonitors, volume_path: staging },
      'NOT_FOUND',
    );
    await csi.expectCode(
      'node',
      'NodeExpandVolume',
      { volume_id: byMonitors, volume_path: staging, capacity_range: { required_bytes: 1 << 30 } },
      'FAILED_PRECONDITION',
    );
    await csi.expectCode(
      'node',
      'NodePublishVolume',
      {
        volume_id: byMonitors,
        staging_target_path: staging,
        target_path: join(csi.root, 't'),
        volume_capability: mountCapability(),
      },
      'FAILED_PRECONDITION',
    );
  });
});

import assert from 'node:assert/strict';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { assertNothingLeft, kubeletFlow } from '../e2e/kubelet-flow';
import { HARNESS_NAMESPACE, MiB, mountCapability } from '../support/csi-harness';
import { SplitPlugins } from '../support/split-plugins';
import { CAPACITY_CONFIGMAP } from '../../src/k8s/node-capacity';
import { TOPOLOGY_KEY } from '../../src/csi/topology';
import { VolumeObject } from '../../src/k8s/resources';
import { CLI, requireVduse, scratchDir } from './support';

const VOLUMES = 'csi.vduse.dev/vdusevolumes';
const NODE = 'vm-node';

/*
 * The controller/node split of a cluster, on the real kernel: the controller plugin and the node
 * plugin run as separate processes, each on its own socket and directories, and reach each other
 * only through VduseVolume/VduseSnapshot objects of the (fake, in-process) Kubernetes API server.
 */
describe('cluster mode: controller and node plugins as separate processes', function () {
  this.timeout(1_200_000);
  let split: SplitPlugins;
  let roots: { controller: string; node: string };

  before(async () => {
    requireVduse();
    roots = { controller: scratchDir('split-controller'), node: scratchDir('split-node') };
    split = await SplitPlugins.start([process.execPath, CLI], roots, { nodeId: NODE });
  });
  after(async () => {
    await split?.stop();
    for (const root of Object.values(roots ?? {})) rmSync(root, { recursive: true, force: true });
  });

  it('serves each side on its own socket, in its own process', async () => {
    assert.notEqual(split.controller.pid, split.node.pid);
    assert.notEqual(split.controller.socketPath, split.node.socketPath);
    await split.controller.expectCode('node', 'NodeGetInfo', {}, 'UNIMPLEMENTED');
    await split.node.expectCode('controller', 'ListVolumes', {}, 'UNIMPLEMENTED');
    const info = await split.node.call('node', 'NodeGetInfo');
    assert.deepEqual(info.accessible_topology.segments, { [TOPOLOGY_KEY]: NODE });
    const capacity = split.api.object('/configmaps', CAPACITY_CONFIGMAP, HARNESS_NAMESPACE)?.data;
    assert.ok(
      typeof capacity === 'object' && capacity !== null && NODE in capacity,
      'the node agent reports its free space',
    );
  });

  it('runs the kubelet flow through the API server: the node realises what the controller records', async () => {
    await kubeletFlow(split, 'ext4', (step, facts) => {
      if (step === 'CreateVolume') {
        const object = split.api.object(VOLUMES, String(facts!.volume)) as unknown as VolumeObject;
        assert.equal(object.spec.nodeId, NODE);
        assert.equal(object.status?.phase, 'Ready');
        assert.ok(existsSync(String(facts!.image)), 'the node agent made the image on the node');
      }
      if (step === 'NodeStageVolume + NodePublishVolume') {
        const [volume, ...others] = split.api.list(VOLUMES) as unknown as VolumeObject[];
        assert.equal(others.length, 0);
        assert.equal(volume!.status?.device, facts!.device, 'the node reports the device it staged');
      }
    });
    assertNothingLeft(split);
    assert.deepEqual(split.api.list(VOLUMES), [], 'VduseVolume objects left');
    assert.deepEqual(split.api.list('csi.vduse.dev/vdusesnapshots'), [], 'VduseSnapshot objects left');
    assert.deepEqual(imagesUnder(split.controller.options.dataDir), [], 'the controller made no image');
  });

  it('answers RESOURCE_EXHAUSTED at once for a node without a running node agent', async () => {
    await split.controller.expectCode(
      'controller',
      'CreateVolume',
      {
        name: 'nowhere',
        capacity_range: { required_bytes: 64 * MiB },
        volume_capabilities: [mountCapability('ext4')],
        accessibility_requirements: {
          requisite: [{ segments: { [TOPOLOGY_KEY]: 'node-without-agent' } }],
          preferred: [],
        },
      },
      'RESOURCE_EXHAUSTED',
    );
    assert.deepEqual(split.api.list(VOLUMES), []);
  });
});

function imagesUnder(dataDir: string): string[] {
  return ['volumes', 'snapshots'].flatMap((kind) => {
    const path = join(dataDir, kind);
    return existsSync(path) ? readdirSync(path) : [];
  });
}

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { assertNothingLeft, kubeletFlow, removePublished, stageAndPublish } from '../e2e/kubelet-flow';
import { daemonStatus } from '../support/daemon-processes';
import { eventually } from '../support/eventually';
import { HARNESS_NAMESPACE, MiB, Reply, blockCapability, mountCapability } from '../support/csi-harness';
import { callDaemon } from '../../src/daemon/control-client';
import { PVC_NAME, PVC_NAMESPACE, PV_NAME } from '../../src/csi/claim';
import { POD_NAME, POD_NAMESPACE, POD_UID } from '../../src/csi/pod';
import { stagedVolumes } from '../../src/csi/node-records';
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

  it("tells a volume's claim and pod of its device's takeovers: a killed daemon's as a Warning, a hand-over's as Normal", async () => {
    const claim = { name: 'data', namespace: 'apps' };
    await split.api
      .kubeConfig()
      .makeApiClient(CoreV1Api)
      .createNamespacedPersistentVolumeClaim({
        namespace: claim.namespace,
        body: { metadata: claim, spec: {} },
      });
    const uid = split.api.object('/persistentvolumeclaims', claim.name, claim.namespace)!.metadata.uid;
    const { volume } = await split.call('controller', 'CreateVolume', {
      name: 'pvc-events',
      capacity_range: { required_bytes: 64 * MiB },
      volume_capabilities: [blockCapability()],
      parameters: { [PVC_NAME]: claim.name, [PVC_NAMESPACE]: claim.namespace, [PV_NAME]: 'pvc-events' },
    });
    const pod = { name: 'web-0', namespace: 'shop', uid: randomUUID() };
    const published = await stageAndPublish(split, 'block', volume.volume_id, 'events', {
      [POD_NAME]: pod.name,
      [POD_NAMESPACE]: pod.namespace,
      [POD_UID]: pod.uid,
    });
    const stateDir = split.node.options.stateDir;
    const staged = stagedVolumes(stateDir).get(volume.volume_id)!;
    assert.deepEqual(staged.claim, { ...claim, volumeName: 'pvc-events' });
    assert.deepEqual(Object.values(staged.publications), [{ readOnly: false, pod }]);
    const eventOf = (reason: string, kind = 'PersistentVolumeClaim'): Reply | undefined =>
      split.api
        .list('/events')
        .find((event) => event.reason === reason && (event.involvedObject as { kind: string }).kind === kind);
    const takenOver = async (reason: string): Promise<Reply> => {
      await eventually(async () => assert.ok(eventOf(reason), `no ${reason} Event yet`), 120_000);
      return eventOf(reason);
    };

    const killed = (await daemonStatus(stateDir))!.pid;
    process.kill(killed, 'SIGKILL');
    const warning = await takenOver('DeviceTakenOver');
    assert.equal(warning.type, 'Warning');
    assert.deepEqual(warning.involvedObject, {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      ...claim,
      uid,
    });
    assert.match(warning.message, /\/dev\/vd[a-z]+ stopped without letting go.*took it over in [\d.]+ s/);
    await eventually(
      async () => assert.ok(eventOf('DeviceTakenOver', 'Pod'), 'no Event on the pod yet'),
      60_000,
    );
    assert.deepEqual(eventOf('DeviceTakenOver', 'Pod')!.involvedObject, {
      apiVersion: 'v1',
      kind: 'Pod',
      ...pod,
    });
    const successor = (await daemonStatus(stateDir))!.pid;
    assert.notEqual(successor, killed);

    // The daemon hands over and exits with its standby; the plugin starts the next, which takes over.
    await callDaemon(stateDir, { op: 'handover' });
    const normal = await takenOver('DeviceHandedOver');
    assert.equal(normal.type, 'Normal');
    assert.match(normal.message, new RegExp(`from daemon ${successor}, which let go of it \\(hand-over\\)`));
    assert.equal(eventOf('VolumeIOErrors'), undefined, 'no request failed');

    await removePublished(split, published);
    assertNothingLeft(split);
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

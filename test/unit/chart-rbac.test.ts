import { eventually } from '../support/eventually';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { ControllerService } from '../../src/csi/controller';
import { CsiError } from '../../src/csi/errors';
import { IdentityService } from '../../src/csi/identity';
import { LocalRealizer } from '../../src/csi/local-realizer';
import { VolumeCapability } from '../../src/csi/messages';
import { OperationLocks } from '../../src/csi/operation-locks';
import { TOPOLOGY_KEY } from '../../src/csi/topology';
import { VolumeServers } from '../../src/csi/volume-servers';
import { Cluster } from '../../src/k8s/cluster';
import { NodeAgent } from '../../src/k8s/node-agent';
import { log, setLogLevel } from '../../src/log';
import { ImageDirectory } from '../../src/storage/images';
import { KubeObject, NAMESPACE, render } from '../support/chart';
import { AuthorizingProxy, Grants, grantsOf } from '../support/chart-authorizer';
import { grants } from '../support/chart-rbac';
import { MiB, Reply } from '../support/csi-harness';
import { FakeKubeApi } from '../support/fake-kube-api';

/*
 * The chart's RBAC for cluster mode against what the code does: the controller and two node agents
 * talk to the fake API server each through a proxy that holds the rules the default render grants
 * their ServiceAccount, and refuses anything else with 403 as the API server would. One run through
 * every controller RPC that reaches the API (and a node agent that fails) must be refused nothing,
 * and must use every grant: the roles are exactly what the code needs.
 */
const MOUNT: VolumeCapability = {
  mount: { fs_type: 'ext4', mount_flags: [] },
  access_mode: { mode: 'SINGLE_NODE_WRITER' },
  access_type: 'mount',
};
const on = (node: string): object => ({ segments: { [TOPOLOGY_KEY]: node } });
const CLAIM = { 'csi.storage.k8s.io/pvc/name': 'data', 'csi.storage.k8s.io/pvc/namespace': 'apps' };

describe('charts/vduse-csi RBAC against cluster mode', function () {
  this.timeout(180_000);
  let objects: KubeObject[];
  let api: FakeKubeApi;
  let root: string;
  let controllerProxy: AuthorizingProxy;
  let nodeProxy: AuthorizingProxy;
  let controllerGrants: Grants;
  let nodeGrants: Grants;
  const agents: NodeAgent[] = [];
  let logLevel: string;

  before(() => {
    // The failing agent's warnings are expected here.
    logLevel = log.level;
    setLogLevel('error');
    objects = render();
    // The controller's ServiceAccount is the sidecars' too: only the plugin's own roles count here.
    controllerGrants = grantsOf(objects, 'vduse-csi-controller', NAMESPACE, 'vduse-csi-controller');
    nodeGrants = grantsOf(objects, 'vduse-csi-node', NAMESPACE);
    assert.ok(controllerGrants.cluster.length > 0 && controllerGrants.namespaced.length === 1);
    assert.ok(nodeGrants.cluster.length > 0 && nodeGrants.namespaced.length === 1);
  });

  after(() => setLogLevel(logLevel));

  beforeEach(async () => {
    api = await FakeKubeApi.start();
    root = mkdtempSync(join(tmpdir(), 'vduse-rbac-'));
    controllerProxy = await AuthorizingProxy.start(api.url, controllerGrants);
    nodeProxy = await AuthorizingProxy.start(api.url, nodeGrants);
  });

  afterEach(async () => {
    for (const agent of agents.splice(0)) await agent.stop();
    await controllerProxy.stop();
    await nodeProxy.stop();
    await api.stop();
    rmSync(root, { recursive: true, force: true });
  });

  function startAgent(nodeId: string, dataDir: string): Cluster {
    const cluster = new Cluster({
      config: nodeProxy.kubeConfig(),
      namespace: NAMESPACE,
      instance: nodeId,
      capacityIntervalMs: 60_000,
      retryMs: 200,
    });
    const images = new ImageDirectory(dataDir);
    const servers = new VolumeServers({
      stateDir: join(root, nodeId, 'state'),
      command: [process.execPath, '/nonexistent'],
      logLevel: 'warn',
      standby: false,
    });
    const agent = cluster.nodeAgent(nodeId, images, new LocalRealizer(images, servers));
    agent.start();
    agents.push(agent);
    return cluster;
  }

  const eventsAbout = (kind: string): unknown[] =>
    api.list('/events').filter((event) => (event.involvedObject as { kind?: string }).kind === kind);

  it('the controller and node agents are refused nothing and use every grant', async () => {
    const cluster = new Cluster({
      config: controllerProxy.kubeConfig(),
      namespace: NAMESPACE,
      instance: 'controller',
      waitTimeoutMs: 10_000,
      capacityIntervalMs: 60_000,
    });
    const controller = new ControllerService({
      store: cluster.store,
      realizer: cluster.realizer(),
      placement: cluster.placement(),
      locks: new OperationLocks(),
      maximumVolumeBytes: 2 ** 44,
    });
    startAgent('node-a', join(root, 'node-a', 'data'));
    // node-b cannot make images: a regular file stands where its data directory would be.
    writeFileSync(join(root, 'blocker'), '');
    const nodeB = startAgent('node-b', join(root, 'blocker', 'data'));
    // This host has no VDUSE: node-b's plugin is not ready, and says why on its pod.
    const identity = new IdentityService({
      controller: false,
      node: true,
      dataDir: root,
      onReadinessChange: nodeB.readinessEvents({ name: 'vduse-csi-node-b' }).onChange,
    });
    assert.match((await identity.readinessProblem()) ?? '', /vduse/);
    await eventually(async () => assert.equal(eventsAbout('Pod').length, 1), 10_000);

    let counter = 0;
    const create = (request: object): Promise<Reply> =>
      controller.CreateVolume({
        name: `pvc-rbac-${++counter}`,
        volume_capabilities: [MOUNT],
        capacity_range: { required_bytes: 16 * MiB },
        ...request,
      });

    await eventually(async () => {
      const reply = (await controller.GetCapacity({ accessible_topology: on('node-a') })) as Reply;
      assert.ok(reply.available_capacity > 0);
    }, 10_000);
    // No topology: placed by the capacity reports (only node-a's agent can report).
    const { volume } = await create({ parameters: CLAIM });
    assert.deepEqual(volume.accessible_topology, [on('node-a')]);
    await controller.ControllerExpandVolume({
      volume_id: volume.volume_id,
      capacity_range: { required_bytes: 32 * MiB },
    });
    const { snapshot } = (await controller.CreateSnapshot({
      name: 'snap-rbac',
      source_volume_id: volume.volume_id,
    })) as Reply;
    const restored = await create({
      capacity_range: { required_bytes: 32 * MiB },
      volume_content_source: { snapshot: { snapshot_id: snapshot.snapshot_id }, type: 'snapshot' },
    });
    assert.equal(((await controller.ListVolumes({})) as Reply).entries.length, 2);
    assert.equal(((await controller.ListSnapshots({})) as Reply).entries.length, 1);
    await controller.ControllerGetVolume({ volume_id: restored.volume.volume_id });

    // A failing node agent: the CSI error, and a Warning Event on the claim.
    await assert.rejects(
      create({ accessibility_requirements: { requisite: [on('node-b')] }, parameters: CLAIM }),
      (error: CsiError) => error.code === status.INTERNAL,
    );
    assert.equal(eventsAbout('PersistentVolumeClaim').length, 1);

    await controller.DeleteSnapshot({ snapshot_id: snapshot.snapshot_id });
    for (const id of [volume.volume_id, restored.volume.volume_id])
      await controller.DeleteVolume({ volume_id: id });
    await eventually(async () => assert.equal(api.list('csi.vduse.dev/vdusevolumes').length, 0), 10_000);
    for (const agent of agents.splice(0)) await agent.stop();

    assert.deepEqual(controllerProxy.denied, [], 'requests of the controller refused');
    assert.deepEqual(nodeProxy.denied, [], 'requests of the node agents refused');
    assert.deepEqual([...controllerProxy.used].sort(), allGrants(controllerGrants), 'controller grants');
    assert.deepEqual([...nodeProxy.used].sort(), allGrants(nodeGrants), 'node grants');
  });

  it('the proxy refuses what the roles leave out', async () => {
    const cluster = new Cluster({
      config: nodeProxy.kubeConfig(),
      namespace: NAMESPACE,
      instance: 'node-a',
    });
    // The node agent's ServiceAccount may not create VduseVolumes (only the controller does).
    await assert.rejects(
      cluster.store.putVolume({
        id: `vol-${'0'.repeat(32)}`,
        name: 'x',
        capacityBytes: MiB,
        parameters: { queues: 1, queueSize: 256, blockSize: 512 },
        source: null,
        nodeId: 'node-a',
        createdAtMs: 0,
      }),
    );
    assert.deepEqual(nodeProxy.denied, ['create csi.vduse.dev/vdusevolumes /']);
  });
});

function allGrants(granted: Grants): string[] {
  return grants([...granted.cluster, ...granted.namespaced.flatMap(({ rules }) => rules)]);
}

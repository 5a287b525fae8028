import { eventually } from '../support/eventually';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { ApiException, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { ControllerService } from '../../src/csi/controller';
import { CsiError } from '../../src/csi/errors';
import { IdentityService } from '../../src/csi/identity';
import { LocalRealizer } from '../../src/csi/local-realizer';
import { VolumeCapability } from '../../src/csi/messages';
import { OperationLocks } from '../../src/csi/operation-locks';
import { DEFAULT_PARAMETERS } from '../../src/csi/parameters';
import { TOPOLOGY_KEY } from '../../src/csi/topology';
import { VolumeServers } from '../../src/csi/volume-servers';
import { Cluster } from '../../src/k8s/cluster';
import { CustomResource } from '../../src/k8s/custom-resource';
import { NodeAgent } from '../../src/k8s/node-agent';
import {
  NODE_LABEL,
  SNAPSHOTS,
  SnapshotObject,
  VOLUMES,
  VolumeObject,
  snapshotObject,
  volumeObject,
} from '../../src/k8s/resources';
import { log, setLogLevel } from '../../src/log';
import { ImageDirectory } from '../../src/storage/images';
import { UserInfo } from '../support/admission-policy';
import { Admission } from '../support/admission-request';
import { KubeObject, NAMESPACE, render } from '../support/chart';
import { AuthorizingProxy, Grants, grantsOf, podServiceAccountUser } from '../support/chart-authorizer';
import { Rule, grants } from '../support/chart-rbac';
import { MiB, Reply } from '../support/csi-harness';
import { FakeKubeApi } from '../support/fake-kube-api';

/*
 * The chart's RBAC for cluster mode against what the code does: the controller and two node agents
 * talk to the fake API server each through a proxy that holds the rules the render grants their
 * ServiceAccount, and refuses anything else with 403 as the API server would. One run through
 * every controller RPC that reaches the API (and a node agent that fails) must be refused nothing,
 * and must use every grant: the roles are exactly what the code needs. The render is that of a
 * cluster serving ValidatingAdmissionPolicy (Kubernetes >= 1.30): the proxies also apply the
 * chart's policy, each node agent with its own pod's token, which names its node. The second part
 * tries writes that RBAC lets a node plugin make and the policy refuses.
 */
const ADMISSION_API = ['admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy'];
const CONTROLLER_USER = podServiceAccountUser(NAMESPACE, 'vduse-csi-controller');
const nodePluginUser = (node?: string): UserInfo => podServiceAccountUser(NAMESPACE, 'vduse-csi-node', node);
/** The device daemon's pods (device-daemon.yaml): an account of their own, bound to nothing. */
const DEVICE_DAEMON_ACCOUNT = 'vduse-csi-device-daemon';
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
  let admission: Admission;
  const agents: NodeAgent[] = [];
  let logLevel: string;

  before(() => {
    // The failing agent's warnings are expected here.
    logLevel = log.level;
    setLogLevel('error');
    objects = render({ apiVersions: ADMISSION_API, includeCrds: true });
    admission = Admission.of(objects);
    assert.equal(admission.policies.size, 1);
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
    controllerProxy = await AuthorizingProxy.start(api.url, controllerGrants, admission);
    nodeProxy = await AuthorizingProxy.start(api.url, nodeGrants, admission);
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
      config: nodeProxy.kubeConfig(nodePluginUser(nodeId)),
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
      copyDirs: [],
    });
    const agent = cluster.nodeAgent(nodeId, images, new LocalRealizer(images, servers));
    agent.start();
    agents.push(agent);
    return cluster;
  }

  const eventsAbout = (kind: string): Reply[] =>
    api.list('/events').filter((event) => (event.involvedObject as { kind?: string }).kind === kind);

  it('the controller and node agents are refused nothing and use every grant', async () => {
    const cluster = new Cluster({
      config: controllerProxy.kubeConfig(CONTROLLER_USER),
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
    const nodeBData = join(root, 'node-b', 'data');
    const nodeB = startAgent('node-b', nodeBData);
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
      for (const node of ['node-a', 'node-b']) {
        const reply = (await controller.GetCapacity({ accessible_topology: on(node) })) as Reply;
        assert.ok(reply.available_capacity > 0);
      }
    }, 10_000);
    // node-b cannot make images once it reported room: a regular file takes its data directory's place.
    rmSync(nodeBData, { recursive: true, force: true });
    writeFileSync(nodeBData, '');
    // Placed on node-a by its topology.
    const { volume } = await create({
      accessibility_requirements: { requisite: [on('node-a')] },
      parameters: CLAIM,
    });
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

    // A failing node agent: the CSI error, and a Warning Event on the claim; the provisioner's
    // retry fails again and counts on the same Event.
    const failing = {
      name: 'pvc-rbac-failing',
      volume_capabilities: [MOUNT],
      capacity_range: { required_bytes: 16 * MiB },
      accessibility_requirements: { requisite: [on('node-b')] },
      parameters: CLAIM,
    };
    for (let attempt = 0; attempt < 2; attempt++)
      await assert.rejects(
        controller.CreateVolume(failing),
        (error: CsiError) => error.code === status.INTERNAL,
      );
    assert.deepEqual(
      eventsAbout('PersistentVolumeClaim').map((event) => [event.reason, event.count]),
      [['CreateVolumeFailed', 2]],
    );
    // What a node plugin tells of a volume's device lands on the claim, in the claim's namespace.
    const claim = { name: 'data', namespace: 'apps' };
    await nodeB.countedEvents.onClaim(claim, 'Warning', 'VolumeIOErrors', '3 requests failed', 3);
    await nodeB.countedEvents.onClaim(claim, 'Warning', 'VolumeIOErrors', '2 requests failed', 2);
    const ioErrors = eventsAbout('PersistentVolumeClaim').filter(
      (event) => event.reason === 'VolumeIOErrors',
    );
    assert.deepEqual(
      ioErrors.map((event) => [event.metadata.namespace, event.count, event.message]),
      [['apps', 5, '2 requests failed']],
    );
    // ... and on the pod the volume is published to, in the pod's namespace, named as kubelet said.
    const pod = { name: 'web-0', namespace: 'shop', uid: '0b5f3c2e-7d41-4a9e-9f2b-3c6d8e1a2b4c' };
    await nodeB.countedEvents.onPod(pod, 'Warning', 'DeviceTakenOver', 'taken over');
    assert.deepEqual(
      eventsAbout('Pod')
        .filter((event) => event.metadata.namespace === pod.namespace)
        .map((event) => [event.involvedObject, event.reason]),
      [[{ apiVersion: 'v1', kind: 'Pod', ...pod }, 'DeviceTakenOver']],
    );

    await controller.DeleteSnapshot({ snapshot_id: snapshot.snapshot_id });
    for (const id of [volume.volume_id, restored.volume.volume_id])
      await controller.DeleteVolume({ volume_id: id });
    await eventually(async () => assert.equal(api.list('csi.vduse.dev/vdusevolumes').length, 0), 10_000);
    for (const agent of agents.splice(0)) await agent.stop();

    assert.deepEqual(controllerProxy.denied, [], 'requests of the controller refused');
    assert.deepEqual(nodeProxy.denied, [], 'requests of the node agents refused');
    assert.deepEqual([...controllerProxy.rejected, ...nodeProxy.rejected], [], 'writes the policy refused');
    // The policy saw the node agents' status writes and finalizer removals, and let them through.
    assert.deepEqual([...nodeProxy.admitted].sort(), [
      'update csi.vduse.dev/vdusesnapshots',
      'update csi.vduse.dev/vdusesnapshots/status',
      'update csi.vduse.dev/vdusevolumes',
      'update csi.vduse.dev/vdusevolumes/status',
    ]);
    assert.deepEqual([...controllerProxy.used].sort(), allGrants(controllerGrants), 'controller grants');
    assert.deepEqual([...nodeProxy.used].sort(), allGrants(nodeGrants), 'node grants');
  });

  it('the proxy refuses what the roles leave out', async () => {
    const cluster = new Cluster({
      config: nodeProxy.kubeConfig(nodePluginUser('node-a')),
      namespace: NAMESPACE,
      instance: 'node-a',
    });
    // The node agent's ServiceAccount may not create VduseVolumes (only the controller does).
    await assert.rejects(
      cluster.store.putVolume({
        id: `vol-${'0'.repeat(32)}`,
        name: 'x',
        capacityBytes: MiB,
        parameters: DEFAULT_PARAMETERS,
        source: null,
        nodeId: 'node-a',
        createdAtMs: 0,
      }),
    );
    assert.deepEqual(nodeProxy.denied, ['create csi.vduse.dev/vdusevolumes /']);
  });

  it("the device daemon's ServiceAccount is granted nothing: the API refuses it what the plugins may do", async () => {
    const granted = grantsOf(objects, DEVICE_DAEMON_ACCOUNT, NAMESPACE);
    assert.deepEqual(granted, { cluster: [], namespaced: [] });
    // Its pods mount no token; were one made for the account, it would get nowhere either.
    const proxy = await AuthorizingProxy.start(api.url, granted, admission);
    try {
      const config = proxy.kubeConfig(podServiceAccountUser(NAMESPACE, DEVICE_DAEMON_ACCOUNT, 'node-a'));
      const volumes = new CustomResource<VolumeObject>(config, VOLUMES);
      const id = `vol-${'d'.repeat(32)}`;
      const forbidden = (error: ApiException<string>): boolean => error.code === 403;
      await assert.rejects(volumes.list(), forbidden);
      await assert.rejects(volumes.get(id), forbidden);
      await assert.rejects(new CustomResource<SnapshotObject>(config, SNAPSHOTS).list(), forbidden);
      await assert.rejects(
        volumes.create(
          volumeObject({
            id,
            name: 'pvc-daemon',
            capacityBytes: MiB,
            parameters: DEFAULT_PARAMETERS,
            source: null,
            nodeId: 'node-a',
            createdAtMs: 0,
          }),
        ),
        forbidden,
      );
      await assert.rejects(
        config
          .makeApiClient(CoreV1Api)
          .readNamespacedConfigMap({ name: 'vduse-csi-capacity', namespace: NAMESPACE }),
        forbidden,
      );
      assert.deepEqual(proxy.denied, [
        'list csi.vduse.dev/vdusevolumes /',
        `get csi.vduse.dev/vdusevolumes /${id}`,
        'list csi.vduse.dev/vdusesnapshots /',
        'create csi.vduse.dev/vdusevolumes /',
        `get /configmaps ${NAMESPACE}/vduse-csi-capacity`,
      ]);
      assert.deepEqual([...proxy.used], []);
    } finally {
      await proxy.stop();
    }
  });

  /*
   * What the policy refuses a node plugin that RBAC lets through. node-a's plugin (or whoever an
   * attempt names) writes, through a proxy with the chart's node grants (widened where an attempt
   * says, so that only the policy stands in its way), to objects the controller made for node-a
   * and node-b. With the policy each attempt is refused as the API server refuses it; without the
   * policy every one of them goes through: the refusals are the policy's.
   */
  describe('the admission policy: each node plugin writes only the objects of its own node', () => {
    interface Objects {
      volumes: CustomResource<VolumeObject>;
      snapshots: CustomResource<SnapshotObject>;
      /** Volume and snapshot ids of node-a and of node-b. */
      ids: Record<'node-a' | 'node-b', { volume: string; snapshot: string }>;
    }
    interface Attempt {
      what: string;
      /** node-a's plugin when not given. */
      user?: UserInfo;
      /** Rules beyond the chart's. */
      widen?: Rule[];
      /** The policy's message. */
      refusal: RegExp;
      run(objects: Objects): Promise<unknown>;
    }
    const OWN_NODE = /^node node-a may only write the objects of its own node$/;
    const STATUS_ONLY =
      /^outside the status, the node plugin may only remove the finalizer csi\.vduse\.dev\/image of an object being deleted$/;
    const ready = <T extends VolumeObject | SnapshotObject>(object: T): T => {
      object.status = { phase: 'Ready' };
      return object;
    };
    const withoutFinalizers = (object: VolumeObject): VolumeObject => {
      object.metadata.finalizers = [];
      return object;
    };
    const ATTEMPTS: Attempt[] = [
      {
        what: "node-a writes the status of node-b's volume",
        refusal: OWN_NODE,
        run: ({ volumes, ids }) => volumes.update(ids['node-b'].volume, ready, 'status'),
      },
      {
        what: "node-a writes the status of node-b's snapshot",
        refusal: OWN_NODE,
        run: ({ snapshots, ids }) => snapshots.update(ids['node-b'].snapshot, ready, 'status'),
      },
      {
        what: "node-a relabels node-b's volume to itself (its watch would take it in)",
        refusal: OWN_NODE,
        run: ({ volumes, ids }) =>
          volumes.update(ids['node-b'].volume, (object) => {
            object.metadata.labels = { ...object.metadata.labels, [NODE_LABEL]: 'node-a' };
            return object;
          }),
      },
      {
        what: "node-a removes the finalizer of node-b's volume",
        refusal: OWN_NODE,
        run: ({ volumes, ids }) => volumes.update(ids['node-b'].volume, withoutFinalizers),
      },
      {
        what: 'node-a changes the spec of its own volume',
        refusal: STATUS_ONLY,
        run: ({ volumes, ids }) =>
          volumes.update(ids['node-a'].volume, (object) => {
            object.spec.capacityBytes *= 2;
            return object;
          }),
      },
      {
        what: 'node-a removes the finalizer of its own volume, which is not being deleted',
        refusal: STATUS_ONLY,
        run: ({ volumes, ids }) => volumes.update(ids['node-a'].volume, withoutFinalizers),
      },
      {
        what: 'node-a deletes its own volume (with a role that would allow it)',
        widen: [{ apiGroups: ['csi.vduse.dev'], resources: ['vdusevolumes'], verbs: ['delete'] }],
        refusal: /^the node plugin never creates or deletes VduseVolumes or VduseSnapshots$/,
        run: ({ volumes, ids }) => volumes.delete(ids['node-a'].volume),
      },
      {
        what: "a token of the node plugin's ServiceAccount that names no node writes a status",
        user: nodePluginUser(),
        refusal: /^the token names no node: the node plugin must use its pod's token, which names/,
        run: ({ volumes, ids }) => volumes.update(ids['node-a'].volume, ready, 'status'),
      },
    ];

    let made = 0;
    /** A volume and a snapshot of each node, made by the controller; their ids. */
    async function makeObjects(): Promise<Objects['ids']> {
      const config = controllerProxy.kubeConfig(CONTROLLER_USER);
      const ids = {} as Objects['ids'];
      for (const nodeId of ['node-a', 'node-b'] as const) {
        const hex = (++made).toString(16).padStart(32, '0');
        const volume = `vol-${hex}`;
        const snapshot = `snap-${hex}`;
        await new CustomResource<VolumeObject>(config, VOLUMES).create(
          volumeObject({
            id: volume,
            name: `pvc-${hex}`,
            capacityBytes: MiB,
            parameters: DEFAULT_PARAMETERS,
            source: null,
            nodeId,
            createdAtMs: 0,
          }),
        );
        await new CustomResource<SnapshotObject>(config, SNAPSHOTS).create(
          snapshotObject({
            id: snapshot,
            name: `snapshot-${hex}`,
            sourceVolumeId: volume,
            nodeId,
            sizeBytes: 0,
            createdAtMs: 0,
          }),
        );
        ids[nodeId] = { volume, snapshot };
      }
      return ids;
    }

    /** The attempt's proxy (started here, stopped by the caller) and what it writes with. */
    async function attemptWith(
      attempt: Attempt,
      withPolicy: boolean,
    ): Promise<{ proxy: AuthorizingProxy; objects: Objects }> {
      const granted: Grants = { ...nodeGrants, cluster: [...nodeGrants.cluster, ...(attempt.widen ?? [])] };
      const proxy = await AuthorizingProxy.start(api.url, granted, withPolicy ? admission : undefined);
      const config: KubeConfig = proxy.kubeConfig(attempt.user ?? nodePluginUser('node-a'));
      const objects = {
        volumes: new CustomResource<VolumeObject>(config, VOLUMES),
        snapshots: new CustomResource<SnapshotObject>(config, SNAPSHOTS),
        ids: await makeObjects(),
      };
      return { proxy, objects };
    }

    for (const attempt of ATTEMPTS) {
      it(`refuses: ${attempt.what}`, async () => {
        const { proxy, objects } = await attemptWith(attempt, true);
        try {
          await assert.rejects(attempt.run(objects), (error: ApiException<string>) => {
            // The API server's answer to a policy's denial: the policy's reason (Forbidden: 403),
            // admission.NewForbidden's message naming the object, the policy and its binding.
            assert.equal(error.code, 403);
            const answer = JSON.parse(error.body) as { reason: string; message: string; details: object };
            assert.equal(answer.reason, 'Forbidden');
            const match =
              /^vduse(volumes|snapshots)\.csi\.vduse\.dev "(vol|snap)-[0-9a-f]{32}" is forbidden: ValidatingAdmissionPolicy 'vduse-csi-node-objects' with binding 'vduse-csi-node-objects' denied request: (.*)$/.exec(
                answer.message,
              );
            assert.ok(match, answer.message);
            assert.match(match[3]!, attempt.refusal);
            return true;
          });
          assert.equal(proxy.rejected.length, 1);
          assert.deepEqual(proxy.denied, [], 'RBAC let it through');
        } finally {
          await proxy.stop();
        }
      });
    }

    it('lets every one of them through when the chart renders no policy', async () => {
      for (const attempt of ATTEMPTS) {
        const { proxy, objects } = await attemptWith(attempt, false);
        try {
          await attempt.run(objects);
          assert.deepEqual(proxy.denied, [], attempt.what);
        } finally {
          await proxy.stop();
        }
      }
    });
  });
});

function allGrants(granted: Grants): string[] {
  return grants([...granted.cluster, ...granted.namespaced.flatMap(({ rules }) => rules)]);
}

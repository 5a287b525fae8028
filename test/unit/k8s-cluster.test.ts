import { eventually } from '../support/eventually';
import assert from 'node:assert/strict';
import {
  closeSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { CoreV1Api, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { CsiError } from '../../src/csi/errors';
import { VolumeCapability } from '../../src/csi/messages';
import { NodeOptions, NodeService } from '../../src/csi/node';
import { OperationLocks } from '../../src/csi/operation-locks';
import { TOPOLOGY_KEY } from '../../src/csi/topology';
import { VolumeServers } from '../../src/csi/volume-servers';
import { IMAGE_HEALTHY } from '../../src/k8s/conditions';
import { CAPACITY_CONFIGMAP } from '../../src/k8s/node-capacity';
import { FINALIZER } from '../../src/k8s/resources';
import { log, setLogLevel } from '../../src/log';
import { FakeKubeCluster, NAMESPACE } from '../support/fake-kube-cluster';
import { CsiHarness, MiB, Reply } from '../support/csi-harness';
import { SmallFilesystem } from '../support/small-filesystem';
import { requireRoot } from '../support/skips';

/*
 * Cluster mode with no real API server: the controller and the node agents of two nodes (each with
 * its own image directory) talk only through the in-process fake of the Kubernetes API.
 */
const VOLUMES = 'csi.vduse.dev/vdusevolumes';
const SNAPSHOTS = 'csi.vduse.dev/vdusesnapshots';
const on = (node: string): object => ({ segments: { [TOPOLOGY_KEY]: node } });
// As proto-loader decodes it (oneof name set): these tests call the service objects directly.
const MOUNT: VolumeCapability = {
  mount: { fs_type: 'ext4', mount_flags: [] },
  access_mode: { mode: 'SINGLE_NODE_WRITER' },
  access_type: 'mount',
};

describe('cluster mode: controller and node agents through the Kubernetes API', function () {
  this.timeout(30_000);
  let kube: FakeKubeCluster;
  let counter = 0;
  const uniqueName = (): string => `pvc-k8s-${process.pid}-${++counter}`;
  const create = (request: object = {}): Promise<Reply> =>
    kube.controller.CreateVolume({
      name: uniqueName(),
      volume_capabilities: [MOUNT],
      capacity_range: { required_bytes: 16 * MiB },
      ...request,
    });
  const image = (node: string, kind: 'volumes' | 'snapshots', id: string): string =>
    kube.node(node).images.path(kind, id);
  const volumeStatus = (id: string): Reply => kube.api.object(VOLUMES, id)?.status;
  const capacityReport = (
    node: string,
  ): { freeBytes: number; roomBytes: number; updatedAt: string } | undefined => {
    const data = kube.api.object('/configmaps', CAPACITY_CONFIGMAP, NAMESPACE)?.data as Record<
      string,
      string
    >;
    return data?.[node] === undefined ? undefined : JSON.parse(data[node]);
  };
  const capacityOn = async (node: string, parameters: Record<string, string> = {}): Promise<number> =>
    ((await kube.controller.GetCapacity({ accessible_topology: on(node), parameters })) as Reply)
      .available_capacity;
  /** Asserts the promise fails with RESOURCE_EXHAUSTED at once (not after the wait) and returns the message. */
  const exhausted = async (reply: Promise<unknown>): Promise<string> => {
    const started = Date.now();
    let message = '';
    await assert.rejects(reply, (error: CsiError) => {
      assert.equal(error.code, status.RESOURCE_EXHAUSTED, error.message);
      message = error.message;
      return true;
    });
    assert.ok(Date.now() - started < 2000, 'answered at once');
    return message;
  };

  afterEach(async () => {
    await kube?.stop();
  });

  describe('with both agents running', () => {
    beforeEach(async () => {
      kube = await FakeKubeCluster.start();
    });

    it('creates the volume on the preferred node, which reports it Ready', async () => {
      const { volume } = await create({
        accessibility_requirements: { requisite: [on('node-a'), on('node-b')], preferred: [on('node-b')] },
      });
      assert.deepEqual(volume.accessible_topology, [on('node-b')]);
      assert.equal(statSync(image('node-b', 'volumes', volume.volume_id)).size, 16 * MiB);
      assert.ok(!kube.node('node-a').images.exists('volumes', volume.volume_id));
      const object = kube.api.object(VOLUMES, volume.volume_id)!;
      assert.deepEqual(object.metadata.finalizers, [FINALIZER]);
      assert.deepEqual(object.status, {
        ...(object.status as object),
        phase: 'Ready',
        capacityBytes: 16 * MiB,
        observedGeneration: 1,
      });
      const listed = (await kube.controller.ListVolumes({})) as Reply;
      assert.equal(listed.entries[0].status.volume_condition.abnormal, false);
      // The controller waited on a watch: it never polled the object.
      const gets = kube.api.requests.filter((line) => line === `GET /apis/${VOLUMES}/${volume.volume_id}`);
      assert.ok(gets.length <= 1, `controller polled: ${gets.length} GETs`);
    });

    it('answers RESOURCE_EXHAUSTED when the topology names no node', async () => {
      await assert.rejects(
        create({ accessibility_requirements: { requisite: [{ segments: { zone: 'x' } }], preferred: [] } }),
        (error: CsiError) => error.code === status.RESOURCE_EXHAUSTED,
      );
    });

    it('snapshots, restores and clones on the source node, expands and deletes', async () => {
      const { volume } = await create({ accessibility_requirements: { preferred: [on('node-a')] } });
      const source = image('node-a', 'volumes', volume.volume_id);
      writeAt(source, 3 * MiB, 'cut here');
      const { snapshot } = (await kube.controller.CreateSnapshot({
        name: uniqueName(),
        source_volume_id: volume.volume_id,
      })) as Reply;
      assert.equal(snapshot.size_bytes, 16 * MiB);
      assert.equal(snapshot.ready_to_use, true);
      assert.equal(readAt(image('node-a', 'snapshots', snapshot.snapshot_id), 3 * MiB, 8), 'cut here');
      writeAt(source, 3 * MiB, 'changed!');

      // A restore goes where its snapshot is, even when another node is preferred.
      const restored = await create({
        capacity_range: { required_bytes: 32 * MiB },
        volume_content_source: { snapshot: { snapshot_id: snapshot.snapshot_id }, type: 'snapshot' },
        accessibility_requirements: { requisite: [on('node-a'), on('node-b')], preferred: [on('node-b')] },
      });
      assert.deepEqual(restored.volume.accessible_topology, [on('node-a')]);
      assert.equal(readAt(image('node-a', 'volumes', restored.volume.volume_id), 3 * MiB, 8), 'cut here');
      assert.equal(statSync(image('node-a', 'volumes', restored.volume.volume_id)).size, 32 * MiB);
      await assert.rejects(
        create({
          volume_content_source: { volume: { volume_id: volume.volume_id }, type: 'volume' },
          accessibility_requirements: { requisite: [on('node-b')] },
        }),
        (error: CsiError) => error.code === status.RESOURCE_EXHAUSTED,
      );
      const clone = await create({
        capacity_range: null,
        volume_content_source: { volume: { volume_id: volume.volume_id }, type: 'volume' },
      });
      assert.equal(readAt(image('node-a', 'volumes', clone.volume.volume_id), 3 * MiB, 8), 'changed!');

      const grown = (await kube.controller.ControllerExpandVolume({
        volume_id: volume.volume_id,
        capacity_range: { required_bytes: 48 * MiB },
      })) as Reply;
      assert.equal(grown.capacity_bytes, 48 * MiB);
      assert.equal(statSync(source).size, 48 * MiB);
      const object = kube.api.object(VOLUMES, volume.volume_id)!;
      assert.equal(object.metadata.generation, 2);
      assert.deepEqual(
        [(object.status as Reply).phase, (object.status as Reply).capacityBytes],
        ['Ready', 48 * MiB],
      );

      await kube.controller.DeleteSnapshot({ snapshot_id: snapshot.snapshot_id });
      assert.equal(kube.api.object(SNAPSHOTS, snapshot.snapshot_id), undefined);
      assert.ok(!kube.node('node-a').images.exists('snapshots', snapshot.snapshot_id));
      for (const id of [volume.volume_id, restored.volume.volume_id, clone.volume.volume_id]) {
        await kube.controller.DeleteVolume({ volume_id: id });
        await kube.controller.DeleteVolume({ volume_id: id });
        assert.equal(kube.api.object(VOLUMES, id), undefined);
        assert.ok(!kube.node('node-a').images.exists('volumes', id));
      }
      assert.deepEqual(((await kube.controller.ListVolumes({})) as Reply).entries, []);
    });

    it('reports capacity per node from what the agents publish', async () => {
      await eventually(async () => {
        const reply = (await kube.controller.GetCapacity({ accessible_topology: on('node-b') })) as Reply;
        assert.ok(reply.available_capacity > 0);
      }, 5000);
      const unknown = (await kube.controller.GetCapacity({ accessible_topology: on('node-z') })) as Reply;
      assert.equal(unknown.available_capacity, 0);
      // With no topology at all, a volume goes to a node that reports room.
      const { volume } = await create({ accessibility_requirements: null });
      assert.ok(['node-a', 'node-b'].includes(volume.accessible_topology[0].segments[TOPOLOGY_KEY]));
    });

    it('an agent restarted from a list, after its watch history was compacted, finishes the work', async () => {
      await kube.stopAgent('node-b');
      const name = uniqueName();
      const request = {
        name,
        volume_capabilities: [MOUNT],
        capacity_range: { required_bytes: 8 * MiB },
        accessibility_requirements: { preferred: [on('node-b')] },
      };
      const first = kube.controller.CreateVolume(request);
      await eventually(async () => assert.equal(kube.api.list(VOLUMES).length, 1), 5000);
      kube.api.compact();
      kube.startAgent('node-b');
      const { volume } = await first;
      assert.ok(kube.node('node-b').images.exists('volumes', volume.volume_id));
      // Every watch stream ends; the agents resume and still see new work.
      kube.api.closeWatches();
      const again = await create({ accessibility_requirements: { preferred: [on('node-b')] } });
      assert.ok(kube.node('node-b').images.exists('volumes', again.volume.volume_id));
      assert.deepEqual((await kube.controller.CreateVolume(request)).volume, volume);
    });

    it('places no volume on a node whose agent never reported, and names it and its topology', async () => {
      const noAgent = await exhausted(create({ accessibility_requirements: { requisite: [on('node-c')] } }));
      assert.match(noAgent, /node-c \(requisite topology: its node agent never reported\)/);
      const both = await exhausted(
        create({
          accessibility_requirements: { requisite: [on('node-c'), on('node-d')], preferred: [on('node-d')] },
        }),
      );
      assert.match(both, /node-d \(preferred and requisite topology: .*\); node-c \(requisite topology: /);
      // A preferred node without an agent gives way to a requisite one with an agent.
      const { volume } = await create({
        accessibility_requirements: { requisite: [on('node-c'), on('node-b')], preferred: [on('node-c')] },
      });
      assert.deepEqual(volume.accessible_topology, [on('node-b')]);
      // Preferred alone is only a wish: a node with an agent takes the volume.
      const wish = await create({ accessibility_requirements: { preferred: [on('node-c')] } });
      assert.ok(['node-a', 'node-b'].includes(wish.volume.accessible_topology[0].segments[TOPOLOGY_KEY]));
      assert.equal(kube.api.list(VOLUMES).length, 2, 'no object for the refused volumes');
    });

    it('the agent retries API requests that failed (5xx, dropped connection) instead of dropping them', async () => {
      // The first write of a piece of work: no later event of the object would run it again.
      const volumeStatusPath = /\/vdusevolumes\/[^/]+\/status$/;
      const snapshotStatusPath = /\/vdusesnapshots\/[^/]+\/status$/;
      kube.api.failNext({ method: 'PUT', path: volumeStatusPath, body: /"phase":"Creating"/ });
      kube.api.failNext({
        method: 'PUT',
        path: snapshotStatusPath,
        body: /"phase":"Creating"/,
        answer: 'disconnect',
      });
      // The write that reports a finished copy: failing it must not fail the snapshot.
      kube.api.failNext({ method: 'PUT', path: snapshotStatusPath, body: /"phase":"Ready"/ });
      await quietly(async () => {
        const { volume } = await create({ accessibility_requirements: { requisite: [on('node-a')] } });
        assert.equal(volumeStatus(volume.volume_id).phase, 'Ready');
        const { snapshot } = (await kube.controller.CreateSnapshot({
          name: uniqueName(),
          source_volume_id: volume.volume_id,
        })) as Reply;
        assert.equal(snapshot.ready_to_use, true);
        // The capacity report too: it tells the controller the agent runs.
        await kube.stopAgent('node-b');
        const before = capacityReport('node-b')!.updatedAt;
        kube.api.failNext({ method: 'PATCH', path: /\/configmaps\/vduse-csi-capacity$/, body: /"node-b"/ });
        kube.startAgent('node-b');
        await eventually(async () => assert.notEqual(capacityReport('node-b')!.updatedAt, before), 2000);
      });
      assert.equal(kube.api.pendingFailures, 0);
    });

    it('the agent writes the device a volume is staged as on its status, the latest report last', async () => {
      const { volume } = await create({ accessibility_requirements: { requisite: [on('node-a')] } });
      const id = volume.volume_id;
      const agent = kube.node('node-a').agent!;
      // The report says its first attempt failed; the agent still tries again.
      kube.api.failNext({ method: 'PUT', path: /\/status$/, body: /"device":"\/dev\/vdb"/ });
      await quietly(async () => {
        await assert.rejects(agent.reportDevice(id, '/dev/vdb'), /503/);
        await eventually(async () => assert.equal(volumeStatus(id).device, '/dev/vdb'), 2000);
      });
      assert.equal(volumeStatus(id).phase, 'Ready');
      // Written when the report resolves; the latest report is the one that stays.
      await Promise.all([agent.reportDevice(id, undefined), agent.reportDevice(id, '/dev/vdc')]);
      assert.equal(volumeStatus(id).device, '/dev/vdc');
      await agent.reportDevice(id, undefined);
      assert.ok(!('device' in volumeStatus(id)));
      assert.equal(kube.api.pendingFailures, 0);
    });

    it("NodeUnstageVolume tells onDevice; the hook's failure does not fail the call", async () => {
      const { volume } = await create({ accessibility_requirements: { requisite: [on('node-a')] } });
      const unstage = (onDevice: NodeOptions['onDevice']): Promise<object> =>
        new NodeService({
          store: kube.cluster.store,
          images: kube.node('node-a').images,
          servers: new VolumeServers({
            stateDir: join(kube.root, 'node-a', 'state'),
            command: [process.execPath, '/nonexistent'],
            logLevel: 'warn',
            standby: false,
            copyDirs: [],
          }),
          locks: new OperationLocks(),
          stateDir: join(kube.root, 'node-a', 'state'),
          nodeId: 'node-a',
          maxVolumes: 8,
          onDevice,
        }).NodeUnstageVolume({
          volume_id: volume.volume_id,
          staging_target_path: join(kube.root, 'staging'),
        });
      const told: [string, string | undefined][] = [];
      await unstage((id, device) => void told.push([id, device]));
      assert.deepEqual(told, [[volume.volume_id, undefined]]);
      await quietly(async () => {
        await unstage(() => Promise.reject(new Error('the API server is away')));
        await unstage(() => {
          throw new Error('the API server is away');
        });
      });
    });
  });

  describe('with a short capacity interval', () => {
    beforeEach(async () => {
      kube = await FakeKubeCluster.start({ capacityIntervalMs: 200 });
    });

    it('a node whose agent stopped reporting takes no volume, not even one made from its own source', async () => {
      const { volume } = await create({ accessibility_requirements: { requisite: [on('node-b')] } });
      await kube.stopAgent('node-b');
      await eventually(async () => {
        const reply = (await kube.controller.GetCapacity({ accessible_topology: on('node-b') })) as Reply;
        assert.equal(reply.available_capacity, 0);
      }, 5000);
      const stale = await exhausted(create({ accessibility_requirements: { requisite: [on('node-b')] } }));
      assert.match(
        stale,
        /node-b \(requisite topology: its node agent last reported at \S+, more than 0\.6 s ago\)/,
      );
      const clone = await exhausted(
        create({ volume_content_source: { volume: { volume_id: volume.volume_id }, type: 'volume' } }),
      );
      assert.match(clone, /source's node node-b, but its node agent last reported at/);
      // No topology: the node that still reports.
      const elsewhere = await create({ accessibility_requirements: null });
      assert.deepEqual(elsewhere.volume.accessible_topology, [on('node-a')]);
    });

    it('the agent notices a truncated or vanished image of a Ready volume at its next report', async () => {
      const { volume } = await create({ accessibility_requirements: { requisite: [on('node-a')] } });
      const id = volume.volume_id;
      const condition = async (): Promise<Reply> =>
        ((await kube.controller.ControllerGetVolume({ volume_id: id })) as Reply).status.volume_condition;
      assert.equal((await condition()).abnormal, false);
      await quietly(async () => {
        truncateSync(image('node-a', 'volumes', id), 4 * MiB);
        await eventually(async () => {
          const truncated = await condition();
          assert.equal(truncated.abnormal, true);
          assert.match(
            truncated.message,
            /^node node-a reports: the image \S+ is 4194304 bytes, it was made with 16777216$/,
          );
        }, 5000);
        rmSync(image('node-a', 'volumes', id));
        await eventually(async () => {
          assert.match((await condition()).message, /^node node-a reports: the image \S+ is missing$/);
        }, 5000);
      });
      const listed = ((await kube.controller.ListVolumes({})) as Reply).entries[0].status.volume_condition;
      assert.equal(listed.abnormal, true);
      const imageHealthy = (volumeStatus(id).conditions as Reply[]).find((c) => c.type === IMAGE_HEALTHY);
      assert.deepEqual([imageHealthy.status, imageHealthy.reason], ['False', 'ImageMissing']);
      assert.equal(volumeStatus(id).phase, 'Ready');
    });

    it('refuses to grow a volume whose image is gone rather than make it again empty', async () => {
      const { volume } = await create({ accessibility_requirements: { requisite: [on('node-a')] } });
      const id = volume.volume_id;
      rmSync(image('node-a', 'volumes', id));
      await quietly(() =>
        assert.rejects(
          kube.controller.ControllerExpandVolume({
            volume_id: id,
            capacity_range: { required_bytes: 32 * MiB },
          }),
          (error: CsiError) =>
            error.code === status.FAILED_PRECONDITION &&
            /ImageLost: the image of volume \S+ is gone from node node-a; its data is lost/.test(
              error.message,
            ),
        ),
      );
      assert.ok(!kube.node('node-a').images.exists('volumes', id), 'no empty image made in its place');
      await kube.controller.DeleteVolume({ volume_id: id });
      await eventually(async () => assert.equal(kube.api.object(VOLUMES, id), undefined), 5000);
    });
  });

  describe('with small data directories: 32 MiB on node-a, 96 MiB on node-b', () => {
    const disks: Record<string, SmallFilesystem> = {
      'node-a': new SmallFilesystem(32 * MiB),
      'node-b': new SmallFilesystem(96 * MiB),
    };
    const nodeOf = (reply: Reply): string => reply.volume.accessible_topology[0].segments[TOPOLOGY_KEY];

    beforeEach(async function () {
      for (const disk of Object.values(disks)) await disk.create();
      if (!disks['node-a']!.mounted) requireRoot(this, 'mounting the small data directories');
      kube = await FakeKubeCluster.start({ dataDir: (node) => disks[node]!.dir });
    });
    afterEach(async () => {
      await kube?.stop();
      for (const disk of Object.values(disks)) await disk.remove();
    });

    it('agents report their room (older ones their free bytes); volumes go where they fit, RESOURCE_EXHAUSTED names each node', async () => {
      assert.equal(capacityReport('node-a')!.roomBytes, 32 * MiB);
      assert.equal(await capacityOn('node-b'), 96 * MiB);
      // No topology: the node with the most available.
      assert.equal(nodeOf(await create({ capacity_range: { required_bytes: 24 * MiB } })), 'node-b');
      // A preferred node without room gives way to one with room.
      const preferred = await create({
        capacity_range: { required_bytes: 40 * MiB },
        accessibility_requirements: { preferred: [on('node-a')] },
      });
      assert.equal(nodeOf(preferred), 'node-b');
      assert.equal(await capacityOn('node-b'), 32 * MiB);
      const both = await exhausted(
        create({
          capacity_range: { required_bytes: 40 * MiB },
          accessibility_requirements: { requisite: [on('node-a'), on('node-b')], preferred: [on('node-a')] },
        }),
      );
      assert.match(
        both,
        new RegExp(
          `no room for a volume of ${40 * MiB} bytes: node node-a has ${32 * MiB} bytes available .*; node node-b has ${32 * MiB} bytes available`,
        ),
      );
      // Growth is counted on the volume's node too.
      const grown = await exhausted(
        kube.controller.ControllerExpandVolume({
          volume_id: preferred.volume.volume_id,
          capacity_range: { required_bytes: 80 * MiB },
        }),
      );
      assert.match(grown, /cannot grow by 41943040 bytes: node node-b has 33554432 bytes available/);
      // A class that overcommits takes it.
      const thin = await create({
        capacity_range: { required_bytes: 40 * MiB },
        accessibility_requirements: { requisite: [on('node-a')] },
        parameters: { overcommitRatio: '2' },
      });
      assert.equal(nodeOf(thin), 'node-a');
      assert.equal(await capacityOn('node-a'), 0);
      assert.equal(await capacityOn('node-a', { overcommitRatio: '2' }), 24 * MiB);
      // An agent of an older build reports no roomBytes: its free bytes count as its room.
      await kube.stopAgent('node-a');
      const entry = { freeBytes: 5 * MiB, updatedAt: new Date().toISOString() };
      await kube.api
        .kubeConfig()
        .makeApiClient(CoreV1Api)
        .patchNamespacedConfigMap(
          {
            name: CAPACITY_CONFIGMAP,
            namespace: NAMESPACE,
            body: { data: { 'node-a': JSON.stringify(entry) } },
          },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        );
      assert.equal(await capacityOn('node-a', { overcommitRatio: '100' }), 500 * MiB - 40 * MiB);
    });
  });

  it('the plugin writes the device on the volume status before answering: NodeUnstageVolume clears it', async () => {
    const csi = await CsiHarness.start({ mode: 'all', store: 'kubernetes' });
    try {
      const { volume } = await csi.call('controller', 'CreateVolume', {
        name: uniqueName(),
        volume_capabilities: [{ mount: { fs_type: 'ext4' }, access_mode: { mode: 'SINGLE_NODE_WRITER' } }],
        capacity_range: { required_bytes: 8 * MiB },
      });
      // As a stage the plugin did before it restarted would have left it.
      csi.kube!.modify(VOLUMES, volume.volume_id, (object) => ((object.status as Reply).device = '/dev/vdb'));
      await csi.call('node', 'NodeUnstageVolume', {
        volume_id: volume.volume_id,
        staging_target_path: join(csi.root, 'staging'),
      });
      // Written before the call returns.
      assert.ok(!('device' in (csi.kube!.object(VOLUMES, volume.volume_id)!.status as Reply)));
    } finally {
      await csi.stop();
    }
  });

  it('an agent gone since its last (still fresh) report: DEADLINE_EXCEEDED, and the retry succeeds once it runs', async () => {
    kube = await FakeKubeCluster.start({ waitTimeoutMs: 500 });
    await kube.stopAgent('node-b');
    const request = {
      name: uniqueName(),
      volume_capabilities: [MOUNT],
      accessibility_requirements: { requisite: [on('node-b')] },
      parameters: { 'csi.storage.k8s.io/pvc/name': 'data', 'csi.storage.k8s.io/pvc/namespace': 'apps' },
    };
    await assert.rejects(kube.controller.CreateVolume(request), (error: CsiError) => {
      assert.equal(error.code, status.DEADLINE_EXCEEDED);
      return true;
    });
    assert.equal(kube.api.list(VOLUMES).length, 1, 'the object stays for the retry');
    kube.startAgent('node-b');
    const { volume } = await kube.controller.CreateVolume(request);
    assert.ok(kube.node('node-b').images.exists('volumes', volume.volume_id));
  });

  describe('a retried CreateVolume for a volume its node never began to make', () => {
    const stalled = async (preferred: string): Promise<Reply> => {
      kube = await FakeKubeCluster.start({ waitTimeoutMs: 500 });
      await kube.stopAgent('node-b');
      const request = {
        name: uniqueName(),
        volume_capabilities: [MOUNT],
        capacity_range: { required_bytes: 16 * MiB },
        accessibility_requirements: { requisite: [on('node-a'), on('node-b')], preferred: [on(preferred)] },
      };
      await assert.rejects(kube.controller.CreateVolume(request), (error: CsiError) => {
        assert.equal(error.code, status.DEADLINE_EXCEEDED);
        return true;
      });
      return request;
    };
    /** As if node-b's agent had stopped an hour ago: its report is stale. */
    const ageReportOf = (node: string): void =>
      kube.api.modify(
        '/configmaps',
        CAPACITY_CONFIGMAP,
        (object) => {
          const data = object.data as Record<string, string>;
          const updatedAt = new Date(Date.now() - 3_600_000).toISOString();
          data[node] = JSON.stringify({ ...JSON.parse(data[node]!), updatedAt });
        },
        NAMESPACE,
      );

    it('goes to a live node of the topology when its node stopped: the object is made again there', async () => {
      const request = await stalled('node-b');
      const [object] = kube.api.list(VOLUMES);
      assert.equal((object!.spec as Reply).nodeId, 'node-b');
      assert.equal(object!.status, undefined, 'node-b never reported on it');
      ageReportOf('node-b');
      // The scheduler picked another node for the pod: the retry prefers it.
      const retried = {
        ...request,
        accessibility_requirements: { ...request.accessibility_requirements, preferred: [on('node-a')] },
      };
      const { volume } = await quietly(() => kube.controller.CreateVolume(retried));
      assert.deepEqual(volume.accessible_topology, [on('node-a')]);
      assert.equal((kube.api.object(VOLUMES, volume.volume_id)!.spec as Reply).nodeId, 'node-a');
      assert.equal(volumeStatus(volume.volume_id).phase, 'Ready');
      assert.ok(kube.node('node-a').images.exists('volumes', volume.volume_id));
      assert.ok(!kube.node('node-b').images.exists('volumes', volume.volume_id));
      assert.equal(kube.api.list(VOLUMES).length, 1);
    });

    it('stays on its node while that node still reports, and when the node has begun it', async () => {
      const request = await stalled('node-b');
      const id = kube.api.list(VOLUMES)[0]!.metadata.name;
      // Still fresh: the node may just be slow.
      await assert.rejects(kube.controller.CreateVolume(request), (error: CsiError) => {
        assert.equal(error.code, status.DEADLINE_EXCEEDED);
        return true;
      });
      // Begun: its image may be half made there.
      kube.api.modify(
        VOLUMES,
        id,
        (object) => (object.status = { phase: 'Creating', observedGeneration: 1 }),
      );
      ageReportOf('node-b');
      await assert.rejects(kube.controller.CreateVolume(request), (error: CsiError) => {
        assert.equal(error.code, status.DEADLINE_EXCEEDED);
        return true;
      });
      assert.equal((kube.api.object(VOLUMES, id)!.spec as Reply).nodeId, 'node-b');
      kube.startAgent('node-b');
      const { volume } = await kube.controller.CreateVolume(request);
      assert.deepEqual(volume.accessible_topology, [on('node-b')]);
    });
  });

  it('a failing agent becomes a CSI error and a Warning event on the claim; the object is cleaned up', async () => {
    kube = await FakeKubeCluster.start();
    // The data directory breaks after its agent reported room: a regular file takes its place.
    const dataDir = kube.node('node-a').images.dataDir;
    rmSync(dataDir, { recursive: true, force: true });
    writeFileSync(dataDir, '');
    const request = {
      name: uniqueName(),
      volume_capabilities: [MOUNT],
      accessibility_requirements: { requisite: [on('node-a')] },
      parameters: { 'csi.storage.k8s.io/pvc/name': 'data', 'csi.storage.k8s.io/pvc/namespace': 'apps' },
    };
    await assert.rejects(kube.controller.CreateVolume(request), (error: CsiError) => {
      assert.equal(error.code, status.INTERNAL);
      assert.match(error.message, /ENOTDIR/);
      return true;
    });
    const events = kube.api.list('/events');
    assert.equal(events.length, 1);
    assert.equal(events[0]!.metadata.namespace, 'apps');
    assert.deepEqual(
      [
        (events[0] as Reply).involvedObject.kind,
        (events[0] as Reply).involvedObject.name,
        (events[0] as Reply).type,
      ],
      ['PersistentVolumeClaim', 'data', 'Warning'],
    );
    assert.match((events[0] as Reply).message, /ENOTDIR/);
    // The failed object is deleted; its agent drops the finalizer.
    await eventually(async () => assert.equal(kube.api.list(VOLUMES).length, 0), 5000);
    assert.ok(kube.api.object('/configmaps', 'vduse-csi-capacity', NAMESPACE));
  });
});

/** Runs `work` with warnings off: the ones it provokes are expected. */
async function quietly<T>(work: () => Promise<T>): Promise<T> {
  const level = log.level;
  setLogLevel('error');
  try {
    return await work();
  } finally {
    setLogLevel(level);
  }
}

function writeAt(path: string, offset: number, text: string): void {
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.from(text), 0, text.length, offset);
  closeSync(fd);
}

function readAt(path: string, offset: number, length: number): string {
  return readFileSync(path)
    .subarray(offset, offset + length)
    .toString();
}

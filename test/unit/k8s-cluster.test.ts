import { eventually } from '../support/eventually';
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { CsiError } from '../../src/csi/errors';
import { VolumeCapability } from '../../src/csi/messages';
import { TOPOLOGY_KEY } from '../../src/csi/topology';
import { FINALIZER } from '../../src/k8s/resources';
import { FakeKubeCluster, NAMESPACE } from '../support/fake-kube-cluster';
import { MiB, Reply } from '../support/csi-harness';

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
  });

  it('without an agent on the node: DEADLINE_EXCEEDED, and the retry succeeds once it runs', async () => {
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

  it('a failing agent becomes a CSI error and a Warning event on the claim; the object is cleaned up', async () => {
    kube = await FakeKubeCluster.start({
      // A data directory that cannot be created: a regular file stands in its way.
      dataDir: (node, root) => {
        if (node !== 'node-a') return join(root, node, 'data');
        writeFileSync(join(root, 'blocker'), '');
        return join(root, 'blocker', 'data');
      },
    });
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

import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { CsiError } from '../../src/csi/errors';
import { snapshotIdFor, volumeIdFor } from '../../src/csi/ids';
import { SnapshotRecord, VolumeRecord } from '../../src/csi/store';
import { CustomResource, isStatus } from '../../src/k8s/custom-resource';
import { failureError, failureMessage } from '../../src/k8s/failure';
import { KubeStore } from '../../src/k8s/kube-store';
import { ResourceWatch } from '../../src/k8s/resource-watch';
import {
  FINALIZER,
  NODE_LABEL,
  SNAPSHOTS,
  SnapshotObject,
  VOLUMES,
  VolumeObject,
  nodeLabel,
  volumeObject,
} from '../../src/k8s/resources';
import { FakeKubeApi } from '../support/fake-kube-api';

/* The Kubernetes-API store and its client over the in-process fake API server (no real one here). */
const MiB = 2 ** 20;

function volume(name: string, nodeId = 'node-a'): VolumeRecord {
  return {
    id: volumeIdFor(name),
    name,
    capacityBytes: 8 * MiB,
    parameters: { queues: 2, queueSize: 128, blockSize: 4096, overcommitRatio: 2.5, provisioning: 'thin' },
    source: null,
    nodeId,
    createdAtMs: 0,
    claim: { name: 'data', namespace: 'apps' },
  };
}

describe('Kubernetes API store', function () {
  this.timeout(20_000);
  let api: FakeKubeApi;
  let volumes: CustomResource<VolumeObject>;
  let snapshots: CustomResource<SnapshotObject>;
  let store: KubeStore;

  beforeEach(async () => {
    api = await FakeKubeApi.start();
    volumes = new CustomResource(api.kubeConfig(), VOLUMES);
    snapshots = new CustomResource(api.kubeConfig(), SNAPSHOTS);
    store = new KubeStore(volumes, snapshots);
  });
  afterEach(async () => {
    await api.stop();
  });

  it('round-trips volumes and snapshots as custom resources named by their id', async () => {
    const record = volume('pvc-1');
    await store.putVolume(record);
    await store.putVolume(record);
    const object = (await volumes.get(record.id))!;
    assert.deepEqual(object.metadata.finalizers, [FINALIZER]);
    assert.equal(object.metadata.labels![NODE_LABEL], 'node-a');
    assert.deepEqual(object.spec.pvc, { name: 'data', namespace: 'apps' });
    const read = (await store.findVolumeByName('pvc-1'))!;
    assert.deepEqual({ ...read, createdAtMs: 0 }, record);
    assert.ok(Math.abs(read.createdAtMs - Date.now()) < 5000);
    assert.equal(await store.findVolumeByName('pvc-2'), null);
    assert.equal(await store.getVolume('vol-nope'), null);

    await store.putVolume({ ...record, capacityBytes: 16 * MiB });
    const grown = (await volumes.get(record.id))!;
    assert.equal(grown.spec.capacityBytes, 16 * MiB);
    assert.equal(grown.metadata.generation, 2);

    const snapshot: SnapshotRecord = {
      id: snapshotIdFor('snap-1'),
      name: 'snap-1',
      sourceVolumeId: record.id,
      nodeId: 'node-a',
      sizeBytes: 0,
      createdAtMs: 0,
    };
    await store.putSnapshot(snapshot);
    assert.equal((await store.findSnapshotByName('snap-1'))!.sourceVolumeId, record.id);
    assert.deepEqual(
      (await store.listSnapshots()).map((entry) => entry.id),
      [snapshot.id],
    );

    // Deletion waits for the node agent (finalizer); meanwhile the record is gone for the CSI services.
    await store.deleteVolume(record.id);
    assert.equal((await volumes.get(record.id))!.metadata.generation, 3);
    assert.equal(await store.getVolume(record.id), null);
    assert.deepEqual(await store.listVolumes(), []);
    await assert.rejects(store.putVolume(record), (error: CsiError) => error.code === status.ABORTED);
    await volumes.update(record.id, (current) => ({
      ...current,
      metadata: { ...current.metadata, finalizers: [] },
    }));
    assert.equal(await volumes.get(record.id), null);
    await store.putVolume(record);
  });

  it('an object an older build wrote, without overcommitRatio and provisioning, reads with their defaults and grows', async () => {
    const record = volume('pvc-legacy');
    const parameters = { queues: 2, queueSize: 128, blockSize: 4096 };
    const legacy = volumeObject(record);
    await volumes.create({ ...legacy, spec: { ...legacy.spec, parameters } });
    assert.deepEqual((await store.getVolume(record.id))!.parameters, {
      ...parameters,
      overcommitRatio: 1,
      provisioning: 'thin',
    });
    // The CRD makes parameters immutable: growing it must leave them as they are.
    await store.putVolume({ ...record, capacityBytes: 16 * MiB });
    const grown = (await volumes.get(record.id))!;
    assert.equal(grown.spec.capacityBytes, 16 * MiB);
    assert.deepEqual(grown.spec.parameters, parameters);
  });

  it('labels nodes whose ids are no label values by a digest', () => {
    assert.equal(nodeLabel('worker-1.example.com'), 'worker-1.example.com');
    assert.match(nodeLabel('node-'), /^sha256-[0-9a-f]{40}$/);
    assert.match(nodeLabel('n'.repeat(100)), /^sha256-[0-9a-f]{40}$/);
  });

  it('retries an update that lost a race (409 Conflict) from a fresh read', async () => {
    const record = volume('pvc-race');
    await store.putVolume(record);
    let attempts = 0;
    const updated = await volumes.update(record.id, (current) => {
      attempts += 1;
      // Another client writes between this read and this write, the first time.
      if (attempts === 1)
        api.modify('csi.vduse.dev/vdusevolumes', record.id, (other) => (other.metadata.labels = { x: 'y' }));
      current.spec.capacityBytes = 32 * MiB;
      return current;
    });
    assert.equal(attempts, 2);
    assert.equal(updated!.spec.capacityBytes, 32 * MiB);
    assert.deepEqual(updated!.metadata.labels, { x: 'y' });
  });

  it('the fake API server keeps spec and status apart and checks resourceVersions', async () => {
    const record = volume('pvc-rules');
    await store.putVolume(record);
    const original = (await volumes.get(record.id))!;
    // A status write cannot change spec, a main-resource write cannot change status.
    const afterStatus = (await volumes.update(
      record.id,
      (current) => ({ ...current, spec: { ...current.spec, capacityBytes: 1 }, status: { phase: 'Ready' } }),
      'status',
    ))!;
    assert.equal(afterStatus.spec.capacityBytes, record.capacityBytes);
    assert.equal(afterStatus.metadata.generation, 1);
    const afterMain = (await volumes.update(record.id, (current) => ({
      ...current,
      status: { phase: 'Failed' },
    })))!;
    assert.equal(afterMain.status!.phase, 'Ready');
    assert.ok(Number(afterMain.metadata.resourceVersion) > Number(original.metadata.resourceVersion));
    // A stale resourceVersion is a conflict.
    await assert.rejects(
      volumes.update(record.id, () => original),
      (error: unknown) => isStatus(error, 409),
    );
  });

  it('a watch whose history expired (410 Gone) starts over from a list', async () => {
    await store.putVolume(volume('pvc-w1'));
    const listed: string[][] = [];
    const changed: string[] = [];
    const watch = new ResourceWatch(
      volumes,
      { labelSelector: `${NODE_LABEL}=node-b` },
      {
        listed: (items) => listed.push(items.map((item) => item.spec.name)),
        changed: (object) => changed.push(object.spec.name),
      },
    );
    watch.start();
    try {
      await until(() => listed.length === 1);
      await store.putVolume(volume('pvc-w2', 'node-b'));
      await until(() => changed.length === 1);
      api.holdWatches();
      api.closeWatches();
      await store.putVolume(volume('pvc-w3', 'node-b'));
      api.compact();
      await store.putVolume(volume('pvc-w4', 'node-b'));
      api.resumeWatches();
      await until(() => listed.length === 2);
      assert.deepEqual(listed, [[], ['pvc-w2', 'pvc-w3', 'pvc-w4']]);
      assert.deepEqual(changed, ['pvc-w2']);
    } finally {
      watch.stop();
    }
  });

  it('carries the node agent failure reason to the CSI code', () => {
    const cases: [CsiError | Error, status][] = [
      [new CsiError(status.RESOURCE_EXHAUSTED, 'ENOSPC: no space left'), status.RESOURCE_EXHAUSTED],
      [new CsiError(status.FAILED_PRECONDITION, 'staged'), status.FAILED_PRECONDITION],
      [new Error('EIO'), status.INTERNAL],
    ];
    for (const [error, code] of cases) {
      const answer = failureError('creating volume x', failureMessage(error));
      assert.equal(answer.code, code);
      assert.match(answer.message, new RegExp(error.message));
    }
    assert.equal(failureError('x', undefined).code, status.INTERNAL);
  });
});

async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

import assert from 'node:assert/strict';
import { rmSync, truncateSync } from 'node:fs';
import { status } from '@grpc/grpc-js';
import { CsiError } from '../../src/csi/errors';
import { VolumeCapability } from '../../src/csi/messages';
import { TOPOLOGY_KEY } from '../../src/csi/topology';
import { IMAGE_HEALTHY, READY } from '../../src/k8s/conditions';
import { log, setLogLevel } from '../../src/log';
import { chartCustomResources } from '../support/chart-crds';
import { MiB, Reply } from '../support/csi-harness';
import { eventually } from '../support/eventually';
import { RecordedWrite } from '../support/fake-kube-api';
import { FakeKubeCluster } from '../support/fake-kube-cluster';

/*
 * Schema drift between what the code writes (src/k8s/resources.ts, the node agent's statuses) and
 * the chart's CRDs: a real API server would silently prune a field the CRD lacks and refuse a value
 * it does not allow. The controller and the node agents go through every kind of object and status
 * they write, against the fake API server that prunes and validates as a real one; every write must
 * be kept as it was sent, and together the writes must use every field of both schemas.
 */
const CUSTOM = new Map(chartCustomResources().map((type) => [`${type.group}/${type.plural}`, type]));
const MOUNT: VolumeCapability = {
  mount: { fs_type: 'ext4', mount_flags: [] },
  access_mode: { mode: 'SINGLE_NODE_WRITER' },
  access_type: 'mount',
};
const ON_NODE_A = { requisite: [{ segments: { [TOPOLOGY_KEY]: 'node-a' } }] };
/** CSI's limit for a name (and the CRDs' for spec.name). */
const LONGEST_NAME = 128;

type Json = Record<string, unknown>;
const isObject = (value: unknown): value is Json =>
  value !== null && typeof value === 'object' && !Array.isArray(value);
const child = (path: string, name: string): string => (path ? `${path}.${name}` : name);

/** The paths of a schema's fields that hold values (list items as []). */
function schemaLeaves(schema: Json, path: string): string[] {
  if (schema.type === 'array') return schemaLeaves(schema.items as Json, `${path}[]`);
  const properties = Object.entries((schema.properties ?? {}) as Record<string, Json>);
  if (properties.length === 0) return [path];
  return properties.flatMap(([name, property]) => schemaLeaves(property, child(path, name)));
}

/** The paths of a value's fields that hold values, in the same form. */
function valueLeaves(value: unknown, path: string): string[] {
  if (value === undefined) return [];
  if (Array.isArray(value)) return value.flatMap((item) => valueLeaves(item, `${path}[]`));
  if (isObject(value))
    return Object.entries(value).flatMap(([name, field]) => valueLeaves(field, child(path, name)));
  return [path];
}

/** The part of the object a write is about: spec and metadata for the object itself, status for /status. */
function clientPart(write: RecordedWrite, object: Json): Json {
  if (write.subresource === 'status') return { status: object.status };
  const metadata = object.metadata as Json;
  return { spec: object.spec, labels: metadata.labels, finalizers: metadata.finalizers };
}

describe('what the code writes fits the chart CRDs: nothing pruned, nothing refused', function () {
  this.timeout(60_000);
  let kube: FakeKubeCluster;
  let logLevel: string;

  before(() => {
    // The failures below are made on purpose; their warnings are expected.
    logLevel = log.level;
    setLogLevel('error');
  });
  after(() => setLogLevel(logLevel));
  afterEach(async () => {
    await kube?.stop();
  });

  it('every volume, snapshot and status the controller and node agents write round-trips unchanged', async () => {
    kube = await FakeKubeCluster.start();
    try {
      await writeEverything(kube);
    } finally {
      // A refused write fails the walk by a timeout at best: this says which and why.
      const refused = kube.api.writes.filter((write) => write.invalid).map((write) => write.invalid!.message);
      assert.deepEqual(refused, [], 'writes refused as invalid');
    }
    const writes = kube.api.writes.filter((write) => CUSTOM.has(write.resource));
    for (const write of writes) {
      const what = `${write.resource} ${(write.sent.metadata as Json).name} ${write.subresource ?? ''}`;
      assert.deepEqual(
        clientPart(write, write.stored!),
        clientPart(write, write.sent),
        `${what}: changed when kept`,
      );
    }

    // The walk is complete: it wrote every field both schemas have, every phase and condition there is.
    for (const [resource, type] of CUSTOM) {
      const schema = [...type.versions.values()][0]!.schema.openAPIV3Schema;
      const properties = schema.properties as Record<string, Json>;
      const expected = ['spec', 'status'].flatMap((part) => schemaLeaves(properties[part]!, part));
      const written = new Set(
        writes
          .filter((write) => write.resource === resource)
          .flatMap((write) => ['spec', 'status'].flatMap((part) => valueLeaves(write.stored![part], part))),
      );
      assert.deepEqual(
        expected.filter((field) => !written.has(field)),
        [],
        `${resource}: fields never written`,
      );
    }
    const statuses = (resource: string): Reply[] =>
      writes
        .filter((write) => write.resource === resource && write.stored!.status)
        .map((write) => write.stored!.status);
    const phases = (resource: string): string[] =>
      [...new Set(statuses(resource).map((state) => state.phase))].sort();
    assert.deepEqual(phases('csi.vduse.dev/vdusevolumes'), [
      'Creating',
      'Deleting',
      'Failed',
      'Ready',
      'Resizing',
    ]);
    assert.deepEqual(phases('csi.vduse.dev/vdusesnapshots'), ['Creating', 'Failed', 'Ready']);
    const conditionTypes = statuses('csi.vduse.dev/vdusevolumes').flatMap((state) =>
      (state.conditions ?? []).map((condition: Reply) => condition.type),
    );
    assert.deepEqual([...new Set(conditionTypes)].sort(), [IMAGE_HEALTHY, READY].sort());
  });

  it('a name longer than the CRDs take is refused by the controller, as CSI limits it, before anything is written', async () => {
    kube = await FakeKubeCluster.start();
    const tooLong = 'n'.repeat(LONGEST_NAME + 1);
    const request = { volume_capabilities: [MOUNT], accessibility_requirements: ON_NODE_A };
    const { volume } = await kube.controller.CreateVolume({ ...request, name: 'n'.repeat(LONGEST_NAME) });
    const writes = kube.api.writes.length;
    const invalidArgument = (error: CsiError): boolean => error.code === status.INVALID_ARGUMENT;
    await assert.rejects(kube.controller.CreateVolume({ ...request, name: tooLong }), invalidArgument);
    await assert.rejects(
      kube.controller.CreateSnapshot({ name: tooLong, source_volume_id: volume.volume_id }),
      invalidArgument,
    );
    assert.equal(kube.api.writes.length, writes);
  });
});

/** The controller and node-a's agent write every kind of object and status there is, then delete them all. */
async function writeEverything(kube: FakeKubeCluster): Promise<void> {
  const { controller } = kube;
  const images = kube.node('node-a').images;
  let counter = 0;
  const longestName = (prefix: string): string => `${prefix}-${++counter}-`.padEnd(LONGEST_NAME, 'x');
  const create = (request: Json): Promise<Reply> =>
    controller.CreateVolume({
      name: longestName('pvc'),
      volume_capabilities: [MOUNT],
      capacity_range: { required_bytes: 16 * MiB },
      accessibility_requirements: ON_NODE_A,
      ...request,
    });

  // Every parameter, and the claim (the provisioner's --extra-create-metadata).
  const { volume } = await create({
    parameters: {
      queues: '2',
      queueSize: '128',
      blockSize: '4096',
      overcommitRatio: '2.5',
      provisioning: 'thin',
      'csi.storage.k8s.io/pvc/name': 'data',
      'csi.storage.k8s.io/pvc/namespace': 'apps',
      'csi.storage.k8s.io/pv/name': 'pvc-5c1e0f9a',
    },
  });
  await create({ parameters: { provisioning: 'thick' } });
  const { snapshot } = (await controller.CreateSnapshot({
    name: longestName('snapshot'),
    source_volume_id: volume.volume_id,
  })) as Reply;
  const restored = await create({
    volume_content_source: { snapshot: { snapshot_id: snapshot.snapshot_id }, type: 'snapshot' },
  });
  const clone = await create({
    volume_content_source: { volume: { volume_id: volume.volume_id }, type: 'volume' },
  });
  await controller.ControllerExpandVolume({
    volume_id: volume.volume_id,
    capacity_range: { required_bytes: 32 * MiB },
  });

  // Staged and unstaged.
  const agent = kube.node('node-a').agent!;
  await agent.reportDevice(volume.volume_id, '/dev/vda');
  await agent.reportDevice(volume.volume_id, undefined);

  // An image truncated, then gone: ImageHealthy False (an agent checks the images when it starts);
  // growing it then fails (ImageLost).
  const cloneId = clone.volume.volume_id;
  const imageCondition = async (): Promise<Reply> =>
    ((await controller.ControllerGetVolume({ volume_id: cloneId })) as Reply).status.volume_condition;
  const checkImages = async (): Promise<void> => {
    await kube.stopAgent('node-a');
    kube.startAgent('node-a');
  };
  truncateSync(images.path('volumes', cloneId), 4 * MiB);
  await checkImages();
  await eventually(async () => assert.match((await imageCondition()).message, /is 4194304 bytes/), 10_000);
  rmSync(images.path('volumes', cloneId));
  await checkImages();
  await eventually(async () => assert.match((await imageCondition()).message, /is missing/), 10_000);
  await assert.rejects(
    controller.ControllerExpandVolume({ volume_id: cloneId, capacity_range: { required_bytes: 32 * MiB } }),
    (error: CsiError) => error.code === status.FAILED_PRECONDITION,
  );
  // A snapshot whose copy fails: its source image is gone.
  rmSync(images.path('volumes', restored.volume.volume_id));
  await assert.rejects(
    controller.CreateSnapshot({ name: longestName('snapshot'), source_volume_id: restored.volume.volume_id }),
    (error: CsiError) => error.code === status.INTERNAL,
  );

  const snapshots = ((await controller.ListSnapshots({})) as Reply).entries;
  for (const entry of snapshots) await controller.DeleteSnapshot({ snapshot_id: entry.snapshot.snapshot_id });
  const volumes = ((await controller.ListVolumes({})) as Reply).entries;
  for (const entry of volumes) await controller.DeleteVolume({ volume_id: entry.volume.volume_id });
}

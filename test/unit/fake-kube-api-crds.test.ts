import assert from 'node:assert/strict';
import { snapshotIdFor, volumeIdFor } from '../../src/csi/ids';
import { SnapshotRecord, VolumeRecord } from '../../src/csi/store';
import { snapshotObject, volumeObject } from '../../src/k8s/resources';
import { FakeKubeApi } from '../support/fake-kube-api';

/*
 * The fake API server treats VduseVolume and VduseSnapshot writes as a real one with the chart's
 * CRDs installed does: unknown fields pruned (with a Warning), invalid objects refused with 422.
 */
const VOLUMES = '/apis/csi.vduse.dev/v1alpha1/vdusevolumes';
const SNAPSHOTS = '/apis/csi.vduse.dev/v1alpha1/vdusesnapshots';
const MiB = 2 ** 20;

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const RECORD: VolumeRecord = {
  id: volumeIdFor('pvc-crd'),
  name: 'pvc-crd',
  capacityBytes: 16 * MiB,
  parameters: { queues: 2, queueSize: 128, blockSize: 4096, overcommitRatio: 1, provisioning: 'thin' },
  source: null,
  nodeId: 'node-a',
  createdAtMs: 0,
  claim: { name: 'data', namespace: 'apps' },
};
const SNAPSHOT: SnapshotRecord = {
  id: snapshotIdFor('snap-crd'),
  name: 'snap-crd',
  sourceVolumeId: RECORD.id,
  nodeId: 'node-a',
  sizeBytes: 0,
  createdAtMs: 0,
};

interface Reply {
  code: number;
  body: Json;
  warnings: string[];
}

describe('fake API server: custom resources as the chart CRDs define them', function () {
  this.timeout(20_000);
  let api: FakeKubeApi;

  beforeEach(async () => {
    api = await FakeKubeApi.start();
  });
  afterEach(async () => {
    await api.stop();
  });

  async function call(
    method: string,
    path: string,
    body?: unknown,
    type = 'application/json',
  ): Promise<Reply> {
    const response = await fetch(`${api.url}${path}`, {
      method,
      headers: { 'Content-Type': type },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const warnings = (response.headers.get('warning') ?? '').split(/,\s*(?=299 )/).filter(Boolean);
    return { code: response.status, body: (await response.json()) as Json, warnings };
  }
  const volume = (): Json => volumeObject(RECORD);
  const created = async (): Promise<Json> => {
    const reply = await call('POST', VOLUMES, volume());
    assert.equal(reply.code, 201, JSON.stringify(reply.body));
    return reply.body;
  };
  /** The causes of a 422 Invalid answer, as "field reason". */
  const refused = (reply: Reply): string[] => {
    assert.equal(reply.code, 422, JSON.stringify(reply.body));
    assert.equal(reply.body.reason, 'Invalid');
    return (reply.body.details.causes as Json[]).map((cause) => `${cause.field} ${cause.reason}`).sort();
  };

  it('prunes unknown fields from a create, an update, a merge patch and a /status write, warning of each', async () => {
    const object = volume();
    object.spec.sizeBytes = 1;
    object.spec.parameters.cache = 'writeback';
    object.extra = true;
    const create = await call('POST', VOLUMES, object);
    assert.equal(create.code, 201);
    assert.deepEqual(create.warnings.sort(), [
      '299 - "unknown field \\"extra\\""',
      '299 - "unknown field \\"spec.parameters.cache\\""',
      '299 - "unknown field \\"spec.sizeBytes\\""',
    ]);
    const stored = (await call('GET', `${VOLUMES}/${RECORD.id}`)).body;
    assert.deepEqual(stored.spec, volume().spec);
    assert.ok(!('extra' in stored));

    const update = await call('PUT', `${VOLUMES}/${RECORD.id}`, {
      ...stored,
      spec: { ...stored.spec, tier: 'gold' },
    });
    assert.deepEqual([update.code, update.warnings], [200, ['299 - "unknown field \\"spec.tier\\""']]);
    assert.ok(!('tier' in update.body.spec));
    const patch = await call(
      'PATCH',
      VOLUMES + `/${RECORD.id}`,
      { spec: { pvc: { uid: 'u' } } },
      'application/merge-patch+json',
    );
    assert.deepEqual([patch.code, patch.warnings], [200, ['299 - "unknown field \\"spec.pvc.uid\\""']]);
    assert.deepEqual(patch.body.spec.pvc, RECORD.claim);

    const condition = {
      type: 'Ready',
      status: 'True',
      lastTransitionTime: '2026-01-01T00:00:00Z',
      reason: 'Ready',
      message: 'Ready',
    };
    const status = await call('PUT', `${VOLUMES}/${RECORD.id}/status`, {
      ...patch.body,
      status: { phase: 'Ready', health: 'good', conditions: [{ ...condition, severity: 'info' }] },
    });
    assert.equal(status.code, 200);
    assert.deepEqual(status.warnings.sort(), [
      '299 - "unknown field \\"status.conditions[0].severity\\""',
      '299 - "unknown field \\"status.health\\""',
    ]);
    assert.deepEqual((await call('GET', `${VOLUMES}/${RECORD.id}`)).body.status, {
      phase: 'Ready',
      conditions: [condition],
    });
    // Metadata is the server's ObjectMeta: the schema prunes none of it.
    assert.deepEqual(status.body.metadata.labels, volume().metadata.labels);
  });

  it('refuses wrong types, unsupported values, missing fields and values out of bounds with 422 Invalid naming each field', async () => {
    const object = volume();
    object.spec.capacityBytes = '16Mi';
    object.spec.parameters.queueSize = 100;
    object.spec.parameters.queues = 17;
    object.spec.nodeId = 'node a';
    delete object.spec.name;
    const reply = await call('POST', VOLUMES, object);
    assert.deepEqual(refused(reply), [
      'spec.capacityBytes FieldValueTypeInvalid',
      'spec.name FieldValueRequired',
      'spec.nodeId FieldValueInvalid',
      'spec.parameters.queueSize FieldValueNotSupported',
      'spec.parameters.queues FieldValueInvalid',
    ]);
    assert.match(
      reply.body.message,
      new RegExp(`^VduseVolume\\.csi\\.vduse\\.dev "${RECORD.id}" is invalid: \\[`),
    );
    const capacity = (reply.body.details.causes as Json[]).find(
      (cause) => cause.field === 'spec.capacityBytes',
    );
    assert.deepEqual(capacity, {
      reason: 'FieldValueTypeInvalid',
      message: 'Invalid value: "string": spec.capacityBytes in body must be of type integer: "string"',
      field: 'spec.capacityBytes',
    });
    assert.equal(api.object('csi.vduse.dev/vdusevolumes', RECORD.id), undefined, 'nothing stored');

    const stored = await created();
    const ready = {
      type: 'Ready',
      status: 'Yes',
      lastTransitionTime: 'now',
      reason: 'Ready',
      message: 'Ready',
    };
    const status = await call('PUT', `${VOLUMES}/${RECORD.id}/status`, {
      ...stored,
      status: {
        phase: 'Running',
        capacityBytes: -1,
        conditions: [ready, { ...ready, status: 'True', lastTransitionTime: '2026-01-01T00:00:00Z' }],
      },
    });
    assert.deepEqual(refused(status), [
      'status.capacityBytes FieldValueInvalid',
      'status.conditions[0].lastTransitionTime FieldValueInvalid',
      'status.conditions[0].status FieldValueNotSupported',
      'status.conditions[1] FieldValueDuplicate',
      'status.phase FieldValueNotSupported',
    ]);
    assert.equal(api.object('csi.vduse.dev/vdusevolumes', RECORD.id)!.status, undefined, 'status unchanged');
  });

  it("evaluates the CRDs' rules: ids as names, immutable fields, a capacity that never shrinks", async () => {
    const misnamed = await call('POST', VOLUMES, {
      ...volume(),
      metadata: { ...volume().metadata, name: 'vol-1' },
    });
    assert.deepEqual(refused(misnamed), ['<nil> FieldValueInvalid']);
    assert.match(misnamed.body.message, /the name is the volume id/);
    const wrongSource = volume();
    wrongSource.spec.source = { kind: 'snapshot', id: RECORD.id };
    assert.deepEqual(refused(await call('POST', VOLUMES, wrongSource)), ['spec.source FieldValueInvalid']);

    const stored = await created();
    const change = async (spec: Json): Promise<Reply> =>
      call('PUT', `${VOLUMES}/${RECORD.id}`, { ...stored, spec: { ...stored.spec, ...spec } });
    assert.deepEqual(refused(await change({ nodeId: 'node-b' })), ['spec.nodeId FieldValueInvalid']);
    assert.deepEqual(refused(await change({ capacityBytes: 8 * MiB })), ['spec FieldValueInvalid']);
    const parameters = await change({ parameters: { ...stored.spec.parameters, queues: 1 } });
    assert.deepEqual(refused(parameters), ['spec.parameters FieldValueInvalid']);
    assert.match(parameters.body.message, /parameters are immutable/);
    assert.equal((await change({ capacityBytes: 32 * MiB })).code, 200);

    const snapshot = await call('POST', SNAPSHOTS, snapshotObject(SNAPSHOT));
    assert.equal(snapshot.code, 201);
    const moved = { ...snapshot.body, spec: { ...snapshot.body.spec, nodeId: 'node-b' } };
    assert.deepEqual(refused(await call('PUT', `${SNAPSHOTS}/${SNAPSHOT.id}`, moved)), [
      'spec FieldValueInvalid',
    ]);
  });

  it('a main-resource write ignores status and a /status write the rest, so neither is refused for what it ignores', async () => {
    const withStatus = { ...volume(), status: { phase: 'Running' } };
    const create = await call('POST', VOLUMES, withStatus);
    assert.equal(create.code, 201);
    assert.equal(create.body.status, undefined);
    const main = await call('PUT', `${VOLUMES}/${RECORD.id}`, {
      ...create.body,
      status: { phase: 'Running' },
    });
    assert.equal(main.code, 200);
    assert.equal(main.body.status, undefined);
    const status = await call('PUT', `${VOLUMES}/${RECORD.id}/status`, {
      ...main.body,
      spec: { ...main.body.spec, capacityBytes: 'a lot' },
      status: { phase: 'Ready' },
    });
    assert.equal(status.code, 200);
    assert.deepEqual(
      [status.body.spec.capacityBytes, status.body.status],
      [RECORD.capacityBytes, { phase: 'Ready' }],
    );
  });

  it('serves only the versions the CRDs serve, and validates the writes of modify() too', async () => {
    assert.equal((await call('GET', '/apis/csi.vduse.dev/v1/vdusevolumes')).code, 404);
    await created();
    assert.throws(
      () =>
        api.modify('csi.vduse.dev/vdusevolumes', RECORD.id, (object) => (object.status = { phase: 'Gone' })),
      /status\.phase: Unsupported value: "Gone"/,
    );
    api.modify(
      'csi.vduse.dev/vdusevolumes',
      RECORD.id,
      (object) => (object.status = { phase: 'Ready', stale: true }),
    );
    assert.deepEqual(api.object('csi.vduse.dev/vdusevolumes', RECORD.id)!.status, { phase: 'Ready' });
  });
});

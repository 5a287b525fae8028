import assert from 'node:assert/strict';
import { CoreV1Api } from '@kubernetes/client-node';
import { ClaimEvents } from '../../src/k8s/claim-events';
import { EventRecorder } from '../../src/k8s/events';
import { log, setLogLevel } from '../../src/log';
import { Reply } from '../support/csi-harness';
import { FakeKubeApi } from '../support/fake-kube-api';

const CLAIM = { name: 'data', namespace: 'apps' };
const MINUTE = 60_000;

describe('ClaimEvents: one Event per claim and reason, counting repeats', () => {
  let api: FakeKubeApi;
  let nowMs: number;
  let events: ClaimEvents;
  let logLevel: string;

  before(() => {
    // The deleted Event's failed update is expected here.
    logLevel = log.level;
    setLogLevel('error');
  });
  after(() => setLogLevel(logLevel));

  beforeEach(async () => {
    api = await FakeKubeApi.start();
    nowMs = 1_000_000;
    events = new ClaimEvents(new EventRecorder(api.kubeConfig(), 'node-a'), () => nowMs);
    await api
      .kubeConfig()
      .makeApiClient(CoreV1Api)
      .createNamespacedPersistentVolumeClaim({
        namespace: CLAIM.namespace,
        body: { metadata: { name: CLAIM.name, namespace: CLAIM.namespace }, spec: {} },
      });
  });
  afterEach(() => api.stop());

  const claimEvents = (): Reply[] =>
    api.list('/events').map((event) => ({
      reason: event.reason,
      type: event.type,
      count: event.count,
      message: event.message,
      uid: (event.involvedObject as { uid?: string }).uid,
    }));

  it('counts a flood on one Event within ten minutes, names the claim by uid, keeps reasons apart', async () => {
    const uid = api.object('/persistentvolumeclaims', CLAIM.name, CLAIM.namespace)!.metadata.uid;
    assert.ok(uid);
    await events.warn(CLAIM, 'VolumeIOErrors', '3 failed', 3);
    nowMs += 9 * MINUTE;
    await Promise.all([
      events.warn(CLAIM, 'VolumeIOErrors', '4 failed', 4),
      events.warn(CLAIM, 'StageFailed', 'no'),
    ]);
    await events.report(CLAIM, 'Normal', 'DeviceHandedOver', 'handed over');
    assert.deepEqual(claimEvents(), [
      { reason: 'VolumeIOErrors', type: 'Warning', count: 7, message: '4 failed', uid },
      { reason: 'StageFailed', type: 'Warning', count: 1, message: 'no', uid },
      { reason: 'DeviceHandedOver', type: 'Normal', count: 1, message: 'handed over', uid },
    ]);
  });

  it('starts a new Event after ten quiet minutes, or when the counted one is gone', async () => {
    await events.warn(CLAIM, 'VolumeIOErrors', 'first', 1);
    nowMs += 10 * MINUTE;
    await events.warn(CLAIM, 'VolumeIOErrors', 'second', 2);
    assert.deepEqual(
      claimEvents().map((event) => [event.count, event.message]),
      [
        [1, 'first'],
        [2, 'second'],
      ],
    );
    for (const event of api.list('/events'))
      await api.kubeConfig().makeApiClient(CoreV1Api).deleteNamespacedEvent({
        name: event.metadata.name,
        namespace: CLAIM.namespace,
      });
    await events.warn(CLAIM, 'VolumeIOErrors', 'third', 5);
    assert.deepEqual(
      claimEvents().map((event) => [event.count, event.message]),
      [[5, 'third']],
    );
  });
});

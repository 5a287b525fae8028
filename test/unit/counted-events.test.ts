import assert from 'node:assert/strict';
import { CoreV1Api } from '@kubernetes/client-node';
import { CountedEvents } from '../../src/k8s/counted-events';
import { EventRecorder } from '../../src/k8s/events';
import { log, setLogLevel } from '../../src/log';
import { Reply } from '../support/csi-harness';
import { FakeKubeApi } from '../support/fake-kube-api';

const CLAIM = { name: 'data', namespace: 'apps' };
const MINUTE = 60_000;

describe('CountedEvents: one Event per object and reason, counting repeats', () => {
  let api: FakeKubeApi;
  let nowMs: number;
  let events: CountedEvents;
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
    events = new CountedEvents(new EventRecorder(api.kubeConfig(), 'node-a'), () => nowMs);
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
      kind: (event.involvedObject as { kind: string }).kind,
    }));

  it('counts a flood on one Event within ten minutes, names the claim by uid, keeps reasons apart', async () => {
    const uid = api.object('/persistentvolumeclaims', CLAIM.name, CLAIM.namespace)!.metadata.uid;
    assert.ok(uid);
    const kind = 'PersistentVolumeClaim';
    await events.warn(CLAIM, 'VolumeIOErrors', '3 failed', 3);
    nowMs += 9 * MINUTE;
    await Promise.all([
      events.warn(CLAIM, 'VolumeIOErrors', '4 failed', 4),
      events.warn(CLAIM, 'StageFailed', 'no'),
    ]);
    await events.onClaim(CLAIM, 'Normal', 'DeviceHandedOver', 'handed over');
    assert.deepEqual(claimEvents(), [
      { reason: 'VolumeIOErrors', type: 'Warning', count: 7, message: '4 failed', uid, kind },
      { reason: 'StageFailed', type: 'Warning', count: 1, message: 'no', uid, kind },
      { reason: 'DeviceHandedOver', type: 'Normal', count: 1, message: 'handed over', uid, kind },
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

  it("counts a pod's Events apart from its claim's, by the uid kubelet gave, and never reads the pod", async () => {
    const pod = { name: CLAIM.name, namespace: CLAIM.namespace, uid: '0b5f3c2e-7d41-4a9e-9f2b-3c6d8e1a2b4c' };
    const claim = { ...CLAIM, volumeName: 'pvc-5c1e' };
    await events.onPod(pod, 'Warning', 'VolumeIOErrors', '1 failed', 1);
    await events.onClaim(claim, 'Warning', 'VolumeIOErrors', '1 failed', 1);
    await events.onPod(pod, 'Warning', 'VolumeIOErrors', '2 failed', 2);
    assert.deepEqual(
      claimEvents().map((event) => [event.kind, event.count, event.uid === pod.uid]),
      [
        ['Pod', 3, true],
        ['PersistentVolumeClaim', 1, false],
      ],
    );
    const involved = api.list('/events').map((event) => event.involvedObject as Record<string, unknown>);
    assert.deepEqual(Object.keys(involved[1]!).sort(), ['apiVersion', 'kind', 'name', 'namespace', 'uid']);
  });
});

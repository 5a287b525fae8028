import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { deviceNameOf } from '../../src/csi/node-records';
import { registerNodeVolumeMetrics } from '../../src/metrics/node-volume-metrics';
import { parseSamples, promtoolProblems, valueOf } from '../support/prometheus-text';

const WITH_CLAIM = `vol-${'1'.repeat(32)}`;
const WITHOUT_CLAIM = `vol-${'2'.repeat(32)}`;

describe("the node plugin's volume metrics", () => {
  it('name each staged volume with its device, claim and PersistentVolume where known, and count its Events', async () => {
    const registry = new Registry();
    const countEvent = registerNodeVolumeMetrics(registry, () => [
      { volumeId: WITH_CLAIM, claim: { name: 'data', namespace: 'apps', volumeName: 'pvc-5c1e' } },
      { volumeId: WITHOUT_CLAIM },
    ]);
    const event = {
      type: 'Warning',
      reason: 'VolumeIOErrors',
      message: '3 failed',
      count: 3,
      pods: [],
    } as const;
    countEvent({ ...event, volumeId: WITH_CLAIM, claim: undefined });
    countEvent({ ...event, volumeId: WITH_CLAIM, claim: undefined });
    const text = await registry.metrics();
    assert.equal(promtoolProblems(text), '');
    const samples = parseSamples(text);
    const info = 'vduse_csi_volume_info';
    assert.equal(
      valueOf(samples, info, {
        device: deviceNameOf(WITH_CLAIM),
        volume_id: WITH_CLAIM,
        namespace: 'apps',
        persistentvolumeclaim: 'data',
        persistentvolume: 'pvc-5c1e',
      }),
      1,
    );
    assert.equal(
      valueOf(samples, info, {
        device: deviceNameOf(WITHOUT_CLAIM),
        volume_id: WITHOUT_CLAIM,
        namespace: '',
        persistentvolumeclaim: '',
        persistentvolume: '',
      }),
      1,
    );
    assert.equal(
      valueOf(samples, 'vduse_csi_volume_events_total', { volume_id: WITH_CLAIM, reason: 'VolumeIOErrors' }),
      2,
      'one per Event reported, whatever its count',
    );
  });
});

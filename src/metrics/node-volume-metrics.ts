import { Counter, Gauge, Registry } from 'prom-client';
import { StagedVolume, deviceNameOf } from '../csi/node-records';
import type { VolumeEvent } from '../csi/volume-events';
import { METRIC_PREFIX } from './registry';

/**
 * The node plugin's view of its volumes: which claim each staged device serves (to join the device
 * daemon's per-device series with, `on (device)`), and the Events it reported of each volume,
 * takeovers among them: the device daemon that took a device over is a new process whose own
 * counters start again, so a takeover is counted here.
 */
export function registerNodeVolumeMetrics(
  registry: Registry,
  staged: () => Array<Pick<StagedVolume, 'volumeId' | 'claim'>>,
): (event: VolumeEvent) => void {
  new Gauge({
    name: `${METRIC_PREFIX}volume_info`,
    help: "A volume staged on this node: its device (the device daemon's device label), volume id and, when known, claim and PersistentVolume (always 1)",
    labelNames: ['device', 'volume_id', 'namespace', 'persistentvolumeclaim', 'persistentvolume'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const volume of staged())
        this.set(
          {
            device: deviceNameOf(volume.volumeId),
            volume_id: volume.volumeId,
            namespace: volume.claim?.namespace ?? '',
            persistentvolumeclaim: volume.claim?.name ?? '',
            persistentvolume: volume.claim?.volumeName ?? '',
          },
          1,
        );
    },
  });
  const events = new Counter({
    name: `${METRIC_PREFIX}volume_events_total`,
    help: 'Events the node plugin reported of a volume, by reason (DeviceTakenOver, DeviceHandedOver, QueueBroken, VolumeNoSpace, VolumeIOErrors, StageFailed)',
    labelNames: ['volume_id', 'reason'] as const,
    registers: [registry],
  });
  return (event) => events.inc({ volume_id: event.volumeId, reason: event.reason });
}

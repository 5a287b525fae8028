import { log } from '../log';
import { DeviceObservation } from './device-watch';
import { Claim } from './claim';
import { Pod } from './pod';

/** Something that happened to a volume, for its claim's and pods' Events (and the plugin's log). */
export interface VolumeEvent {
  volumeId: string;
  /** The claim it was provisioned for, when known: where the Event goes. */
  claim: Claim | undefined;
  /** The pods it is published to, when kubelet said: the Event goes to each too. */
  pods: readonly Pod[];
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  /** Occurrences this event stands for (failed requests, say). */
  count: number;
}

export type VolumeEventSink = (event: VolumeEvent) => void;

/** Where a volume's events go in cluster mode: Events on its claim and on its pods. */
export interface VolumeEventObjects {
  onClaim(claim: Claim, event: VolumeEvent): Promise<void>;
  onPod(pod: Pod, event: VolumeEvent): Promise<void>;
}

/** Logs each event; in cluster mode it also goes to the volume's claim and pods, where known. */
export function volumeEventSink(objects: VolumeEventObjects | null): VolumeEventSink {
  return (event) => {
    const fields = { volume: event.volumeId, reason: event.reason, count: event.count };
    if (event.type === 'Warning') log.warn(event.message, fields);
    else log.info(event.message, fields);
    if (!objects) return;
    if (event.claim) void objects.onClaim(event.claim, event);
    for (const pod of event.pods) void objects.onPod(pod, event);
  };
}

/** The event a device observation makes for the volume it serves. */
export function deviceEvent(
  observation: DeviceObservation,
  volume: Pick<VolumeEvent, 'volumeId' | 'claim' | 'pods'>,
): VolumeEvent {
  const event = (type: VolumeEvent['type'], reason: string, message: string, count = 1): VolumeEvent => ({
    ...volume,
    type,
    reason,
    message,
    count,
  });
  const { path } = observation;
  switch (observation.kind) {
    case 'no-space':
      return event(
        'Warning',
        'VolumeNoSpace',
        `${observation.count} write(s) on ${path} failed: the volume's storage has no space left (a full ` +
          "data directory under thin volumes, or a full Ceph pool); the pod's filesystem sees I/O errors",
        observation.count,
      );
    case 'queue-broken':
      return event(
        'Warning',
        'QueueBroken',
        `a queue of ${path} stopped serving ${observation.count} time(s): the driver put a malformed ` +
          "request on its ring; its requests wait until the driver resets the device (the device daemon's log names the fault)",
        observation.count,
      );
    case 'failed-requests':
      return event(
        'Warning',
        'VolumeIOErrors',
        `${observation.count} request(s) on ${path} failed with an I/O error from the volume's storage ` +
          "(the device daemon's log names the error)",
        observation.count,
      );
    case 'taken-over': {
      const { pid, released } = observation;
      const seconds = observation.seconds.toFixed(1);
      return released
        ? event(
            'Normal',
            'DeviceHandedOver',
            `device daemon ${pid} took ${path} over in ${seconds} s from daemon ${released.pid}, which let ` +
              `go of it (${released.reason}); I/O waited meanwhile`,
          )
        : event(
            'Warning',
            'DeviceTakenOver',
            `the device daemon serving ${path} stopped without letting go (killed or crashed); device ` +
              `daemon ${pid} took it over in ${seconds} s, I/O waited meanwhile`,
          );
    }
  }
}

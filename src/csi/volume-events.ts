import { log } from '../log';
import { DeviceObservation } from './device-watch';
import { Claim } from './claim';

/** Something that happened to a volume, for its claim's Events (and the plugin's log). */
export interface VolumeEvent {
  volumeId: string;
  /** The claim it was provisioned for, when known: where the Event goes. */
  claim: Claim | undefined;
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  /** Occurrences this event stands for (failed requests, say). */
  count: number;
}

export type VolumeEventSink = (event: VolumeEvent) => void;

/** Logs each event; those of a volume whose claim is known also go to `toClaim` (cluster mode). */
export function volumeEventSink(
  toClaim: ((claim: Claim, event: VolumeEvent) => Promise<void>) | null,
): VolumeEventSink {
  return (event) => {
    const fields = { volume: event.volumeId, reason: event.reason, count: event.count };
    if (event.type === 'Warning') log.warn(event.message, fields);
    else log.info(event.message, fields);
    if (event.claim && toClaim) void toClaim(event.claim, event);
  };
}

/** The event a device observation makes for the volume it serves. */
export function deviceEvent(
  observation: DeviceObservation,
  volume: { volumeId: string; claim: Claim | undefined },
): VolumeEvent {
  const { volumeId, claim } = volume;
  if (observation.kind === 'failed-requests')
    return {
      volumeId,
      claim,
      type: 'Warning',
      reason: 'VolumeIOErrors',
      message:
        `${observation.count} request(s) on ${observation.path} failed with an I/O error from the ` +
        "volume's storage (the device daemon's log names the error)",
      count: observation.count,
    };
  const seconds = observation.seconds.toFixed(1);
  if (observation.released)
    return {
      volumeId,
      claim,
      type: 'Normal',
      reason: 'DeviceHandedOver',
      message:
        `device daemon ${observation.pid} took ${observation.path} over in ${seconds} s from daemon ` +
        `${observation.released.pid}, which let go of it (${observation.released.reason}); I/O waited meanwhile`,
      count: 1,
    };
  return {
    volumeId,
    claim,
    type: 'Warning',
    reason: 'DeviceTakenOver',
    message:
      `the device daemon serving ${observation.path} stopped without letting go (killed or crashed); ` +
      `device daemon ${observation.pid} took it over in ${seconds} s, I/O waited meanwhile`,
    count: 1,
  };
}

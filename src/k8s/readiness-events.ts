import { EventRecorder, InvolvedObject } from './events';

/**
 * Events on the node plugin's own Pod when it cannot serve volumes (a missing kernel module, no
 * vdpa netlink), so `kubectl describe pod` says why it is not ready; and one when it recovers.
 */
export class ReadinessEvents {
  private wasNotReady = false;

  constructor(
    private readonly recorder: EventRecorder,
    private readonly pod: InvolvedObject,
  ) {}

  /** For IdentityOptions.onReadinessChange. */
  readonly onChange = (problem: string | null): void => {
    if (problem !== null) {
      this.wasNotReady = true;
      void this.recorder.record(this.pod, 'Warning', 'NotReady', `cannot serve volumes: ${problem}`);
    } else if (this.wasNotReady) {
      this.wasNotReady = false;
      void this.recorder.record(this.pod, 'Normal', 'Ready', 'can serve volumes again');
    }
  };
}

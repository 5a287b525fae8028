import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { log } from '../log';
import { DRIVER_NAME } from '../csi/identity';

/** The object an Event is about, as `kubectl describe` matches it. */
export interface InvolvedObject {
  kind: string;
  name: string;
  namespace: string;
  uid?: string;
}

/** Creates core/v1 Events in the involved object's namespace, reported by this driver. */
export class EventRecorder {
  readonly api: CoreV1Api;

  constructor(
    config: KubeConfig,
    private readonly instance: string,
  ) {
    this.api = config.makeApiClient(CoreV1Api);
  }

  /** Best effort: a failing event must not hide what it reports. */
  async record(
    involved: InvolvedObject,
    type: 'Normal' | 'Warning',
    reason: string,
    message: string,
  ): Promise<void> {
    try {
      const now = new Date();
      await this.api.createNamespacedEvent({
        namespace: involved.namespace,
        body: {
          metadata: {
            name: `${involved.name}.${randomBytes(8).toString('hex')}`,
            namespace: involved.namespace,
          },
          involvedObject: { apiVersion: 'v1', ...involved },
          type,
          reason,
          message,
          source: { component: DRIVER_NAME },
          reportingComponent: DRIVER_NAME,
          reportingInstance: this.instance,
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      });
    } catch (error) {
      log.warn('could not record an event', { involved, reason, error: String(error) });
    }
  }
}

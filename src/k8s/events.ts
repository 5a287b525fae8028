import { CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
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

export type EventType = 'Normal' | 'Warning';

/** Creates core/v1 Events in the involved object's namespace, reported by this driver. */
export class EventRecorder {
  readonly api: CoreV1Api;

  constructor(
    config: KubeConfig,
    private readonly instance: string,
  ) {
    this.api = config.makeApiClient(CoreV1Api);
  }

  /**
   * Creates an Event of `count` occurrences; resolves with its name, or null when it could not be
   * made (best effort: a failing event must not hide what it reports).
   */
  async record(
    involved: InvolvedObject,
    type: EventType,
    reason: string,
    message: string,
    count = 1,
  ): Promise<string | null> {
    try {
      const now = new Date();
      const created = await this.api.createNamespacedEvent({
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
          count,
        },
      });
      return created.metadata?.name ?? null;
    } catch (error) {
      log.warn('could not record an event', { involved, reason, error: String(error) });
      return null;
    }
  }

  /** Sets a recorded Event's count, message and last time (a series seen again); false if that failed. */
  async recount(namespace: string, name: string, count: number, message: string): Promise<boolean> {
    try {
      await this.api.patchNamespacedEvent(
        { namespace, name, body: { count, message, lastTimestamp: new Date() } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      return true;
    } catch (error) {
      log.warn('could not update an event', { namespace, name, error: String(error) });
      return false;
    }
  }
}

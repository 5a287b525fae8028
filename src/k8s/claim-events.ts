import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { log } from '../log';
import { DRIVER_NAME } from '../csi/identity';
import { VolumeRecord } from '../csi/store';

type Claim = NonNullable<VolumeRecord['claim']>;

/** Warning Events on PersistentVolumeClaims, so `kubectl describe pvc` shows why provisioning failed. */
export class ClaimEvents {
  private readonly api: CoreV1Api;

  constructor(
    config: KubeConfig,
    private readonly instance: string,
  ) {
    this.api = config.makeApiClient(CoreV1Api);
  }

  /** Best effort: a failing event must not hide the error it reports. */
  async warn(claim: Claim, reason: string, message: string): Promise<void> {
    try {
      const now = new Date();
      await this.api.createNamespacedEvent({
        namespace: claim.namespace,
        body: {
          metadata: { name: `${claim.name}.${randomBytes(8).toString('hex')}`, namespace: claim.namespace },
          involvedObject: {
            apiVersion: 'v1',
            kind: 'PersistentVolumeClaim',
            name: claim.name,
            namespace: claim.namespace,
            uid: await this.claimUid(claim),
          },
          type: 'Warning',
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
      log.warn('could not record an event on the claim', { claim, reason, error: String(error) });
    }
  }

  /** kubectl describe matches events by uid too; without read access the event still lands. */
  private async claimUid(claim: Claim): Promise<string | undefined> {
    try {
      return (await this.api.readNamespacedPersistentVolumeClaim(claim)).metadata?.uid;
    } catch {
      return undefined;
    }
  }
}

import { VolumeRecord } from '../csi/store';
import { EventRecorder } from './events';

type Claim = NonNullable<VolumeRecord['claim']>;

/** Warning Events on PersistentVolumeClaims, so `kubectl describe pvc` shows why provisioning failed. */
export class ClaimEvents {
  constructor(private readonly recorder: EventRecorder) {}

  async warn(claim: Claim, reason: string, message: string): Promise<void> {
    const uid = await this.claimUid(claim);
    await this.recorder.record({ kind: 'PersistentVolumeClaim', ...claim, uid }, 'Warning', reason, message);
  }

  /** kubectl describe matches events by uid too; without read access the event still lands. */
  private async claimUid(claim: Claim): Promise<string | undefined> {
    try {
      return (await this.recorder.api.readNamespacedPersistentVolumeClaim(claim)).metadata?.uid;
    } catch {
      return undefined;
    }
  }
}

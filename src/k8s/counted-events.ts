import { Claim } from '../csi/claim';
import { Pod } from '../csi/pod';
import { Serial } from '../sys/serial';
import { EventRecorder, EventType, InvolvedObject } from './events';

/** How long an object's Event of one reason keeps counting what happens again before a new one starts. */
const SERIES_WINDOW_MS = 10 * 60_000;

interface Series {
  namespace: string;
  name: string;
  count: number;
  lastMs: number;
}

/**
 * Events on the claims (and pods) of volumes, so `kubectl describe pvc` and `kubectl describe pod`
 * show what happened to a volume: what happens again within ten minutes (a flood of I/O errors, a
 * provisioning retry) raises the count of the object's Event of that reason instead of making
 * another.
 */
export class CountedEvents {
  private readonly series = new Map<string, Series>();
  /** One write at a time: counts stay exact and a series never starts twice. */
  private readonly writes = new Serial();

  constructor(
    private readonly recorder: EventRecorder,
    private readonly now: () => number = Date.now,
  ) {}

  warn(claim: Claim, reason: string, message: string, count = 1): Promise<void> {
    return this.onClaim(claim, 'Warning', reason, message, count);
  }

  /** An Event on a claim, named by its uid when the claim can be read. */
  onClaim(claim: Claim, type: EventType, reason: string, message: string, count = 1): Promise<void> {
    const { name, namespace } = claim;
    const involved = { kind: 'PersistentVolumeClaim', name, namespace };
    return this.report(involved, () => this.claimUid(claim), type, reason, message, count);
  }

  /** An Event on a pod the volume is published to (kubelet gave its uid). */
  onPod(pod: Pod, type: EventType, reason: string, message: string, count = 1): Promise<void> {
    const { name, namespace, uid } = pod;
    return this.report({ kind: 'Pod', name, namespace }, async () => uid, type, reason, message, count);
  }

  private report(
    involved: Omit<InvolvedObject, 'uid'>,
    uidOf: () => Promise<string | undefined>,
    type: EventType,
    reason: string,
    message: string,
    count: number,
  ): Promise<void> {
    return this.writes.run(async () => {
      const now = this.now();
      this.forgetEnded(now);
      const key = JSON.stringify([involved.kind, involved.namespace, involved.name, type, reason]);
      const series = this.series.get(key);
      if (
        series &&
        (await this.recorder.recount(series.namespace, series.name, series.count + count, message))
      ) {
        series.count += count;
        series.lastMs = now;
        return;
      }
      const name = await this.recorder.record(
        { ...involved, uid: await uidOf() },
        type,
        reason,
        message,
        count,
      );
      if (name === null) this.series.delete(key);
      else this.series.set(key, { namespace: involved.namespace, name, count, lastMs: now });
    });
  }

  private forgetEnded(now: number): void {
    for (const [key, series] of this.series)
      if (now - series.lastMs >= SERIES_WINDOW_MS) this.series.delete(key);
  }

  /** kubectl describe matches events by uid too; without read access the event still lands. */
  private async claimUid(claim: Claim): Promise<string | undefined> {
    try {
      const { name, namespace } = claim;
      return (await this.recorder.api.readNamespacedPersistentVolumeClaim({ name, namespace })).metadata?.uid;
    } catch {
      return undefined;
    }
  }
}

import { Claim } from '../csi/claim';
import { Serial } from '../sys/serial';
import { EventRecorder, EventType } from './events';

/** How long a claim's Event of one reason keeps counting what happens again before a new one starts. */
const SERIES_WINDOW_MS = 10 * 60_000;

interface Series {
  namespace: string;
  name: string;
  count: number;
  lastMs: number;
}

/**
 * Events on PersistentVolumeClaims, so `kubectl describe pvc` shows what happened to the volume:
 * what happens again within ten minutes (a flood of I/O errors, a provisioning retry) raises the
 * count of the claim's Event of that reason instead of making another.
 */
export class ClaimEvents {
  private readonly series = new Map<string, Series>();
  /** One write at a time: counts stay exact and a series never starts twice. */
  private readonly writes = new Serial();

  constructor(
    private readonly recorder: EventRecorder,
    private readonly now: () => number = Date.now,
  ) {}

  warn(claim: Claim, reason: string, message: string, count = 1): Promise<void> {
    return this.report(claim, 'Warning', reason, message, count);
  }

  report(claim: Claim, type: EventType, reason: string, message: string, count = 1): Promise<void> {
    return this.writes.run(async () => {
      const now = this.now();
      this.forgetEnded(now);
      const key = JSON.stringify([claim.namespace, claim.name, type, reason]);
      const series = this.series.get(key);
      if (
        series &&
        (await this.recorder.recount(series.namespace, series.name, series.count + count, message))
      ) {
        series.count += count;
        series.lastMs = now;
        return;
      }
      const uid = await this.claimUid(claim);
      const involved = { kind: 'PersistentVolumeClaim', ...claim, uid };
      const name = await this.recorder.record(involved, type, reason, message, count);
      if (name === null) this.series.delete(key);
      else this.series.set(key, { namespace: claim.namespace, name, count, lastMs: now });
    });
  }

  private forgetEnded(now: number): void {
    for (const [key, series] of this.series)
      if (now - series.lastMs >= SERIES_WINDOW_MS) this.series.delete(key);
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

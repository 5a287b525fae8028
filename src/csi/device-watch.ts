import { log } from '../log';

/** What the device daemon's `status` says of takeovers and failed requests (older builds say neither). */
export interface DaemonFacts {
  pid: number;
  startedAtMs: number;
  takeover: { devices: string[]; seconds: number; released: { pid: number; reason: string } | null } | null;
  /**
   * Failed requests of each device (`noSpaceRequests` of them for want of space), and how often one
   * of its queues stopped on a ring the driver broke.
   */
  devices: Array<{
    name: string;
    path: string;
    failedRequests: number;
    noSpaceRequests: number;
    queueBreaks: number;
  }>;
}

/** Something an operator should hear of about one device. */
export type DeviceObservation =
  | {
      kind: 'taken-over';
      device: string;
      path: string;
      pid: number;
      seconds: number;
      /** The previous daemon, when it let go on purpose (a hand-over, a stop); null when it died. */
      released: { pid: number; reason: string } | null;
    }
  | { kind: 'failed-requests'; device: string; path: string; count: number }
  | { kind: 'no-space'; device: string; path: string; count: number }
  | { kind: 'queue-broken'; device: string; path: string; count: number };

type Failures = Pick<DaemonFacts['devices'][number], 'failedRequests' | 'noSpaceRequests' | 'queueBreaks'>;
const NO_FAILURES: Failures = { failedRequests: 0, noSpaceRequests: 0, queueBreaks: 0 };

/** How often the daemon is asked; failed requests of one interval are one observation. */
export const DEVICE_WATCH_INTERVAL_MS = 5_000;

/**
 * Watches the node's device daemon for takeovers and failed requests. The daemon keeps counts per
 * process; a new pid is a new daemon, whose takeover is reported once, and whose counts start over.
 * What happened before this watch began is left to the watch that was running then.
 */
export class DeviceWatch {
  private readonly startedAtMs = Date.now();
  private pid: number | null = null;
  private readonly failed = new Map<string, Failures>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly facts: () => Promise<DaemonFacts | null>,
    private readonly observed: (observation: DeviceObservation) => void,
  ) {}

  start(intervalMs = DEVICE_WATCH_INTERVAL_MS): void {
    const tick = (): void => {
      void this.observeOnce()
        .catch((error: unknown) => log.warn('could not watch the device daemon', { error: String(error) }))
        .finally(() => {
          if (this.timer) this.timer = setTimeout(tick, intervalMs);
        });
    };
    this.timer = setTimeout(tick, 0);
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  async observeOnce(): Promise<void> {
    const facts = await this.facts();
    if (!facts) return;
    const newDaemon = facts.pid !== this.pid;
    // A daemon that began serving before this watch had its counts seen by the watch of that time.
    const seenFromStart = facts.startedAtMs >= this.startedAtMs;
    if (newDaemon) {
      this.pid = facts.pid;
      this.failed.clear();
      if (seenFromStart) this.reportTakeover(facts);
    }
    const served = new Set<string>();
    for (const device of facts.devices) {
      served.add(device.name);
      const seen = this.failed.get(device.name) ?? (newDaemon && !seenFromStart ? device : NO_FAILURES);
      const { name, path, failedRequests, noSpaceRequests, queueBreaks } = device;
      this.failed.set(name, { failedRequests, noSpaceRequests, queueBreaks });
      const noSpace = noSpaceRequests - seen.noSpaceRequests;
      const counts = {
        'queue-broken': queueBreaks - seen.queueBreaks,
        'no-space': noSpace,
        'failed-requests': failedRequests - seen.failedRequests - noSpace,
      } as const;
      for (const [kind, count] of Object.entries(counts) as Array<[keyof typeof counts, number]>)
        if (count > 0) this.observed({ kind, device: name, path, count });
    }
    for (const name of this.failed.keys()) if (!served.has(name)) this.failed.delete(name);
  }

  private reportTakeover(facts: DaemonFacts): void {
    const takeover = facts.takeover;
    if (!takeover) return;
    for (const name of takeover.devices) {
      const device = facts.devices.find((served) => served.name === name);
      if (!device) continue;
      this.observed({
        kind: 'taken-over',
        device: name,
        path: device.path,
        pid: facts.pid,
        seconds: takeover.seconds,
        released: takeover.released,
      });
    }
  }
}

/** The facts of a `status` answer; fields an older daemon does not give read as nothing to report. */
export function daemonFactsOf(answer: Record<string, unknown>): DaemonFacts {
  const takeover = answer.takeover as DaemonFacts['takeover'] | undefined;
  const devices = Array.isArray(answer.devices) ? (answer.devices as Array<Record<string, unknown>>) : [];
  return {
    pid: Number(answer.pid),
    startedAtMs: Number(answer.startedAtMs),
    takeover:
      takeover && Array.isArray(takeover.devices)
        ? {
            devices: takeover.devices.map(String),
            seconds: Number(takeover.seconds),
            released: takeover.released ?? null,
          }
        : null,
    devices: devices.map((device) => ({
      name: String(device.name),
      path: String(device.path),
      failedRequests: Number(device.failedRequests ?? 0),
      noSpaceRequests: Number(device.noSpaceRequests ?? 0),
      queueBreaks: Number(device.queueBreaks ?? 0),
    })),
  };
}

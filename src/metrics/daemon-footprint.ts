import { Gauge, Registry } from 'prom-client';
import { procFields, readProcFile } from '../sys/proc-files';
import { METRIC_PREFIX } from './registry';
import { oncePerScrape } from './once-per-scrape';

/** A process whose footprint a daemon reports: itself, and its warm standby when it keeps one. */
export interface FootprintProcess {
  process: 'daemon' | 'standby';
  pid: number;
}

interface Footprint extends FootprintProcess {
  pssBytes: number;
  threads: number;
}

/**
 * What a device daemon costs the node beyond process_resident_memory_bytes: its proportional set
 * size (shared pages split among the processes sharing them, so a daemon and its standby add up to
 * what they take together) and its threads (one per device queue thread, plus
 * Node.js's own), for itself and its standby. A process gone meanwhile has no series.
 */
export function registerDaemonFootprint(registry: Registry, processes: () => FootprintProcess[]): void {
  const footprints = oncePerScrape(() => processes().flatMap(footprintOf));
  const gauge = (name: string, help: string, pick: (footprint: Footprint) => number): void => {
    new Gauge({
      name: `${METRIC_PREFIX}${name}`,
      help,
      labelNames: ['process'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const footprint of footprints()) this.set({ process: footprint.process }, pick(footprint));
      },
    });
  };
  gauge(
    'daemon_pss_bytes',
    "Proportional set size of the device daemon and of its standby (smaps_rollup's Pss)",
    (footprint) => footprint.pssBytes,
  );
  gauge(
    'daemon_threads',
    'Threads of the device daemon and of its standby',
    (footprint) => footprint.threads,
  );
}

function footprintOf(process: FootprintProcess): Footprint[] {
  const status = readProcFile(process.pid, 'status');
  const rollup = readProcFile(process.pid, 'smaps_rollup');
  if (status === undefined || rollup === undefined) return [];
  const threads = procFields(status).get('Threads');
  const pssKiB = procFields(rollup).get('Pss');
  if (threads === undefined || pssKiB === undefined) return [];
  return [{ ...process, pssBytes: pssKiB * 1024, threads }];
}

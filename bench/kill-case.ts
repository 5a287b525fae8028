import { whileWriting } from '../test/kernel/rbd-checks';
import { kernelLogFromNow, startVerifiedFio } from '../test/kernel/support';
import { firstJsonObject } from './fio';
import { devicePath, ServedVolumes } from './layout';
import { log } from './log';

/** What fio's users got when the process serving their device was SIGKILLed under verified writes. */
export interface KillFigures {
  layout: string;
  killedPid: number;
  /** completed: fio ended by itself (errors tells how); hung: still running `hangS` after the kill. */
  outcome: 'completed' | 'hung';
  fioExit: number | null;
  /** fio's error count (its job's `error`, an errno): 0 when every write was verified. */
  errors: number | null;
  /** fio's longest completion latency, ms: the stall its I/O saw. */
  longestStallMs: number | null;
  /** Seconds from the kill to fio's end (or to giving up on it). */
  fioEndS: number;
  /** fio's own error lines, and the kernel's I/O error lines after the kill (a few of each). */
  fioMessages: string[];
  kernelMessages: string[];
}

interface VerifiedJob {
  error: number;
  read: { clat_ns: { max: number } };
  write: { clat_ns: { max: number } };
}

/** fio's errors, longest latency and error lines from its output (a JSON report, maybe after error lines). */
export function parseVerifiedFio(output: string): {
  errors: number | null;
  longestStallMs: number | null;
  messages: string[];
} {
  // stderr's lines may come before or after the report on stdout.
  let report = '';
  try {
    report = firstJsonObject(output);
  } catch {
    // no report: fio was killed
  }
  const messages = output
    .replace(report, '')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.length > 0)
    .slice(0, 5);
  try {
    const job = (JSON.parse(report) as { jobs: VerifiedJob[] }).jobs[0]!;
    const longestNs = Math.max(job.write.clat_ns.max, job.read.clat_ns.max);
    return { errors: job.error, longestStallMs: longestNs / 1e6, messages };
  } catch {
    return { errors: null, longestStallMs: null, messages };
  }
}

/** Kernel log lines about failed I/O or a lost block device server. */
export function kernelIoErrors(log: string): string[] {
  return log
    .split('\n')
    .filter((line) => /I\/O error|blk_update_request|nbd\d*:|rbd\d*:|Buffer I\/O/.test(line))
    .slice(0, 5);
}

const HANG_S = 300;

async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * fio's crc32c-verified 4k random writes (QD32) over `sizeMiB` of the layout's device; once it is
 * writing, the serving process is SIGKILLed. Figures, not assertions: what fio got, how long it
 * stalled, what the kernel logged.
 */
export async function killUnderVerifiedWrites(
  layout: string,
  served: ServedVolumes,
  sizeMiB: number,
): Promise<KillFigures> {
  const device = devicePath([...served.targets.values()][0]!);
  const kernelLog = kernelLogFromNow(`bench-kill-${layout}`);
  const fio = startVerifiedFio({ filename: device }, sizeMiB);
  await whileWriting(device);
  const killedAt = performance.now();
  const killedPid = await served.kill!();
  log(`${layout}: SIGKILLed ${killedPid} under verified writes`);
  const endedInTime = await within(fio.done, HANG_S * 1000);
  const fioEndS = (performance.now() - killedAt) / 1000;
  let ended = endedInTime;
  if (!ended) {
    log(`${layout}: fio still runs ${HANG_S} s after the kill; killing it`);
    fio.process.kill('SIGKILL');
    ended = await within(fio.done, 30_000);
  }
  const parsed = parseVerifiedFio(ended?.output ?? '');
  return {
    layout,
    killedPid,
    outcome: endedInTime ? 'completed' : 'hung',
    fioExit: ended?.code ?? null,
    errors: parsed.errors,
    longestStallMs: parsed.longestStallMs,
    fioEndS,
    fioMessages: parsed.messages,
    kernelMessages: kernelIoErrors(kernelLog()),
  };
}

import { readFileSync } from 'node:fs';
import { startFio } from '../test/kernel/support';

export const MiB = 2 ** 20;

export interface FioJob {
  rw: 'randread' | 'randwrite' | 'read' | 'write';
  bs: string;
  iodepth: number;
}

export const FIO_JOBS: Record<string, FioJob> = {
  'randread-4k-qd1': { rw: 'randread', bs: '4k', iodepth: 1 },
  'randread-4k-qd32': { rw: 'randread', bs: '4k', iodepth: 32 },
  'randwrite-4k-qd32': { rw: 'randwrite', bs: '4k', iodepth: 32 },
  'read-1m-qd8': { rw: 'read', bs: '1M', iodepth: 8 },
  'write-1m-qd8': { rw: 'write', bs: '1M', iodepth: 8 },
};

export interface FioFigures {
  iops: number;
  mibS: number;
  /** Completion latency percentiles. */
  p50Us: number;
  p99Us: number;
  totalIos: number;
  errors: number;
}

interface FioDirection {
  iops: number;
  bw_bytes: number;
  total_ios: number;
  clat_ns: { percentile?: Record<string, number> };
}

/**
 * The first JSON object in `text`: fio may print notes ahead of its report, and once (on the VM's
 * 9p output directory) a report file ended in stray bytes of a longer earlier write.
 */
export function firstJsonObject(text: string): string {
  const start = text.indexOf('{');
  let depth = 0;
  let inString = false;
  for (let at = start; start >= 0 && at < text.length; at++) {
    const char = text[at];
    if (inString) {
      if (char === '\\') at++;
      else if (char === '"') inString = false;
    } else if (char === '"') inString = true;
    else if (char === '{') depth++;
    else if (char === '}' && --depth === 0) return text.slice(start, at + 1);
  }
  throw new Error(`no complete JSON object in fio's output: ${text.slice(0, 200)}`);
}

/** The figures of fio's JSON report (one group: --group_reporting) for the job's direction. */
export function parseFioReport(text: string, rw: FioJob['rw']): FioFigures {
  const report = JSON.parse(firstJsonObject(text)) as {
    jobs: Array<{ error?: number; read: FioDirection; write: FioDirection }>;
  };
  const job = report.jobs[0]!;
  const direction = rw.endsWith('write') ? job.write : job.read;
  const percentile = direction.clat_ns.percentile ?? {};
  return {
    iops: direction.iops,
    mibS: direction.bw_bytes / MiB,
    p50Us: (percentile['50.000000'] ?? 0) / 1000,
    p99Us: (percentile['99.000000'] ?? 0) / 1000,
    totalIos: direction.total_ios,
    errors: job.error ?? 0,
  };
}

/** An RBD image fio's own rbd engine reaches through librbd (no block device at all). */
export interface RbdFioTarget {
  kind: 'rbd';
  conf: string;
  /** cephx user without "client.". */
  user: string;
  pool: string;
  image: string;
}

/** Where fio does its I/O. */
export type FioTarget = { kind: 'device'; path: string } | RbdFioTarget;

export interface FioRunOptions {
  target: FioTarget;
  job: string;
  /** One fio job per queue, each on its own slice of the device. */
  numjobs: number;
  deviceBytes: number;
  runtimeS: number;
  rampS: number;
  /** Where fio writes its JSON report. */
  reportPath: string;
}

/**
 * numjobs = queues: with one submitting thread blk-mq would use only the virtqueue of that thread's
 * CPU and leave the others idle. The iodepth is per job.
 */
export function fioArgs(options: FioRunOptions): string[] {
  const spec = FIO_JOBS[options.job]!;
  const slice = Math.floor(options.deviceBytes / options.numjobs / MiB) * MiB;
  return [
    `--name=${options.job}`,
    ...targetArgs(options.target),
    `--rw=${spec.rw}`,
    `--bs=${spec.bs}`,
    `--iodepth=${spec.iodepth}`,
    `--numjobs=${options.numjobs}`,
    `--size=${slice}`,
    `--offset_increment=${slice}`,
    '--group_reporting',
    '--time_based',
    `--runtime=${options.runtimeS}`,
    `--ramp_time=${options.rampS}`,
    '--norandommap',
    '--randrepeat=0',
    '--output-format=json',
    `--output=${options.reportPath}`,
  ];
}

function targetArgs(target: FioTarget): string[] {
  return target.kind === 'device'
    ? [`--filename=${target.path}`, '--ioengine=libaio', '--direct=1']
    : ['--ioengine=rbd', `--clientname=${target.user}`, `--pool=${target.pool}`, `--rbdname=${target.image}`];
}

/** fio's environment: its rbd engine reads the cluster's ceph.conf from CEPH_CONF (it has no option for it). */
export function fioEnv(target: FioTarget): NodeJS.ProcessEnv {
  return target.kind === 'rbd' ? { ...process.env, CEPH_CONF: target.conf } : process.env;
}

/** Runs fio to completion (killed when a stuck device keeps it past its time) and parses its report. */
export async function runFio(options: FioRunOptions): Promise<FioFigures> {
  const graceS = 120;
  const fio = startFio(fioArgs(options), fioEnv(options.target));
  const timer = setTimeout(
    () => fio.process.kill('SIGKILL'),
    (options.runtimeS + options.rampS + graceS) * 1000,
  );
  const { code, output } = await fio.done.finally(() => clearTimeout(timer));
  if (code !== 0) {
    const why =
      code === null ? `still running ${graceS} s after its time (device stuck?)` : `failed (${code})`;
    throw new Error(`fio ${options.job} ${why}: ${output.trim().slice(-500)}`);
  }
  return parseFioReport(readFileSync(options.reportPath, 'utf8'), FIO_JOBS[options.job]!.rw);
}

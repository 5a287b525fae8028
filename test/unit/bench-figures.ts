import { RunFigures } from '../../bench/throughput';

/** One fio run's figures as the throughput case records them, derived from its IOPS. */
export function runFigures(iops: number, cpuUsPerIo: number | null, rssMiB: number | null = 80): RunFigures {
  return {
    iops,
    mibS: iops / 256,
    p50Us: 100,
    p99Us: 400,
    totalIos: iops * 10,
    errors: 0,
    cpuUsPerIo,
    rssMiB,
    hwmMiB: rssMiB === null ? null : rssMiB + 10,
    cpuS: 1,
    idlePct: 20,
    deviceIos: iops * 12,
    wallS: 12,
  };
}

import { join } from 'node:path';
import { BenchConfig } from './config';
import { FioFigures, FioRunOptions, MiB, runFio } from './fio';
import { Layout, ServedVolumes } from './layout';
import { log } from './log';
import { blockIos, CLOCK_TICKS, cpuTicks, memoryOf } from './proc';

export interface RunFigures extends FioFigures {
  /** Server CPU (utime + stime) over the fio run / requests the device completed meanwhile. */
  cpuUsPerIo: number | null;
  /** VmRSS of the server right after the run. */
  rssMiB: number;
  /** VmHWM (peak RSS) of the server instance so far: over every run before on it. */
  hwmMiB: number;
  cpuS: number;
  deviceIos: number;
  wallS: number;
}

/** "queues/job" -> layout -> one entry per repeat. */
export type ThroughputRuns = Record<string, Record<string, RunFigures[]>>;

/**
 * fio on one served device, with the server's CPU and the device's completed requests sampled
 * right before fio starts and right after it exits (ramp time is in both).
 */
async function measuredFio(
  served: ServedVolumes,
  device: string,
  options: FioRunOptions,
): Promise<RunFigures> {
  const pidsBefore = served.pids();
  const cpuBefore = cpuTicks(pidsBefore);
  const iosBefore = blockIos(device);
  const started = performance.now();
  const fio = await runFio(options);
  const cpuAfter = cpuTicks([...new Set([...pidsBefore, ...served.pids()])]);
  const deviceIos = blockIos(device) - iosBefore;
  const wallS = (performance.now() - started) / 1000;
  const cpuS = (cpuAfter - cpuBefore) / CLOCK_TICKS;
  const memory = memoryOf(served.pids());
  return {
    ...fio,
    cpuUsPerIo: deviceIos > 0 ? (cpuS * 1e6) / deviceIos : null,
    rssMiB: memory.VmRSS / 1024,
    hwmMiB: memory.VmHWM / 1024,
    cpuS,
    deviceIos,
    wallS,
  };
}

function runLine(figures: RunFigures): string {
  const cpu = figures.cpuUsPerIo === null ? '-' : figures.cpuUsPerIo.toFixed(1);
  return (
    `${figures.iops.toFixed(0).padStart(7)} IOPS ${figures.mibS.toFixed(1).padStart(7)} MiB/s ` +
    `p50 ${figures.p50Us.toFixed(0).padStart(7)}us p99 ${figures.p99Us.toFixed(0).padStart(8)}us ` +
    `cpu/io ${cpu}us rss ${figures.rssMiB.toFixed(1)}MiB`
  );
}

/**
 * Per queue count, every layout serves the same image at once (one device each; the I/O is
 * sequential, so they never overlap) and each job's repeats alternate between them (A B B A ...):
 * the emulated machine's speed drifts by 2-3x over minutes, so only runs close in time compare.
 */
export async function throughputCase(
  config: BenchConfig,
  layouts: Layout[],
  image: string,
  rawDir: string,
  failures: string[],
): Promise<ThroughputRuns> {
  const runs: ThroughputRuns = {};
  const fail = (message: string): void => {
    log(message);
    failures.push(message);
  };
  for (const queues of config.queueCounts) {
    const served = new Map<string, { volumes: ServedVolumes; device: string }>();
    try {
      for (const layout of layouts) {
        const name = `${layout.name}${queues}`;
        const started = performance.now();
        try {
          const volumes = await layout.serve([{ name, image }], {
            queues,
            logDir: rawDir,
            readyTimeoutMs: config.readyTimeoutMs,
          });
          const device = volumes.devices.get(name)!;
          served.set(layout.name, { volumes, device });
          const seconds = ((performance.now() - started) / 1000).toFixed(1);
          log(`${layout.name} queues=${queues}: ${name} on ${device} (ready in ${seconds} s)`);
        } catch (error) {
          fail(`${layout.name} queues=${queues}: start FAILED: ${String(error)}`);
        }
      }
      for (const job of config.jobs) {
        for (let repeat = 1; repeat <= config.repeats; repeat++) {
          const order = [...served.keys()];
          if (repeat % 2 === 0) order.reverse();
          for (const layout of order) {
            const { volumes, device } = served.get(layout)!;
            if (!volumes.alive()) continue;
            const tag = `${layout}${queues}-${job}-r${repeat}`;
            try {
              const figures = await measuredFio(volumes, device, {
                device,
                job,
                numjobs: queues,
                deviceBytes: config.imageMiB * MiB,
                runtimeS: config.runtimeS,
                rampS: config.rampS,
                reportPath: join(rawDir, `fio-${tag}.json`),
              });
              ((runs[`${queues}/${job}`] ??= {})[layout] ??= []).push(figures);
              log(`  ${layout.padEnd(4)} q${queues} ${job.padEnd(18)} r${repeat} ${runLine(figures)}`);
            } catch (error) {
              fail(`${layout} queues=${queues} ${job} repeat=${repeat}: FAILED: ${String(error)}`);
            }
            if (!volumes.alive()) fail(`${layout} queues=${queues}: its server died during ${job}`);
          }
        }
      }
    } finally {
      for (const [layout, { volumes }] of served) {
        await volumes.stop().catch((error: unknown) => fail(`${layout}: stop failed: ${String(error)}`));
      }
    }
  }
  return runs;
}

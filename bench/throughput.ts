import { join } from 'node:path';
import { BenchConfig } from './config';
import { FioFigures, FioRunOptions, FioTarget, runFio } from './fio';
import { Layout, ServedVolumes, Volume } from './layout';
import { log } from './log';
import { blockIos, CLOCK_TICKS, cpuTicks, cpuTicksByThread, memoryOf, systemTicks } from './proc';

export interface RunFigures extends FioFigures {
  /**
   * Server CPU (utime + stime) over the fio run / requests the device completed meanwhile; null
   * without a serving process (the kernel's rbd, fio's own rbd engine).
   */
  cpuUsPerIo: number | null;
  /** VmRSS of the server right after the run (null: no serving process). */
  rssMiB: number | null;
  /** VmHWM (peak RSS) of the server instance so far: over every run before on it. */
  hwmMiB: number | null;
  cpuS: number;
  /** Share of the machine's CPU time left idle over the run, in %: what parallel work could still use. */
  idlePct: number;
  /** The serving processes' CPU seconds over the run per thread name, largest first. */
  threadCpuS?: Record<string, number>;
  deviceIos: number;
  wallS: number;
}

/** Per thread name, ticks after minus ticks before, in seconds, largest first (none under 0.01 s). */
export function threadCpuDelta(
  before: Map<string, number>,
  after: Map<string, number>,
  ticksPerSecond: number,
): Record<string, number> {
  const deltas = [...after].map(([name, ticks]): [string, number] => [
    name,
    (ticks - (before.get(name) ?? 0)) / ticksPerSecond,
  ]);
  return Object.fromEntries(deltas.filter(([, seconds]) => seconds >= 0.01).sort((a, b) => b[1] - a[1]));
}

/** "queues/job" -> layout -> one entry per repeat. */
export type ThroughputRuns = Record<string, Record<string, RunFigures[]>>;

/** Requests completed so far: by the block device, or (no device) by fio itself, counted after the run. */
function requestsDone(target: FioTarget): number {
  return target.kind === 'device' ? blockIos(target.path) : 0;
}

/**
 * fio on one served device, with the server's CPU and the device's completed requests sampled
 * right before fio starts and right after it exits (ramp time is in both).
 */
async function measuredFio(served: ServedVolumes, options: FioRunOptions): Promise<RunFigures> {
  const pidsBefore = served.pids();
  const cpuBefore = cpuTicks(pidsBefore);
  const threadsBefore = cpuTicksByThread(pidsBefore);
  const iosBefore = requestsDone(options.target);
  const machineBefore = systemTicks();
  const started = performance.now();
  const fio = await runFio(options);
  const machineAfter = systemTicks();
  const pidsAfter = [...new Set([...pidsBefore, ...served.pids()])];
  const cpuAfter = cpuTicks(pidsAfter);
  const threadCpuS = threadCpuDelta(threadsBefore, cpuTicksByThread(pidsAfter), CLOCK_TICKS);
  const deviceIos =
    options.target.kind === 'device' ? requestsDone(options.target) - iosBefore : fio.totalIos;
  const wallS = (performance.now() - started) / 1000;
  const cpuS = (cpuAfter - cpuBefore) / CLOCK_TICKS;
  const serving = served.processes > 0;
  const memory = memoryOf(served.pids());
  return {
    ...fio,
    cpuUsPerIo: serving && deviceIos > 0 ? (cpuS * 1e6) / deviceIos : null,
    rssMiB: serving ? memory.VmRSS / 1024 : null,
    hwmMiB: serving ? memory.VmHWM / 1024 : null,
    cpuS,
    idlePct:
      (100 * (machineAfter.idle - machineBefore.idle)) /
      Math.max(1, machineAfter.total - machineBefore.total),
    threadCpuS,
    deviceIos,
    wallS,
  };
}

function runLine(figures: RunFigures): string {
  const orDash = (value: number | null): string => (value === null ? '-' : value.toFixed(1));
  return (
    `${figures.iops.toFixed(0).padStart(7)} IOPS ${figures.mibS.toFixed(1).padStart(7)} MiB/s ` +
    `p50 ${figures.p50Us.toFixed(0).padStart(7)}us p99 ${figures.p99Us.toFixed(0).padStart(8)}us ` +
    `cpu/io ${orDash(figures.cpuUsPerIo)}us rss ${orDash(figures.rssMiB)}MiB idle ${orDash(figures.idlePct)}%`
  );
}

/** `job` on a layout's volume: one fio job per queue, each on its own slice of the volume. */
function fioRun(
  volumes: ServedVolumes,
  plan: ThroughputPlan,
  job: string,
  queues: number,
  run: Pick<FioRunOptions, 'runtimeS' | 'rampS' | 'reportPath'>,
): FioRunOptions {
  return {
    target: [...volumes.targets.values()][0]!,
    job,
    numjobs: queues,
    deviceBytes: plan.volumeBytes,
    ...run,
  };
}

/** The first job on every served layout for `config.warmUpS` seconds, measuring nothing. */
async function warmUp(
  config: BenchConfig,
  plan: ThroughputPlan,
  served: Map<string, ServedVolumes>,
  queues: number,
  rawDir: string,
  fail: (message: string) => void,
): Promise<void> {
  const job = config.jobs[0]!;
  for (const [layout, volumes] of served) {
    try {
      await runFio(
        fioRun(volumes, plan, job, queues, {
          runtimeS: config.warmUpS,
          rampS: 0,
          reportPath: join(rawDir, `fio-${layout}${queues}-warm-up.json`),
        }),
      );
      log(`  ${layout} q${queues}: warmed up with ${config.warmUpS} s of ${job}`);
    } catch (error) {
      fail(`${layout} queues=${queues}: warm-up FAILED: ${String(error)}`);
    }
  }
}

/** What the throughput case runs on. */
export interface ThroughputPlan {
  layouts: Layout[];
  /** The volume `layout` serves with `queues` queues. */
  volume(layout: Layout, queues: number): Volume;
  /** Size of each volume: the fio jobs' slices split it. */
  volumeBytes: number;
  /** Runs after the jobs of a queue count, while every layout still serves (the RBD case's kills). */
  afterJobs?(served: Map<string, ServedVolumes>): Promise<void>;
}

/**
 * Per queue count, every layout serves its volume at once (one device each; one fio at a time) and
 * each job's repeats alternate between them (A B B A ...): the emulated machine's speed drifts by
 * 2-3x over minutes, so only runs close in time compare.
 */
export async function throughputCase(
  config: BenchConfig,
  plan: ThroughputPlan,
  rawDir: string,
  failures: string[],
): Promise<ThroughputRuns> {
  const runs: ThroughputRuns = {};
  const fail = (message: string): void => {
    log(message);
    failures.push(message);
  };
  for (const queues of config.queueCounts) {
    const served = new Map<string, ServedVolumes>();
    try {
      for (const layout of plan.layouts) {
        const volume = plan.volume(layout, queues);
        const started = performance.now();
        try {
          const volumes = await layout.serve([volume], {
            queues,
            logDir: rawDir,
            readyTimeoutMs: config.readyTimeoutMs,
          });
          served.set(layout.name, volumes);
          const target = volumes.targets.get(volume.name)!;
          const seconds = ((performance.now() - started) / 1000).toFixed(1);
          log(
            `${layout.name} queues=${queues}: ${volume.name} on ${JSON.stringify(target)} (ready in ${seconds} s)`,
          );
        } catch (error) {
          fail(`${layout.name} queues=${queues}: start FAILED: ${String(error)}`);
        }
      }
      if (config.warmUpS > 0) await warmUp(config, plan, served, queues, rawDir, fail);
      for (const job of config.jobs) {
        for (let repeat = 1; repeat <= config.repeats; repeat++) {
          const order = [...served.keys()];
          if (repeat % 2 === 0) order.reverse();
          for (const layout of order) {
            const volumes = served.get(layout)!;
            if (!volumes.alive()) continue;
            const tag = `${layout}${queues}-${job}-r${repeat}`;
            try {
              const figures = await measuredFio(
                volumes,
                fioRun(volumes, plan, job, queues, {
                  runtimeS: config.runtimeS,
                  rampS: config.rampS,
                  reportPath: join(rawDir, `fio-${tag}.json`),
                }),
              );
              ((runs[`${queues}/${job}`] ??= {})[layout] ??= []).push(figures);
              log(`  ${layout.padEnd(4)} q${queues} ${job.padEnd(18)} r${repeat} ${runLine(figures)}`);
              const threads = Object.entries(figures.threadCpuS ?? {}).slice(0, 6);
              if (threads.length > 0)
                log(
                  `    cpu s by thread: ${threads.map(([name, cpu]) => `${name} ${cpu.toFixed(2)}`).join(', ')}`,
                );
            } catch (error) {
              fail(`${layout} queues=${queues} ${job} repeat=${repeat}: FAILED: ${String(error)}`);
            }
            if (!volumes.alive()) fail(`${layout} queues=${queues}: its server died during ${job}`);
          }
        }
      }
      await plan.afterJobs?.(served);
    } finally {
      for (const [layout, volumes] of served) {
        await volumes.stop().catch((error: unknown) => fail(`${layout}: stop failed: ${String(error)}`));
      }
    }
  }
  return runs;
}

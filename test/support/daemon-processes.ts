import { readFileSync, readdirSync } from 'node:fs';
import { callDaemon } from '../../src/daemon/control-client';
import { procFields } from '../../src/sys/proc-files';
import { eventually } from './eventually';

export interface DaemonStatus {
  pid: number;
  build: string;
  devices: Array<{
    name: string;
    path: string;
    capacityBytes: number;
    failedRequests: number;
    noSpaceRequests: number;
    queueBreaks: number;
  }>;
}

export async function daemonStatus(stateDir: string): Promise<DaemonStatus | null> {
  return (callDaemon(stateDir, { op: 'status' }, 5_000) as Promise<unknown> as Promise<DaemonStatus>).catch(
    () => null,
  );
}

export function isAlive(pid: number): boolean {
  try {
    const state = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** The live processes whose pid, /proc/PID/stat fields and argv `match` (gone meanwhile: not). */
function liveProcesses(match: (stat: string[], argv: string[]) => boolean): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number)
    .filter((pid) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
          .replace(/^.*\) /s, '')
          .split(' ');
        const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        return match(stat, argv) && isAlive(pid);
      } catch {
        return false;
      }
    });
}

/** A number of a process's /proc/PID/FILE (`Threads` or `VmRSS` of status, in KiB; `Pss` of smaps_rollup). */
export function statusField(pid: number, field: string, file = 'status'): number {
  const value = procFields(readFileSync(`/proc/${pid}/${file}`, 'utf8')).get(field);
  if (value === undefined) throw new Error(`no ${field} in /proc/${pid}/${file}`);
  return value;
}

/** The names of a process's threads (as top -H shows them). */
export function threadNamesOf(pid: number): string[] {
  return readdirSync(`/proc/${pid}/task`).map((tid) =>
    readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim(),
  );
}

/** The live vdpa-bind processes (src/daemon/vdpa-bind.ts) whose parent is `parentPid`. */
export function bindProcessesOf(parentPid: number): number[] {
  // stat fields after the command name: state, then the parent's pid.
  return liveProcesses(
    (stat, argv) => Number(stat[1]) === parentPid && argv.some((arg) => arg.endsWith('vdpa-bind.js')),
  );
}

/** The live processes of `daemon` commands on `stateDir` (daemons and standbys). */
export function daemonProcesses(stateDir: string): number[] {
  return liveProcesses((_stat, argv) => argv.includes('daemon') && argv.includes(stateDir));
}

/** Stops every daemon process of `stateDir` (SIGTERM: devices are let go of, never removed). */
export async function stopDaemons(stateDir: string): Promise<void> {
  for (const pid of daemonProcesses(stateDir)) process.kill(pid, 'SIGTERM');
  await eventually(async () => {
    if (daemonProcesses(stateDir).length > 0) throw new Error(`daemons of ${stateDir} still run`);
  }, 60_000);
}

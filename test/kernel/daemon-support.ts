import { ChildProcess, spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { callDaemon } from '../../src/daemon/control-client';
import { TAKEOVER_TIMEOUT_MS } from './support';

export interface DaemonStatus {
  pid: number;
  build: string;
  devices: Array<{ name: string; path: string; capacityBytes: number }>;
}

/** A `vduse-csi daemon run` and the standbys it starts (they share its stdout). */
export interface RunningDaemon {
  process: ChildProcess;
  output: () => string;
}

export function startDaemon(cli: string, stateDir: string, extra: string[]): RunningDaemon {
  const child = spawn(process.execPath, [cli, 'daemon', 'run', '--state-dir', stateDir, ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  return { process: child, output: () => output };
}

export function announced(output: string, key: 'daemon' | 'standby'): number[] {
  return output
    .split('\n')
    .filter((line) => line.startsWith(`{"${key}":`))
    .map((line) => (JSON.parse(line) as { pid: number }).pid);
}

export async function daemonStatus(stateDir: string): Promise<DaemonStatus | null> {
  return (callDaemon(stateDir, { op: 'status' }, 5_000) as Promise<unknown> as Promise<DaemonStatus>).catch(
    () => null,
  );
}

function isAlive(pid: number): boolean {
  try {
    const state = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** The live processes of `daemon` commands on `stateDir` (daemons and standbys). */
export function daemonProcesses(stateDir: string): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number)
    .filter((pid) => {
      try {
        const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        return argv.includes('daemon') && argv.includes(stateDir) && isAlive(pid);
      } catch {
        return false;
      }
    });
}

/** Waits until a daemon other than `previousPid` answers, serving `devices` devices. */
export async function servingOtherThan(
  stateDir: string,
  previousPid: number,
  devices: number,
  daemon: RunningDaemon,
): Promise<DaemonStatus> {
  const deadline = Date.now() + TAKEOVER_TIMEOUT_MS;
  for (;;) {
    const current = await daemonStatus(stateDir);
    if (current && current.pid !== previousPid && current.devices.length === devices) return current;
    if (Date.now() > deadline)
      throw new Error(
        `no daemon other than ${previousPid} serves ${devices} devices; last status ` +
          `${JSON.stringify(current)}; output:\n${daemon.output().slice(-4000)}`,
      );
    await new Promise((done) => setTimeout(done, 50));
  }
}

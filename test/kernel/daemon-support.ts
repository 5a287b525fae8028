import { ChildProcess, spawn } from 'node:child_process';
import { DaemonStatus, daemonStatus } from '../support/daemon-processes';
import { TAKEOVER_TIMEOUT_MS } from './support';

/** A `vduse-csi daemon run` and the standbys it starts (they share its stdout). */
export interface RunningDaemon {
  process: ChildProcess;
  output: () => string;
}

export function startDaemon(
  cli: string,
  stateDir: string,
  extra: string[],
  env: NodeJS.ProcessEnv = process.env,
): RunningDaemon {
  const child = spawn(process.execPath, [cli, 'daemon', 'run', '--state-dir', stateDir, ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    env,
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

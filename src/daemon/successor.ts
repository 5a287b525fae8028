import { ChildProcess, spawn } from 'node:child_process';
import { log } from '../log';

const STOP_TIMEOUT_MS = 30_000;

/**
 * A warm standby for this server: the same `blk serve` command with `--standby`, started detached
 * so it outlives this process. It loads everything it needs now, waits until the device is free
 * (this server died or handed the device over), and takes it over within milliseconds instead of
 * the seconds a cold start costs.
 */
export function spawnSuccessor(serveArguments: string[]): ChildProcess {
  const args = [
    process.argv[1]!,
    'blk',
    'serve',
    ...serveArguments.filter((arg) => arg !== '--standby'),
    '--standby',
  ];
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', 'inherit', 'inherit'] });
  child.unref();
  child.on('error', (error) => log.error('could not start a standby server', { error: error.message }));
  log.info('standby server started', { pid: child.pid });
  return child;
}

/** Stops a standby before the device is removed or handed to another server, so it cannot grab it. */
export async function stopSuccessor(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

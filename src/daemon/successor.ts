import { ChildProcess, spawn } from 'node:child_process';
import { log } from '../log';

const STOP_TIMEOUT_MS = 30_000;

/**
 * A warm standby for this server: the same command (`cliArguments`, as the CLI takes them) run
 * detached so it outlives this process. It loads everything it needs now, waits until this server
 * is gone (died, or handed its devices over), and takes over within milliseconds instead of the
 * seconds a cold start costs.
 */
export function spawnSuccessor(cliArguments: string[]): ChildProcess {
  const child = spawn(process.execPath, [process.argv[1]!, ...cliArguments], {
    detached: true,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
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

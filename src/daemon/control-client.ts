import { join } from 'node:path';
import { CONTROL_VERSION, ControlRequest } from './control-protocol';
import { callJsonLines } from './json-line-socket';

type Unversioned<T> = T extends unknown ? Omit<T, 'v'> : never;

export function controlSocketPath(stateDir: string): string {
  return join(stateDir, 'daemon.sock');
}

/** Sends one request to the device daemon of `stateDir`; a refusal rejects with its code. */
export function callDaemon(
  stateDir: string,
  request: Unversioned<ControlRequest>,
  timeoutMs = 60_000,
): Promise<Record<string, unknown>> {
  return callJsonLines(controlSocketPath(stateDir), { v: CONTROL_VERSION, ...request }, timeoutMs);
}

import { Server } from 'node:net';
import { join } from 'node:path';
import { callJsonLines, listenJsonLines } from './json-line-socket';

/** Operations a running device server accepts on its admin socket (one JSON object per line). */
export type AdminRequest =
  { op: 'resize'; bytes: number } | { op: 'status' } | { op: 'copy'; target: string } | { op: 'handover' };
export type AdminHandler = (request: AdminRequest) => Promise<Record<string, unknown>>;

export function adminSocketPath(stateDir: string, name: string): string {
  return join(stateDir, 'sockets', `${name}.sock`);
}

/** Listens on a unix socket only root (the owner) may use. */
export function listenAdmin(path: string, handler: AdminHandler): Promise<Server> {
  return listenJsonLines(path, (request) => handler(validAdminRequest(request)));
}

function validAdminRequest(value: unknown): AdminRequest {
  const request = value as AdminRequest;
  if (request.op === 'resize' && !Number.isSafeInteger(request.bytes))
    throw new Error('resize needs integer bytes');
  if (request.op === 'copy' && !(typeof request.target === 'string' && request.target.startsWith('/')))
    throw new Error('copy needs an absolute target path');
  if (!['resize', 'status', 'copy', 'handover'].includes(request.op)) throw new Error('unknown op');
  return request;
}

/** Sends one request to a device server's admin socket and returns its answer. */
export function callAdmin(
  path: string,
  request: AdminRequest,
  timeoutMs = 60_000,
): Promise<Record<string, unknown>> {
  return callJsonLines(path, request, timeoutMs);
}

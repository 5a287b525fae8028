import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { Server, createConnection, createServer } from 'node:net';
import { dirname, join } from 'node:path';

/** Operations a running device server accepts on its admin socket (one JSON object per line). */
export type AdminRequest =
  { op: 'resize'; bytes: number } | { op: 'status' } | { op: 'copy'; target: string } | { op: 'handover' };
export type AdminResponse = { ok: true; [key: string]: unknown } | { ok: false; error: string };
export type AdminHandler = (request: AdminRequest) => Promise<Record<string, unknown>>;

export function adminSocketPath(stateDir: string, name: string): string {
  return join(stateDir, 'sockets', `${name}.sock`);
}

/** Listens on a unix socket only root (the owner) may use. */
export async function listenAdmin(path: string, handler: AdminHandler): Promise<Server> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  rmSync(path, { force: true });
  const server = createServer((socket) => {
    let buffered = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      for (let end = buffered.indexOf('\n'); end >= 0; end = buffered.indexOf('\n')) {
        const line = buffered.slice(0, end);
        buffered = buffered.slice(end + 1);
        void answer(line, handler).then((response) => socket.write(`${JSON.stringify(response)}\n`));
      }
    });
    socket.on('error', () => socket.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  chmodSync(path, 0o600);
  return server;
}

async function answer(line: string, handler: AdminHandler): Promise<AdminResponse> {
  try {
    const request = JSON.parse(line) as AdminRequest;
    if (request.op === 'resize' && !Number.isSafeInteger(request.bytes))
      throw new Error('resize needs integer bytes');
    if (request.op === 'copy' && !(typeof request.target === 'string' && request.target.startsWith('/')))
      throw new Error('copy needs an absolute target path');
    if (!['resize', 'status', 'copy', 'handover'].includes(request.op)) throw new Error('unknown op');
    return { ok: true, ...(await handler(request)) };
  } catch (error) {
    return { ok: false, error: error instanceof Error ? error.message : String(error) };
  }
}

/** Sends one request to a device server's admin socket and returns its answer. */
export function callAdmin(
  path: string,
  request: AdminRequest,
  timeoutMs = 60_000,
): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    let buffered = '';
    const timer = setTimeout(
      () => socket.destroy(new Error(`no answer from ${path} in ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      if (!buffered.includes('\n')) return;
      clearTimeout(timer);
      socket.end();
      const response = JSON.parse(buffered.slice(0, buffered.indexOf('\n'))) as AdminResponse;
      if (response.ok) resolve(response);
      else reject(new Error(response.error));
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { Server, createConnection, createServer } from 'node:net';
import { dirname } from 'node:path';

/**
 * One JSON object per line each way. A refused request answers `{ ok: false, error, code? }`, where
 * `code` says what kind of refusal it is (the caller maps it, to a gRPC status say).
 */
export type LineResponse = { ok: true; [key: string]: unknown } | { ok: false; error: string; code?: string };

/** A refusal the answering side gives with a code, or the caller sees with it. */
export class LineRequestError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'LineRequestError';
  }
}

/** A request line longer than this is refused and its connection closed. */
const MAX_LINE_BYTES = 64 * 1024;

/**
 * Listens on a unix socket only root (the owner) may use; `answer` gets each parsed line and
 * resolves with the fields of the answer, or throws (a LineRequestError gives its code).
 */
export async function listenJsonLines(
  path: string,
  answer: (request: unknown) => Promise<Record<string, unknown>>,
): Promise<Server> {
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
        void respond(line, answer).then((response) => socket.write(`${JSON.stringify(response)}\n`));
      }
      if (Buffer.byteLength(buffered) > MAX_LINE_BYTES) {
        const refusal: LineResponse = {
          ok: false,
          error: `request longer than ${MAX_LINE_BYTES} bytes`,
          code: 'invalid',
        };
        socket.end(`${JSON.stringify(refusal)}\n`);
        buffered = '';
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

async function respond(
  line: string,
  answer: (request: unknown) => Promise<Record<string, unknown>>,
): Promise<LineResponse> {
  try {
    let request: unknown;
    try {
      request = JSON.parse(line);
    } catch {
      throw new LineRequestError('a request is one JSON object per line', 'invalid');
    }
    return { ...(await answer(request)), ok: true };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return error instanceof LineRequestError && error.code !== undefined
      ? { ok: false, error: message, code: error.code }
      : { ok: false, error: message };
  }
}

/** Sends one request and resolves with the answer's fields; a refusal rejects as a LineRequestError. */
export function callJsonLines(
  path: string,
  request: object,
  timeoutMs: number,
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
      const response = JSON.parse(buffered.slice(0, buffered.indexOf('\n'))) as LineResponse;
      if (response.ok) resolve(response);
      else reject(new LineRequestError(response.error, response.code));
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    // A peer that dies mid-request (a daemon killed) closes without a line: say so now, not at the
    // timeout (the node's supervision waited out its 10 s status timeout that way after a kill).
    socket.on('close', () => {
      clearTimeout(timer);
      reject(new Error(`${path} closed the connection without an answer`));
    });
  });
}

import {
  Server,
  ServerCredentials,
  ServerUnaryCall,
  ServiceDefinition,
  UntypedServiceImplementation,
  sendUnaryData,
  status,
} from '@grpc/grpc-js';
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { log } from '../log';
import { CsiError } from './errors';

/** A CSI service implementation: one async method per RPC, named as in csi.proto. */
export type CsiHandlers = object;

export interface ServiceBinding {
  definition: ServiceDefinition;
  handlers: CsiHandlers;
}

/** Told of every finished call: its method, gRPC status code name and duration. */
export type CallObserver = (method: string, code: string, seconds: number) => void;

/** `unix:///abs/path` (the form kubelet and the sidecars use) to the socket path. */
export function socketPathOf(endpoint: string): string {
  const match = /^unix:\/\/(\/.+)$/.exec(endpoint);
  if (!match) throw new Error(`endpoint must look like unix:///path/to/csi.sock, got ${endpoint}`);
  return match[1]!;
}

/** Serves the bindings on a unix socket only its owner may use (mode 0600). */
export async function serveCsi(
  endpoint: string,
  bindings: ServiceBinding[],
  observe?: CallObserver,
): Promise<Server> {
  const socketPath = socketPathOf(endpoint);
  const server = new Server();
  for (const { definition, handlers } of bindings)
    server.addService(definition, implement(definition, handlers, observe));
  mkdirSync(dirname(socketPath), { recursive: true, mode: 0o750 });
  rmSync(socketPath, { force: true });
  const previousMask = process.umask(0o077);
  try {
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${socketPath}`, ServerCredentials.createInsecure(), (error) =>
        error ? reject(error) : resolve(),
      ),
    );
  } finally {
    process.umask(previousMask);
  }
  chmodSync(socketPath, 0o600);
  return server;
}

/** Lets in-flight calls finish, then closes the socket. */
export function shutdownCsi(server: Server): Promise<void> {
  return new Promise((resolve) => server.tryShutdown(() => resolve()));
}

type Handler = (request: unknown) => Promise<unknown>;

function implement(
  definition: ServiceDefinition,
  handlers: CsiHandlers,
  observe: CallObserver | undefined,
): UntypedServiceImplementation {
  const implementation: UntypedServiceImplementation = {};
  for (const method of Object.keys(definition)) {
    const handler = (handlers as Record<string, unknown>)[method];
    if (typeof handler !== 'function') continue;
    implementation[method] = (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) =>
      void answer(method, (handler as Handler).bind(handlers), call.request, callback, observe);
  }
  return implementation;
}

async function answer(
  method: string,
  handler: Handler,
  request: unknown,
  callback: sendUnaryData<unknown>,
  observe: CallObserver | undefined,
): Promise<void> {
  const started = process.hrtime.bigint();
  const elapsedMs = (): number => Number(process.hrtime.bigint() - started) / 1e6;
  try {
    const response = await handler(request);
    const ms = elapsedMs();
    observe?.(method, 'OK', ms / 1e3);
    log.debug('csi call', { method, code: 'OK', ms, request: withoutSecrets(request) });
    callback(null, response);
  } catch (error) {
    const code = error instanceof CsiError ? error.code : status.INTERNAL;
    const details = error instanceof Error ? error.message : String(error);
    const level = code === status.INTERNAL ? 'error' : 'info';
    const ms = elapsedMs();
    observe?.(method, status[code], ms / 1e3);
    log.log(level, 'csi call failed', {
      method,
      code: status[code],
      ms,
      error: details,
      request: withoutSecrets(request),
    });
    callback({ code, details });
  }
}

/** Requests carry credentials in `secrets` maps: never log them. */
function withoutSecrets(request: unknown): unknown {
  return JSON.parse(
    JSON.stringify(request ?? null, (key, value: unknown) => (key === 'secrets' ? '<redacted>' : value)),
  );
}

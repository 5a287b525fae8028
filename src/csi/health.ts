import { IncomingMessage, Server, ServerResponse, createServer } from 'node:http';
import { AddressInfo } from 'node:net';
import { messageOf } from '../daemon/start-failure';
import { log } from '../log';
import { CsiClients, callUnary, csiClients } from './proto';

/*
 * kubelet's probes of the plugin container, answered by the plugin itself:
 * - /healthz (liveness): the plugin answers Identity.Probe on its own CSI socket, whatever it says;
 *   a plugin that answers is alive, and restarting it would only cost its device servers;
 * - /readyz (readiness): Probe says ready; if not, 503 with the reason (e.g. a kernel module is
 *   missing), so the pod shows not-ready instead of being restarted in a loop.
 * Probing through the socket, as the kubernetes-csi livenessprobe sidecar does, also catches a
 * removed socket or a stuck gRPC server.
 */

const PROBE_DEADLINE_MS = 10_000;

export interface HealthOptions {
  /** HOST:PORT to listen on (":PORT" for every address). */
  address: string;
  /** The plugin's own CSI endpoint (unix:///...). */
  csiEndpoint: string;
  /** Why the plugin cannot serve volumes now, or null. */
  readinessProblem: () => Promise<string | null>;
}

export interface ListenAddress {
  host: string | undefined;
  port: number;
}

/** `HOST:PORT`, `[IPv6]:PORT` or `:PORT`; the port 0 (any free one) is allowed for tests. */
export function parseListenAddress(address: string): ListenAddress {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]*)):(\d{1,5})$/.exec(address);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535)
    throw new Error(`health address must look like HOST:PORT or :PORT, got ${JSON.stringify(address)}`);
  const host = match[1] ?? match[2];
  return { host: host === '' ? undefined : host, port };
}

export class HealthEndpoint {
  private constructor(
    private readonly server: Server,
    private readonly clients: CsiClients,
  ) {}

  static async start(options: HealthOptions): Promise<HealthEndpoint> {
    const { host, port } = parseListenAddress(options.address);
    const clients = csiClients(options.csiEndpoint);
    const server = createServer((request, response) => void answer(request, response, clients, options));
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host, port }, () => resolve());
      });
    } catch (error) {
      clients.identity.close();
      throw new Error(`cannot listen for health probes on ${options.address}: ${String(error)}`);
    }
    log.info('health endpoint listening', { address: options.address });
    return new HealthEndpoint(server, clients);
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.clients.identity.close();
  }
}

async function answer(
  request: IncomingMessage,
  response: ServerResponse,
  clients: CsiClients,
  options: HealthOptions,
): Promise<void> {
  const path = (request.url ?? '').split('?')[0];
  if (request.method !== 'GET' || (path !== '/healthz' && path !== '/readyz')) {
    reply(response, 404, 'not found: GET /healthz or /readyz\n');
    return;
  }
  let ready: boolean;
  try {
    const answered = (await callUnary(
      clients.identity,
      'Probe',
      {},
      { deadline: Date.now() + PROBE_DEADLINE_MS },
    )) as { ready?: { value?: boolean } | null };
    ready = answered.ready?.value === true;
  } catch (error) {
    reply(
      response,
      503,
      `the CSI socket ${options.csiEndpoint} does not answer Probe: ${messageOf(error)}\n`,
    );
    return;
  }
  if (path === '/healthz' || ready) {
    reply(response, 200, 'ok\n');
    return;
  }
  const problem = await options.readinessProblem();
  reply(response, 503, `not ready: ${problem ?? 'Probe answered ready=false'}\n`);
}

function reply(response: ServerResponse, status: number, body: string): void {
  response.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
  response.end(body);
}

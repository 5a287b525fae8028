import { IncomingMessage, ServerResponse } from 'node:http';
import { messageOf } from '../daemon/start-failure';
import { log } from '../log';
import { HttpListener, replyText } from '../sys/http-listener';
import { CsiClients, callUnary, csiClients } from './proto';

/*
 * kubelet's probes of the plugin container, answered by the plugin itself:
 * - /healthz (liveness): the plugin answers Identity.Probe on its own CSI socket, whatever it says;
 *   a plugin that answers is alive, and restarting it would only delay its CSI calls;
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

export class HealthEndpoint {
  private constructor(
    private readonly listener: HttpListener,
    private readonly clients: CsiClients,
  ) {}

  static async start(options: HealthOptions): Promise<HealthEndpoint> {
    const clients = csiClients(options.csiEndpoint);
    let listener: HttpListener;
    try {
      listener = await HttpListener.start(
        options.address,
        '--health-address',
        'health probes',
        (request, response) => void answer(request, response, clients, options),
      );
    } catch (error) {
      clients.identity.close();
      throw error;
    }
    log.info('health endpoint listening', { address: options.address });
    return new HealthEndpoint(listener, clients);
  }

  get port(): number {
    return this.listener.port;
  }

  async close(): Promise<void> {
    await this.listener.close();
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
    replyText(response, 404, 'not found: GET /healthz or /readyz\n');
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
    replyText(
      response,
      503,
      `the CSI socket ${options.csiEndpoint} does not answer Probe: ${messageOf(error)}\n`,
    );
    return;
  }
  if (path === '/healthz' || ready) {
    replyText(response, 200, 'ok\n');
    return;
  }
  const problem = await options.readinessProblem();
  replyText(response, 503, `not ready: ${problem ?? 'Probe answered ready=false'}\n`);
}

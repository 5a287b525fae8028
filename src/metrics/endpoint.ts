import { IncomingMessage, ServerResponse } from 'node:http';
import { Registry } from 'prom-client';
import { log } from '../log';
import { HttpListener, replyText } from '../sys/http-listener';

/** GET /metrics: the registry in the Prometheus text format (--metrics-address). */
export class MetricsEndpoint {
  private constructor(private readonly listener: HttpListener) {}

  static async start(address: string, registry: Registry): Promise<MetricsEndpoint> {
    const listener = await HttpListener.start(
      address,
      '--metrics-address',
      'metrics',
      (request, response) => void answer(request, response, registry),
    );
    log.info('metrics endpoint listening', { address, port: listener.port });
    return new MetricsEndpoint(listener);
  }

  get port(): number {
    return this.listener.port;
  }

  close(): Promise<void> {
    return this.listener.close();
  }
}

async function answer(request: IncomingMessage, response: ServerResponse, registry: Registry): Promise<void> {
  const path = (request.url ?? '').split('?')[0];
  if (request.method !== 'GET' || path !== '/metrics') {
    replyText(response, 404, 'not found: GET /metrics\n');
    return;
  }
  try {
    replyText(response, 200, await registry.metrics(), registry.contentType);
  } catch (error) {
    log.warn('cannot gather the metrics', { error: String(error) });
    replyText(response, 500, `cannot gather the metrics: ${String(error)}\n`);
  }
}

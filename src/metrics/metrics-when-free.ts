import { Registry } from 'prom-client';
import { log } from '../log';
import { MetricsEndpoint } from './endpoint';

const RETRY_MS = 500;

/**
 * Serves the registry on `address` as soon as the address is free: a daemon that just took over
 * may find it still held by the one it replaced, which lets go of it as it exits. Stops trying
 * when `stop` aborts; the endpoint then closes.
 */
export async function serveMetricsWhenFree(
  address: string,
  registry: Registry,
  stop: AbortSignal,
): Promise<void> {
  let warned = false;
  while (!stop.aborted) {
    try {
      const endpoint = await MetricsEndpoint.start(address, registry);
      if (stop.aborted) await endpoint.close();
      else stop.addEventListener('abort', () => void endpoint.close(), { once: true });
      return;
    } catch (error) {
      if ((error as { cause?: NodeJS.ErrnoException }).cause?.code !== 'EADDRINUSE') throw error;
      if (!warned) log.info('metrics address in use: trying again until it is free', { address });
      warned = true;
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  }
}

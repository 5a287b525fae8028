import { RequestListener, Server, ServerResponse, createServer } from 'node:http';
import { AddressInfo } from 'node:net';

export interface ListenAddress {
  host: string | undefined;
  port: number;
}

/**
 * `HOST:PORT`, `[IPv6]:PORT` or `:PORT` (every address); the port 0 (any free one) is allowed for
 * tests. `flag` names the option in the error.
 */
export function parseListenAddress(address: string, flag: string): ListenAddress {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]*)):(\d{1,5})$/.exec(address);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535)
    throw new Error(`${flag} must look like HOST:PORT or :PORT, got ${JSON.stringify(address)}`);
  const host = match[1] ?? match[2];
  return { host: host === '' ? undefined : host, port };
}

/** A plain HTTP server of the plugin's (probes, metrics) on one address. */
export class HttpListener {
  private constructor(private readonly server: Server) {}

  /** Listens on `address` (checked as `flag`); a failure names `purpose` and the address. */
  static async start(
    address: string,
    flag: string,
    purpose: string,
    handler: RequestListener,
  ): Promise<HttpListener> {
    const { host, port } = parseListenAddress(address, flag);
    const server = createServer(handler);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host, port }, () => resolve());
      });
    } catch (error) {
      throw new Error(`cannot listen for ${purpose} on ${address}: ${String(error)}`, { cause: error });
    }
    return new HttpListener(server);
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export function replyText(
  response: ServerResponse,
  status: number,
  body: string,
  contentType = 'text/plain; charset=utf-8',
): void {
  response.writeHead(status, { 'content-type': contentType });
  response.end(body);
}

import { IncomingMessage, ServerResponse } from 'node:http';
import { HttpListener, replyText } from '../sys/http-listener';
import { DaemonRole } from './daemon-role';

/**
 * A daemon's probes: /healthz answers while the process does; /readyz answers 200 once it is of
 * use to the node: serving its devices, or warm and waiting to take them over (a standby that is
 * ready lets a rolling update stop the daemon it stands by for). Anything else is 503 naming the role.
 */
export function listenDaemonHealth(address: string, role: () => DaemonRole): Promise<HttpListener> {
  return HttpListener.start(address, '--health-address', 'health probes', (request, response) =>
    answer(request, response, role()),
  );
}

function answer(request: IncomingMessage, response: ServerResponse, role: DaemonRole): void {
  const path = (request.url ?? '').split('?')[0];
  if (request.method !== 'GET' || (path !== '/healthz' && path !== '/readyz'))
    replyText(response, 404, 'not found: GET /healthz or /readyz\n');
  else if (path === '/healthz' || role === 'serving' || role === 'standby')
    replyText(response, 200, `${role}\n`);
  else replyText(response, 503, `not ready: ${role}\n`);
}

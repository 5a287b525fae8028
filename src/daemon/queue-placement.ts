/** A thread as placement sees it: the queues it serves. */
export interface QueueHost {
  load: number;
}

/**
 * Chooses the threads for a device's `queues` queues and counts them into their loads: each queue
 * goes to an idle thread, else to a new one (`start`, appended to `threads` while fewer than
 * `maxThreads` run), else to the least loaded; with `oneThread` all go where the first does. Each
 * choice sees the queues placed before it, so the queues of one device spread over the threads.
 */
export function placeQueues<T extends QueueHost>(
  threads: T[],
  queues: number,
  options: { oneThread: boolean; maxThreads: number; start: () => T },
): T[] {
  const hosts: T[] = [];
  for (let queue = 0; queue < queues; queue++) {
    const host = options.oneThread && hosts[0] ? hosts[0] : pick(threads, options);
    host.load++;
    hosts.push(host);
  }
  return hosts;
}

function pick<T extends QueueHost>(threads: T[], options: { maxThreads: number; start: () => T }): T {
  const idle = threads.find((thread) => thread.load === 0);
  if (idle) return idle;
  if (threads.length < options.maxThreads) {
    const started = options.start();
    threads.push(started);
    return started;
  }
  return threads.reduce((least, thread) => (thread.load < least.load ? thread : least));
}

import { QueueIoCounters } from '../../src/daemon/io-counters';

/** Counts one request on a queue's counters as having taken `seconds`, timed on its own. */
export function countTimedRequest(
  queue: QueueIoCounters,
  type: number,
  dataBytes: number,
  ok: boolean,
  seconds: number,
): void {
  queue.finished(type, dataBytes, ok, 0);
  queue.timeFinished(seconds * 1000);
}

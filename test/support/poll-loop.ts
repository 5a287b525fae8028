import { FdWatcher } from '../../src/backend/types';
import * as libc from '../../src/sys/libc';

/** How long one poll(2) waits before looking at a changed set of descriptors. */
const ROUND_MS = 50;

/**
 * A poll loop for tests of asynchronous backends, standing in for a queue thread's: poll(2) runs on
 * a koffi helper thread, so the test's own event loop (and its awaits) keeps running. It runs while
 * at least one descriptor is watched.
 */
export class TestPollLoop implements FdWatcher {
  private readonly handlers = new Map<number, () => void>();
  private running: Promise<void> | undefined;
  /** The first error a handler threw; the loop stops there. */
  failure: unknown;

  watch(fd: number, onReadable: () => void): void {
    this.handlers.set(fd, onReadable);
    this.running ??= this.run();
  }

  unwatch(fd: number): void {
    this.handlers.delete(fd);
  }

  /** Resolves once nothing is watched any more and the loop has stopped. */
  async stopped(): Promise<void> {
    await this.running;
    if (this.failure !== undefined) throw this.failure;
  }

  private async run(): Promise<void> {
    try {
      while (this.handlers.size > 0) {
        const poller = new libc.PollSet([...this.handlers.keys()]);
        const events = await poller.waitAsync(ROUND_MS);
        events.forEach((revents, i) => this.dispatch(poller.fds[i]!, revents));
      }
    } finally {
      // In the same synchronous stretch as the loop's last check: a watch() after this starts a new loop.
      this.running = undefined;
    }
  }

  private dispatch(fd: number, revents: number): void {
    if (!(revents & libc.POLLIN)) return;
    try {
      this.handlers.get(fd)?.();
    } catch (error) {
      this.failure ??= error;
      this.handlers.clear();
    }
  }
}

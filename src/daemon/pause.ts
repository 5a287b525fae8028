import { SharedDeviceState } from './shared-state';

/** How long a pause waits for the queues to finish the requests they hold. */
export const PAUSE_DRAIN_TIMEOUT_MS = 10_000;

/**
 * The main thread's side of pausing one device: its queues stop taking chains and finish those in
 * flight, the action runs, and the queues resume whatever the action does. Their threads keep
 * running, so the driver's control messages (a reset too) are answered throughout. One pause
 * at a time: a second caller waits for the first.
 */
export class DevicePause {
  private previous: Promise<unknown> = Promise.resolve();
  private pausedMs = 0;

  constructor(
    private readonly name: string,
    private readonly state: SharedDeviceState,
    /** Makes the threads serving the device's queues look at the shared state now. */
    private readonly wakeQueues: () => void,
    private readonly timeoutMs = PAUSE_DRAIN_TIMEOUT_MS,
  ) {}

  /** How long the device's queues were held paused so far, drains included. */
  get pausedSeconds(): number {
    return this.pausedMs / 1000;
  }

  whilePaused<T>(action: () => Promise<T>): Promise<T> {
    const run = this.previous.then(() => this.pauseAround(action));
    this.previous = run.catch(() => undefined);
    return run;
  }

  private async pauseAround<T>(action: () => Promise<T>): Promise<T> {
    const generation = this.state.beginPause();
    const began = performance.now();
    try {
      this.wakeQueues();
      const late = await this.state.awaitPaused(generation, this.timeoutMs);
      if (late.length > 0) {
        throw new Error(
          `device ${this.name}: queue ${late.join(', ')} still had requests in flight after ` +
            `${this.timeoutMs} ms, so the device was not paused`,
        );
      }
      return await action();
    } finally {
      this.state.endPause();
      this.pausedMs += performance.now() - began;
      this.wakeQueues();
    }
  }
}

/** A queue thread's side: whether it may take chains, and telling the main thread it holds none. */
export class QueuePause {
  private acknowledged = 0;

  constructor(
    private readonly state: SharedDeviceState,
    private readonly queue: number,
  ) {}

  /** A pause is in force: take no chain from the avail ring. */
  get requested(): boolean {
    return this.state.pauseGeneration !== 0;
  }

  /** Call when nothing of the queue is in flight: acknowledges the pause in force, once. */
  acknowledgeIdle(): void {
    const generation = this.state.pauseGeneration;
    if (generation === 0 || generation === this.acknowledged) return;
    this.acknowledged = generation;
    this.state.acknowledgePause(this.queue, generation);
  }
}

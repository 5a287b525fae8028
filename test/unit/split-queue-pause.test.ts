import assert from 'node:assert/strict';
import { DevicePause, QueuePause } from '../../src/daemon/pause';
import { SharedDeviceState } from '../../src/daemon/shared-state';

/**
 * A queue thread as the pause protocol sees it: it takes chains unless paused, counts requests in
 * flight, and acknowledges a pause whenever it looks at the shared state with none in flight.
 * It looks through its own view of the SharedArrayBuffer, later than the main thread wakes it.
 */
class SimulatedQueue {
  private readonly pause: QueuePause;
  inFlight = 0;
  taken = 0;
  /** Kicks that came while paused, served at the end of the pause. */
  deferred = 0;

  constructor(buffer: SharedArrayBuffer, queues: number, index: number) {
    this.pause = new QueuePause(new SharedDeviceState(buffer, queues), index);
  }

  /** The queue thread's wake-up (followControl). */
  wake(): void {
    if (!this.pause.requested && this.deferred > 0) {
      this.taken += this.deferred;
      this.deferred = 0;
    }
    if (this.inFlight === 0) this.pause.acknowledgeIdle();
  }

  kick(): void {
    if (this.pause.requested) this.deferred++;
    else this.taken++;
  }

  /** Takes a chain whose request completes after `ms`. */
  takeSlow(ms: number): void {
    this.taken++;
    this.inFlight++;
    setTimeout(() => {
      this.inFlight--;
      this.wake();
    }, ms);
  }
}

describe('pausing a device', () => {
  let state: SharedDeviceState;
  let queues: SimulatedQueue[];
  let wakes: number;

  function devicePause(timeoutMs?: number): DevicePause {
    return new DevicePause(
      'dev',
      state,
      () => {
        wakes++;
        setImmediate(() => queues.forEach((queue) => queue.wake()));
      },
      timeoutMs,
    );
  }

  beforeEach(() => {
    state = SharedDeviceState.create(3);
    queues = [0, 1, 2].map((index) => new SimulatedQueue(state.buffer, 3, index));
    wakes = 0;
  });

  it('runs the action once every queue finished its requests, and resumes afterwards', async () => {
    queues[1]!.takeSlow(40);
    const started = Date.now();
    const pause = devicePause();
    assert.equal(pause.pausedSeconds, 0);
    const result = await pause.whilePaused(async () => {
      assert.equal(queues[1]!.inFlight, 0, 'the slow request completed first');
      assert.ok(Date.now() - started >= 30);
      queues[0]!.kick();
      assert.equal(queues[0]!.taken, 0, 'no chain taken while paused');
      return 'copied';
    });
    assert.equal(result, 'copied');
    assert.ok(pause.pausedSeconds >= 0.03, `paused ${pause.pausedSeconds} s, the drain included`);
    assert.equal(state.pauseGeneration, 0);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(queues[0]!.taken, 1, 'the kick that came meanwhile was served on resume');
    assert.equal(wakes, 2, 'woken to pause and to resume');
  });

  it('resumes when the action fails, and can pause again', async () => {
    const pause = devicePause();
    await assert.rejects(
      pause.whilePaused(() => Promise.reject(new Error('copy failed'))),
      /copy failed/,
    );
    assert.equal(state.pauseGeneration, 0);
    assert.equal(await pause.whilePaused(async () => state.pauseGeneration), 3);
  });

  it('gives up with an error naming the queue that did not drain, never runs the action, and resumes', async () => {
    queues[2]!.takeSlow(500);
    let ran = false;
    await assert.rejects(
      devicePause(50).whilePaused(async () => {
        ran = true;
      }),
      /device dev: queue 2 still had requests in flight after 50 ms, so the device was not paused/,
    );
    assert.equal(ran, false);
    assert.equal(state.pauseGeneration, 0);
  });

  it('runs one pause at a time', async () => {
    const pause = devicePause();
    const order: string[] = [];
    const action = (name: string) => async (): Promise<void> => {
      order.push(`${name} begins in generation ${state.pauseGeneration}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
      order.push(`${name} ends`);
    };
    await Promise.all([pause.whilePaused(action('first')), pause.whilePaused(action('second'))]);
    assert.deepEqual(order, [
      'first begins in generation 1',
      'first ends',
      'second begins in generation 3',
      'second ends',
    ]);
  });

  it('is acknowledged by a queue once per pause and only while one is in force', () => {
    const pause = new QueuePause(state, 0);
    pause.acknowledgeIdle();
    assert.equal(pause.requested, false);
    const generation = state.beginPause();
    assert.equal(pause.requested, true);
    assert.throws(() => state.beginPause(), /already paused/);
    pause.acknowledgeIdle();
    state.endPause();
    assert.equal(pause.requested, false);
    return state.awaitPaused(generation, 0).then((late) => assert.deepEqual(late, [1, 2]));
  });
});

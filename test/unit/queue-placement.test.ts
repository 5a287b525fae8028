import assert from 'node:assert/strict';
import { placeQueues, QueueHost } from '../../src/daemon/queue-placement';

interface Thread extends QueueHost {
  id: number;
}

function placer(maxThreads: number, warm: number) {
  const threads: Thread[] = Array.from({ length: warm }, (_, id) => ({ id, load: 0 }));
  let started = 0;
  const place = (queues: number, oneThread = false): number[] =>
    placeQueues(threads, queues, {
      oneThread,
      maxThreads,
      start: () => {
        started++;
        return { id: threads.length, load: 0 };
      },
    }).map((thread) => thread.id);
  return { threads, place, started: () => started };
}

describe('queue placement', () => {
  it("spreads one device's queues over idle warm threads", () => {
    const { place, threads } = placer(2, 2);
    assert.deepEqual(place(2), [0, 1]);
    assert.deepEqual(
      threads.map(({ load }) => load),
      [1, 1],
    );
  });

  it('starts threads up to the limit, then shares the least loaded', () => {
    const { place, threads, started } = placer(3, 1);
    assert.deepEqual(place(2), [0, 1]);
    assert.deepEqual(place(2), [2, 0]);
    assert.equal(started(), 2);
    assert.deepEqual(place(1), [1]);
    assert.deepEqual(
      threads.map(({ load }) => load),
      [2, 2, 1],
    );
  });

  it('puts every queue on one thread when they must share it, counting each', () => {
    const { place, threads } = placer(2, 2);
    assert.deepEqual(place(1), [0]);
    assert.deepEqual(place(4, true), [1, 1, 1, 1]);
    assert.deepEqual(
      threads.map(({ load }) => load),
      [1, 4],
    );
    assert.deepEqual(place(2), [0, 0]);
  });
});

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { join } from 'node:path';
import { MessageChannel, MessagePort, Worker } from 'node:worker_threads';
import * as libc from '../../src/sys/libc';
import { ThreadReply } from '../../src/daemon/worker-data';

/**
 * A device thread whose only work is answering commands: `detach` with a Promise that settles at
 * once (resolved for "ok", rejected otherwise), as a queue thread answers once its requests drained.
 */
const THREAD_SCRIPT = `
const { workerData, parentPort } = require('node:worker_threads');
const { EventThread } = require(${JSON.stringify(join(__dirname, '../../src/daemon/event-thread.js'))});
const thread = new EventThread(
  workerData.wakeFd,
  workerData.commands,
  (command) => {
    if (command.type !== 'detach') return undefined;
    return command.name === 'ok' ? Promise.resolve() : Promise.reject(new Error('drain failed'));
  },
  () => undefined,
  () => false,
);
parentPort.postMessage('ready');
void thread.run();
`;

describe('device thread event loop', function () {
  // A worker's start-up takes a second or two on a loaded runner.
  this.timeout(60_000);
  let worker: Worker;
  let port: MessagePort;
  let wakeFd: number;

  beforeEach(async () => {
    wakeFd = libc.createEventFd();
    const channel = new MessageChannel();
    port = channel.port1;
    worker = new Worker(THREAD_SCRIPT, {
      eval: true,
      workerData: { wakeFd, commands: channel.port2 },
      transferList: [channel.port2],
    });
    await once(worker, 'message');
  });

  afterEach(async () => {
    const exited = once(worker, 'exit');
    port.postMessage({ type: 'exit', id: 99 });
    libc.signalEventFd(wakeFd);
    await exited;
    port.close();
    libc.closeFd(wakeFd);
  });

  async function call(command: object): Promise<ThreadReply> {
    const reply = once(port, 'message') as Promise<[ThreadReply]>;
    port.postMessage(command);
    libc.signalEventFd(wakeFd);
    return (await reply)[0];
  }

  it('answers a command whose reply waits for a Promise, though nothing else wakes the thread', async () => {
    assert.deepEqual(await call({ type: 'detach', id: 1, name: 'ok' }), { type: 'done', id: 1 });
  });

  it('answers failed when that Promise rejects', async () => {
    assert.deepEqual(await call({ type: 'detach', id: 2, name: 'broken' }), {
      type: 'failed',
      id: 2,
      error: 'drain failed',
    });
  });
});

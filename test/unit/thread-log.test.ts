import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { Writable } from 'node:stream';
import winston from 'winston';
import { relayThreadLog } from '../../src/daemon/device-threads';
import { ThreadLogRecord } from '../../src/daemon/thread-log';
import { log } from '../../src/log';

/** Runs `body` in a real worker thread with `threadLog` in scope; resolves with what it posted. */
function recordsOfThread(body: string): Promise<ThreadLogRecord[]> {
  const modulePath = join(__dirname, '../../src/daemon/thread-log.js');
  const worker = new Worker(`const { threadLog } = require(${JSON.stringify(modulePath)});\n${body}`, {
    eval: true,
  });
  const records: ThreadLogRecord[] = [];
  worker.on('message', (record: ThreadLogRecord) => records.push(record));
  return new Promise((resolve, reject) => {
    worker.once('error', reject);
    worker.once('exit', () => resolve(records));
  });
}

describe('device thread logging', function () {
  // Each case starts a worker thread: up to 0.1 s here under load.
  this.timeout(5_000);
  it('posts records at or above its level to the main thread, with their fields', async () => {
    const records = await recordsOfThread(`
      threadLog.setLevel('warn');
      threadLog.debug('hidden', { queue: 0 });
      threadLog.info('hidden too');
      threadLog.warn('request failed', { device: 'vol-1', queue: 1, head: 7 });
      threadLog.error('queue broken');
    `);
    assert.deepEqual(records, [
      { type: 'log', level: 'warn', message: 'request failed', meta: { device: 'vol-1', queue: 1, head: 7 } },
      { type: 'log', level: 'error', message: 'queue broken', meta: {} },
    ]);
  });

  it('logs everything down to debug when asked, and refuses a level winston does not have', async () => {
    const records = await recordsOfThread(`
      threadLog.setLevel('debug');
      threadLog.debug('queue started', { queue: 0 });
      try { threadLog.setLevel('loud'); } catch (error) { threadLog.error(String(error)); }
    `);
    assert.deepEqual(
      records.map((record) => [record.level, record.message]),
      [
        ['debug', 'queue started'],
        ['error', 'Error: unknown log level loud'],
      ],
    );
  });

  it("relays a thread's record to the process logger with its level and fields", async () => {
    const [record] = await recordsOfThread(`threadLog.warn('request failed', { device: 'vol-2', head: 3 });`);
    const lines: string[] = [];
    const capture = new winston.transports.Stream({
      stream: new Writable({
        write: (chunk: Buffer, _encoding, done) => {
          lines.push(chunk.toString());
          done();
        },
      }),
    });
    const others = [...log.transports];
    for (const transport of others) transport.silent = true;
    log.add(capture);
    try {
      relayThreadLog(record!);
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      log.remove(capture);
      for (const transport of others) transport.silent = false;
    }
    assert.equal(lines.length, 1);
    const line = JSON.parse(lines[0]!);
    assert.deepEqual(
      { ...line, timestamp: typeof line.timestamp },
      { level: 'warn', message: 'request failed', device: 'vol-2', head: 3, timestamp: 'string' },
    );
  });
});

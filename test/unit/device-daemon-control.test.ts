import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, statSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { validControlRequest } from '../../src/daemon/control-protocol';
import { DaemonLock, daemonLockPath } from '../../src/daemon/daemon-lock';
import { LineRequestError, callJsonLines, listenJsonLines } from '../../src/daemon/json-line-socket';

const FILE_DEVICE = {
  name: 'vol-1',
  backend: { kind: 'file', path: '/var/lib/vduse-csi/volumes/vol-1.img' },
  queues: 2,
  queueSize: 256,
  blockSize: 4096,
  sizeBytes: 1 << 30,
  readOnly: false,
  keepAllocation: true,
};

const RBD_DEVICE = {
  name: 'rbd-1',
  backend: {
    kind: 'rbd',
    location: { pool: 'rbd', namespace: 'ns', image: 'csi-vol-1' },
    client: { conf: '/etc/ceph/ceph.conf', user: 'vduse-csi', keyring: '/run/keyring' },
  },
  queues: 1,
  queueSize: 128,
  blockSize: 512,
  readOnly: true,
  keepAllocation: false,
};

function refusal(pattern: RegExp): (error: unknown) => boolean {
  return (error: unknown) =>
    error instanceof LineRequestError && error.code === 'invalid' && pattern.test(error.message);
}

describe('device daemon control protocol', () => {
  it('accepts every op in its version-1 form', () => {
    assert.deepEqual(validControlRequest({ v: 1, op: 'add', device: FILE_DEVICE }), {
      v: 1,
      op: 'add',
      device: FILE_DEVICE,
    });
    assert.deepEqual(validControlRequest({ v: 1, op: 'add', device: RBD_DEVICE }).op, 'add');
    for (const sharing of ['read-only', 'multi-writer']) {
      const device = { ...RBD_DEVICE, backend: { ...RBD_DEVICE.backend, sharing } };
      assert.deepEqual(validControlRequest({ v: 1, op: 'add', device }), { v: 1, op: 'add', device });
    }
    for (const request of [
      { v: 1, op: 'status' },
      { v: 1, op: 'handover' },
      { v: 1, op: 'remove', name: 'vol-1' },
      { v: 1, op: 'device', name: 'vol-1' },
      { v: 1, op: 'resize', name: 'vol-1', bytes: 2 * 2 ** 30 },
      { v: 1, op: 'copy', name: 'vol-1', target: '/var/lib/vduse-csi/snapshots/s.img' },
    ])
      assert.deepEqual(validControlRequest(request), request);
  });

  const refused: Array<[string, unknown, RegExp]> = [
    ['another version', { v: 2, op: 'status' }, /speaks control protocol version 1, not 2/],
    ['no version', { op: 'status' }, /version 1, not undefined/],
    ['not an object', [1], /a request must be an object/],
    ['an unknown op', { v: 1, op: 'format' }, /unknown op "format"/],
    ['an unknown field', { v: 1, op: 'status', force: true }, /unknown field "force"/],
    ['a device name with /', { v: 1, op: 'remove', name: '../etc' }, /may only contain/],
    ['a device name that is no string', { v: 1, op: 'device', name: 7 }, /name must be a string/],
    ['a fractional resize', { v: 1, op: 'resize', name: 'a', bytes: 1.5 }, /positive whole number/],
    [
      'a relative copy target',
      { v: 1, op: 'copy', name: 'a', target: 'x.img' },
      /target must be an absolute path/,
    ],
    [
      'a relative image path',
      { v: 1, op: 'add', device: { ...FILE_DEVICE, backend: { kind: 'file', path: 'vol.img' } } },
      /backend path must be an absolute path/,
    ],
    [
      'a path with NUL',
      { v: 1, op: 'add', device: { ...FILE_DEVICE, backend: { kind: 'file', path: '/a\0b' } } },
      /absolute path/,
    ],
    [
      'an unknown backend',
      { v: 1, op: 'add', device: { ...FILE_DEVICE, backend: { kind: 'nbd', path: '/x' } } },
      /backend kind must be file or rbd/,
    ],
    [
      'a queue size that is no power of two',
      { v: 1, op: 'add', device: { ...FILE_DEVICE, queueSize: 100 } },
      /queueSize must be a power of two/,
    ],
    [
      'too many queues',
      { v: 1, op: 'add', device: { ...FILE_DEVICE, queues: 65 } },
      /queues must be a whole number between 1 and 64/,
    ],
    [
      'an odd block size',
      { v: 1, op: 'add', device: { ...FILE_DEVICE, blockSize: 1000 } },
      /blockSize must be one of/,
    ],
    [
      'a size off the block size',
      { v: 1, op: 'add', device: { ...FILE_DEVICE, sizeBytes: 4097 } },
      /sizeBytes must be a positive multiple of the block size 4096/,
    ],
    [
      'a string flag',
      { v: 1, op: 'add', device: { ...FILE_DEVICE, readOnly: 'yes' } },
      /must be true or false/,
    ],
    [
      'keepAllocation for RBD',
      { v: 1, op: 'add', device: { ...RBD_DEVICE, keepAllocation: true } },
      /keepAllocation is for image files/,
    ],
    [
      'an RBD image name with /',
      {
        v: 1,
        op: 'add',
        device: {
          ...RBD_DEVICE,
          backend: { ...RBD_DEVICE.backend, location: { pool: 'rbd', image: 'a/b' } },
        },
      },
      /names without \//,
    ],
    [
      'an RBD pool name Ceph could take but this driver does not',
      {
        v: 1,
        op: 'add',
        device: { ...RBD_DEVICE, backend: { ...RBD_DEVICE.backend, location: { pool: '-x', image: 'a' } } },
      },
      /RBD pool "-x" must be/,
    ],
    [
      'an unknown RBD sharing',
      { v: 1, op: 'add', device: { ...RBD_DEVICE, backend: { ...RBD_DEVICE.backend, sharing: 'all' } } },
      /RBD sharing must be read-only or multi-writer, not "all"/,
    ],
    [
      'an RBD image shared read-only on a writable device',
      {
        v: 1,
        op: 'add',
        device: { ...RBD_DEVICE, readOnly: false, backend: { ...RBD_DEVICE.backend, sharing: 'read-only' } },
      },
      /shared read-only is served read-only/,
    ],
    [
      'a secret in the client',
      {
        v: 1,
        op: 'add',
        device: { ...RBD_DEVICE, backend: { ...RBD_DEVICE.backend, client: { key: 'AQB...' } } },
      },
      /unknown field "key"/,
    ],
  ];
  for (const [what, request, message] of refused)
    it(`refuses ${what} as invalid`, () =>
      assert.throws(() => validControlRequest(request), refusal(message)));
});

describe('JSON-lines control socket', () => {
  const dir = mkdtempSync(join(tmpdir(), 'json-lines-'));
  const path = join(dir, 'sockets', 'control.sock');
  let server: Awaited<ReturnType<typeof listenJsonLines>>;

  before(async () => {
    server = await listenJsonLines(path, async (request) => {
      const { op } = request as { op: string };
      if (op === 'echo') return { echoed: request };
      if (op === 'coded') throw new LineRequestError('nothing here', 'not-found');
      throw new Error('plain failure');
    });
  });
  after(() => server.close());

  it('is a socket only its owner may use, in a directory only its owner may enter', () => {
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, 'sockets')).mode & 0o777, 0o700);
  });

  it('answers each request; refusals carry their code when they have one', async () => {
    assert.deepEqual(await callJsonLines(path, { op: 'echo', n: 1 }, 5_000), {
      echoed: { op: 'echo', n: 1 },
      ok: true,
    });
    await assert.rejects(
      callJsonLines(path, { op: 'coded' }, 5_000),
      (error: LineRequestError) => error.code === 'not-found' && error.message === 'nothing here',
    );
    await assert.rejects(
      callJsonLines(path, { op: 'other' }, 5_000),
      (error: LineRequestError) => error.code === undefined && error.message === 'plain failure',
    );
  });

  it('fails a call at once, not at its timeout, when the peer closes without answering (a daemon killed)', async () => {
    const mute = join(dir, 'mute.sock');
    const closer = createServer((socket) => socket.once('data', () => socket.destroy()));
    await new Promise<void>((listening) => closer.listen(mute, listening));
    try {
      await assert.rejects(callJsonLines(mute, { op: 'status' }, 600_000), {
        message: `${mute} closed the connection without an answer`,
      });
    } finally {
      closer.close();
    }
  });

  /** Writes raw bytes and collects everything the server sends until it closes or `lines` came. */
  function exchange(bytes: string, lines: number): Promise<string[]> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(path);
      let received = '';
      const finish = (): void => resolve(received.split('\n').filter((line) => line !== ''));
      socket.setEncoding('utf8');
      socket.on('connect', () => socket.write(bytes));
      socket.on('data', (chunk: string) => {
        received += chunk;
        if (received.split('\n').length > lines) {
          socket.end();
          finish();
        }
      });
      socket.on('end', finish);
      socket.on('error', reject);
    });
  }

  it('refuses a line that is not JSON, and goes on answering the next', async () => {
    const answers = await exchange('{"op": \n{"op":"echo"}\n', 2);
    assert.deepEqual(JSON.parse(answers[0]!), {
      ok: false,
      error: 'a request is one JSON object per line',
      code: 'invalid',
    });
    assert.equal((JSON.parse(answers[1]!) as { ok: boolean }).ok, true);
  });

  it('refuses a request longer than 64 KiB and closes the connection', async () => {
    const answers = await exchange(`{"op":"echo","pad":"${'x'.repeat(70 * 1024)}`, 1);
    assert.deepEqual(JSON.parse(answers[0]!), {
      ok: false,
      error: 'request longer than 65536 bytes',
      code: 'invalid',
    });
  });
});

describe('device daemon lock', () => {
  it('is held by one holder at a time, in this process or another, and freed when its holder dies', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'daemon-lock-'));
    const first = DaemonLock.tryAcquire(stateDir);
    assert.ok(first);
    assert.equal(DaemonLock.tryAcquire(stateDir), null);
    assert.equal(statSync(daemonLockPath(stateDir)).mode & 0o777, 0o600);
    first.release();

    // Another process holding it through the same module.
    const holder = spawn(
      process.execPath,
      [
        '-e',
        `require(${JSON.stringify(resolve(__dirname, '../../src/daemon/daemon-lock.js'))})` +
          `.DaemonLock.tryAcquire(${JSON.stringify(stateDir)}) && console.log('held'); setInterval(() => {}, 1e6)`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
    assert.equal(DaemonLock.tryAcquire(stateDir), null);
    const stop = new AbortController();
    const waiting = DaemonLock.acquire(stateDir, stop.signal);
    holder.kill('SIGKILL');
    const second = await waiting;
    assert.ok(second, 'the lock is taken once its holder is gone');
    second.release();

    const again = DaemonLock.tryAcquire(stateDir)!;
    const fdsBefore = readdirSync('/proc/self/fd').length;
    const abandoned = new AbortController();
    const given = DaemonLock.acquire(stateDir, abandoned.signal);
    abandoned.abort();
    assert.equal(await given, null, 'an aborted wait gives up');
    assert.equal(await DaemonLock.acquire(stateDir, abandoned.signal), null, 'as does one aborted before');
    assert.equal(readdirSync('/proc/self/fd').length, fdsBefore, 'a wait given up leaves no file open');
    again.release();
  });
});

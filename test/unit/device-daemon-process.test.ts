import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { AddressInfo, createServer } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { callDaemon } from '../../src/daemon/control-client';
import { controlSocketPath } from '../../src/daemon/control-client';
import { LineRequestError, callJsonLines } from '../../src/daemon/json-line-socket';
import { promtoolProblems, scrape, valueOf } from '../support/prometheus-text';
import { bindProcessesOf, threadNamesOf } from '../support/daemon-processes';

const BLK_CLI = resolve(__dirname, '../../bundle/vduse-blk.js');
const TIMEOUT_MS = 120_000;

interface Daemon {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
  /** Exited, and its pipes closed. */
  closed: Promise<void>;
}

function startDaemon(
  stateDir: string,
  endpoints = ['--health-address', '127.0.0.1:0', '--metrics-address', '127.0.0.1:0'],
): Daemon {
  const child = spawn(
    process.execPath,
    [...[BLK_CLI, 'daemon', 'run', '--state-dir', stateDir, '--log-level', 'debug'], ...endpoints],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  const closed = new Promise<void>((done) => child.once('close', () => done()));
  return { child, output: () => output, exited, closed };
}

async function until<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + TIMEOUT_MS;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((done) => setTimeout(done, 50));
  }
}

/** The port an endpoint of the daemon (`health` or `metrics`) listens on, once it logged it. */
function listeningPort(daemon: Daemon, endpoint: 'health' | 'metrics'): number | undefined {
  const line = daemon
    .output()
    .split('\n')
    .find((text) => text.includes(`"message":"${endpoint} endpoint listening"`));
  return line ? (JSON.parse(line) as { port: number }).port : undefined;
}

async function probe(
  daemon: Daemon,
  path: '/healthz' | '/readyz',
): Promise<{ status: number; body: string }> {
  const port = await until('the health endpoint', async () => listeningPort(daemon, 'health'));
  const response = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: response.status, body: await response.text() };
}

/** Waits until the daemon's /readyz names `role`, and answers with that probe. */
function readyAs(daemon: Daemon, role: 'serving' | 'standby'): Promise<{ status: number; body: string }> {
  return until(`a daemon ${role}`, async () => {
    const answer = await probe(daemon, '/readyz');
    return answer.body === `${role}\n` ? answer : undefined;
  });
}

describe('device daemon process (no VDUSE needed: no device is served)', function () {
  this.timeout(4 * TIMEOUT_MS);
  const started: Daemon[] = [];
  const stateDir = mkdtempSync(join(tmpdir(), 'daemon-process-'));

  // Reaped before the next file runs: a later file counting its own fds or children must not see
  // these daemons' pipes close under it.
  after(async () => {
    for (const daemon of started) daemon.child.kill('SIGKILL');
    await Promise.all(started.map(({ closed }) => closed));
  });

  it('one daemon serves a state directory; a second stands by, ready, and takes over when the first is killed', async () => {
    const first = startDaemon(stateDir);
    started.push(first);
    assert.deepEqual(await readyAs(first, 'serving'), { status: 200, body: 'serving\n' });
    assert.equal((await callDaemon(stateDir, { op: 'status' })).pid, first.child.pid);

    const second = startDaemon(stateDir);
    started.push(second);
    assert.deepEqual(await readyAs(second, 'standby'), { status: 200, body: 'standby\n' });
    // Ready means warm: the queue threads a serving daemon keeps (one of which answers control messages).
    const deviceThreads = threadNamesOf(second.child.pid!).filter((name) => name.startsWith('vduse-'));
    assert.deepEqual(deviceThreads, Array(Math.min(2, availableParallelism())).fill('vduse-queue'));
    assert.equal(
      (await callDaemon(stateDir, { op: 'status' })).pid,
      first.child.pid,
      'the first still serves',
    );

    first.child.kill('SIGKILL');
    await first.exited;
    await until('the second daemon to serve', async () =>
      (await callDaemon(stateDir, { op: 'status' })).pid === second.child.pid ? true : undefined,
    );
    assert.deepEqual(await probe(second, '/readyz'), { status: 200, body: 'serving\n' });
    assert.deepEqual(await probe(second, '/healthz'), { status: 200, body: 'serving\n' });
  });

  it('starts its queue threads (no thread of its own for control messages) as it begins serving, before any add, and no bind process until a bind', async () => {
    const daemon = startDaemon(mkdtempSync(join(tmpdir(), 'daemon-warm-')), []);
    started.push(daemon);
    const pid = daemon.child.pid!;
    const deviceThreads = (): string[] => threadNamesOf(pid).filter((name) => name.startsWith('vduse-'));
    await until('the queue threads', async () =>
      deviceThreads().length === Math.min(2, availableParallelism()) ? true : undefined,
    );
    assert.deepEqual(deviceThreads(), Array(Math.min(2, availableParallelism())).fill('vduse-queue'));
    assert.deepEqual(bindProcessesOf(pid), []);
    daemon.child.kill('SIGTERM');
    assert.equal(await daemon.exited, 0);
  });

  it('an add whose image cannot be made is refused with its kind, and leaves no record behind', async () => {
    const image = join(stateDir, 'missing-directory', 'volume.img');
    await assert.rejects(
      callDaemon(stateDir, {
        op: 'add',
        device: {
          name: 'no-image',
          backend: { kind: 'file', path: image },
          sizeBytes: 1 << 20,
          queues: 1,
          queueSize: 64,
          blockSize: 512,
          readOnly: false,
          keepAllocation: false,
        },
      }),
      (error: LineRequestError) => error.code === 'image' && /opening the image/.test(error.message),
    );
    assert.deepEqual(existsSync(join(stateDir, 'devices')) ? readdirSync(join(stateDir, 'devices')) : [], []);
    assert.deepEqual((await callDaemon(stateDir, { op: 'status' })).devices, []);
  });

  it('exports its role, devices and control requests by op and outcome; promtool finds nothing to fix', async () => {
    const serving = started[1]!;
    await assert.rejects(callDaemon(stateDir, { op: 'resize', name: 'nothing', bytes: 4096 }));
    await assert.rejects(callJsonLines(controlSocketPath(stateDir), { v: 1, op: 'drop-everything' }, 5_000));
    const { text, samples } = await scrape(`http://127.0.0.1:${listeningPort(serving, 'metrics')}/metrics`);
    assert.equal(promtoolProblems(text), '');
    assert.equal(valueOf(samples, 'vduse_csi_daemon_role', { role: 'serving' }), 1);
    assert.equal(valueOf(samples, 'vduse_csi_daemon_role', { role: 'standby' }), 0);
    assert.equal(valueOf(samples, 'vduse_csi_daemon_devices'), 0);
    assert.equal(valueOf(samples, 'vduse_csi_daemon_takeover_devices'), 0);
    assert.equal(valueOf(samples, 'vduse_csi_daemon_requests_total', { op: 'add', outcome: 'image' }), 1);
    assert.equal(
      valueOf(samples, 'vduse_csi_daemon_requests_total', { op: 'resize', outcome: 'not-found' }),
      1,
    );
    assert.equal(
      valueOf(samples, 'vduse_csi_daemon_requests_total', { op: 'invalid', outcome: 'invalid' }),
      1,
    );
    assert.ok(valueOf(samples, 'vduse_csi_daemon_requests_total', { op: 'status', outcome: 'ok' }) >= 1);
    assert.equal(
      valueOf(samples, 'vduse_csi_daemon_request_duration_seconds_count', { op: 'add' }),
      1,
      'the refused add was timed',
    );
    assert.ok(valueOf(samples, 'process_resident_memory_bytes') > 0);
  });

  it('handover and SIGTERM end a serving daemon; SIGTERM ends a standby without taking anything over', async () => {
    const serving = started[1]!;
    const standby = startDaemon(stateDir);
    started.push(standby);
    await readyAs(standby, 'standby');
    standby.child.kill('SIGTERM');
    assert.equal(await standby.exited, 0);
    assert.match(standby.output(), /stopped while standing by/);

    const answer = await callDaemon(stateDir, { op: 'handover' });
    assert.equal(answer.pid, serving.child.pid);
    assert.equal(await serving.exited, 0);
    assert.match(serving.output(), /"reason":"hand-over"/);
    // The next daemon learns its predecessor let go on purpose (and a killed one leaves no such note).
    const note = JSON.parse(readFileSync(join(stateDir, 'daemon.released'), 'utf8'));
    assert.deepEqual([note.pid, note.reason], [serving.child.pid, 'hand-over']);
    const next = startDaemon(stateDir);
    started.push(next);
    await readyAs(next, 'serving');
    assert.equal(existsSync(join(stateDir, 'daemon.released')), false, 'the note is read once');
  });

  it('keeps its role in the role file; the metrics address is bound by whichever daemon serves', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'daemon-roles-'));
    const port = await freePort();
    const daemonWith = (name: string): Daemon => {
      const daemon = startDaemon(dir, [
        ...['--role-file', join(dir, `${name}.role`), '--metrics-address', `127.0.0.1:${port}`],
      ]);
      started.push(daemon);
      return daemon;
    };
    const roleOf = (name: string): string => readFileSync(join(dir, `${name}.role`), 'utf8').trim();
    const inRole = (name: string, role: string): Promise<true> =>
      until(`${name} in role ${role}`, async () => roleOf(name) === role || undefined);

    const first = daemonWith('first');
    await inRole('first', 'serving');
    const second = daemonWith('second');
    await inRole('second', 'standby');
    assert.ok((await scrape(`http://127.0.0.1:${port}/metrics`)).samples.length > 0);
    assert.equal(listeningPort(second, 'metrics'), undefined, 'a standby binds no metrics address');

    first.child.kill('SIGTERM');
    assert.equal(await first.exited, 0);
    assert.equal(roleOf('first'), 'stopped');
    await inRole('second', 'serving');
    await until('the metrics of the second daemon', async () => listeningPort(second, 'metrics'));
    const { samples } = await scrape(`http://127.0.0.1:${port}/metrics`);
    assert.equal(valueOf(samples, 'vduse_csi_daemon_role', { role: 'serving' }), 1);
    second.child.kill('SIGTERM');
    assert.equal(await second.exited, 0);
  });
});

/** A TCP port nothing listens on right now. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as AddressInfo;
  await new Promise((done) => server.close(done));
  return port;
}

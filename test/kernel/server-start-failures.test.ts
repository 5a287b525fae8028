import assert from 'node:assert/strict';
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BlkServeOptions } from '../../src/daemon/blk-device-server';
import { StartFailureLine } from '../../src/daemon/start-failure';
import { CsiHarness, MiB } from '../support/csi-harness';
import { createVolumeToStage } from '../support/stage-request';
import type { ProbeResult } from './start-failure-probe';
import {
  BLK_CLI,
  CLI,
  ServedDevice,
  assertNoDevices,
  requireVduse,
  run,
  scratchDir,
  serve,
  sh,
  vdpaDevices,
  vduseDevices,
  waitFor,
} from './support';

const PROBE = resolve(__dirname, 'start-failure-probe.js');

interface CliFailure {
  code: number | null;
  stderr: string;
  /** The failure line the server printed on stdout for the CSI plugin. */
  line: StartFailureLine;
}

/** Runs `blk serve` (under `prefix`, e.g. unshare --net) to its end, expecting it to fail to start. */
function serveFails(args: string[], prefix: string[] = []): CliFailure {
  const [command, ...rest] = [...prefix, process.execPath, BLK_CLI, 'blk', 'serve', ...args];
  try {
    execFileSync(command!, rest, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const failed = error as { status: number | null; stdout: string; stderr: string };
    const line = failed.stdout.split('\n').find((text) => text.startsWith('{"startFailed":'));
    assert.ok(line, `no failure line on stdout:\n${failed.stdout}\nstderr:\n${failed.stderr}`);
    return { code: failed.status, stderr: failed.stderr, line: JSON.parse(line) as StartFailureLine };
  }
  assert.fail(`blk serve ${args.join(' ')} started`);
}

/** The server's last stderr line is its error, and it is the one it reported: no EBADF, no stack. */
function assertFailedWith(failure: CliFailure, kind: string, step: RegExp, cause: RegExp): void {
  assert.equal(failure.code, 1, failure.stderr);
  const last = failure.stderr.trimEnd().split('\n').at(-1)!;
  assert.equal(last, `vduse-csi: ${failure.line.error}`);
  assert.equal(failure.line.kind, kind, last);
  assert.match(failure.line.step, step);
  assert.match(failure.line.error, cause);
  assert.doesNotMatch(failure.stderr, /EBADF|uncaught|at .*\.js:\d+/i);
}

/** Starts a server in a process of its own (probe), expecting a failure, and returns what it left. */
function probeFails(options: BlkServeOptions, prefix: string[] = []): ProbeResult {
  const [command, ...rest] = [...prefix, process.execPath, PROBE, JSON.stringify(options)];
  const result = JSON.parse(run(command!, rest)) as ProbeResult;
  assert.equal(result.started, false, 'the server started');
  assert.deepEqual(result.leakedFds, [], 'file descriptors left open');
  assert.deepEqual(result.cleanupFailures, [], 'cleanup failed');
  return result;
}

/** Nothing of `name` in the state directory: no record, no in-flight log, no admin socket. */
function assertNoStateOf(stateDir: string, name: string): void {
  for (const path of [`devices/${name}.json`, `inflight/${name}`, `sockets/${name}.sock`])
    assert.equal(existsSync(join(stateDir, path)), false, `${path} left behind`);
}

/** Neither a VDUSE nor a vdpa device of `name`. */
function assertNoDeviceNamed(name: string): void {
  assert.equal(existsSync(`/sys/class/vduse/${name}`), false, `VDUSE device ${name} left behind`);
  assert.equal(vdpaDevices().includes(name), false, `vdpa device ${name} left behind`);
}

function options(dir: string, name: string, extra: Partial<BlkServeOptions> = {}): BlkServeOptions {
  return {
    name,
    backend: { kind: 'file', path: join(dir, `${name}.img`) },
    sizeBytes: 16 * MiB,
    queues: 1,
    queueSize: 256,
    blockSize: 512,
    readOnly: false,
    keepAllocation: false,
    copyDirs: [dir],
    logLevel: 'warn',
    stateDir: join(dir, 'state'),
    ...extra,
  };
}

function imageFile(serveOptions: BlkServeOptions): string {
  if (serveOptions.backend.kind !== 'file') throw new Error('these cases serve image files');
  return serveOptions.backend.path;
}

function serveArgs(serveOptions: BlkServeOptions): string[] {
  const { name, stateDir, sizeBytes } = serveOptions;
  const size = sizeBytes === undefined ? [] : ['--size', String(sizeBytes)];
  return [
    '--file',
    imageFile(serveOptions),
    '--name',
    name,
    '--state-dir',
    stateDir,
    '--log-level',
    'warn',
    ...size,
  ];
}

const OWN_NETNS = ['unshare', '--net'];

/*
 * Every way a device server's start fails on the real kernel ends with an error naming the step and
 * the cause, exit code 1, and nothing left behind of what the start made (devices, records,
 * in-flight log, admin socket, image, file descriptors), while what belongs to another owner stays.
 */
describe('device server start failures on the real kernel', function () {
  this.timeout(1_200_000);
  let dir: string;
  const others: ChildProcess[] = [];
  let served: ServedDevice | undefined;

  before(() => requireVduse());
  beforeEach(() => {
    dir = scratchDir('start-failures');
  });
  afterEach(async () => {
    await served?.stop();
    served = undefined;
    for (const other of others.splice(0)) {
      const exited = new Promise((done) => other.once('exit', done));
      if (other.exitCode === null && other.signalCode === null) other.kill('SIGTERM');
      await exited;
    }
    await waitFor('the other owners to remove their devices', () => vduseDevices().length === 0);
    rmSync(dir, { recursive: true, force: true });
    assertNoDevices();
  });

  it('in a network namespace of its own: names the vdpa binding step and the host-network cause', async () => {
    const fresh = options(dir, 'netns');
    const failure = serveFails(serveArgs(fresh), OWN_NETNS);
    assertFailedWith(
      failure,
      'environment',
      /^binding device netns to virtio-vdpa through the vdpa generic netlink family$/,
      /not visible from this network namespace.*initial network namespace.*host network \(hostNetwork: true\) \(ENOENT\)/,
    );
    assertNoDeviceNamed('netns');
    assertNoStateOf(fresh.stateDir, 'netns');
    assert.equal(existsSync(imageFile(fresh)), false, 'the image this start made is removed again');

    // An image that was there before stays; the in-process start closes every descriptor it opened.
    writeFileSync(imageFile(fresh), Buffer.alloc(MiB, 7));
    const existing = { ...fresh };
    delete existing.sizeBytes;
    const probed = probeFails(existing, OWN_NETNS);
    assert.equal(probed.kind, 'environment');
    assert.match(probed.message!, /initial network namespace/);
    assert.equal(existsSync(imageFile(fresh)), true);
    assertNoDeviceNamed('netns');
    assertNoStateOf(fresh.stateDir, 'netns');
  });

  it("through NodeStageVolume in a network namespace of its own: FAILED_PRECONDITION with the daemon's cause", async () => {
    const root = join(dir, 'csi');
    const csi = await CsiHarness.start({ cli: [...OWN_NETNS, process.execPath, CLI], root, standby: false });
    try {
      const { volumeId, request } = await createVolumeToStage(csi, 'netns-stage');
      const message = await csi.expectCode('node', 'NodeStageVolume', request, 'FAILED_PRECONDITION');
      assert.match(
        message,
        /^add refused by the device daemon, for vol-\w+: binding device vol-\w+ to virtio-vdpa through the vdpa generic netlink family: .*initial network namespace.*hostNetwork/,
      );
      assert.doesNotMatch(message, /EBADF/);
      assertNoDeviceNamed(volumeId);
      assertNoStateOf(csi.options.stateDir, volumeId);
      // The kubelet retries: the same cause again, never a different one from what the first left.
      const again = await csi.expectCode('node', 'NodeStageVolume', request, 'FAILED_PRECONDITION');
      assert.equal(again.replace(/\d+/g, 'N'), message.replace(/\d+/g, 'N'));
      await csi.call('controller', 'DeleteVolume', { volume_id: volumeId });
    } finally {
      await csi.stop();
    }
  });

  it('without virtio_vdpa: names the wait for the block device and removes the vdpa device it added', async () => {
    sh('modprobe -r virtio_vdpa');
    try {
      const fresh = options(dir, 'nodriver');
      const failure = serveFails(serveArgs(fresh));
      assertFailedWith(
        failure,
        'environment',
        /^waiting for the block device of nodriver \(virtio_vdpa and virtio_blk must be loaded\)$/,
        /no block device after \d+ ms/,
      );
      assertNoDeviceNamed('nodriver');
      assertNoStateOf(fresh.stateDir, 'nodriver');
      assert.equal(existsSync(imageFile(fresh)), false);
    } finally {
      sh('modprobe virtio_vdpa');
    }
  });

  it('on a name qemu-storage-daemon serves: names the creation step and leaves its device alone', async () => {
    const theirs = join(dir, 'theirs.img');
    sh(`truncate -s 16M ${theirs}`);
    const daemon = spawn(
      'qemu-storage-daemon',
      [
        '--blockdev',
        `file,node-name=f,filename=${theirs}`,
        '--export',
        'vduse-blk,id=e,node-name=f,name=taken,writable=on',
      ],
      { stdio: 'ignore' },
    );
    others.push(daemon);
    await waitFor('qemu-storage-daemon to create its device', () => existsSync('/dev/vduse/taken'), 120_000);

    const ours = options(dir, 'taken');
    const failure = serveFails(serveArgs(ours));
    assertFailedWith(
      failure,
      'in-use',
      /^creating VDUSE device taken$/,
      /a VDUSE device named taken already exists and has no record in .*: it was not made by vduse-csi/,
    );
    const probed = probeFails(ours);
    assert.equal(probed.kind, 'in-use');
    assert.deepEqual(vduseDevices(), ['taken'], 'the other owner keeps its device');
    assert.equal(daemon.exitCode, null, 'qemu-storage-daemon still runs');
    assertNoStateOf(ours.stateDir, 'taken');
    assert.equal(existsSync(imageFile(ours)), false);
  });

  it('on a name a server of ours with another state directory serves: fails and leaves that server serving', async () => {
    const first = options(dir, 'ours', { stateDir: join(dir, 'state-a') });
    served = await serve(serveArgs(first));
    const second = options(dir, 'ours', {
      stateDir: join(dir, 'state-b'),
      backend: { kind: 'file', path: join(dir, 'other.img') },
    });
    const failure = serveFails(serveArgs(second));
    assertFailedWith(
      failure,
      'in-use',
      /^creating VDUSE device ours$/,
      /already exists and has no record in .*state-b/,
    );
    probeFails(second);
    assertNoStateOf(second.stateDir, 'ours');
    assert.ok(existsSync(join(first.stateDir, 'devices', 'ours.json')), 'the first server keeps its record');
    assert.deepEqual(vdpaDevices(), ['ours']);
    sh(`dd if=${served.path} of=/dev/null bs=1M count=1 iflag=direct status=none`);
  });

  it('on a missing image without --size (what the CSI node passes): names the image and makes nothing', async () => {
    const missing = options(dir, 'noimage');
    delete missing.sizeBytes;
    const failure = serveFails(serveArgs(missing));
    assertFailedWith(failure, 'image', /^opening the image$/, /image .*noimage\.img does not exist/);
    probeFails(missing);
    assert.deepEqual(readdirSync(dir), [], 'neither an image nor a state directory');
    assertNoDeviceNamed('noimage');
  });
});

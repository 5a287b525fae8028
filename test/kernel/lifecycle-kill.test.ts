import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { findBlockDeviceName, virtioProbeFailed } from '../../src/vdpa';
import { BLK_CLI, assertNoDevices, requireVduse, scratchDir, serve } from './support';

/** Starts `blk serve` and SIGKILLs it after `delayMs`, wherever it then is. */
async function killAfter(args: string[], delayMs: number): Promise<void> {
  const child = spawn(process.execPath, [BLK_CLI, 'blk', 'serve', ...args], { stdio: 'ignore' });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await new Promise((resolve) => setTimeout(resolve, delayMs));
  child.kill('SIGKILL');
  await exited;
}

/**
 * Starts `blk serve` and SIGKILLs it as soon as `moment` holds (checked every few milliseconds);
 * with `wholeGroup`, its child processes too (the vdpa bind process), as a container's death would.
 */
async function killWhen(args: string[], moment: () => boolean, wholeGroup: boolean): Promise<void> {
  const child = spawn(process.execPath, [BLK_CLI, 'blk', 'serve', ...args], {
    stdio: 'ignore',
    detached: wholeGroup,
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const kill = (): void => {
    if (wholeGroup) process.kill(-child.pid!, 'SIGKILL');
    else child.kill('SIGKILL');
  };
  let reached = false;
  const timer = setInterval(() => {
    reached ||= moment();
    if (reached) kill();
  }, 2);
  const deadline = setTimeout(kill, 120_000);
  await exited;
  clearInterval(timer);
  clearTimeout(deadline);
  assert.ok(reached, 'the server never reached the moment it was to be killed at');
}

/** The vdpa device exists and its block device does not yet: the driver probes it. */
function probing(name: string): () => boolean {
  return () => existsSync(`/sys/bus/vdpa/devices/${name}`) && findBlockDeviceName(name) === null;
}

/*
 * A server killed at any moment of creating or removing its device leaves something the next
 * `blk serve` with the same name and image either finishes or cleans up: never an orphan device.
 */
describe('kills during device creation and teardown', function () {
  this.timeout(1_200_000);
  let dir: string;

  before(() => requireVduse());
  beforeEach(() => {
    dir = scratchDir('lifecycle');
  });
  const serveArgs = (name: string): string[] => [
    '--file',
    join(dir, 'disk.img'),
    '--size',
    '64M',
    '--name',
    name,
    '--state-dir',
    join(dir, 'state'),
  ];
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
    assertNoDevices();
  });

  it('recovers from a kill at any point of creation', async () => {
    const args = serveArgs('kill-create');
    const started = performance.now();
    const first = await serve(args);
    const startupMs = performance.now() - started;
    assert.equal(await first.stop(), 0);
    assertNoDevices();
    for (const fraction of [0.3, 0.6, 0.9, 1.0]) {
      await killAfter(args, startupMs * fraction);
      const next = await serve(args);
      assert.match(
        next.path,
        /^\/dev\/vd[a-z]+$/,
        `after a kill at ${Math.round(fraction * 100)}% of start-up`,
      );
      assert.equal(await next.stop(), 0, next.stderr());
      assertNoDevices();
    }
  });

  it('a kill of the server while the driver probes the device: its successor answers, the probe succeeds', async () => {
    const args = serveArgs('kill-probe');
    // The probe runs in the bind process's DEV_NEW call, which outlives the server: the successor
    // answers what the probe waits for (control messages, partition reads) and it completes.
    for (let attempt = 0; attempt < 3; attempt++) {
      await killWhen(args, probing('kill-probe'), false);
      const next = await serve(args);
      assert.match(next.path, /^\/dev\/vd[a-z]+$/);
      assert.equal(virtioProbeFailed('kill-probe'), false);
      assert.equal(next.stderr().includes('adding it again'), false, next.stderr());
      assert.equal(await next.stop(), 0, next.stderr());
      assertNoDevices();
    }
  });

  it('a kill of the server and its bind process while the driver probes: the next server adds the device again', async () => {
    const args = serveArgs('kill-probe-all');
    // Killed with the bind process, the probe's wait for the device's answer is interrupted: the
    // driver then never takes the device, and only adding it again brings the block device back.
    let probeFailures = 0;
    for (let attempt = 0; attempt < 5 && probeFailures === 0; attempt++) {
      await killWhen(args, probing('kill-probe-all'), true);
      const probeFailed = virtioProbeFailed('kill-probe-all');
      if (probeFailed) probeFailures++;
      const next = await serve(args);
      assert.match(next.path, /^\/dev\/vd[a-z]+$/);
      assert.equal(next.stderr().includes('adding it again'), probeFailed, next.stderr());
      assert.equal(await next.stop(), 0, next.stderr());
      assertNoDevices();
    }
    assert.equal(probeFailures, 1, 'no kill landed inside the probe in 5 attempts');
  });

  it('recovers from a kill at any point of teardown', async () => {
    const args = serveArgs('kill-teardown');
    for (const delayMs of [0, 100, 1000]) {
      const served = await serve(args);
      const exited = new Promise((resolve) => served.process.once('exit', resolve));
      served.process.kill('SIGTERM');
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      served.process.kill('SIGKILL');
      await exited;
      // Whatever the kill left (a bound device, an unbound one, or nothing), a new server serves it.
      const next = await serve(args);
      assert.equal(await next.stop(), 0, next.stderr());
      assertNoDevices();
    }
  });
});

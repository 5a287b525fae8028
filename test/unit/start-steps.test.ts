import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { StartFailure } from '../../src/daemon/start-failure';
import { StartSteps } from '../../src/daemon/start-steps';
import { setLogLevel } from '../../src/log';
import { SysError } from '../../src/sys/errors';
import * as libc from '../../src/sys/libc';
import { VduseDevice } from '../../src/vduse/device';

const EPERM = 1;
const EBUSY = 16;
const EINVAL = 22;

function isOpen(fd: number): boolean {
  return existsSync(`/proc/self/fd/${fd}`);
}

/** A step's resource: a real descriptor, closed by its undo. */
function openNull(steps: StartSteps, record: string[], name: string): Promise<number> {
  return steps.run(`opening ${name}`, () => {
    const fd = libc.openPath('/dev/null', libc.O_RDONLY);
    steps.onFailure(`closing ${name}`, () => {
      record.push(name);
      libc.closeFd(fd);
    });
    return fd;
  });
}

async function failure(promise: Promise<unknown>): Promise<StartFailure> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof StartFailure, String(error));
    return error;
  }
  assert.fail('the start succeeded');
}

describe('StartSteps: a failed start undoes its steps', () => {
  before(() => setLogLevel('silent'));
  after(() => setLogLevel('info'));

  it('names the failing step and its cause, and undoes every earlier step once, last first', async () => {
    const undone: string[] = [];
    const fds: number[] = [];
    const error = await failure(
      StartSteps.attempt('dev', async (steps) => {
        fds.push(await openNull(steps, undone, 'a'), await openNull(steps, undone, 'b'));
        await steps.run('binding dev', () => Promise.reject(new Error('refused')), 'environment');
      }),
    );
    assert.equal(error.message, 'binding dev: refused');
    assert.equal(error.step, 'binding dev');
    assert.equal(error.kind, 'environment');
    assert.equal(error.device, 'dev');
    assert.deepEqual(undone, ['b', 'a']);
    assert.deepEqual(error.cleanupFailures, []);
    for (const fd of fds) assert.equal(isOpen(fd), false, `fd ${fd} left open`);
  });

  it('logs an undo that fails beside the failure, never instead of it, and still runs the others', async () => {
    const undone: string[] = [];
    const error = await failure(
      StartSteps.attempt('dev', async (steps) => {
        await openNull(steps, undone, 'a');
        steps.onFailure('destroying dev', () => {
          throw new SysError('VDUSE_DESTROY_DEV dev', EBUSY);
        });
        await openNull(steps, undone, 'c');
        throw steps.fail('creating dev', 'in-use', 'the name is taken');
      }),
    );
    assert.equal(error.kind, 'in-use');
    assert.match(error.message, /^creating dev: the name is taken \(cleanup also failed: destroying dev: /);
    assert.deepEqual(error.cleanupFailures, ['destroying dev: VDUSE_DESTROY_DEV dev: EBUSY']);
    assert.deepEqual(undone, ['c', 'a']);
  });

  it('takes the kind from the errno where it tells (privilege, busy), else from the step', async () => {
    const kindOf = async (cause: Error): Promise<string> =>
      (
        await failure(
          StartSteps.attempt('dev', (steps) => steps.run('a step', () => Promise.reject(cause), 'image')),
        )
      ).kind;
    assert.equal(await kindOf(new SysError('open', EPERM)), 'environment');
    assert.equal(await kindOf(new SysError('open', EBUSY)), 'in-use');
    assert.equal(await kindOf(new SysError('open', EINVAL)), 'image');
    assert.equal(await kindOf(new Error('other')), 'image');
  });

  it('wraps an error thrown outside a step as an internal failure of the start', async () => {
    const error = await failure(
      StartSteps.attempt('dev', () => {
        throw new TypeError('a bug');
      }),
    );
    assert.equal(error.message, 'starting device dev: a bug');
    assert.equal(error.kind, 'internal');
  });

  it('undoes nothing when the start succeeds', async () => {
    const undone: string[] = [];
    let fd = -1;
    const result = await StartSteps.attempt('dev', async (steps) => {
      fd = await openNull(steps, undone, 'a');
      return 'served';
    });
    assert.equal(result, 'served');
    assert.deepEqual(undone, []);
    assert.equal(isOpen(fd), true);
    libc.closeFd(fd);
  });
});

describe('VduseDevice.close', () => {
  it('closes its descriptor once: a second close neither fails (EBADF) nor closes a file that reused the number', () => {
    const device = VduseDevice.attach(libc.openPath('/dev/null', libc.O_RDONLY));
    const number = device.fd;
    device.close();
    const reused = libc.openPath('/dev/null', libc.O_RDONLY);
    assert.equal(reused, number, 'the kernel hands out the lowest free number');
    device.close();
    assert.equal(isOpen(reused), true);
    libc.closeFd(reused);
    assert.throws(() => device.fd, /closed/);
  });
});

import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { VdpaBinder } from '../../src/daemon/vdpa-binder';
import { bindProcessesOf } from '../support/daemon-processes';
import { eventually } from '../support/eventually';

/** Short, so the idle end comes soon; no bind in that case is asked while the process runs. */
const IDLE_MS = 200;
/** Far longer than any close takes: a close still waiting then would wait for good. */
const HANG_MS = 30_000;

/** This process's live vdpa-bind children. */
function bindProcesses(): number[] {
  return bindProcessesOf(process.pid);
}

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

// No VDUSE device of these names exists (nor, on most hosts, the vdpa family): every bind is
// refused by the kernel, which is what these cases need of it.
describe('VdpaBinder (one bind process for many binds)', function () {
  this.timeout(120_000);

  it('answers each bind from the same process, keeps it between binds, and ends it on close', async () => {
    const binder = new VdpaBinder();
    const fdsBefore = openFds();
    await assert.rejects(binder.bind('no-such-device-1'), /vdpa|no-such-device-1|ENODEV|family/i);
    const [first, ...others] = bindProcesses();
    assert.ok(first !== undefined && others.length === 0, 'one bind process');
    await assert.rejects(binder.bind('no-such-device-2'));
    assert.deepEqual(bindProcesses(), [first], 'the same process answers the next bind');
    await binder.close();
    assert.deepEqual(bindProcesses(), []);
    assert.equal(openFds(), fdsBefore, 'its pipes are closed');
  });

  it('ends its bind process once binds stop for its idle time, closing its pipes, and starts another for the next bind', async () => {
    const binder = new VdpaBinder(IDLE_MS);
    const fdsBefore = openFds();
    await assert.rejects(binder.bind('idle-1'));
    const [first] = bindProcesses();
    assert.ok(first !== undefined, 'a bind process answered');
    await eventually(async () => {
      assert.deepEqual(bindProcesses(), [], 'the bind process ended');
      assert.equal(openFds(), fdsBefore, 'its pipes are closed');
    }, 60_000);
    await assert.rejects(binder.bind('idle-2'));
    const [second] = bindProcesses();
    assert.ok(second !== undefined && second !== first, 'a new bind process answered');
    await binder.close();
  });

  it('answers every bind asked at once, and replaces a bind process that died', async () => {
    const binder = new VdpaBinder();
    const results = await Promise.allSettled(['a-1', 'a-2', 'a-3'].map((name) => binder.bind(name)));
    assert.deepEqual(
      results.map((result) => result.status),
      ['rejected', 'rejected', 'rejected'],
    );
    const [killed] = bindProcesses();
    process.kill(killed!, 'SIGKILL');
    // A bind asked before the binder saw the death fails with it; the next one gets a new process.
    let answer = '';
    for (let attempt = 0; attempt < 3 && !answer; attempt++) {
      const error = (await binder.bind('after-kill').catch((failure: Error) => failure)) as Error;
      if (!/exited with SIGKILL/.test(error.message)) answer = error.message;
    }
    assert.ok(answer, 'a bind after the kill was answered by the kernel');
    const [replacement] = bindProcesses();
    assert.ok(replacement !== undefined && replacement !== killed, 'a new bind process answered');
    await binder.close();
  });

  it('fails the bind under way, naming the signal, when its bind process is killed', async () => {
    const binder = new VdpaBinder();
    await assert.rejects(binder.bind('warm-up'));
    const [running] = bindProcesses();
    // Stopped, the process cannot answer: the bind waits until the kill ends it.
    process.kill(running!, 'SIGSTOP');
    const pending = binder.bind('never-answered');
    process.kill(running!, 'SIGKILL');
    await assert.rejects(pending, /vdpa-bind exited with SIGKILL/);
    await binder.close();
  });

  it('closes at once when its bind process is already gone (a daemon stopping must not hang on it)', async () => {
    const binder = new VdpaBinder();
    const fdsBefore = openFds();
    await assert.rejects(binder.bind('before-the-kill'));
    const [running] = bindProcesses();
    process.kill(running!, 'SIGKILL');
    await eventually(async () => {
      assert.deepEqual(bindProcesses(), []);
      assert.equal(openFds(), fdsBefore);
    }, 60_000);
    // Its pipes are closed; their close callbacks, then the child's close event, follow within a
    // turn or two of the event loop: close is asked after them, as a stopping daemon did.
    await new Promise((resolve) => setTimeout(resolve, 200));
    let timer: NodeJS.Timeout | undefined;
    const hung = new Promise<string>((resolve) => (timer = setTimeout(() => resolve('hung'), HANG_MS)));
    assert.equal(await Promise.race([binder.close().then(() => 'closed'), hung]), 'closed');
    clearTimeout(timer);
  });
});

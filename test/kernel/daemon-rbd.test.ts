import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { callDaemon } from '../../src/daemon/control-client';
import { useCephCluster } from '../support/ceph-cluster';
import { RunningDaemon, announced, servingOtherThan, startDaemon } from './daemon-support';
import { daemonProcesses, daemonStatus } from '../support/daemon-processes';
import { blocklisted, expectCleanFio, lockAddresses, whileWriting } from './rbd-checks';
import {
  BLK_CLI,
  kernelLogFromNow,
  requireVduse,
  scratchDir,
  sh,
  startVerifiedFio,
  waitFor,
  TAKEOVER_TIMEOUT_MS,
} from './support';

const MiB = 1024 * 1024;
const KILLS = 2;

describe('one device daemon serves RBD images and image files side by side', function () {
  this.timeout(1_800_000);
  const ceph = useCephCluster();
  let root: string;
  let stateDir: string;
  let daemon: RunningDaemon;
  const figures: Record<string, unknown> = {};

  before(async () => {
    requireVduse();
    root = scratchDir('daemon-rbd');
    stateDir = join(root, 'state');
    daemon = startDaemon(BLK_CLI, stateDir, ['--keep-standby']);
    await waitFor('the daemon to serve', () => announced(daemon.output(), 'daemon').length === 1, 120_000);
  });

  after(async function () {
    if (process.env.VDUSE_CSI_OUT) {
      writeFileSync(
        join(process.env.VDUSE_CSI_OUT, 'daemon-rbd-figures.json'),
        JSON.stringify(figures, null, 2),
      );
      if (this.currentTest?.state === 'failed')
        writeFileSync(join(process.env.VDUSE_CSI_OUT, `daemon-rbd-${Date.now()}.log`), daemon.output());
    }
    for (const name of ['dr-rbd', 'dr-file'])
      await callDaemon(stateDir, { op: 'remove', name }).catch(() => undefined);
    for (const pid of daemonProcesses(stateDir)) process.kill(pid, 'SIGKILL');
    sh(`rbd -c ${ceph.conf} rm ${ceph.pool}/daemon-image >/dev/null 2>&1 || true`);
  });

  it(`${KILLS} SIGKILLs under verified I/O: the standby fences the dead daemon's RBD client, takes both devices over, no I/O error`, async () => {
    const kernelLog = kernelLogFromNow('daemon-rbd');
    const shape = { queues: 2, queueSize: 128, blockSize: 512, readOnly: false, keepAllocation: false };
    const spec = `${ceph.pool}/daemon-image`;
    const rbd = await callDaemon(stateDir, {
      op: 'add',
      device: {
        ...shape,
        name: 'dr-rbd',
        sizeBytes: 64 * MiB,
        backend: {
          kind: 'rbd',
          location: { pool: ceph.pool, image: 'daemon-image' },
          client: { conf: ceph.conf, user: ceph.user, keyring: ceph.userKeyring },
        },
      },
    });
    const file = await callDaemon(stateDir, {
      op: 'add',
      device: {
        ...shape,
        name: 'dr-file',
        sizeBytes: 64 * MiB,
        backend: { kind: 'file', path: join(root, 'file.img') },
      },
    });
    assert.equal(rbd.pid, file.pid, 'one process serves both');
    await waitFor(
      'the standby',
      () => announced(daemon.output(), 'standby').length === 1,
      TAKEOVER_TIMEOUT_MS,
    );

    const rbdFio = startVerifiedFio({ filename: String(rbd.path) }, 24);
    const fileFio = startVerifiedFio({ filename: String(file.path) }, 24);
    const holders: string[] = [];
    for (let kill = 0; kill < KILLS; kill++) {
      await whileWriting(String(rbd.path));
      const live = (await daemonStatus(stateDir))!;
      const [holder] = lockAddresses(ceph.conf, spec);
      assert.ok(holder, 'the live daemon holds the image lock');
      holders.push(holder);
      const standbys = announced(daemon.output(), 'standby').length;
      process.kill(live.pid, 'SIGKILL');
      await servingOtherThan(stateDir, live.pid, 2, daemon);
      const [successor] = lockAddresses(ceph.conf, spec);
      assert.ok(successor && successor !== holder, `the lock moved from ${holder} to the successor`);
      await waitFor(
        'a new standby',
        () => announced(daemon.output(), 'standby').length > standbys,
        TAKEOVER_TIMEOUT_MS,
      );
    }
    figures.longestStallMsRbd = await expectCleanFio(rbdFio);
    figures.longestStallMsFile = await expectCleanFio(fileFio);
    const fenced = blocklisted(ceph.conf);
    for (const holder of holders)
      assert.ok(fenced.includes(holder), `the dead client ${holder} is fenced:\n${fenced}`);
    assert.doesNotMatch(kernelLog(), /I\/O error|blk_update_request/);

    for (const name of ['dr-rbd', 'dr-file'])
      assert.equal((await callDaemon(stateDir, { op: 'remove', name })).removed, true);
    assert.deepEqual(lockAddresses(ceph.conf, spec), [], 'removing the device releases the lock');
  });
});

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { adminSocketPath, callAdmin } from '../../src/daemon/admin-socket';
import { useCephCluster } from '../support/ceph-cluster';
import {
  assertNoDevices,
  BLK_CLI,
  kernelLogFromNow,
  requireVduse,
  runCli,
  scratchDir,
  serve,
  ServedDevice,
  sh,
  startVerifiedFio,
  waitFor,
  TAKEOVER_TIMEOUT_MS,
} from './support';
import { blocklisted, expectCleanFio, lockAddresses, whileWriting } from './rbd-checks';

const MiB = 1024 * 1024;

async function serverPid(stateDir: string, name: string): Promise<number> {
  const status = await callAdmin(adminSocketPath(stateDir, name), { op: 'status' });
  return status.pid as number;
}

describe('vduse-csi blk serve --rbd on the real kernel and a real Ceph cluster', function () {
  this.timeout(1_800_000);
  const ceph = useCephCluster();
  let root: string;
  let stateDir: string;
  const served: ServedDevice[] = [];
  const figures: Record<string, number> = {};

  const clientArgs = (): string[] => [
    '--ceph-conf',
    ceph.conf,
    '--id',
    ceph.user,
    '--keyring',
    ceph.userKeyring,
    '--state-dir',
    stateDir,
  ];
  const serveRbd = async (image: string, name: string, extra: string[] = []): Promise<ServedDevice> => {
    const device = await serve(['--rbd', `${ceph.pool}/${image}`, '--name', name, ...clientArgs(), ...extra]);
    served.push(device);
    return device;
  };

  before(() => {
    requireVduse();
    root = scratchDir('rbd-serve');
    stateDir = join(root, 'state');
  });
  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && process.env.VDUSE_CSI_OUT) {
      const logs = served.map((device) => `--- ${device.name}\n${device.stderr()}`).join('\n');
      writeFileSync(join(process.env.VDUSE_CSI_OUT, `rbd-serve-${Date.now()}.log`), logs);
    }
    for (const device of served.splice(0)) {
      await device.stop();
      // After a kill a standby of the device serves it, not the process this test started.
      if (existsSync(`/dev/vduse/${device.name}`)) {
        process.kill(await serverPid(stateDir, device.name), 'SIGTERM');
        await waitFor(
          `${device.name} removed`,
          () => !existsSync(`/dev/vduse/${device.name}`),
          TAKEOVER_TIMEOUT_MS,
        );
      }
    }
  });
  after(() => {
    if (process.env.VDUSE_CSI_OUT)
      writeFileSync(join(process.env.VDUSE_CSI_OUT, 'rbd-figures.json'), JSON.stringify(figures, null, 2));
    assertNoDevices();
  });

  it('serves an image: what the device wrote is what rbd export reads, and a new server keeps the files', async () => {
    const spec = `${ceph.pool}/plain`;
    const first = await serveRbd('plain', 'rbd-plain', ['--size', String(64 * MiB)]);
    sh(
      `head -c ${8 * MiB} /dev/urandom > ${root}/pattern && dd if=${root}/pattern of=${first.path} bs=1M oflag=direct status=none`,
    );
    assert.equal(await first.stop(), 0);
    sh(`rbd -c ${ceph.conf} export ${spec} ${root}/exported.img 2>/dev/null`);
    assert.equal(
      sh(`head -c ${8 * MiB} ${root}/exported.img | sha256sum`),
      sh(`sha256sum < ${root}/pattern`),
      'the image holds what was written through the device',
    );
    assert.deepEqual(lockAddresses(ceph.conf, spec), [], 'a stopped server releases the lock');

    const second = await serveRbd('plain', 'rbd-plain');
    const mountPoint = join(root, 'mnt');
    mkdirSync(mountPoint);
    sh(
      `mkfs.ext4 -q ${second.path} && mount ${second.path} ${mountPoint} && echo kept > ${mountPoint}/file && umount ${mountPoint}`,
    );
    assert.equal(await second.stop(), 0);
    const third = await serveRbd('plain', 'rbd-plain');
    sh(`mount ${third.path} ${mountPoint}`);
    try {
      assert.equal(readFileSync(join(mountPoint, 'file'), 'utf8'), 'kept\n');
    } finally {
      sh(`umount ${mountPoint}`);
    }
  });

  it('refuses an image whose lock a live client holds, naming the holder, and leaves no device', async () => {
    const holder = await serveRbd('held', 'rbd-held', ['--size', String(16 * MiB)]);
    const holderAddress = lockAddresses(ceph.conf, `${ceph.pool}/held`);
    assert.equal(holderAddress.length, 1);
    const second = runCli([
      'blk',
      'serve',
      '--rbd',
      `${ceph.pool}/held`,
      '--name',
      'rbd-held2',
      ...clientArgs(),
    ]);
    assert.notEqual(second.code, 0);
    assert.match(second.stdout + second.stderr, /lock/);
    assert.ok(
      (second.stdout + second.stderr).includes(holderAddress[0]!.split('/')[0]!),
      `the refusal names the holder ${holderAddress[0]}:\n${second.stdout}${second.stderr}`,
    );
    assert.deepEqual(
      lockAddresses(ceph.conf, `${ceph.pool}/held`),
      holderAddress,
      'the holder keeps its lock',
    );
    await holder.stop();
  });

  it('answers a wrong key, a missing pool and a missing image with clear errors', () => {
    const badKeyring = join(root, 'bad.keyring');
    writeFileSync(badKeyring, `[client.${ceph.user}]\n\tkey = AQBbvEFmAAAAABAAzuqOZyXJ1Y0nL8V9l5a2aQ==\n`);
    const wrongKey = runCli([
      'blk',
      'serve',
      '--rbd',
      `${ceph.pool}/plain`,
      '--name',
      'rbd-bad',
      ...clientArgs(),
      '--keyring',
      badKeyring,
    ]);
    assert.notEqual(wrongKey.code, 0);
    assert.match(wrongKey.stdout + wrongKey.stderr, /EACCES \(the cluster refused the credentials/);
    assert.doesNotMatch(wrongKey.stdout + wrongKey.stderr, /AQBbvEFm/, 'the key never reaches an error');
    const noPool = runCli(['blk', 'serve', '--rbd', 'nopool/plain', '--name', 'rbd-bad', ...clientArgs()]);
    assert.notEqual(noPool.code, 0);
    assert.match(noPool.stdout + noPool.stderr, /nopool/);
    const noImage = runCli([
      'blk',
      'serve',
      '--rbd',
      `${ceph.pool}/missing`,
      '--name',
      'rbd-bad',
      ...clientArgs(),
    ]);
    assert.notEqual(noImage.code, 0);
    assert.match(noImage.stdout + noImage.stderr, /missing/);
    assertNoDevices();
  });

  it('3 SIGKILLs under verified writes cost a pause, never an error: the standby fences the dead server', async () => {
    const spec = `${ceph.pool}/kill`;
    const kernelLog = kernelLogFromNow('rbd kills');
    const device = await serveRbd('kill', 'rbd-kill', ['--size', String(64 * MiB), '--keep-standby']);
    const fio = startVerifiedFio({ filename: device.path }, 32);
    const killed: string[] = [];
    for (let kill = 1; kill <= 3; kill++) {
      await waitFor(`standby number ${kill}`, () => countStandbys(device) >= kill, TAKEOVER_TIMEOUT_MS);
      await whileWriting(device.path);
      killed.push(...lockAddresses(ceph.conf, spec));
      process.kill(await serverPid(stateDir, 'rbd-kill'), 'SIGKILL');
      await waitFor(
        `the standby to take the lock after kill ${kill}`,
        () => {
          const owners = lockAddresses(ceph.conf, spec);
          return owners.length === 1 && !killed.includes(owners[0]!);
        },
        TAKEOVER_TIMEOUT_MS,
      );
    }
    figures.longestStallMsOver3Kills = await expectCleanFio(fio);
    const fenced = blocklisted(ceph.conf);
    for (const address of killed)
      assert.ok(fenced.includes(address), `${address} is blocklisted:\n${fenced}`);
    assert.doesNotMatch(kernelLog(), /I\/O error|blk_update_request/);
  });

  it('a server started after a SIGKILL (no standby) takes the device over, fencing the dead one', async () => {
    const spec = `${ceph.pool}/cold`;
    const kernelLog = kernelLogFromNow('rbd cold restart');
    const first = await serveRbd('cold', 'rbd-cold', ['--size', String(64 * MiB)]);
    const fio = startVerifiedFio({ filename: first.path }, 32);
    await whileWriting(first.path);
    const dead = lockAddresses(ceph.conf, spec);
    first.process.kill('SIGKILL');
    const second = await serveRbd('cold', 'rbd-cold');
    assert.equal(second.path, first.path, 'the same block device, never removed');
    figures.longestStallMsColdRestart = await expectCleanFio(fio);
    const owners = lockAddresses(ceph.conf, spec);
    assert.equal(owners.length, 1);
    assert.notDeepEqual(owners, dead);
    assert.ok(blocklisted(ceph.conf).includes(dead[0]!), `${dead[0]} is blocklisted`);
    assert.doesNotMatch(kernelLog(), /I\/O error|blk_update_request/);
  });

  it('hands the device over to a standby without fencing: the old server releases the lock', async () => {
    const spec = `${ceph.pool}/handover`;
    const device = await serveRbd('handover', 'rbd-handover', ['--size', String(64 * MiB)]);
    const standby = spawn(
      process.execPath,
      [BLK_CLI, 'blk', 'serve', '--rbd', spec, '--name', 'rbd-handover', ...clientArgs(), '--standby'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let standbyOut = '';
    standby.stdout.setEncoding('utf8').on('data', (chunk: string) => (standbyOut += chunk));
    try {
      await waitFor('the standby warm', () => standbyOut.includes('{"standby":'), TAKEOVER_TIMEOUT_MS);
      const old = lockAddresses(ceph.conf, spec);
      const fio = startVerifiedFio({ filename: device.path }, 32);
      await whileWriting(device.path);
      assert.equal(runCli(['blk', 'handover', '--name', 'rbd-handover', '--state-dir', stateDir]).code, 0);
      await waitFor(
        'the old server to exit once it let go',
        () => device.process.exitCode !== null,
        TAKEOVER_TIMEOUT_MS,
      );
      assert.equal(device.process.exitCode, 0);
      await waitFor('the standby serving', () => standbyOut.includes('"path"'), TAKEOVER_TIMEOUT_MS);
      figures.longestStallMsHandOver = await expectCleanFio(fio);
      const owners = lockAddresses(ceph.conf, spec);
      assert.equal(owners.length, 1);
      assert.notDeepEqual(owners, old);
      assert.ok(!blocklisted(ceph.conf).includes(old[0]!), 'a server that handed over is not fenced');
    } finally {
      standby.kill('SIGTERM');
      await waitFor('the device removed', () => !existsSync('/dev/vduse/rbd-handover'), TAKEOVER_TIMEOUT_MS);
    }
  });
});

/** Standbys that announced themselves on the chain's shared stdout. */
function countStandbys(device: ServedDevice): number {
  return device.stdout().split('{"standby":').length - 1;
}

import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { CsiHarness } from '../support/csi-harness';
import { DaemonStatus, daemonProcesses, daemonStatus, stopDaemons } from '../support/daemon-processes';
import { assertNothingLeft, createPublished, removePublished } from '../e2e/kubelet-flow';
import { CLI, kernelLogFromNow, requireVduse, scratchDir, sh, waitFor } from './support';
import { fioLoop, readPasses } from './fio-loop';

/** Whether a daemon process of `stateDir` other than `servingPid` has announced itself a warm standby. */
function hasWarmStandby(stateDir: string, servingPid: number): boolean {
  const logPath = join(stateDir, 'logs', 'daemon.log');
  const lines = existsSync(logPath) ? readFileSync(logPath, 'utf8').split('\n') : [];
  return daemonProcesses(stateDir).some(
    (pid) => pid !== servingPid && lines.includes(JSON.stringify({ standby: 'daemon', pid })),
  );
}

/** The node's device daemon, waited for while none answers (one is taking over, say). */
async function liveDaemon(stateDir: string): Promise<DaemonStatus> {
  const deadline = Date.now() + 600_000;
  for (;;) {
    const status = await daemonStatus(stateDir);
    if (status) return status;
    assert.ok(Date.now() < deadline, `no device daemon answers for ${stateDir}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('zero-error restarts of the device daemon (SIGKILL, supervised restart)', function () {
  this.timeout(1_800_000);
  let csi: CsiHarness;
  const figures: Record<string, unknown> = {};

  before(async () => {
    requireVduse();
    csi = await CsiHarness.start({ cli: [process.execPath, CLI], root: scratchDir('restart'), mode: 'all' });
  });
  afterEach(function () {
    // The device servers' logs tell what a failed restart went through.
    if (this.currentTest?.state === 'failed' && process.env.VDUSE_CSI_OUT)
      sh(`cp -r ${csi.options.stateDir}/logs ${process.env.VDUSE_CSI_OUT}/server-logs-${Date.now()} || true`);
  });
  after(async () => {
    if (process.env.VDUSE_CSI_OUT)
      writeFileSync(
        join(process.env.VDUSE_CSI_OUT, 'restart-figures.json'),
        JSON.stringify(figures, null, 2),
      );
    await csi?.stop();
  });

  it('reference: qemu-storage-daemon vduse-blk killed 5 times and restarted, same fio load (figures only)', async () => {
    const root = scratchDir('qemu-restart');
    const image = join(root, 'qemu.img');
    const mountPoint = join(root, 'mnt');
    mkdirSync(mountPoint);
    sh(`truncate -s 512M ${image}`);
    const args = [
      '--blockdev',
      `file,node-name=f,filename=${image}`,
      '--export',
      'vduse-blk,id=e,node-name=f,name=qemu-restart,num-queues=2,writable=on',
    ];
    const startDaemon = (): ChildProcess =>
      spawn('qemu-storage-daemon', args, { stdio: 'ignore', detached: true });
    let daemon = startDaemon();
    await waitFor('/dev/vduse/qemu-restart', () => existsSync('/dev/vduse/qemu-restart'), 60_000);
    sh('vdpa dev add name qemu-restart mgmtdev vduse');
    await waitFor(
      'its block device',
      () => sh('ls /sys/bus/vdpa/devices/qemu-restart/virtio*/block 2>/dev/null || true').trim() !== '',
      60_000,
    );
    const device = `/dev/${sh('ls /sys/bus/vdpa/devices/qemu-restart/virtio*/block').trim()}`;
    sh(`mkfs.ext4 -q -F ${device} && mount ${device} ${mountPoint}`);
    const out = scratchDir('fio-qemu');
    const stopFile = join(out, 'stop');
    const fio = fioLoop(mountPoint, false, out, stopFile);
    const fioDone = new Promise<number | null>((resolve) => fio.once('exit', resolve));
    const killToServingMs: number[] = [];
    for (let kill = 0; kill < 5; kill++) {
      await new Promise((resolve) => setTimeout(resolve, 1000 + Math.random() * 2000));
      const killedAt = performance.now();
      const exited = new Promise((resolve) => daemon.once('exit', resolve));
      daemon.kill('SIGKILL');
      await exited;
      daemon = startDaemon();
      // qemu-storage-daemon gives no readiness signal for a reconnect: count until it holds the device.
      await waitFor(
        'qemu to reopen the device',
        () =>
          sh(`ls -l /proc/${daemon.pid}/fd 2>/dev/null | grep -c vduse/qemu-restart || true`).trim() !== '0',
        60_000,
      );
      killToServingMs.push(performance.now() - killedAt);
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
    writeFileSync(stopFile, '');
    const code = await fioDone;
    const passes = readPasses(out);
    figures.qemuReference = {
      kills: 5,
      fioExit: code,
      passesWithErrors: passes.filter((pass) => pass.errors !== 0).length,
      killToServingMs,
      longestStallMs: Math.max(...passes.map((pass) => pass.maxLatencyMs)),
      fiveLongestPassStallsMs: passes
        .map((pass) => pass.maxLatencyMs)
        .sort((a, b) => b - a)
        .slice(0, 5),
    };
    sh(`umount ${mountPoint}; vdpa dev del qemu-restart`);
    const exited = new Promise((resolve) => daemon.once('exit', resolve));
    daemon.kill('SIGTERM');
    await exited;
  });

  it('upgrading the plugin hands live volumes to the new build: the old daemon exits, I/O never fails', async () => {
    const published = await createPublished(csi, 'ext4', 'handover');
    const { target } = published;
    const stateDir = csi.options.stateDir;
    const old = await liveDaemon(stateDir);

    // The "newer build": the bundle installed elsewhere and changed, as an upgrade would be. It goes
    // to the scratch directory (the checkout may be read-only in the VM); koffi comes from NODE_PATH.
    const root = resolve(dirname(CLI), '..', '..');
    const installed = scratchDir('next-build');
    const next = join(installed, 'dist', 'bundle');
    sh(
      `mkdir -p ${next} && cp -r ${dirname(CLI)}/. ${next} && cp -r ${root}/proto ${installed}/ && ` +
        `echo '// next build' >> ${next}/vduse-csi.js && echo '// next build' >> ${next}/vduse-blk.js`,
    );
    process.env.NODE_PATH = join(root, 'node_modules');
    const out = scratchDir('fio-handover');
    const stopFile = join(out, 'stop');
    const fio = fioLoop(target, false, out, stopFile);
    const fioDone = new Promise<number | null>((resolve) => fio.once('exit', resolve));
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const upgradedAt = performance.now();
    await csi.restart('SIGTERM', [process.execPath, join(next, 'vduse-csi.js')]);
    let current = old;
    while (current.build === old.build) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      current = (await daemonStatus(stateDir)) ?? current;
      assert.ok(performance.now() - upgradedAt < 600_000, 'the device was not handed over in time');
    }
    figures.upgrade = { pluginRestartToNewDaemonMs: performance.now() - upgradedAt };
    assert.notEqual(current.pid, old.pid);
    assert.match(readFileSync(`/proc/${current.pid}/cmdline`, 'utf8'), /next-build/);
    assert.deepEqual(
      current.devices.map((device) => device.name),
      [published.volumeId],
    );
    await waitFor('the old daemon to exit', () => !daemonProcesses(stateDir).includes(old.pid), 60_000);
    await new Promise((resolve) => setTimeout(resolve, 2000));
    writeFileSync(stopFile, '');
    assert.equal(await fioDone, 0);
    const passes = readPasses(out);
    assert.deepEqual(
      passes.filter((pass) => pass.errors !== 0),
      [],
    );
    (figures.upgrade as Record<string, unknown>).longestStallMs = Math.max(
      ...passes.map((pass) => pass.maxLatencyMs),
    );

    await removePublished(csi, published);
    assertNothingLeft(csi);
    await csi.restart('SIGTERM', [process.execPath, CLI]);
    // The newer build's daemon outlives the volume: it goes before its files do (it starts a
    // thread from them for each device added), and the next stage starts one of this build.
    await stopDaemons(stateDir);
    sh(`rm -rf ${installed}`);
  });

  // One daemon serves both volumes, so each of the 5 kills interrupts verified writes on a mounted
  // ext4 volume and on a raw Block volume at once.
  it('ext4 and Block: 5 SIGKILLs of the daemon during verified writes on both cost a pause, never an error', async () => {
    const kernelLog = kernelLogFromNow('restart-ext4-block');
    const loads = [];
    for (const kind of ['ext4', 'block'] as const) {
      const published = await createPublished(csi, kind, `restart-${kind}`);
      const { target } = published;
      // Acknowledged (fsync'ed) data written before the kills must be there afterwards.
      const marker =
        kind === 'block'
          ? 'dd of=' + target + ' bs=1M count=1 iflag=fullblock oflag=direct conv=fsync status=none'
          : `cat > ${target}/marker && sync -f ${target}/marker`;
      const markerSum = sh(
        `head -c 1048576 /dev/urandom | tee /tmp/marker-${kind} | ${marker}; sha256sum < /tmp/marker-${kind} | cut -d' ' -f1`,
      ).trim();
      const out = scratchDir(`fio-${kind}`);
      const stopFile = join(out, 'stop');
      const fio = fioLoop(target, kind === 'block', out, stopFile);
      let fioOutput = '';
      fio.stdout!.setEncoding('utf8').on('data', (chunk: string) => (fioOutput += chunk));
      fio.stderr!.setEncoding('utf8').on('data', (chunk: string) => (fioOutput += chunk));
      const fioDone = new Promise<number | null>((resolve) => fio.once('exit', resolve));
      loads.push({ kind, published, markerSum, out, stopFile, fioDone, output: () => fioOutput });
    }

    const stateDir = csi.options.stateDir;
    const ids = loads.map(({ published }) => published.volumeId);
    const killToServingMs: number[] = [];
    for (let kill = 0; kill < 5; kill++) {
      // Each daemon starts a standby once it serves; under the rig's emulation loading one takes
      // tens of seconds (a few hundred ms on real hardware), so wait for it, then kill at random.
      const { pid } = await liveDaemon(stateDir);
      await waitFor('a warm standby', () => hasWarmStandby(stateDir, pid), 300_000);
      await new Promise((resolve) => setTimeout(resolve, 1000 + Math.random() * 2000));
      const killedAt = performance.now();
      process.kill(pid, 'SIGKILL');
      for (;;) {
        const replacement = await daemonStatus(stateDir);
        const serving = replacement?.devices.map((device) => device.name) ?? [];
        if (replacement && replacement.pid !== pid && ids.every((id) => serving.includes(id))) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      killToServingMs.push(performance.now() - killedAt);
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));

    for (const { kind, published, markerSum, out, stopFile, fioDone, output } of loads) {
      writeFileSync(stopFile, '');
      const code = await fioDone;
      assert.equal(code, 0, output());
      const passes = readPasses(out);
      assert.ok(passes.length >= 1, `fio completed a pass on ${kind}`);
      assert.deepEqual(
        passes.filter((pass) => pass.errors !== 0),
        [],
        kind,
      );
      const { target } = published;
      const readBack =
        kind === 'block' ? `dd if=${target} bs=1M count=1 iflag=direct status=none` : `cat ${target}/marker`;
      assert.equal(
        sh(`${readBack} | sha256sum | cut -d' ' -f1`).trim(),
        markerSum,
        `fsynced data on ${kind} survives the kills`,
      );
      const latencies = passes.map((pass) => pass.maxLatencyMs).sort((a, b) => b - a);
      figures[kind] = {
        kills: 5,
        fioPasses: passes.length,
        killToServingMs,
        longestStallMs: latencies[0],
        fiveLongestPassStallsMs: latencies.slice(0, 5),
      };
      await removePublished(csi, published);
    }
    assertNothingLeft(csi);
    assert.doesNotMatch(kernelLog(), /blk_update_request|I\/O error|Buffer I\/O/i);
  });
});

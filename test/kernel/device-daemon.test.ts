import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { callDaemon } from '../../src/daemon/control-client';
import { LineRequestError } from '../../src/daemon/json-line-socket';
import { fioLoop, readPasses } from './fio-loop';
import {
  BLK_CLI,
  requireVduse,
  scratchDir,
  sh,
  vdpaDevices,
  vduseDevices,
  waitFor,
  TAKEOVER_TIMEOUT_MS,
} from './support';
import { RunningDaemon, announced, servingOtherThan, startDaemon } from './daemon-support';
import { daemonProcesses, daemonStatus, statusField, threadNamesOf } from '../support/daemon-processes';
import { Sample, scrape, valueOf } from '../support/prometheus-text';
import { eventually } from '../support/eventually';

const VOLUMES = 16;
const FILESYSTEM_VOLUMES = 4;
const IMAGE_BYTES = 128 << 20;
const KILLS = 5;
/** Add/remove cycles counted for leaks (VDUSE_CSI_DAEMON_CYCLES; each takes seconds under emulation). */
const CYCLES = Number(process.env.VDUSE_CSI_DAEMON_CYCLES ?? 40);

/** When the first log line with `message` at or after `sinceMs` was written (NaN if none). */
function loggedAfter(output: string, message: string, sinceMs: number): number {
  for (const line of output.split('\n')) {
    if (!line.includes(`"message":${JSON.stringify(message)}`)) continue;
    const at = Date.parse((JSON.parse(line) as { timestamp: string }).timestamp);
    if (at >= sinceMs) return at;
  }
  return NaN;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function pssKiB(pid: number): number {
  return statusField(pid, 'Pss', 'smaps_rollup');
}

describe('one device daemon serves every volume of a node', function () {
  this.timeout(3_600_000);
  const figures: Record<string, unknown> = {};
  let root: string;
  let stateDir: string;
  let daemon: RunningDaemon;
  /** The daemon of the newer build, serving from the hand-over on. */
  let newBuild: RunningDaemon | undefined;
  const names = Array.from({ length: VOLUMES }, (_, index) => `dmn-${index}`);
  const paths = new Map<string, string>();
  const mounts = new Map<string, string>();

  /** Runs verified fio loops on every volume while `action` runs; asserts no pass saw an error. */
  async function underVerifiedLoad(label: string, action: () => Promise<void>): Promise<number> {
    const out = scratchDir(`fio-${label}`);
    const stopFile = join(out, 'stop');
    const loops = names.map((name) => {
      const directory = join(out, name);
      mkdirSync(directory);
      const mount = mounts.get(name);
      const loop = fioLoop(mount ?? paths.get(name)!, mount === undefined, directory, stopFile, 8);
      let output = '';
      loop.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
      return {
        name,
        directory,
        done: new Promise<{ code: number | null; output: string }>((done) =>
          loop.once('exit', (code) => done({ code, output })),
        ),
      };
    });
    // Every loop is under way (its first pass running) before the action.
    await waitFor(
      'fio on every volume',
      () => loops.every((loop) => existsSync(join(loop.directory, 'fio-1.json'))),
      TAKEOVER_TIMEOUT_MS,
    );
    await action();
    writeFileSync(stopFile, '');
    let longestStallMs = 0;
    for (const loop of loops) {
      const { code, output } = await loop.done;
      assert.equal(code, 0, `fio on ${loop.name} failed: ${output}`);
      const passes = readPasses(loop.directory);
      assert.ok(passes.length > 0, `fio on ${loop.name} completed no pass`);
      assert.deepEqual(
        passes.filter((pass) => pass.errors !== 0),
        [],
        `fio on ${loop.name}`,
      );
      longestStallMs = Math.max(longestStallMs, ...passes.map((pass) => pass.maxLatencyMs));
    }
    return longestStallMs;
  }

  before(async () => {
    requireVduse();
    root = scratchDir('device-daemon');
    stateDir = join(root, 'state');
    daemon = startDaemon(BLK_CLI, stateDir, [
      ...['--keep-standby', '--copy-dir', root, '--metrics-address', '127.0.0.1:0'],
    ]);
    await waitFor('the daemon to serve', () => announced(daemon.output(), 'daemon').length === 1, 120_000);
  });

  after(async function () {
    if (process.env.VDUSE_CSI_OUT) {
      writeFileSync(join(process.env.VDUSE_CSI_OUT, 'daemon-figures.json'), JSON.stringify(figures, null, 2));
      if (this.currentTest?.state === 'failed')
        writeFileSync(join(process.env.VDUSE_CSI_OUT, `daemon-${Date.now()}.log`), daemon?.output() ?? '');
    }
    for (const mount of mounts.values()) sh(`umount ${mount} 2>/dev/null || true`);
    for (const name of names) await callDaemon(stateDir, { op: 'remove', name }).catch(() => undefined);
    for (const pid of daemonProcesses(stateDir)) process.kill(pid, 'SIGKILL');
  });

  it(`serves ${VOLUMES} volumes added at once, ${FILESYSTEM_VOLUMES} of them ext4, and refuses bad requests`, async () => {
    const first = await daemonStatus(stateDir);
    const added = await Promise.all(
      names.map((name) => {
        const image = join(root, `${name}.img`);
        return callDaemon(stateDir, {
          op: 'add',
          device: {
            name,
            backend: { kind: 'file', path: image },
            sizeBytes: IMAGE_BYTES,
            queues: 2,
            queueSize: 128,
            blockSize: 512,
            readOnly: false,
            keepAllocation: false,
          },
        });
      }),
    );
    for (const [index, reply] of added.entries()) {
      assert.equal(reply.pid, first!.pid, 'every device is served by the one daemon');
      paths.set(names[index]!, String(reply.path));
    }
    assert.equal((await daemonStatus(stateDir))!.devices.length, VOLUMES);
    // Adding a device again answers its status; another image under its name is refused.
    const again = await callDaemon(stateDir, {
      op: 'add',
      device: { ...deviceOf(names[0]!), backend: { kind: 'file', path: join(root, `${names[0]}.img`) } },
    });
    assert.equal(again.path, paths.get(names[0]!));
    await assert.rejects(
      callDaemon(stateDir, {
        op: 'add',
        device: { ...deviceOf(names[0]!), backend: { kind: 'file', path: join(root, 'other.img') } },
      }),
      (error: LineRequestError) => error.code === 'in-use' && /serves .*dmn-0\.img/.test(error.message),
    );
    await assert.rejects(
      callDaemon(stateDir, { op: 'resize', name: 'nothing-here', bytes: IMAGE_BYTES }),
      (error: LineRequestError) => error.code === 'not-found',
    );
    await assert.rejects(
      callDaemon(stateDir, {
        op: 'add',
        device: { ...deviceOf('x/../y'), backend: { kind: 'file', path: '/x' } },
      }),
      (error: LineRequestError) => error.code === 'invalid',
    );
    for (const name of names.slice(0, FILESYSTEM_VOLUMES)) {
      const mount = join(root, `mnt-${name}`);
      mkdirSync(mount);
      sh(`mkfs.ext4 -q -F ${paths.get(name)} && mount ${paths.get(name)} ${mount}`);
      mounts.set(name, mount);
    }
    // Memory of the layout: the daemon and its standby together, per idle volume.
    await waitFor(
      'the standby',
      () => announced(daemon.output(), 'standby').length === 1,
      TAKEOVER_TIMEOUT_MS,
    );
    const standbyPid = announced(daemon.output(), 'standby')[0]!;
    const daemonKiB = pssKiB(first!.pid);
    const standbyKiB = pssKiB(standbyPid);
    figures.memory = {
      volumes: VOLUMES,
      daemonPssMiB: daemonKiB / 1024,
      standbyPssMiB: standbyKiB / 1024,
      perVolumePssMiB: (daemonKiB + standbyKiB) / 1024 / VOLUMES,
    };
  });

  /** The serving daemon's metrics (each daemon binds a port of its own: the last one logged). */
  async function daemonMetrics(): Promise<Sample[]> {
    const ports = daemon
      .output()
      .split('\n')
      .filter((line) => line.includes('"message":"metrics endpoint listening"'))
      .map((line) => (JSON.parse(line) as { port: number }).port);
    return (await scrape(`http://127.0.0.1:${ports.at(-1)}/metrics`)).samples;
  }

  it("counts each device's requests, bytes, latencies and pauses where the daemon's metrics show them", async () => {
    const name = names[FILESYSTEM_VOLUMES]!;
    const device = paths.get(name)!;
    const counted = (samples: Sample[], metric: string, labels: Record<string, string>): number =>
      valueOf(samples, `vduse_csi_device_${metric}`, { device: name, ...labels });
    const before = await daemonMetrics();
    sh(`dd if=/dev/urandom of=${device} bs=1M count=8 seek=16 oflag=direct status=none`);
    sh(`dd if=${device} of=/dev/null bs=1M count=4 skip=16 iflag=direct status=none`);
    const after = await daemonMetrics();
    const delta = (metric: string, labels: Record<string, string>): number =>
      counted(after, metric, labels) - counted(before, metric, labels);
    // Nothing else writes to the raw device; udev may read it when dd closes it after writing.
    assert.equal(delta('bytes_total', { op: 'write' }), 8 << 20);
    const readBytes = delta('bytes_total', { op: 'read' });
    assert.ok(readBytes >= 4 << 20 && readBytes < 6 << 20, `read ${readBytes} bytes`);
    for (const [op, direction] of [
      ['write', 'write'],
      ['read', 'read'],
    ] as const) {
      const requests = delta('requests_total', { op });
      assert.ok(requests >= 4, `${op}: ${requests} requests`);
      assert.equal(delta('request_duration_seconds_count', { direction }), requests, `${op} timed`);
      assert.equal(delta('request_duration_seconds_bucket', { direction, le: '+Inf' }), requests);
      assert.ok(delta('request_duration_seconds_sum', { direction }) > 0);
      assert.equal(delta('errors_total', { op }), 0);
    }
    assert.equal(counted(after, 'requests_in_flight', {}), 0);
    assert.equal(counted(after, 'paused_seconds_total', {}), 0, 'never paused yet');
    const copy = join(root, `${name}-copy.img`);
    await callDaemon(stateDir, { op: 'copy', name, target: copy });
    rmSync(copy);
    const paused = counted(await daemonMetrics(), 'paused_seconds_total', {});
    assert.ok(paused > 0, `a copy pauses the device: ${paused} s`);
    // What the daemon and its standby cost, each (a standby is there once it announced itself).
    await eventually(async () => {
      const samples = await daemonMetrics();
      for (const role of ['daemon', 'standby']) {
        assert.ok(valueOf(samples, 'vduse_csi_daemon_pss_bytes', { process: role }) > 0, role);
        assert.ok(valueOf(samples, 'vduse_csi_daemon_threads', { process: role }) > 1, role);
      }
    }, 120_000);
  });

  it(`a volume whose storage fails gets I/O errors while the other ${VOLUMES} keep verified I/O without one`, async () => {
    // Its image lives on an 8 MiB tmpfs: writes past that fail (ENOSPC) in the daemon's backend.
    const full = join(root, 'full');
    mkdirSync(full);
    sh(`mount -t tmpfs -o size=8M vduse-csi-full ${full}`);
    try {
      const { pid } = (await daemonStatus(stateDir))!;
      const failing = await callDaemon(stateDir, {
        op: 'add',
        device: {
          ...deviceOf('dmn-full'),
          backend: { kind: 'file', path: join(full, 'image') },
          sizeBytes: 64 << 20,
        },
      });
      const device = String(failing.path);
      const stallMs = await underVerifiedLoad('isolation', async () => {
        assert.throws(
          () => sh(`dd if=/dev/urandom of=${device} bs=1M count=32 oflag=direct status=none`),
          /Input\/output error|No space left/,
        );
        // The failing device still answers what its storage can do.
        sh(`dd if=${device} of=/dev/null bs=1M count=4 iflag=direct status=none`);
      });
      figures.isolation = { longestStallMsOfTheOthers: stallMs };
      // The failed writes are the failing device's own, in its metrics.
      const samples = await daemonMetrics();
      const writeErrors = (device: string): number =>
        valueOf(samples, 'vduse_csi_device_errors_total', { device, op: 'write' });
      assert.ok(writeErrors('dmn-full') > 0, 'the failing device counts its write errors');
      assert.deepEqual(
        names.filter((name) => writeErrors(name) !== 0),
        [],
        'no other device counts one',
      );
      const after = (await daemonStatus(stateDir))!;
      assert.equal(after.pid, pid, 'the daemon did not restart');
      assert.equal(after.devices.length, VOLUMES + 1);
      assert.equal((await callDaemon(stateDir, { op: 'remove', name: 'dmn-full' })).removed, true);
    } finally {
      await callDaemon(stateDir, { op: 'remove', name: 'dmn-full' }).catch(() => undefined);
      sh(`umount ${full}`);
    }
  });

  it(`${KILLS} SIGKILLs of the daemon under verified I/O on all ${VOLUMES} volumes: its standby takes every device over, no I/O error`, async () => {
    const killToServingMs: number[] = [];
    const phasesMs: Array<Record<string, number>> = [];
    figures.kills = {
      longestStallMs: await underVerifiedLoad('kills', async () => {
        for (let kill = 0; kill < KILLS; kill++) {
          const live = (await daemonStatus(stateDir))!;
          const standbys = announced(daemon.output(), 'standby').length;
          await new Promise((done) => setTimeout(done, 1000 + Math.random() * 2000));
          const killedAt = performance.now();
          const killedAtWall = Date.now();
          process.kill(live.pid, 'SIGKILL');
          const next = await servingOtherThan(stateDir, live.pid, VOLUMES, daemon);
          killToServingMs.push(performance.now() - killedAt);
          phasesMs.push({
            toFirstTakeover:
              loggedAfter(daemon.output(), 'taking over a live device', killedAtWall) - killedAtWall,
            toAllTakenOver: loggedAfter(daemon.output(), 'devices taken over', killedAtWall) - killedAtWall,
          });
          assert.equal(next.build, live.build);
          // The successor starts its own standby, which the next kill needs.
          await waitFor(
            'a new standby',
            () => announced(daemon.output(), 'standby').length > standbys,
            TAKEOVER_TIMEOUT_MS,
          );
        }
      }),
      killToServingMs,
      phasesMs,
    };
    for (const name of names) assert.ok(existsSync(`/dev/vduse/${name}`));
    // What the daemon serving now says of its start: every device taken over, and how long it took.
    await eventually(async () => {
      const samples = await daemonMetrics();
      assert.equal(valueOf(samples, 'vduse_csi_daemon_takeover_devices'), VOLUMES);
      assert.ok(valueOf(samples, 'vduse_csi_daemon_takeover_seconds') > 0);
      assert.equal(valueOf(samples, 'vduse_csi_daemon_role', { role: 'serving' }), 1);
    }, TAKEOVER_TIMEOUT_MS);
  });

  it('hands every device over to a daemon of a newer build waiting beside it, under verified I/O', async () => {
    const next = join(scratchDir('next-daemon'), 'bundle');
    sh(
      `mkdir -p ${next} && cp -r ${dirname(BLK_CLI)}/. ${next} && echo '// next build' >> ${next}/vduse-blk.js`,
    );
    process.env.NODE_PATH = join(resolve(dirname(BLK_CLI), '..', '..'), 'node_modules');
    const old = (await daemonStatus(stateDir))!;
    let successor: RunningDaemon | undefined;
    let handOverMs = 0;
    const longestStallMs = await underVerifiedLoad('handover', async () => {
      // With one libuv threadpool thread: nothing the daemon serves may wait on that pool, which
      // blocking calls (koffi's, fs) share; 16 removes at once below used to starve it.
      successor = newBuild = startDaemon(join(next, 'vduse-blk.js'), stateDir, [], {
        ...process.env,
        UV_THREADPOOL_SIZE: '1',
      });
      await waitFor(
        'the new build to stand by',
        () => announced(successor!.output(), 'standby').length === 1,
        TAKEOVER_TIMEOUT_MS,
      );
      const started = performance.now();
      await callDaemon(stateDir, { op: 'handover' });
      const current = await servingOtherThan(stateDir, old.pid, VOLUMES, daemon);
      handOverMs = performance.now() - started;
      assert.notEqual(current.build, old.build);
      assert.match(readFileSync(`/proc/${current.pid}/cmdline`, 'utf8'), /next-daemon/);
    });
    figures.handOver = { longestStallMs, handOverToServingMs: handOverMs };
    // The old daemon and its standby are gone; only the new build runs.
    await waitFor('the old daemons to exit', () => daemonProcesses(stateDir).length === 1, 60_000);
  });

  it('removes every device, all at once: each reset is answered at once, nothing is left behind (devices, records, in-flight logs)', async () => {
    for (const mount of mounts.values()) sh(`umount ${mount}`);
    mounts.clear();
    const logged = newBuild!.output().length;
    const started = performance.now();
    const removed = await Promise.all(names.map((name) => callDaemon(stateDir, { op: 'remove', name })));
    figures.removeAllAtOnceMs = performance.now() - started;
    assert.deepEqual(
      removed.map((answer) => answer.removed),
      names.map(() => true),
    );
    // A reset is answered once the queue threads let go of the device's rings (5 s at most); a
    // queue thread that cannot get a turn of its event loop makes every remove wait it out.
    const slow = newBuild!
      .output()
      .slice(logged)
      .split('\n')
      .filter((line) => line.includes('slow to stop on reset'));
    assert.deepEqual(slow, [], 'resets the queue threads were late to acknowledge');
    // Removing again is not an error.
    assert.equal((await callDaemon(stateDir, { op: 'remove', name: names[0]! })).removed, false);
    assert.deepEqual(
      vduseDevices().filter((name) => name.startsWith('dmn-')),
      [],
    );
    assert.deepEqual(readdirSync(join(stateDir, 'devices')), []);
    assert.deepEqual(readdirSync(join(stateDir, 'inflight')), []);
    // Its threads stay for the next add.
    const threads = threadNamesOf((await daemonStatus(stateDir))!.pid);
    assert.ok(threads.includes('vduse-queue'), threads.join(' '));
  });

  it(`${CYCLES} add/remove cycles beside a served volume leave no fd, thread, device, record or log behind`, async () => {
    const { pid } = (await daemonStatus(stateDir))!;
    const spec = (name: string): Parameters<typeof callDaemon>[1] => ({
      op: 'add',
      device: {
        ...deviceOf(name),
        backend: { kind: 'file', path: join(root, `${name}.img`) },
        sizeBytes: 16 << 20,
      },
    });
    await callDaemon(stateDir, spec('dmn-keep'));
    const addMs: number[] = [];
    const removeMs: number[] = [];
    const cycle = async (): Promise<void> => {
      const adding = performance.now();
      const added = await callDaemon(stateDir, spec('dmn-cycle'));
      addMs.push(performance.now() - adding);
      assert.ok(existsSync(String(added.path)));
      const removing = performance.now();
      assert.equal((await callDaemon(stateDir, { op: 'remove', name: 'dmn-cycle' })).removed, true);
      removeMs.push(performance.now() - removing);
    };
    const counts = (): Record<string, number> => ({
      fds: readdirSync(`/proc/${pid}/fd`).length,
      threads: statusField(pid, 'Threads'),
      vduseDevices: vduseDevices().length,
      vdpaDevices: vdpaDevices().length,
      records: readdirSync(join(stateDir, 'devices')).length,
      inflightLogs: readdirSync(join(stateDir, 'inflight')).length,
    });
    const rssKiB = (): number => statusField(pid, 'VmRSS');
    // The first cycles load what any add needs once (modules, buffers, V8's code).
    for (let warm = 0; warm < 5; warm++) await cycle();
    const before = counts();
    const rssBefore = rssKiB();
    for (let done = 0; done < CYCLES; done++) await cycle();
    assert.deepEqual(counts(), before);
    figures.cycles = {
      cycles: CYCLES,
      ...before,
      rssGrowthMiB: (rssKiB() - rssBefore) / 1024,
      addMedianMs: median(addMs),
      removeMedianMs: median(removeMs),
    };
    assert.equal((await callDaemon(stateDir, { op: 'remove', name: 'dmn-keep' })).removed, true);
  });

  it('SIGTERM ends the daemon; nothing of it keeps running', async () => {
    const live = (await daemonStatus(stateDir))!;
    process.kill(live.pid, 'SIGTERM');
    await waitFor('every daemon process to exit', () => daemonProcesses(stateDir).length === 0, 60_000);
  });
});

function deviceOf(name: string): {
  name: string;
  queues: number;
  queueSize: number;
  blockSize: number;
  readOnly: boolean;
  keepAllocation: boolean;
} {
  return { name, queues: 2, queueSize: 128, blockSize: 512, readOnly: false, keepAllocation: false };
}

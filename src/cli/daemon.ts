import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { log, setLogLevel } from '../log';
import { callDaemon, controlSocketPath } from '../daemon/control-client';
import { validControlRequest } from '../daemon/control-protocol';
import { DaemonLock } from '../daemon/daemon-lock';
import { listenDaemonHealth } from '../daemon/daemon-health';
import { DaemonRole } from '../daemon/daemon-role';
import { writeRoleFile } from '../daemon/role-file';
import { DEFAULT_STATE_DIR, readRecord, recordedDeviceNames } from '../daemon/device-record';
import { LineRequestError, listenJsonLines } from '../daemon/json-line-socket';
import { DaemonMetrics, registerDaemonMetrics } from '../metrics/daemon-metrics';
import { registerDaemonFootprint } from '../metrics/daemon-footprint';
import { serveMetricsWhenFree } from '../metrics/metrics-when-free';
import { processRegistry } from '../metrics/registry';
import { NodeDaemon, NodeDaemonOptions } from '../daemon/node-daemon';
import { spawnSuccessor, stopSuccessor } from '../daemon/successor';
import { takeReleaseNote, writeReleaseNote } from '../daemon/release-note';
import { stopRequests } from './stop-requests';

export const DAEMON_USAGE = `usage:
  vduse-csi daemon run [--state-dir DIR] [--log-level LEVEL] [--copy-dir DIR ...] [--keep-standby]
                       [--health-address HOST:PORT] [--metrics-address HOST:PORT] [--role-file FILE]
                       [--no-request-counters] [--large-io-helpers]
      (serves every device of the node from one process; devices are added and removed through
       DIR/daemon.sock. While another daemon holds DIR, waits warm and takes every device over when
       it is gone. SIGTERM/SIGINT let go of the devices without removing them, for the next daemon;
       --keep-standby keeps a warm standby daemon that takes over if this one dies;
       --health-address serves /healthz and /readyz, ready when serving or standing by warm;
       --metrics-address serves Prometheus metrics on /metrics while this daemon serves;
       --role-file keeps this process's role in FILE: starting, standby, taking-over, serving,
       stopping, stopped; --no-request-counters: the queue threads count no request (no
       per-device request metrics, no failed-request Events), to measure what counting costs;
       --large-io-helpers: image-file requests of 128 KiB or more go to two helper threads per
       queue thread, so several move at once (for data directories on disks that make each read
       wait; under emulation on tmpfs they cost CPU and memory and gained nothing: docs/bench.md))
  vduse-csi daemon status [--state-dir DIR]
  vduse-csi daemon handover [--state-dir DIR]
      (the running daemon lets go of its devices and exits, for the daemon waiting beside it)`;

export async function runDaemonCommand(command: string | undefined, argv: string[]): Promise<boolean> {
  if (command === 'run') await runDaemon(argv);
  else if (command === 'status' || command === 'handover') {
    const { values } = parseArgs({
      args: argv,
      strict: true,
      options: { 'state-dir': { type: 'string', default: DEFAULT_STATE_DIR } },
    });
    process.stdout.write(`${JSON.stringify(await callDaemon(values['state-dir']!, { op: command }))}\n`);
  } else return false;
  return true;
}

async function runDaemon(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      'state-dir': { type: 'string', default: DEFAULT_STATE_DIR },
      'log-level': { type: 'string', default: 'info' },
      'copy-dir': { type: 'string', multiple: true },
      'keep-standby': { type: 'boolean', default: false },
      'health-address': { type: 'string' },
      'metrics-address': { type: 'string' },
      'role-file': { type: 'string' },
      'no-request-counters': { type: 'boolean', default: false },
      'large-io-helpers': { type: 'boolean', default: false },
    },
  });
  const stateDir = resolve(values['state-dir']!);
  const logLevel = values['log-level']!;
  setLogLevel(logLevel);
  const stop = stopRequests();
  const life = new DaemonLife(values['role-file']);
  const health = values['health-address'];
  const probes = health === undefined ? undefined : await listenDaemonHealth(health, () => life.role);
  if (probes) log.info('health endpoint listening', { address: health, port: probes.port });
  try {
    let lock = DaemonLock.tryAcquire(stateDir);
    if (!lock) {
      await warmUp(stateDir, logLevel);
      life.become('standby');
      lock = await DaemonLock.acquire(stateDir, stop.signal);
    }
    if (!lock) {
      log.info('stopped while standing by', { stateDir });
      return;
    }
    const copyDirs = (values['copy-dir'] ?? []).map((dir) => resolve(dir));
    const options = {
      stateDir,
      logLevel,
      copyDirs,
      countRequests: !values['no-request-counters']!,
      largeIoHelpers: values['large-io-helpers']!,
      keepStandby: values['keep-standby']!,
    };
    await serveDevices(options, lock, stop.reason, life, values['metrics-address']);
  } finally {
    life.become('stopped');
    await probes?.close();
  }
}

/** What the probes and metrics read: the process's role (kept in the role file, if any), and its devices once it serves. */
class DaemonLife {
  role: DaemonRole = 'starting';
  daemon?: NodeDaemon;

  constructor(private readonly roleFile: string | undefined) {
    this.become('starting');
  }

  become(role: DaemonRole | 'stopped'): void {
    if (role !== 'stopped') this.role = role;
    if (this.roleFile !== undefined) writeRoleFile(this.roleFile, role);
  }
}

/** Takes every device over, serves until stopped or asked to hand over, then lets go of them. */
async function serveDevices(
  options: NodeDaemonOptions & { keepStandby: boolean },
  lock: DaemonLock,
  stopped: Promise<string>,
  life: DaemonLife,
  metricsAddress: string | undefined,
): Promise<void> {
  const { stateDir, logLevel, copyDirs, countRequests, largeIoHelpers } = options;
  life.become('taking-over');
  const lockedAt = performance.now();
  const daemon = (life.daemon = new NodeDaemon({
    stateDir,
    logLevel,
    copyDirs,
    countRequests,
    largeIoHelpers,
  }));
  const registry = metricsAddress === undefined ? undefined : processRegistry();
  const metrics =
    registry && registerDaemonMetrics(registry, { role: () => life.role, devices: () => daemon.devices() });
  const released = takeReleaseNote(stateDir);
  const takenOver = await daemon.takeOverRecorded();
  const takeoverSeconds = (performance.now() - lockedAt) / 1000;
  daemon.tookOver({ devices: takenOver, seconds: takeoverSeconds, released });
  let handOverRequested!: () => void;
  const handOver = new Promise<string>((done) => (handOverRequested = () => done('hand-over')));
  const control = await listenJsonLines(controlSocketPath(stateDir), (line) =>
    answerObserved(line, daemon, metrics, handOverRequested),
  );
  life.become('serving');
  daemon.prepareForAdds().catch((error: unknown) =>
    log.warn('could not start the device threads ahead of adds', {
      error: String(error),
    }),
  );
  metrics?.tookOver(takenOver.length, takeoverSeconds);
  const serving = new AbortController();
  if (registry)
    serveMetricsWhenFree(metricsAddress!, registry, serving.signal).catch((error: unknown) =>
      log.error('cannot serve metrics', { address: metricsAddress, error: String(error) }),
    );
  process.stdout.write(`${JSON.stringify({ daemon: 'serving', pid: process.pid })}\n`);
  log.info('device daemon serving', { stateDir, pid: process.pid });
  // The standby takes the metrics address over once it serves; the probes and role file stay this
  // process's own (they say how this process fares).
  const successor = options.keepStandby
    ? spawnSuccessor([
        ...['daemon', 'run', '--state-dir', stateDir, '--log-level', logLevel, '--keep-standby'],
        ...copyDirs.flatMap((dir) => ['--copy-dir', dir]),
        ...(countRequests ? [] : ['--no-request-counters']),
        ...(largeIoHelpers ? ['--large-io-helpers'] : []),
        ...(metricsAddress === undefined ? [] : ['--metrics-address', metricsAddress]),
      ])
    : undefined;
  if (registry)
    registerDaemonFootprint(registry, () => [
      { process: 'daemon', pid: process.pid },
      ...(successor?.pid === undefined ? [] : [{ process: 'standby' as const, pid: successor.pid }]),
    ]);
  const reason = await Promise.race([handOver, stopped]);
  life.become('stopping');
  serving.abort();
  log.info('letting go of the devices', { reason });
  // Before the devices go: this daemon's own standby must not be the one that takes them.
  await stopSuccessor(successor);
  control.close();
  await daemon.releaseAll();
  writeReleaseNote(stateDir, { pid: process.pid, reason, atMs: Date.now() });
  lock.release();
}

/** Answers one control line, counting it by op and outcome. */
async function answerObserved(
  line: unknown,
  daemon: NodeDaemon,
  metrics: DaemonMetrics | undefined,
  handOverRequested: () => void,
): Promise<Record<string, unknown>> {
  const started = performance.now();
  // A refused line's op could be anything: it is counted as `invalid`, never as a label of its own.
  let op = 'invalid';
  let outcome = 'ok';
  try {
    const request = validControlRequest(line);
    op = request.op;
    const answer = await daemon.answer(request);
    if (request.op === 'handover') handOverRequested();
    return answer;
  } catch (error) {
    outcome = error instanceof LineRequestError && error.code !== undefined ? error.code : 'error';
    throw error;
  } finally {
    metrics?.request(op, outcome, (performance.now() - started) / 1000);
  }
}

/** Loads what a takeover needs (its queue threads) and says so. */
async function warmUp(stateDir: string, logLevel: string): Promise<void> {
  const queues = recordedDeviceNames(stateDir).map((name) => {
    try {
      return readRecord(stateDir, name)?.geometry.queues ?? 1;
    } catch {
      return 1; // an unusable record is the takeover's to report
    }
  });
  await NodeDaemon.warmStandbyThreads(logLevel, Math.max(1, ...queues));
  process.stdout.write(`${JSON.stringify({ standby: 'daemon', pid: process.pid })}\n`);
  log.info('standing by for the device daemon', { stateDir, pid: process.pid });
}

import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { log, setLogLevel } from '../log';
import { BlkDeviceServer } from '../daemon/blk-device-server';
import { callDaemon, controlSocketPath } from '../daemon/control-client';
import { validControlRequest } from '../daemon/control-protocol';
import { DaemonLock } from '../daemon/daemon-lock';
import { DEFAULT_STATE_DIR, readRecord, recordedDeviceNames } from '../daemon/device-record';
import { listenJsonLines } from '../daemon/json-line-socket';
import { NodeDaemon } from '../daemon/node-daemon';
import { spawnSuccessor, stopSuccessor } from '../daemon/successor';
import { stopRequests } from './stop-requests';

export const DAEMON_USAGE = `usage:
  vduse-csi daemon run [--state-dir DIR] [--log-level LEVEL] [--copy-dir DIR ...] [--keep-standby]
      (serves every device of the node from one process; devices are added and removed through
       DIR/daemon.sock. While another daemon holds DIR, waits warm and takes every device over when
       it is gone. SIGTERM/SIGINT let go of the devices without removing them, for the next daemon;
       --keep-standby keeps a warm standby daemon that takes over if this one dies)
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
    },
  });
  const stateDir = resolve(values['state-dir']!);
  const logLevel = values['log-level']!;
  setLogLevel(logLevel);
  const stop = stopRequests();
  const lock = DaemonLock.tryAcquire(stateDir) ?? (await standBy(stateDir, logLevel, stop.signal));
  if (!lock) {
    log.info('stopped while standing by', { stateDir });
    return;
  }
  const daemon = new NodeDaemon({
    stateDir,
    logLevel,
    copyDirs: (values['copy-dir'] ?? []).map((dir) => resolve(dir)),
  });
  await daemon.takeOverRecorded();
  let handOverRequested!: () => void;
  const handOver = new Promise<string>((done) => (handOverRequested = () => done('hand-over')));
  const control = await listenJsonLines(controlSocketPath(stateDir), async (line) => {
    const request = validControlRequest(line);
    const answer = await daemon.answer(request);
    if (request.op === 'handover') handOverRequested();
    return answer;
  });
  process.stdout.write(`${JSON.stringify({ daemon: 'serving', pid: process.pid })}\n`);
  log.info('device daemon serving', { stateDir, pid: process.pid });
  const successor = values['keep-standby'] ? spawnSuccessor(['daemon', 'run', ...argv]) : undefined;
  const reason = await Promise.race([handOver, stop.reason]);
  log.info('letting go of the devices', { reason });
  // Before the devices go: this daemon's own standby must not be the one that takes them.
  await stopSuccessor(successor);
  control.close();
  await daemon.releaseAll();
  lock.release();
}

/** Waits, warm, until the live daemon of `stateDir` is gone; then holds its lock. */
async function standBy(stateDir: string, logLevel: string, stop: AbortSignal): Promise<DaemonLock | null> {
  const queues = recordedDeviceNames(stateDir).map((name) => {
    try {
      return readRecord(stateDir, name)?.geometry.queues ?? 1;
    } catch {
      return 1; // an unusable record is the takeover's to report
    }
  });
  await BlkDeviceServer.warmThreads(logLevel, Math.max(1, ...queues));
  process.stdout.write(`${JSON.stringify({ standby: 'daemon', pid: process.pid })}\n`);
  log.info('standing by for the device daemon', { stateDir, pid: process.pid });
  return DaemonLock.acquire(stateDir, stop);
}

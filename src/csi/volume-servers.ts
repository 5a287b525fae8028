import { status as grpcStatus } from '@grpc/grpc-js';
import { ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { BackendDescriptor } from '../backend/descriptor';
import { buildId } from '../cli/build-id';
import { callDaemon, controlSocketPath } from '../daemon/control-client';
import { DeviceSpec } from '../daemon/control-protocol';
import { DaemonLock } from '../daemon/daemon-lock';
import { LineRequestError } from '../daemon/json-line-socket';
import { log } from '../log';
import { Serial } from '../sys/serial';
import { devicePath } from '../vduse/device';
import { DaemonLog, LogPosition } from './daemon-log';
import { DaemonFacts, daemonFactsOf } from './device-watch';
import { CsiError } from './errors';
import { VolumeParameters } from './parameters';

/** What a volume's device serves, and how. */
export interface ServeSpec {
  deviceName: string;
  storage: BackendDescriptor;
  parameters: VolumeParameters;
  readOnly: boolean;
}

/** The device daemon's answer for one device it serves. */
export interface ServerStatus {
  path: string;
  /** The daemon's process. */
  pid: number;
  capacityBytes: number;
  /** Which build of vduse-csi the daemon runs (see cli/build-id.ts). */
  build: string;
  startedAtMs: number;
}

/** What `start` found: the device's status, and whether it was served before the call. */
export interface StartedServer {
  status: ServerStatus;
  wasServed: boolean;
}

export interface VolumeServersOptions {
  stateDir: string;
  /** argv that runs the vduse-csi CLI, e.g. [node, dist/bundle/vduse-csi.js]. */
  command: string[];
  logLevel: string;
  /** The daemon keeps a warm standby daemon (daemon run --keep-standby): a crash costs milliseconds. */
  standby: boolean;
  /** The daemon runs on its own (the chart's device-daemon pods): it is waited for, never started. */
  external?: boolean;
  /** Where the daemon may write point-in-time copies of images (the data directory's image directories). */
  copyDirs: string[];
  startTimeoutMs?: number;
  /** The log of the daemons this plugin starts is rotated past this size (default DAEMON_LOG_MAX_BYTES). */
  daemonLogMaxBytes?: number;
}

const STATUS_TIMEOUT_MS = 10_000;
const ADD_TIMEOUT_MS = 300_000;
const COPY_TIMEOUT_MS = 30 * 60_000;
const POLL_MS = 100;
/** How long a call waits for an external daemon that does not answer (restarting, say) before it fails. */
const EXTERNAL_WAIT_MS = 60_000;

/** Refusal codes of the daemon's control protocol, as gRPC codes: the operator can fix all but ours. */
const CODE_OF_REFUSAL: Record<string, grpcStatus> = {
  'not-found': grpcStatus.NOT_FOUND,
  'in-use': grpcStatus.FAILED_PRECONDITION,
  environment: grpcStatus.FAILED_PRECONDITION,
  image: grpcStatus.FAILED_PRECONDITION,
};

/**
 * Every staged volume is a device of the node's device daemon (`vduse-csi daemon run`), started
 * detached when none answers so that it outlives the plugin: a plugin crash or upgrade leaves the
 * volumes' I/O untouched, and a daemon that dies is replaced by its standby, or by the one the
 * plugin starts, which takes every recorded device over.
 */
export class VolumeServers {
  /** One daemon start at a time: two would leave the loser standing by for nothing. */
  private readonly starting = new Serial();

  private readonly daemonLog: DaemonLog;

  constructor(private readonly options: VolumeServersOptions) {
    this.daemonLog = new DaemonLog(join(options.stateDir, 'logs', 'daemon.log'), options.daemonLogMaxBytes);
  }

  /** Keeps the log of the daemons this plugin starts bounded (see DaemonLog). */
  async rotateDaemonLog(): Promise<void> {
    if (this.managesDaemon && (await this.daemonLog.rotateIfFull()))
      log.info('device daemon log rotated', { path: this.daemonLog.path });
  }

  /** The daemon's answer for a device, or null when no daemon answers or it does not serve the device. */
  async status(deviceName: string): Promise<ServerStatus | null> {
    return (await this.lookUp(deviceName)).server;
  }

  /** Asks the daemon for a device: whether a daemon answered, and its status of the device if served. */
  private async lookUp(
    deviceName: string,
  ): Promise<{ daemonAnswered: boolean; server: ServerStatus | null }> {
    try {
      const answer = await callDaemon(
        this.options.stateDir,
        { op: 'device', name: deviceName },
        STATUS_TIMEOUT_MS,
      );
      return { daemonAnswered: true, server: statusOf(answer) };
    } catch (error) {
      if (error instanceof LineRequestError && error.code === 'not-found')
        return { daemonAnswered: true, server: null };
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ECONNREFUSED' && code !== 'ENOENT')
        log.warn('the device daemon does not answer', { device: deviceName, error: String(error) });
      return { daemonAnswered: false, server: null };
    }
  }

  /** The build this plugin starts daemons from. */
  get ownBuild(): string {
    return buildId(this.options.command[1]);
  }

  /** Whether this plugin starts and upgrades the daemon (not when it runs on its own). */
  get managesDaemon(): boolean {
    return this.options.external !== true;
  }

  /**
   * Serves a device (or takes an orphaned one over); returns at once when already served, and says
   * which it was.
   */
  async start(spec: ServeSpec): Promise<StartedServer> {
    const { daemonAnswered, server } = await this.lookUp(spec.deviceName);
    if (server) return { status: server, wasServed: true };
    // A daemon that just answered needs no start; ensureDaemon runs one caller at a time, and 16
    // stages at once queued there one status round trip each (6 s under emulation).
    if (!daemonAnswered) await this.ensureDaemon();
    const answer = await this.call({ op: 'add', device: deviceSpecOf(spec) }, ADD_TIMEOUT_MS);
    log.info('volume served', { device: spec.deviceName, path: answer.path, pid: answer.pid });
    return { status: statusOf(answer), wasServed: false };
  }

  /**
   * Moves the node's devices to a daemon of this plugin's build (after an upgrade): one of ours
   * stands by beside the old daemon, which then hands every device over and exits.
   */
  async upgrade(spec: ServeSpec, old: ServerStatus): Promise<ServerStatus> {
    const next = this.spawnDaemon();
    const serving = async (): Promise<boolean> => (await this.daemonPid()) === next.child.pid;
    await this.waitFor(next, 'stand by', async () => standingBy(next) || (await serving()));
    if (!(await serving())) await this.call({ op: 'handover' });
    await this.waitFor(next, 'take over', serving);
    const { status } = await this.start(spec);
    log.info('devices handed over to this build', { from: old.build, to: status.build, pid: status.pid });
    return status;
  }

  /**
   * Stops serving and removes the device. An orphaned device (no daemon serves it) is taken over
   * first by a daemon started for it: only a live server removes a device without leaving its users
   * hanging.
   */
  async stop(spec: ServeSpec): Promise<void> {
    if (existsSync(devicePath(spec.deviceName))) await this.ensureDaemon();
    else if ((await this.daemonPid()) === null) return;
    await this.call({ op: 'remove', name: spec.deviceName });
    if (existsSync(devicePath(spec.deviceName)))
      throw new CsiError(
        grpcStatus.INTERNAL,
        `the device daemon removed ${spec.deviceName} but the device is still there: ${this.daemonLog.lastLines()}`,
      );
    log.info('volume device removed', { device: spec.deviceName });
  }

  async resize(deviceName: string, bytes: number): Promise<void> {
    await this.call({ op: 'resize', name: deviceName, bytes });
  }

  /** Copies the image while the device's queues are held still; false when no daemon serves it. */
  async copyWhilePaused(deviceName: string, target: string): Promise<boolean> {
    if (!(await this.status(deviceName))) return false;
    await this.call({ op: 'copy', name: deviceName, target }, COPY_TIMEOUT_MS);
    return true;
  }

  /** What the daemon answering on the control socket says of itself and its devices, or null. */
  async daemonFacts(): Promise<DaemonFacts | null> {
    const answer = await callDaemon(this.options.stateDir, { op: 'status' }, STATUS_TIMEOUT_MS).catch(
      () => null,
    );
    return answer === null ? null : daemonFactsOf(answer);
  }

  /** The pid of the daemon answering on the control socket, or null. */
  private async daemonPid(): Promise<number | null> {
    return (await this.daemonFacts())?.pid ?? null;
  }

  /**
   * Returns once a daemon answers. One is started when the state directory's lock is free; a held
   * lock means one is on its way (taking devices over, or letting them go for its successor).
   */
  private ensureDaemon(): Promise<void> {
    return this.starting.run(async () => {
      if ((await this.daemonPid()) !== null) return;
      if (!this.managesDaemon) return this.waitForExternalDaemon();
      const free = DaemonLock.tryAcquire(this.options.stateDir);
      free?.release();
      const started = free ? this.spawnDaemon() : undefined;
      await this.waitFor(started, 'serve', async () => (await this.daemonPid()) !== null);
    });
  }

  private waitForExternalDaemon(): Promise<void> {
    return this.waitFor(undefined, 'serve', async () => (await this.daemonPid()) !== null, {
      ms: EXTERNAL_WAIT_MS,
      error: () =>
        new CsiError(
          grpcStatus.UNAVAILABLE,
          `no device daemon answers on ${controlSocketPath(this.options.stateDir)}: the node's ` +
            "device daemon (the chart's device-daemon pod) must run on this node to serve volumes",
        ),
    });
  }

  private spawnDaemon(): SpawnedDaemon {
    const { fd: logFd, start: logStart } = this.daemonLog.openForDaemon();
    const [executable, ...prefix] = this.options.command;
    const { stateDir, logLevel, copyDirs, standby } = this.options;
    const child = spawn(
      executable!,
      [
        ...prefix,
        ...['daemon', 'run', '--state-dir', stateDir, '--log-level', logLevel],
        ...copyDirs.flatMap((dir) => ['--copy-dir', dir]),
        ...(standby ? ['--keep-standby'] : []),
      ],
      { detached: true, stdio: ['ignore', logFd, logFd] },
    );
    closeSync(logFd);
    child.unref();
    let exited: string | null = null;
    child.once('exit', (code, signal) => (exited = signal ?? `exit code ${code}`));
    child.once('error', (error) => (exited = error.message));
    log.info('device daemon started', { pid: child.pid, stateDir });
    return { child, log: this.daemonLog, logStart, exited: () => exited };
  }

  /**
   * Waits until `done`; fails when the daemon started for it exits first, or after the timeout (the
   * start timeout unless given).
   */
  private async waitFor(
    daemon: SpawnedDaemon | undefined,
    what: string,
    done: () => Promise<boolean>,
    timeout: { ms: number; error: () => CsiError } = {
      ms: this.options.startTimeoutMs ?? 180_000,
      error: () =>
        new CsiError(
          grpcStatus.UNAVAILABLE,
          `the device daemon did not ${what} in time: ${this.daemonLog.lastLines()}`,
        ),
    },
  ): Promise<void> {
    const deadline = Date.now() + timeout.ms;
    for (;;) {
      if (await done()) return;
      const exited = daemon?.exited() ?? null;
      if (exited !== null)
        throw new CsiError(
          grpcStatus.INTERNAL,
          `the device daemon ${daemon!.child.pid} exited (${exited}) before it could ${what}: ${this.daemonLog.lastLines()}`,
        );
      if (Date.now() > deadline) {
        daemon?.child.kill('SIGKILL');
        throw timeout.error();
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  /** One control request; a refusal becomes the CSI error its code calls for. */
  private async call(
    request: Parameters<typeof callDaemon>[1],
    timeoutMs?: number,
  ): Promise<Record<string, unknown>> {
    try {
      return await callDaemon(this.options.stateDir, request, timeoutMs);
    } catch (error) {
      const refusal = error instanceof LineRequestError ? error.code : undefined;
      const code = (refusal !== undefined && CODE_OF_REFUSAL[refusal]) || grpcStatus.INTERNAL;
      const name = 'name' in request ? request.name : 'device' in request ? request.device.name : undefined;
      const subject = name === undefined ? 'the device daemon' : `the device daemon, for ${name}`;
      throw new CsiError(code, `${request.op} refused by ${subject}: ${(error as Error).message}`);
    }
  }
}

interface SpawnedDaemon {
  child: ChildProcess;
  log: DaemonLog;
  /** Where its lines start in the shared daemon log. */
  logStart: LogPosition;
  /** Why it exited, or null while it runs. */
  exited: () => string | null;
}

/** Whether a daemon started beside a serving one has said it stands by, warm. */
function standingBy(daemon: SpawnedDaemon): boolean {
  const announcement = JSON.stringify({ standby: 'daemon', pid: daemon.child.pid });
  return daemon.log.since(daemon.logStart).split('\n').includes(announcement);
}

function deviceSpecOf(spec: ServeSpec): DeviceSpec {
  const { queues, queueSize, blockSize, provisioning } = spec.parameters;
  return {
    name: spec.deviceName,
    backend: spec.storage,
    queues,
    queueSize,
    blockSize,
    readOnly: spec.readOnly,
    // A thick volume keeps its reservation: discards and write-zeroes never free its blocks.
    keepAllocation: provisioning === 'thick',
  };
}

function statusOf(answer: Record<string, unknown>): ServerStatus {
  return {
    path: String(answer.path),
    pid: Number(answer.pid),
    capacityBytes: Number(answer.capacityBytes),
    build: String(answer.build),
    startedAtMs: Number(answer.startedAtMs),
  };
}

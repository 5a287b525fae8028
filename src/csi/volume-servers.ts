import { ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { adminSocketPath, callAdmin } from '../daemon/admin-socket';
import { buildId } from '../cli/build-id';
import { log } from '../log';
import { devicePath } from '../vduse/device';
import { CsiError } from './errors';
import { VolumeParameters } from './parameters';
import { logTail, serverExitError } from './server-failure';

/** What a volume's device serves: an image file, or an RBD image with its client's files. */
export type ServedStorage =
  | { kind: 'file'; path: string }
  | { kind: 'rbd'; image: string; conf: string; user: string; keyring: string };

/** What one volume's serving process is started with. */
export interface ServeSpec {
  deviceName: string;
  storage: ServedStorage;
  parameters: VolumeParameters;
  readOnly: boolean;
  /** Where the server may write point-in-time copies of the image (the data directory's image directories). */
  copyDirs: string[];
}

export interface ServerStatus {
  path: string;
  pid: number;
  capacityBytes: number;
  /** Which build of vduse-csi the server runs (see cli/build-id.ts). */
  build: string;
  startedAtMs: number;
}

export interface VolumeServersOptions {
  stateDir: string;
  /** argv that runs the vduse-csi CLI, e.g. [node, dist/bundle/vduse-csi.js]. */
  command: string[];
  logLevel: string;
  /** Keep a warm standby process per volume (blk serve --keep-standby): restarts take milliseconds. */
  standby: boolean;
  startTimeoutMs?: number;
  stopTimeoutMs?: number;
}

const STATUS_TIMEOUT_MS = 10_000;
const POLL_MS = 200;

/**
 * Each staged volume is served by its own `vduse-csi blk serve` process, started detached so it
 * outlives the plugin: a plugin crash or upgrade leaves the volume's I/O untouched, and the next
 * plugin finds the server again through its admin socket.
 */
export class VolumeServers {
  constructor(private readonly options: VolumeServersOptions) {}

  /** The live server of a device, or null when none answers. */
  async status(deviceName: string): Promise<ServerStatus | null> {
    const socket = adminSocketPath(this.options.stateDir, deviceName);
    if (!existsSync(socket)) return null;
    try {
      const reply = await callAdmin(socket, { op: 'status' }, STATUS_TIMEOUT_MS);
      return {
        path: String(reply.path),
        pid: Number(reply.pid),
        capacityBytes: Number(reply.capacityBytes),
        build: String(reply.build),
        startedAtMs: Number(reply.startedAtMs),
      };
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ECONNREFUSED' && code !== 'ENOENT') {
        log.warn('device server does not answer', { device: deviceName, error: String(error) });
      }
      return null;
    }
  }

  /** The build this plugin starts servers from. */
  get ownBuild(): string {
    return buildId(this.options.command[1]);
  }

  /** Starts serving (or takes over an orphaned device); returns at once when already served. */
  async start(spec: ServeSpec): Promise<ServerStatus> {
    const running = await this.status(spec.deviceName);
    if (running) return running;
    const server = this.spawnServer(spec, []);
    return this.waitUntil(spec, server, 'come up', (status) => status !== null);
  }

  /**
   * Moves a live device to a server of this plugin's build (after an upgrade): a standby of ours
   * gets ready beside the old server, which then hands the device over and exits.
   */
  async upgrade(spec: ServeSpec, old: ServerStatus): Promise<ServerStatus> {
    const standby = this.spawnServer(spec, ['--standby']);
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 180_000);
    while (!loggedStandingBy(standby.logPath, spec.deviceName, standby.child.pid!)) {
      const exited = standby.exited();
      if (exited !== null) throw exitError('standby', spec, standby, exited);
      if (Date.now() > deadline) {
        standby.child.kill('SIGKILL');
        throw new Error(
          `standby for ${spec.deviceName} did not get ready in time: ${lastLines(standby.logPath)}`,
        );
      }
      await sleep(POLL_MS);
    }
    await callAdmin(adminSocketPath(this.options.stateDir, spec.deviceName), { op: 'handover' });
    const status = await this.waitUntil(
      spec,
      standby,
      'take over',
      (current) => current?.pid === standby.child.pid,
    );
    log.info('device handed over to this build', {
      device: spec.deviceName,
      from: old.build,
      to: status.build,
    });
    return status;
  }

  private spawnServer(spec: ServeSpec, extra: string[]): SpawnedServer {
    const logPath = join(this.options.stateDir, 'logs', `${spec.deviceName}.log`);
    mkdirSync(join(this.options.stateDir, 'logs'), { recursive: true, mode: 0o700 });
    const logFd = openSync(logPath, 'a', 0o600);
    const [executable, ...prefix] = this.options.command;
    const child = spawn(executable!, [...prefix, ...serveArguments(spec, this.options), ...extra], {
      detached: true,
      stdio: ['ignore', logFd, logFd],
    });
    closeSync(logFd);
    child.unref();
    let exited: string | null = null;
    child.once('exit', (code, signal) => (exited = signal ?? `exit code ${code}`));
    child.once('error', (error) => (exited = error.message));
    return { child, logPath, exited: () => exited };
  }

  private async waitUntil(
    spec: ServeSpec,
    server: SpawnedServer,
    what: string,
    done: (status: ServerStatus | null) => boolean,
  ): Promise<ServerStatus> {
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 180_000);
    for (;;) {
      const status = await this.status(spec.deviceName);
      if (status && done(status)) {
        log.info('volume server ready', { device: spec.deviceName, pid: status.pid, path: status.path });
        return status;
      }
      const exited = server.exited();
      if (exited !== null) throw exitError('device server', spec, server, exited);
      if (Date.now() > deadline) {
        server.child.kill('SIGKILL');
        throw new Error(
          `device server for ${spec.deviceName} did not ${what} in time: ${lastLines(server.logPath)}`,
        );
      }
      await sleep(POLL_MS);
    }
  }

  /**
   * Stops serving and removes the device. An orphaned device (its server was killed) is taken over
   * first: only a live server can remove a device without leaving its users hanging.
   */
  async stop(spec: ServeSpec): Promise<void> {
    let status = await this.status(spec.deviceName);
    if (!status && existsSync(devicePath(spec.deviceName))) status = await this.start(spec);
    if (!status) return;
    process.kill(status.pid, 'SIGTERM');
    const deadline = Date.now() + (this.options.stopTimeoutMs ?? 120_000);
    while (isServing(status.pid, spec.deviceName)) {
      if (Date.now() > deadline)
        throw new Error(
          `device server ${status.pid} for ${spec.deviceName} did not stop: ` +
            lastLines(join(this.options.stateDir, 'logs', `${spec.deviceName}.log`)),
        );
      await sleep(POLL_MS);
    }
    if (existsSync(devicePath(spec.deviceName))) {
      throw new Error(
        `device server for ${spec.deviceName} exited but the device is still there: ` +
          lastLines(join(this.options.stateDir, 'logs', `${spec.deviceName}.log`)),
      );
    }
    log.info('volume server stopped', { device: spec.deviceName });
  }

  async resize(deviceName: string, bytes: number): Promise<void> {
    await callAdmin(adminSocketPath(this.options.stateDir, deviceName), { op: 'resize', bytes });
  }

  /** Copies the image while the live server holds its queues still; false when none serves it. */
  async copyWhilePaused(deviceName: string, target: string): Promise<boolean> {
    if (!(await this.status(deviceName))) return false;
    await callAdmin(adminSocketPath(this.options.stateDir, deviceName), { op: 'copy', target }, 30 * 60_000);
    return true;
  }
}

interface SpawnedServer {
  child: ChildProcess;
  logPath: string;
  /** Why it exited, or null while it runs. */
  exited: () => string | null;
}

function loggedStandingBy(logPath: string, deviceName: string, pid: number): boolean {
  try {
    return readFileSync(logPath, 'utf8')
      .split('\n')
      .some((line) => line === JSON.stringify({ standby: deviceName, pid }));
  } catch {
    return false;
  }
}

/** True while `pid` is the (not yet reaped) server of `deviceName`. */
export function isServing(pid: number, deviceName: string): boolean {
  try {
    const state = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0];
    if (state === 'Z' || state === 'X') return false;
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(deviceName);
  } catch {
    return false;
  }
}

function serveArguments(spec: ServeSpec, options: VolumeServersOptions): string[] {
  return [
    'blk',
    'serve',
    ...storageArguments(spec.storage),
    '--name',
    spec.deviceName,
    '--queues',
    String(spec.parameters.queues),
    '--queue-size',
    String(spec.parameters.queueSize),
    '--block-size',
    String(spec.parameters.blockSize),
    '--state-dir',
    options.stateDir,
    '--log-level',
    options.logLevel,
    ...(spec.readOnly ? ['--read-only'] : []),
    // A thick volume keeps its reservation: discards and write-zeroes never free its blocks.
    ...(spec.parameters.provisioning === 'thick' ? ['--keep-allocation'] : []),
    ...spec.copyDirs.flatMap((dir) => ['--copy-dir', dir]),
    ...(options.standby ? ['--keep-standby'] : []),
  ];
}

function storageArguments(storage: ServedStorage): string[] {
  if (storage.kind === 'file') return ['--file', storage.path];
  return [
    '--rbd',
    storage.image,
    '--ceph-conf',
    storage.conf,
    '--id',
    storage.user,
    '--keyring',
    storage.keyring,
  ];
}

function logLines(path: string): string[] {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n');
  } catch {
    return [];
  }
}

function lastLines(path: string): string {
  return logTail(logLines(path));
}

/** A server that exited before serving: the cause it reported, with a fitting gRPC code. */
function exitError(what: string, spec: ServeSpec, server: SpawnedServer, exited: string): CsiError {
  return serverExitError(what, spec.deviceName, server.child.pid, exited, logLines(server.logPath));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

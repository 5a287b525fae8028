import { existsSync } from 'node:fs';
import { describeBackend, servingMismatch } from '../backend/descriptor';
import { buildId } from '../cli/build-id';
import { Serial } from '../sys/serial';
import { log } from '../log';
import { VduseDevice, devicePath } from '../vduse/device';
import { BlkDeviceServer, BlkServeOptions } from './blk-device-server';
import { ControlErrorCode, ControlRequest, DeviceSpec, controlError } from './control-protocol';
import { copyServedImage } from './copy-target';
import { readRecord, recordedDeviceNames, removeRecord } from './device-record';
import { inflightLogPath, removeInflightLog } from './inflight-log';
import type { ServedDeviceFacts } from '../metrics/daemon-metrics';
import { IoTotals } from './io-counters';
import { StartFailure } from './start-failure';
import { VdpaBinder } from './vdpa-binder';
import { ReleaseNote } from './release-note';

/** The devices a daemon took over when it got the lock, how long that took, and from whom. */
export interface Takeover {
  devices: string[];
  seconds: number;
  /** The previous daemon's note when it let go on purpose; null when it died holding the devices. */
  released: ReleaseNote | null;
}

export interface NodeDaemonOptions {
  /** Device records, in-flight logs, the lock and the control socket. */
  stateDir: string;
  logLevel: string;
  /** Where the op `copy` may write (see copy-target.ts). */
  copyDirs: string[];
  /** The queue threads count each request (per-device metrics, failed requests in `status`). */
  countRequests: boolean;
  /** Large transfers of image files go to helper threads (large-io-pool.ts) instead of inline. */
  largeIoHelpers: boolean;
}

/** How long a device whose previous daemon just died may stay held by that dying process. */
const RELEASE_TIMEOUT_MS = 30_000;
const RELEASE_POLL_MS = 10;
/** Queue threads a serving daemon starts before its first add (warm caps them at one per CPU). */
const WARM_QUEUE_THREADS = 2;
/**
 * The bind process ends this long after the last bind: a burst of adds (a node's pods scheduled
 * together, kubelet's retries) shares one, a node with nothing to add does not keep it.
 */
const BIND_PROCESS_IDLE_MS = 10_000;

/**
 * Serves every device of a node from one process (one set of device threads): devices are added
 * and removed on request, taken over all at once from the records when a previous daemon is gone,
 * and let go of all at once (never removed) when the daemon stops or hands over.
 */
export class NodeDaemon {
  private readonly servers = new Map<string, BlkDeviceServer>();
  /** One operation at a time per device; others wait their turn. */
  private readonly turns = new Map<string, { serial: Serial; waiting: number }>();
  private readonly startedAtMs = Date.now();
  /** Every add and takeover of this daemon binds through one bind process while binds keep coming. */
  private readonly binder = new VdpaBinder(BIND_PROCESS_IDLE_MS);
  private takeover: Takeover | null = null;

  constructor(private readonly options: NodeDaemonOptions) {}

  /**
   * Takes over every recorded device that still exists (its server is gone: this daemon holds the
   * lock); resolves with how many it took over. One that cannot be taken over is logged and left as
   * it is, for a later `add`.
   */
  async takeOverRecorded(): Promise<string[]> {
    const names = recordedDeviceNames(this.options.stateDir).filter((name) => existsSync(devicePath(name)));
    await Promise.all(
      names.map((name) =>
        this.turn(name, async () => {
          try {
            await this.takeOver(name);
          } catch (error) {
            log.error('could not take a device over', { device: name, error: String(error) });
          }
        }),
      ),
    );
    if (names.length > 0)
      log.info('devices taken over', { devices: names.length, served: this.servers.size });
    return [...this.servers.keys()];
  }

  /**
   * Starts the device threads the first add would otherwise start itself, so adds do not queue
   * behind those starts: with 16 adds at once under emulation, the threads took 7 s to start, and
   * every add waited for them. Two queue threads (one on a single CPU): with one, the second device
   * of a burst starts the second thread and every device placed on it waits for that (1.6 s median
   * under load). They stay when the last device goes, for the next add. Further queue threads start
   * with the devices they serve. The bind process is not started here: it starts with the first
   * bind and ends once binds stop (BIND_PROCESS_IDLE_MS).
   */
  prepareForAdds(): Promise<void> {
    return BlkDeviceServer.keepThreadsWarm(this.options.logLevel, WARM_QUEUE_THREADS);
  }

  /**
   * What a standby starts while it waits: as many queue threads as a serving daemon keeps (or the
   * largest recorded device needs). With one queue thread warm, every device placed on the second
   * waited for it to start (16 idle devices: half back after 0.7 s, the other half after 1.3 s).
   */
  static warmStandbyThreads(logLevel: string, recordedQueues: number): Promise<void> {
    return BlkDeviceServer.warmThreads(logLevel, Math.max(WARM_QUEUE_THREADS, recordedQueues));
  }

  /** Remembers the takeover this daemon started with, for `status` (the node plugin reports it). */
  tookOver(takeover: Takeover): void {
    this.takeover = takeover.devices.length > 0 ? takeover : null;
  }

  /** The devices served and what their queues counted, for metrics. */
  devices(): ServedDeviceFacts[] {
    return [...this.servers.values()].map((server) => ({
      name: server.options.name,
      capacityBytes: server.capacityBytes,
      io: server.ioCounters.totals(),
      pausedSeconds: server.pausedSeconds,
    }));
  }

  /** Answers one control request with its fields (a refusal throws with a code). */
  async answer(request: ControlRequest): Promise<Record<string, unknown>> {
    switch (request.op) {
      case 'status':
        return this.status();
      case 'device':
        return this.deviceStatus(this.served(request.name));
      case 'add':
        return this.turn(request.device.name, () => this.add(request.device));
      case 'remove':
        return this.turn(request.name, () => this.remove(request.name));
      case 'resize':
        return this.turn(request.name, async () => {
          const server = this.served(request.name);
          await server.resize(request.bytes);
          return this.deviceStatus(server);
        });
      case 'copy':
        return this.turn(request.name, async () => {
          const server = this.served(request.name);
          await copyServedImage(server, request.target);
          return this.deviceStatus(server);
        });
      case 'handover':
        return this.status();
    }
  }

  /** Lets go of every device without removing it, once the operations under way have finished. */
  async releaseAll(): Promise<void> {
    await Promise.all(
      [...this.servers.keys()].map((name) =>
        this.turn(name, async () => {
          const server = this.servers.get(name);
          this.servers.delete(name);
          await server?.handOver();
        }),
      ),
    );
    await this.binder.close();
  }

  private status(): Record<string, unknown> {
    return {
      pid: process.pid,
      build: buildId(),
      startedAtMs: this.startedAtMs,
      takeover: this.takeover,
      devices: [...this.servers.values()].map((server) => this.deviceStatus(server)),
    };
  }

  private deviceStatus(server: BlkDeviceServer): Record<string, unknown> {
    return {
      name: server.options.name,
      path: server.path,
      capacityBytes: server.capacityBytes,
      storage: describeBackend(server.options.backend),
      readOnly: server.options.readOnly,
      ...failureCounts(server.ioCounters.totals()),
      pid: process.pid,
      build: buildId(),
      startedAtMs: this.startedAtMs,
    };
  }

  private served(name: string): BlkDeviceServer {
    const server = this.servers.get(name);
    if (!server) throw controlError('not-found', `no device ${name} is served here`);
    return server;
  }

  private async add(spec: DeviceSpec): Promise<Record<string, unknown>> {
    const running = this.servers.get(spec.name);
    if (running) {
      const mismatch = servingMismatch(running.options.backend, spec.backend);
      if (mismatch) throw controlError('in-use', `device ${spec.name} serves ${mismatch}`);
      return this.deviceStatus(running);
    }
    const server = await BlkDeviceServer.start(this.serveOptions(spec)).catch((error: unknown) => {
      throw refusalOf(error);
    });
    this.servers.set(spec.name, server);
    log.info('serving', { device: spec.name, path: server.path, storage: describeBackend(spec.backend) });
    return this.deviceStatus(server);
  }

  /**
   * Removes a device: one served here is stopped and destroyed; a recorded one nobody serves is
   * taken over first (only a live server removes a device without leaving its users hanging); a
   * record left without a device is dropped.
   */
  private async remove(name: string): Promise<Record<string, unknown>> {
    let server = this.servers.get(name);
    if (!server && existsSync(devicePath(name)) && readRecord(this.options.stateDir, name))
      server = await this.takeOver(name).catch((error: unknown) => {
        throw refusalOf(error);
      });
    if (server) {
      await server.stop();
      this.servers.delete(name);
      log.info('device removed', { device: name });
      return { removed: true };
    }
    if (existsSync(devicePath(name)))
      throw controlError(
        'in-use',
        `VDUSE device ${name} has no record in ${this.options.stateDir}: not ours to remove`,
      );
    removeRecord(this.options.stateDir, name);
    removeInflightLog(inflightLogPath(this.options.stateDir, name));
    return { removed: false };
  }

  private async takeOver(name: string): Promise<BlkDeviceServer> {
    const record = readRecord(this.options.stateDir, name);
    if (!record) throw new Error(`no record of device ${name}`);
    const device = await openWhenReleased(name);
    const { queues, queueSize, blockSize, readOnly, keepAllocation } = record.geometry;
    const spec = { name, backend: record.backend, queues, queueSize, blockSize, readOnly, keepAllocation };
    const server = await BlkDeviceServer.takeOver(this.serveOptions(spec), record, device);
    this.servers.set(name, server);
    log.info('device taken over', { device: name, path: server.path });
    return server;
  }

  private serveOptions(spec: DeviceSpec): BlkServeOptions {
    return {
      ...spec,
      ...this.options,
      copyDirs: spec.backend.kind === 'file' ? this.options.copyDirs : [],
      binder: this.binder,
    };
  }

  private turn<T>(name: string, work: () => Promise<T>): Promise<T> {
    let turn = this.turns.get(name);
    if (!turn) this.turns.set(name, (turn = { serial: new Serial(), waiting: 0 }));
    const current = turn;
    current.waiting++;
    return current.serial.run(work).finally(() => {
      // Names come and go with volumes: a name with nothing queued keeps no entry.
      if (--current.waiting === 0) this.turns.delete(name);
    });
  }
}

/** Opens a device a process that just died may still hold for a moment (its fds close one by one). */
async function openWhenReleased(name: string): Promise<VduseDevice> {
  const deadline = Date.now() + RELEASE_TIMEOUT_MS;
  for (;;) {
    const device = VduseDevice.openIfFree(name);
    if (device) return device;
    if (Date.now() > deadline)
      throw controlError('in-use', `VDUSE device ${name} is still held by another process`);
    await new Promise((resolve) => setTimeout(resolve, RELEASE_POLL_MS));
  }
}

function failureCounts(totals: IoTotals): {
  failedRequests: number;
  noSpaceRequests: number;
  queueBreaks: number;
} {
  return {
    failedRequests: Object.values(totals.errors).reduce((sum, count) => sum + count, 0),
    noSpaceRequests: totals.noSpace,
    queueBreaks: totals.queueBreaks,
  };
}

/** A start failure as a refusal with the code its kind calls for. */
function refusalOf(error: unknown): unknown {
  if (!(error instanceof StartFailure)) return error;
  const codes: Record<StartFailure['kind'], ControlErrorCode> = {
    environment: 'environment',
    'in-use': 'in-use',
    image: 'image',
    internal: 'internal',
  };
  return controlError(codes[error.kind], error.message);
}

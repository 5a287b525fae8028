import { existsSync, writeFileSync } from 'node:fs';
import { BackendDescriptor, describeBackend, servingMismatch } from '../backend/descriptor';
import { openBackend } from '../backend/open-backend';
import { BackendProvider } from '../backend/types';
import { log } from '../log';
import { VdpaClient, virtioProbeFailed, waitForBlockDevice, waitForBlockDeviceGone } from '../vdpa';
import { VduseControl } from '../vduse/control';
import { VduseDevice, devicePath } from '../vduse/device';
import { BlkGeometry, blkFeatures, encodeBlkConfig } from '../virtio/blk/config';
import { VIRTIO_ID_BLOCK, VIRTIO_VENDOR_ID } from '../virtio/features';
import { DeviceThreads } from './device-threads';
import { isErrno } from '../sys/errors';
import { DeviceRecord, readRecord, recordVersionOf, removeRecord, writeRecord } from './device-record';
import {
  createEmptyInflightLog,
  createInflightLog,
  inflightLogFits,
  inflightLogPath,
  removeInflightLog,
} from './inflight-log';
import { DevicePause } from './pause';
import { SharedDeviceState } from './shared-state';
import { IoCounters } from './io-counters';
import { VdpaBinder } from './vdpa-binder';
import { StartSteps } from './start-steps';

export interface BlkServeOptions {
  name: string;
  backend: BackendDescriptor;
  /** Size of a new image; an existing image keeps its size unless this is larger. */
  sizeBytes?: number;
  queues: number;
  queueSize: number;
  blockSize: number;
  readOnly: boolean;
  /**
   * DISCARD and WRITE_ZEROES never release the image's blocks (a thick volume). A device taken
   * over keeps the mode its record has, or takes it on when this asks for it.
   */
  keepAllocation: boolean;
  /** Directories the admin op `copy` may write into (see copy-target.ts). */
  copyDirs: string[];
  /** Kernel bounce buffer for virtio-vdpa, in bytes (sysfs bounce_size); kernel default when unset. */
  bounceBytes?: number;
  logLevel: string;
  /** Device records, in-flight logs and admin sockets (DEFAULT_STATE_DIR). */
  stateDir: string;
  /** Binds through this binder (a daemon's); else through a bind process started for the bind. */
  binder?: VdpaBinder;
  /** The queue threads count requests, bytes, errors and latency (false: to measure what that costs). */
  countRequests?: boolean;
  /** Large transfers of image files go to helper threads (large-io-pool.ts); off by default. */
  largeIoHelpers?: boolean;
}

const STOP_TIMEOUT_MS = 10_000;
const DESTROY_RETRIES = 50;
/** How often a standby server tries to open the device it waits for (EBUSY while another holds it). */
const STANDBY_POLL_MS = 20;

/**
 * Serves one image file as a virtio-blk device: creates the VDUSE device, has its queues and control
 * messages served by the process's device threads, binds it to virtio-vdpa and tears all of it
 * down again.
 */
export class BlkDeviceServer {
  private threads: DeviceThreads | undefined;
  private vdpaBound = false;
  private blockDevicePath: string | undefined;

  private readonly state: SharedDeviceState;
  private readonly pause: DevicePause;
  /** What the queue threads counted of this server's requests (from zero at its start or takeover). */
  readonly ioCounters: IoCounters;

  private constructor(
    readonly options: BlkServeOptions,
    private readonly provider: BackendProvider,
    private readonly control: VduseControl,
    private readonly device: VduseDevice,
    private readonly geometry: BlkGeometry,
  ) {
    this.state = SharedDeviceState.create(geometry.queues);
    this.state.capacityBytes = geometry.capacityBytes;
    this.ioCounters = IoCounters.create(geometry.queues);
    this.pause = new DevicePause(options.name, this.state, () => this.threads?.wakeQueues(options.name));
  }

  /**
   * Waits, warmed up, until the live server of an existing device lets go of it (it died, or handed
   * the device over), then takes the device over. Resolves null when the device is removed instead,
   * or `stop` aborts first.
   */
  static async standBy(
    options: BlkServeOptions,
    onWarm: () => void,
    stop: AbortSignal,
  ): Promise<BlkDeviceServer | null> {
    const record = readRecord(options.stateDir, options.name);
    if (!record)
      throw new Error(`no record of device ${options.name} in ${options.stateDir}: nothing to stand by for`);
    const mismatch = storageMismatch(record, options);
    if (mismatch) throw new Error(mismatch);
    await BlkDeviceServer.warmThreads(options.logLevel, record.geometry.queues);
    // Opened ahead (a cluster connection, say), so a takeover does not wait for it.
    const provider = await openBackend(options.backend, undefined).catch((error: unknown) => {
      log.warn('could not open the image ahead of a takeover: a takeover opens it', {
        device: options.name,
        error: String(error),
      });
      return undefined;
    });
    log.info('standing by', { device: options.name, pid: process.pid });
    onWarm();
    let device: VduseDevice | null = null;
    try {
      while (!stop.aborted && !(device = VduseDevice.openIfFree(options.name)))
        await new Promise((resolve) => setTimeout(resolve, STANDBY_POLL_MS));
    } catch (error) {
      if (!isErrno(error, 'ENOENT')) {
        await provider?.close();
        throw error;
      }
    }
    if (!device) {
      await provider?.close();
      return null;
    }
    // The live server may have rewritten the record (resized, or taken the device over itself).
    return BlkDeviceServer.takeOver(
      options,
      readRecord(options.stateDir, options.name) ?? record,
      device,
      provider,
    );
  }

  /**
   * Takes over the device `record` describes, which this process has opened (so its previous
   * server is gone), with storage opened ahead if given. A failure closes the device again.
   */
  static takeOver(
    options: BlkServeOptions,
    record: DeviceRecord,
    device: VduseDevice,
    provider?: BackendProvider,
  ): Promise<BlkDeviceServer> {
    return StartSteps.attempt(options.name, (steps) => {
      steps.onFailure(`closing VDUSE device ${options.name}`, () => device.close());
      return BlkDeviceServer.adopt(steps, options, record, { device, provider });
    });
  }

  /** Starts the threads devices of `queues` queues will need, so a takeover does not wait for them. */
  static warmThreads(logLevel: string, queues: number): Promise<void> {
    return deviceThreads(logLevel).warm(queues);
  }

  /** warmThreads for a process that serves devices as they come and go: the threads stay when idle. */
  static keepThreadsWarm(logLevel: string, queues: number): Promise<void> {
    return deviceThreads(logLevel).keepWarm(queues);
  }

  /**
   * Serves the device: creates it, or takes over a live one a previous server left (crash, kill,
   * upgrade) when its record is in the state directory. A failure is a StartFailure naming the step
   * and the cause; whatever this call made is removed again (a device taken over is left as it was
   * found, for the next server) before it surfaces.
   */
  static async start(options: BlkServeOptions): Promise<BlkDeviceServer> {
    return StartSteps.attempt(options.name, async (steps) => {
      const record = await steps.run(`reading the device record of ${options.name}`, () =>
        readRecord(options.stateDir, options.name),
      );
      if (record && existsSync(devicePath(options.name)))
        return BlkDeviceServer.adopt(steps, options, record);
      return BlkDeviceServer.create(steps, options);
    });
  }

  private static async create(steps: StartSteps, options: BlkServeOptions): Promise<BlkDeviceServer> {
    const { name, stateDir } = options;
    const provider = await steps.run('opening the image', () => openImage(options), 'image');
    steps.onFailure(
      `removing the image ${describeBackend(options.backend)} if this start made it`,
      async () => {
        await provider.close();
        await provider.removeIfCreated();
      },
    );
    await steps.run(
      `taking the exclusive lock of ${describeBackend(options.backend)}`,
      () => provider.lock([]),
      'image',
    );
    const geometry: BlkGeometry = {
      capacityBytes: provider.size(),
      queues: options.queues,
      queueSize: options.queueSize,
      blockSize: options.blockSize,
      readOnly: options.readOnly,
      serial: name,
      keepAllocation: options.keepAllocation,
    };
    const control = await openControl(steps);
    const creating = `creating VDUSE device ${name}`;
    const nameTaken =
      `a VDUSE device named ${name} already exists and has no record in ${stateDir}: ` +
      'it was not made by vduse-csi with this state directory (another program or server holds the name)';
    if (existsSync(devicePath(name))) throw steps.fail(creating, 'in-use', nameTaken);
    // Log and record before the device: a server killed right after CREATE_DEV leaves a device
    // the next start can take over (and finish binding) instead of a nameless orphan.
    const logPath = inflightLogPath(stateDir, name);
    let created = false;
    await steps.run(`writing the in-flight log and device record of ${name}`, () => {
      steps.onFailure(`removing the device record and in-flight log of ${name}`, () => {
        // Without its record a device left behind could never be taken over (or removed) again.
        if (created && existsSync(devicePath(name)))
          throw new Error(`kept them: VDUSE device ${name} is still there`);
        removeRecord(stateDir, name);
        removeInflightLog(logPath);
      });
      createInflightLog(logPath, geometry.queues, geometry.queueSize);
      writeRecord(stateDir, deviceRecord(options, geometry, provider));
    });
    created = await steps.run(
      creating,
      () =>
        control.createDevice({
          name,
          deviceId: VIRTIO_ID_BLOCK,
          vendorId: VIRTIO_VENDOR_ID,
          features: blkFeatures(geometry),
          queueCount: geometry.queues,
          queueAlign: 4096,
          config: encodeBlkConfig(geometry),
        }),
      'environment',
    );
    if (!created) throw steps.fail(creating, 'in-use', nameTaken);
    steps.onFailure(`destroying VDUSE device ${name}`, () => destroyWithRetry(control, name));
    const device = await openDevice(steps, name);
    const server = new BlkDeviceServer(options, provider, control, device, geometry);
    await steps.run(`configuring VDUSE device ${name} (virtqueues, bounce buffer, message timeout)`, () => {
      for (let queue = 0; queue < geometry.queues; queue++) device.setupQueue(queue, geometry.queueSize);
      if (options.bounceBytes !== undefined) setBounceSize(name, options.bounceBytes);
      setMessageTimeout(name);
    });
    await server.startThreadsStep(steps, false);
    await server.bindStep(steps);
    return server;
  }

  /**
   * Takes over a device whose server is gone: same geometry; each queue in use goes on from the
   * in-flight log, serving again what the previous server took and did not return. A failure leaves
   * the device as it was (closed again), for the next server to take over.
   */
  private static async adopt(
    steps: StartSteps,
    options: BlkServeOptions,
    record: DeviceRecord,
    opened: { device?: VduseDevice; provider?: BackendProvider | undefined } = {},
  ): Promise<BlkDeviceServer> {
    const { name } = options;
    const mismatch = storageMismatch(record, options);
    if (mismatch) throw steps.fail(`taking over VDUSE device ${name}`, 'in-use', mismatch);
    const storage = describeBackend(options.backend);
    // This server's way to the storage (its credentials, say), which may differ from the last one's.
    const provider =
      opened.provider ??
      (await steps.run(
        `opening the image ${storage}`,
        () => openBackend(options.backend, undefined),
        'image',
      ));
    steps.onFailure(`closing the image ${storage}`, () => provider.close());
    await steps.run(
      `taking the exclusive lock of ${storage} over`,
      async () => {
        const me = provider.lockHolder;
        if (me === undefined) return;
        const predecessors = record.lockHolders ?? [];
        // Recorded before fencing: should this server die now, its successor may fence both.
        writeRecord(options.stateDir, { ...record, lockHolders: [...predecessors, me] });
        await provider.lock(predecessors);
        writeRecord(options.stateDir, { ...record, lockHolders: [me] });
      },
      'image',
    );
    const control = await openControl(steps);
    const device = opened.device ?? (await openDevice(steps, name));
    const geometry = {
      ...record.geometry,
      keepAllocation: record.geometry.keepAllocation || options.keepAllocation,
    };
    const server = new BlkDeviceServer({ ...options, ...geometry }, provider, control, device, geometry);
    const { queues, queueSize } = geometry;
    const probeFailed = await steps.run(`reading the state of VDUSE device ${name}`, () => {
      server.vdpaBound = vdpaDeviceExists(name);
      if (device.queueInfo(0).ready) server.state.setRunning(true);
      log.info('taking over a live device', {
        device: name,
        bound: server.vdpaBound,
        keepAllocation: geometry.keepAllocation,
      });
      // A thick volume served before keep-allocation existed takes it on, and keeps it from now on.
      if (geometry.keepAllocation !== record.geometry.keepAllocation)
        writeRecord(options.stateDir, deviceRecord(server.options, geometry, provider));
      const logPath = inflightLogPath(options.stateDir, name);
      if (!inflightLogFits(logPath, queues, queueSize)) {
        log.error('in-flight log missing or of the wrong size: queues in use cannot be resumed', {
          device: name,
          path: logPath,
        });
        createEmptyInflightLog(logPath, queues, queueSize);
      }
      // A server killed between creating and binding the device: finish what it started.
      if (!server.vdpaBound) for (let queue = 0; queue < queues; queue++) device.setupQueue(queue, queueSize);
      return server.vdpaBound && virtioProbeFailed(name);
    });
    await server.startThreadsStep(steps, true);
    if (probeFailed) {
      log.warn('the driver never took the device (its probe failed): adding it again', { device: name });
      await steps.run(
        `removing vdpa device ${name}, whose driver probe failed`,
        async () => {
          await server.unbind();
          for (let queue = 0; queue < queues; queue++) device.setupQueue(queue, queueSize);
        },
        'environment',
      );
    }
    if (!server.vdpaBound) await server.bindStep(steps);
    else
      server.blockDevicePath = await steps.run(
        `waiting for the block device of ${name}`,
        () => waitForBlockDevice(name),
        'environment',
      );
    return server;
  }

  get path(): string {
    return this.blockDevicePath!;
  }

  get capacityBytes(): number {
    return this.state.capacityBytes;
  }

  /** Grows the image and tells the driver; the block device shows the new size without re-attach. */
  async resize(bytes: number): Promise<void> {
    const blockSize = this.options.blockSize;
    if (bytes % blockSize !== 0) throw new RangeError(`new size ${bytes} is not a multiple of ${blockSize}`);
    await this.provider.resize(bytes);
    const notified = await this.threads!.resize(this.options.name, bytes);
    this.geometry.capacityBytes = bytes;
    writeRecord(this.options.stateDir, deviceRecord(this.options, this.geometry, this.provider));
    log.info('device resized', { device: this.options.name, bytes, driverNotified: notified });
  }

  /** How long this server held the device's queues paused (copies, resizes that pause). */
  get pausedSeconds(): number {
    return this.pause.pausedSeconds;
  }

  /**
   * Runs `action` while the device takes no request: every queue stops taking chains from the
   * driver and finishes those in flight first; afterwards the queues serve what came meanwhile,
   * whether `action` succeeded or not. Rejects if a queue still holds requests after 10 s.
   * Control messages are answered throughout (a driver reset included).
   */
  whilePaused<T>(action: () => Promise<T>): Promise<T> {
    if (!this.threads) return Promise.reject(new Error(`device ${this.options.name} is not served`));
    return this.pause.whilePaused(action);
  }

  /**
   * Lets go of the device without removing it: the threads stop and the fd closes, and a standby
   * server (a newer build, say) takes over where this one left off.
   */
  async handOver(): Promise<void> {
    if (this.threads) await this.threads.detach(this.options.name);
    this.threads = undefined;
    await this.provider.close();
    this.device.close();
    this.control.close();
    log.info('device handed over', { device: this.options.name });
  }

  /** Unbinds from vdpa, stops the threads and destroys the VDUSE device. */
  async stop(): Promise<void> {
    const name = this.options.name;
    await this.unbind();
    if (this.threads) await this.threads.detach(name);
    await this.provider.close();
    this.device.close();
    await destroyWithRetry(this.control, name);
    removeRecord(this.options.stateDir, name);
    removeInflightLog(inflightLogPath(this.options.stateDir, name));
    this.control.close();
    log.info('device removed', { device: name });
  }

  private async startThreadsStep(steps: StartSteps, takeover: boolean): Promise<void> {
    const name = this.options.name;
    steps.onFailure(`stopping the threads of ${name}`, () => this.threads?.detach(name));
    await steps.run(`starting the device threads of ${name}`, async () => {
      this.threads = deviceThreads(this.options.logLevel);
      await this.threads.attach(
        {
          name,
          deviceFd: this.device.fd,
          backend: this.provider.queueSpec,
          geometry: this.geometry,
          state: this.state.buffer,
          counters: this.ioCounters.buffer,
          countRequests: this.options.countRequests ?? true,
          largeIoHelpers: this.options.largeIoHelpers ?? false,
          inflightLogPath: inflightLogPath(this.options.stateDir, name),
          takeover,
        },
        this.provider.queuesShareOneThread,
      );
    });
  }

  /** Removes the vdpa device, if there is one, and waits until its block device is gone. */
  private async unbind(): Promise<void> {
    if (!this.vdpaBound) return;
    const vdpa = await VdpaClient.open();
    try {
      await vdpa.removeDevice(this.options.name);
    } finally {
      await vdpa.close();
    }
    this.vdpaBound = false;
    await waitForBlockDeviceGone(this.options.name, { timeoutMs: STOP_TIMEOUT_MS });
  }

  /** Binds the device to virtio-vdpa (vdpa DEV_NEW) and waits for its block device. */
  private async bindStep(steps: StartSteps): Promise<void> {
    const name = this.options.name;
    steps.onFailure(`removing vdpa device ${name}`, () => {
      // DEV_NEW may have made the device even though the call failed (a timeout, say).
      this.vdpaBound ||= vdpaDeviceExists(name);
      return this.unbind();
    });
    await steps.run(
      `binding device ${name} to virtio-vdpa through the vdpa generic netlink family`,
      async () => {
        await (this.options.binder ? this.options.binder.bind(name) : VdpaBinder.bindOnce(name));
        this.vdpaBound = true;
      },
      'environment',
    );
    this.blockDevicePath = await steps.run(
      `waiting for the block device of ${name} (virtio_vdpa and virtio_blk must be loaded)`,
      () => waitForBlockDevice(name),
      'environment',
    );
  }
}

let sharedThreads: DeviceThreads | undefined;

/** Every device of a process is served by the same threads. */
function deviceThreads(logLevel: string): DeviceThreads {
  sharedThreads ??= new DeviceThreads(logLevel);
  return sharedThreads;
}

function deviceRecord(
  options: BlkServeOptions,
  geometry: BlkGeometry,
  provider: BackendProvider,
): DeviceRecord {
  const holder = provider.lockHolder;
  return {
    version: recordVersionOf(options.backend),
    name: options.name,
    backend: options.backend,
    geometry,
    ...(holder === undefined ? {} : { lockHolders: [holder] }),
  };
}

/** Why a server of `options` may not take over the device `record` describes, if it may not. */
function storageMismatch(record: DeviceRecord, options: BlkServeOptions): string | undefined {
  const mismatch = servingMismatch(record.backend, options.backend);
  return mismatch && `VDUSE device ${options.name} serves ${mismatch}`;
}

function vdpaDeviceExists(name: string): boolean {
  return existsSync(`/sys/bus/vdpa/devices/${name}`);
}

/**
 * The kernel marks a device broken for good when a control message waits longer than msg_timeout
 * (30 s by default). A server killed while the driver waits on one (during binding, say) has that
 * long to be replaced; give a cold restart on a slow machine time to do it.
 */
const MESSAGE_TIMEOUT_S = 180;

function setMessageTimeout(name: string): void {
  try {
    writeFileSync(`/sys/class/vduse/${name}/msg_timeout`, String(MESSAGE_TIMEOUT_S));
  } catch (error) {
    log.warn('could not raise msg_timeout', { device: name, error: String(error) });
  }
}

function setBounceSize(name: string, bytes: number): void {
  writeFileSync(`/sys/class/vduse/${name}/bounce_size`, String(bytes));
}

async function openImage(options: BlkServeOptions): Promise<BackendProvider> {
  const provider = await openBackend(options.backend, options.sizeBytes);
  if (provider.size() < options.blockSize) {
    await provider.close();
    await provider.removeIfCreated();
    throw new Error(`image ${describeBackend(options.backend)} is smaller than one block: give --size`);
  }
  return provider;
}

async function openControl(steps: StartSteps): Promise<VduseControl> {
  const control = await steps.run(
    'opening the VDUSE control device',
    () => VduseControl.open(),
    'environment',
  );
  steps.onFailure('closing the VDUSE control device', () => control.close());
  return control;
}

async function openDevice(steps: StartSteps, name: string): Promise<VduseDevice> {
  const step = `opening VDUSE device ${name}`;
  const device = await steps.run(step, () => VduseDevice.openIfFree(name));
  if (!device) throw steps.fail(step, 'in-use', `VDUSE device ${name} is already served by another process`);
  steps.onFailure(`closing VDUSE device ${name}`, () => device.close());
  return device;
}

/** DESTROY_DEV answers EBUSY while the kernel still holds the device after unbinding: retry briefly. */
async function destroyWithRetry(control: VduseControl, name: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      control.destroyDevice(name);
      return;
    } catch (error) {
      if (attempt >= DESTROY_RETRIES || !isErrno(error, 'EBUSY')) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

import { existsSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { FileBackendProvider } from '../backend/file';
import { log } from '../log';
import { VdpaClient, waitForBlockDevice, waitForBlockDeviceGone } from '../vdpa';
import { VduseControl } from '../vduse/control';
import { VduseDevice, devicePath } from '../vduse/device';
import { BlkGeometry, blkFeatures, encodeBlkConfig } from '../virtio/blk/config';
import { VIRTIO_ID_BLOCK, VIRTIO_VENDOR_ID } from '../virtio/features';
import { DeviceThreads } from './device-threads';
import { isErrno } from '../sys/errors';
import { DeviceRecord, readRecord, removeRecord, writeRecord } from './device-record';
import { SharedDeviceState } from './shared-state';

export interface BlkServeOptions {
  name: string;
  imagePath: string;
  /** Size of a new image; an existing image keeps its size unless this is larger. */
  sizeBytes?: number;
  queues: number;
  queueSize: number;
  blockSize: number;
  readOnly: boolean;
  /** Kernel bounce buffer for virtio-vdpa, in bytes (sysfs bounce_size); kernel default when unset. */
  bounceBytes?: number;
  logLevel: string;
  /** Device records and admin sockets (DEFAULT_STATE_DIR). */
  stateDir: string;
}

const STOP_TIMEOUT_MS = 10_000;
const DESTROY_RETRIES = 50;

/**
 * Serves one image file as a virtio-blk device: creates the VDUSE device, runs a control thread
 * and one thread per queue, binds it to virtio-vdpa and tears all of it down again.
 */
export class BlkDeviceServer {
  private threads: DeviceThreads | undefined;
  private vdpaBound = false;
  private blockDevicePath: string | undefined;

  private readonly state: SharedDeviceState;

  private constructor(
    readonly options: BlkServeOptions,
    private readonly provider: FileBackendProvider,
    private readonly control: VduseControl,
    private readonly device: VduseDevice,
    private readonly geometry: BlkGeometry,
  ) {
    this.state = SharedDeviceState.create(geometry.queues);
    this.state.capacityBytes = geometry.capacityBytes;
  }

  /**
   * Serves the device: creates it, or takes over a live one a previous server left (crash, kill,
   * upgrade) when its record is in the state directory. On failure, whatever this call created is
   * removed again before the error surfaces.
   */
  static async start(options: BlkServeOptions): Promise<BlkDeviceServer> {
    const control = VduseControl.open();
    try {
      const record = readRecord(options.stateDir, options.name);
      if (record && existsSync(devicePath(options.name)))
        return await BlkDeviceServer.adopt(control, options, record);
      return await BlkDeviceServer.create(control, options);
    } catch (error) {
      control.close();
      throw error;
    }
  }

  private static async create(control: VduseControl, options: BlkServeOptions): Promise<BlkDeviceServer> {
    const provider = FileBackendProvider.create(options.imagePath, options.sizeBytes);
    const geometry: BlkGeometry = {
      capacityBytes: provider.size(),
      queues: options.queues,
      queueSize: options.queueSize,
      blockSize: options.blockSize,
      readOnly: options.readOnly,
      serial: options.name,
    };
    let server: BlkDeviceServer | undefined;
    let created = false;
    try {
      if (geometry.capacityBytes < geometry.blockSize) {
        throw new Error(`image ${options.imagePath} is smaller than one block: give --size`);
      }
      created = control.createDevice({
        name: options.name,
        deviceId: VIRTIO_ID_BLOCK,
        vendorId: VIRTIO_VENDOR_ID,
        features: blkFeatures(geometry),
        queueCount: geometry.queues,
        queueAlign: 4096,
        config: encodeBlkConfig(geometry),
      });
      if (!created) {
        throw new Error(
          `a VDUSE device named ${options.name} already exists and has no record in ${options.stateDir}: ` +
            'it was not made by vduse-csi with this state directory',
        );
      }
      writeRecord(options.stateDir, deviceRecord(options, geometry));
      const device = VduseDevice.open(options.name);
      server = new BlkDeviceServer(options, provider, control, device, geometry);
      for (let queue = 0; queue < geometry.queues; queue++) device.setupQueue(queue, geometry.queueSize);
      if (options.bounceBytes !== undefined) setBounceSize(options.name, options.bounceBytes);
      await server.startThreads();
      await server.bind();
      return server;
    } catch (error) {
      if (server)
        await server.stop().catch((cleanup) => log.error('cleanup failed', { error: String(cleanup) }));
      else if (created) {
        destroyQuietly(control, options.name);
        removeRecord(options.stateDir, options.name);
      }
      provider.removeIfCreated();
      throw error;
    }
  }

  /** Takes over a device whose server is gone: same geometry, rings resumed where the used ring stands. */
  private static async adopt(
    control: VduseControl,
    options: BlkServeOptions,
    record: DeviceRecord,
  ): Promise<BlkDeviceServer> {
    if (resolve(record.imagePath) !== resolve(options.imagePath)) {
      throw new Error(`VDUSE device ${options.name} serves ${record.imagePath}, not ${options.imagePath}`);
    }
    const device = VduseDevice.open(options.name);
    const server = new BlkDeviceServer(
      { ...options, ...record.geometry },
      new FileBackendProvider(record.imagePath, false),
      control,
      device,
      record.geometry,
    );
    server.vdpaBound = vdpaDeviceExists(options.name);
    if (device.queueInfo(0).ready) server.state.setRunning(true);
    log.info('taking over a live device', { device: options.name, bound: server.vdpaBound });
    await server.startThreads();
    if (server.vdpaBound) server.blockDevicePath = await waitForBlockDevice(options.name);
    else await server.bind();
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
    writeRecord(this.options.stateDir, deviceRecord(this.options, this.geometry));
    log.info('device resized', { device: this.options.name, bytes, driverNotified: notified });
  }

  /** Unbinds from vdpa, stops the threads and destroys the VDUSE device. */
  async stop(): Promise<void> {
    const name = this.options.name;
    if (this.vdpaBound) {
      const vdpa = await VdpaClient.open();
      try {
        await vdpa.removeDevice(name);
      } finally {
        await vdpa.close();
      }
      this.vdpaBound = false;
      await waitForBlockDeviceGone(name, { timeoutMs: STOP_TIMEOUT_MS });
    }
    if (this.threads) await this.threads.detach(name);
    this.device.close();
    await destroyWithRetry(this.control, name);
    removeRecord(this.options.stateDir, name);
    this.control.close();
    log.info('device removed', { device: name });
  }

  private async startThreads(): Promise<void> {
    this.threads = deviceThreads(this.options.logLevel);
    await this.threads.attach({
      name: this.options.name,
      deviceFd: this.device.fd,
      imagePath: this.options.imagePath,
      geometry: this.geometry,
      state: this.state.buffer,
    });
  }

  private async bind(): Promise<void> {
    const vdpa = await VdpaClient.open();
    try {
      await vdpa.addDevice(this.options.name);
      this.vdpaBound = true;
    } finally {
      await vdpa.close();
    }
    this.blockDevicePath = await waitForBlockDevice(this.options.name);
  }
}

let sharedThreads: DeviceThreads | undefined;

/** Every device of a process is served by the same threads. */
function deviceThreads(logLevel: string): DeviceThreads {
  sharedThreads ??= new DeviceThreads(logLevel);
  return sharedThreads;
}

function deviceRecord(options: BlkServeOptions, geometry: BlkGeometry): DeviceRecord {
  return { version: 1, name: options.name, imagePath: options.imagePath, geometry };
}

function vdpaDeviceExists(name: string): boolean {
  return existsSync(`/sys/bus/vdpa/devices/${name}`);
}

function setBounceSize(name: string, bytes: number): void {
  writeFileSync(`/sys/class/vduse/${name}/bounce_size`, String(bytes));
}

function destroyQuietly(control: VduseControl, name: string): void {
  try {
    control.destroyDevice(name);
  } catch (error) {
    log.error('could not destroy VDUSE device', { device: name, error: String(error) });
  }
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

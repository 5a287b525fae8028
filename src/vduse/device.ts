import { SysError, isErrno } from '../sys/errors';
import * as libc from '../sys/libc';
import {
  ControlRequest,
  IotlbEntry,
  MESSAGE_SIZE,
  VqInfo,
  decodeIotlbEntry,
  decodeRequest,
  decodeVqInfo,
  encodeIotlbQuery,
  encodeVqConfig,
  ioctls,
} from './uapi';

const EAGAIN = 11;
const EINVAL = 22;

export function devicePath(name: string): string {
  return `/dev/vduse/${name}`;
}

/**
 * An open /dev/vduse/$NAME. Only one process may hold it; the fd number is shared by the threads
 * of that process, so workers attach to it with `VduseDevice.attach(fd)`.
 */
export class VduseDevice {
  private readonly message = Buffer.alloc(MESSAGE_SIZE);

  private constructor(private openFd: number) {}

  get fd(): number {
    if (this.openFd < 0) throw new Error('the VDUSE device is closed');
    return this.openFd;
  }

  /** Opens the device, or returns null while another process holds it open. */
  static openIfFree(name: string): VduseDevice | null {
    try {
      return new VduseDevice(libc.openPath(devicePath(name), libc.O_RDWR | libc.O_NONBLOCK));
    } catch (error) {
      if (isErrno(error, 'EBUSY')) return null;
      throw error;
    }
  }

  static attach(fd: number): VduseDevice {
    return new VduseDevice(fd);
  }

  setupQueue(index: number, maxSize: number): void {
    libc.ioctl(this.openFd, ioctls.VQ_SETUP, encodeVqConfig(index, maxSize), `VDUSE_VQ_SETUP ${index}`);
  }

  queueInfo(index: number): VqInfo {
    const buffer = Buffer.alloc(48);
    buffer.writeUInt32LE(index, 0);
    libc.ioctl(this.openFd, ioctls.VQ_GET_INFO, buffer, `VDUSE_VQ_GET_INFO ${index}`);
    return decodeVqInfo(buffer);
  }

  negotiatedFeatures(): bigint {
    const buffer = Buffer.alloc(8);
    libc.ioctl(this.openFd, ioctls.DEV_GET_FEATURES, buffer, 'VDUSE_DEV_GET_FEATURES');
    return buffer.readBigUInt64LE(0);
  }

  setKickFd(index: number, eventFd: number): void {
    const buffer = Buffer.alloc(8);
    buffer.writeUInt32LE(index, 0);
    buffer.writeInt32LE(eventFd, 4);
    libc.ioctl(this.openFd, ioctls.VQ_SETUP_KICKFD, buffer, `VDUSE_VQ_SETUP_KICKFD ${index}`);
  }

  private readonly irqArgument = Buffer.alloc(4);

  injectQueueIrq(index: number): void {
    this.irqArgument.writeUInt32LE(index, 0);
    libc.ioctl(this.openFd, ioctls.VQ_INJECT_IRQ, this.irqArgument, 'VDUSE_VQ_INJECT_IRQ');
  }

  setConfig(offset: number, bytes: Buffer): void {
    const buffer = Buffer.alloc(8 + bytes.length);
    buffer.writeUInt32LE(offset, 0);
    buffer.writeUInt32LE(bytes.length, 4);
    bytes.copy(buffer, 8);
    libc.ioctl(this.openFd, ioctls.DEV_SET_CONFIG, buffer, 'VDUSE_DEV_SET_CONFIG');
  }

  /** Tells the driver the config space changed; returns false before DRIVER_OK (nothing to tell). */
  injectConfigIrq(): boolean {
    try {
      libc.ioctlValue(this.openFd, ioctls.DEV_INJECT_CONFIG_IRQ, 0, 'VDUSE_DEV_INJECT_CONFIG_IRQ');
      return true;
    } catch (error) {
      if (error instanceof SysError && error.errno === EINVAL) return false;
      throw error;
    }
  }

  /** The IOTLB entry overlapping [start, last] and an fd to mmap it, or null when none does. */
  iotlbFd(start: number, last: number): { fd: number; entry: IotlbEntry } | null {
    const buffer = encodeIotlbQuery(BigInt(start), BigInt(last));
    const fd = libc.raw.ioctlPtr(this.openFd, ioctls.IOTLB_GET_FD, buffer);
    if (fd < 0) {
      if (libc.errno() === EINVAL) return null;
      throw new SysError('VDUSE_IOTLB_GET_FD', libc.errno());
    }
    return { fd, entry: decodeIotlbEntry(buffer) };
  }

  /** The next control message, or null when none waits. */
  readRequest(): ControlRequest | null {
    const result = libc.raw.read(this.openFd, this.message, MESSAGE_SIZE);
    if (result < 0) {
      if (libc.errno() === EAGAIN) return null;
      throw new SysError('read control message', libc.errno());
    }
    if (result !== MESSAGE_SIZE) throw new Error(`control message of ${result} bytes`);
    return decodeRequest(this.message);
  }

  writeResponse(response: Buffer): void {
    const written = libc.check(
      libc.raw.write(this.openFd, response, response.length),
      'write control response',
    );
    if (written !== response.length) throw new Error(`control response written short (${written})`);
  }

  /** Closes the fd once; later calls do nothing (the number may belong to another file by then). */
  close(): void {
    if (this.openFd < 0) return;
    const fd = this.openFd;
    this.openFd = -1;
    libc.closeFd(fd);
  }
}

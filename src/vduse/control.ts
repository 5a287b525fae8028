import { existsSync } from 'node:fs';
import { isErrno } from '../sys/errors';
import * as libc from '../sys/libc';
import { CONTROL_PATH, DeviceSpec, VDUSE_API_VERSION, encodeDeviceConfig, encodeName, ioctls } from './uapi';

/** /dev/vduse/control: creates and destroys VDUSE devices. */
export class VduseControl {
  private constructor(private fd: number) {}

  static open(): VduseControl {
    if (!existsSync(CONTROL_PATH)) {
      throw new Error(
        `${CONTROL_PATH} is missing: load the vduse module (modprobe vduse) on a Linux >= 5.15 kernel`,
      );
    }
    const fd = libc.openPath(CONTROL_PATH, libc.O_RDWR);
    try {
      const version = Buffer.alloc(8);
      version.writeBigUInt64LE(BigInt(VDUSE_API_VERSION));
      // A fresh control fd may default to a newer API; version 0 is what this runtime speaks.
      libc.ioctl(fd, ioctls.SET_API_VERSION, version, 'VDUSE_SET_API_VERSION');
    } catch (error) {
      libc.closeFd(fd);
      throw error;
    }
    return new VduseControl(fd);
  }

  /** Creates the device; returns false when a device of that name already exists (EEXIST). */
  createDevice(spec: DeviceSpec): boolean {
    try {
      libc.ioctl(this.fd, ioctls.CREATE_DEV, encodeDeviceConfig(spec), `VDUSE_CREATE_DEV ${spec.name}`);
      return true;
    } catch (error) {
      if (isErrno(error, 'EEXIST')) return false;
      throw error;
    }
  }

  /** Destroys the device; EBUSY while it is bound to vdpa or open, ENOENT when absent. */
  destroyDevice(name: string): void {
    libc.ioctl(this.fd, ioctls.DESTROY_DEV, encodeName(name), `VDUSE_DESTROY_DEV ${name}`);
  }

  /** Closes the fd once; later calls do nothing (the number may belong to another file by then). */
  close(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    libc.closeFd(fd);
  }
}

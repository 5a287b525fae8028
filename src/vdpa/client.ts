import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type AttrSpec, type ExtAck, type GenlMessage, GenlSocket, NetlinkError } from '../sys/netlink';
import {
  VDPA_CMD_DEV_DEL,
  VDPA_CMD_DEV_GET,
  VDPA_CMD_DEV_NEW,
  VDPA_CMD_MGMTDEV_GET,
  VDPA_COMMAND_NAMES,
  VDPA_GENL_NAME,
  VDPA_GENL_VERSION,
} from './constants';
import {
  type ManagementDevice,
  type VdpaDeviceInfo,
  decodeDeviceInfo,
  decodeManagementDevice,
  devNameAttributes,
  devNewAttributes,
} from './messages';

const ENOENT = 2;

/** A vdpa request the kernel refused; .code is the errno name (EEXIST, ENODEV, EPERM, ...). */
export class VdpaError extends NetlinkError {
  /** DEV_NEW, DEV_DEL, ... */
  readonly command: string;
  /** The vdpa device concerned, when there is one. */
  readonly device?: string;

  constructor(command: string, errno: number, extAck: ExtAck, detail: string, device?: string) {
    const kernel = extAck.message ? `; kernel: ${extAck.message}` : '';
    super('vdpa', errno, extAck, `${detail}${kernel}`);
    this.name = 'VdpaError';
    this.command = command;
    if (device !== undefined) this.device = device;
  }
}

export interface VdpaClientOptions {
  /** Per-reply timeout; DEV_NEW can be slow (the kernel probes the new virtio device). Default 30 s. */
  readonly timeoutMs?: number;
  /** Where VDUSE device nodes live, used to explain a refused DEV_NEW. Default /dev/vduse. */
  readonly vduseDevDir?: string;
}

export const VDPA_FAMILY_MISSING =
  'the vdpa generic netlink family is not available (modprobe vdpa / vduse?)';

export const VDPA_FAMILY_NOT_IN_NAMESPACE =
  'the vdpa generic netlink family is not visible from this network namespace although the vdpa ' +
  'module is loaded: it exists only in the initial network namespace, so the process (the CSI node ' +
  'plugin and its device servers) must run with the host network (hostNetwork: true)';

/**
 * Why resolving the vdpa family answered ENOENT: the module is not loaded, or (the vdpa bus is
 * there) this process is in a network namespace of its own, where the family does not exist.
 */
export function vdpaFamilyMissingReason(sysfsRoot = '/sys'): string {
  return existsSync(join(sysfsRoot, 'bus', 'vdpa')) ? VDPA_FAMILY_NOT_IN_NAMESPACE : VDPA_FAMILY_MISSING;
}

/**
 * A client of the kernel's vdpa generic netlink family: what `vdpa mgmtdev show` and
 * `vdpa dev add|del|show` do, without the tool.
 */
export class VdpaClient {
  private constructor(
    private readonly socket: GenlSocket,
    readonly familyId: number,
    private readonly vduseDevDir: string,
  ) {}

  static async open(options: VdpaClientOptions = {}): Promise<VdpaClient> {
    const socket = GenlSocket.open({ timeoutMs: options.timeoutMs ?? 30_000 });
    try {
      const family = await socket.resolveFamily(VDPA_GENL_NAME);
      if (!family) throw new VdpaError('GETFAMILY', ENOENT, {}, vdpaFamilyMissingReason());
      return new VdpaClient(socket, family.id, options.vduseDevDir ?? '/dev/vduse');
    } catch (error) {
      await socket.close();
      throw error;
    }
  }

  /** MGMTDEV_GET dump: the parents that can create vdpa devices (e.g. "vduse"). */
  async listManagementDevices(): Promise<ManagementDevice[]> {
    const replies = await this.run(VDPA_CMD_MGMTDEV_GET, [], { dump: true });
    return replies.map(decodeManagementDevice);
  }

  /** DEV_NEW: binds the VDUSE device `name` to the vdpa bus, so virtio-vdpa creates /dev/vdX. */
  async addDevice(name: string, mgmtdev = 'vduse'): Promise<void> {
    await this.run(VDPA_CMD_DEV_NEW, devNewAttributes(name, mgmtdev), { device: name, mgmtdev });
  }

  /** DEV_DEL: unbinds the device; its block device goes away. */
  async removeDevice(name: string): Promise<void> {
    await this.run(VDPA_CMD_DEV_DEL, devNameAttributes(name), { device: name });
  }

  /** DEV_GET: the device, or null when there is no vdpa device of that name. */
  async getDevice(name: string): Promise<VdpaDeviceInfo | null> {
    try {
      const replies = await this.run(VDPA_CMD_DEV_GET, devNameAttributes(name), { device: name });
      return replies.length > 0 ? decodeDeviceInfo(replies[0]) : null;
    } catch (error) {
      if (error instanceof VdpaError && error.code === 'ENODEV') return null;
      throw error;
    }
  }

  /** DEV_GET dump: every vdpa device. */
  async listDevices(): Promise<VdpaDeviceInfo[]> {
    const replies = await this.run(VDPA_CMD_DEV_GET, [], { dump: true });
    return replies.map(decodeDeviceInfo);
  }

  async close(): Promise<void> {
    await this.socket.close();
  }

  private async run(
    cmd: number,
    attrs: readonly AttrSpec[],
    context: { dump?: boolean; device?: string; mgmtdev?: string },
  ): Promise<GenlMessage[]> {
    const command = VDPA_COMMAND_NAMES[cmd] ?? `command ${cmd}`;
    const operation = `vdpa ${command}${context.device ? ` ${context.device}` : ''}`;
    try {
      return context.dump
        ? await this.socket.dump(this.familyId, cmd, VDPA_GENL_VERSION, attrs, operation)
        : await this.socket.request(this.familyId, cmd, VDPA_GENL_VERSION, attrs, operation);
    } catch (error) {
      if (!(error instanceof NetlinkError) || error instanceof VdpaError) throw error;
      throw new VdpaError(
        command,
        error.errno,
        error.extAck,
        this.explain(command, error.code, context),
        context.device,
      );
    }
  }

  /** Turns a kernel errno into a sentence about the request that failed. */
  private explain(command: string, code: string, context: { device?: string; mgmtdev?: string }): string {
    const device = JSON.stringify(context.device ?? '');
    const mgmtdev = context.mgmtdev ?? 'vduse';
    if (code === 'EPERM' || code === 'EACCES') {
      return `${command}${context.device ? ` ${device}` : ''} is not permitted: it needs CAP_NET_ADMIN`;
    }
    if (code === 'ETIMEDOUT')
      return `${command}${context.device ? ` ${device}` : ''}: the kernel did not answer`;
    switch (command) {
      case 'DEV_NEW':
        if (code === 'EEXIST') return `a vdpa device named ${device} already exists`;
        if (code === 'ENODEV') {
          const hint = mgmtdev === 'vduse' ? ' (modprobe vduse?)' : '';
          return `no vdpa management device ${JSON.stringify(mgmtdev)}${hint}`;
        }
        if (code === 'EINVAL' && mgmtdev === 'vduse') {
          // VDUSE answers EINVAL both for an unknown name and for a device whose virtqueues are not set up.
          return existsSync(join(this.vduseDevDir, context.device ?? ''))
            ? `VDUSE device ${device} is not ready to be added (are all its virtqueues set up?)`
            : `no VDUSE device named ${device}`;
        }
        return `cannot add vdpa device ${device} on ${JSON.stringify(mgmtdev)}`;
      case 'DEV_DEL':
        if (code === 'ENODEV') return `no vdpa device named ${device}`;
        return `cannot remove vdpa device ${device}`;
      case 'DEV_GET':
        if (code === 'ENODEV') return `no vdpa device named ${device}`;
        return context.device ? `cannot query vdpa device ${device}` : 'cannot list vdpa devices';
      case 'MGMTDEV_GET':
        return 'cannot list vdpa management devices';
      default:
        return `${command} failed`;
    }
  }
}

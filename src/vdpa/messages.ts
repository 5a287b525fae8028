import { type AttrSpec, type GenlMessage, attr, NetlinkFormatError } from '../sys/netlink';
import {
  VDPA_ATTR_DEV_ID,
  VDPA_ATTR_DEV_MAX_VQ_SIZE,
  VDPA_ATTR_DEV_MAX_VQS,
  VDPA_ATTR_DEV_MGMTDEV_MAX_VQS,
  VDPA_ATTR_DEV_MIN_VQ_SIZE,
  VDPA_ATTR_DEV_NAME,
  VDPA_ATTR_DEV_SUPPORTED_FEATURES,
  VDPA_ATTR_DEV_VENDOR_ID,
  VDPA_ATTR_MGMTDEV_BUS_NAME,
  VDPA_ATTR_MGMTDEV_DEV_NAME,
  VDPA_ATTR_MGMTDEV_SUPPORTED_CLASSES,
  virtioClassName,
} from './constants';

/*
 * Pure vdpa message building and parsing, separate from the socket so they can be tested without a
 * kernel.
 */

export const MAX_NAME_BYTES = 255;
const DEVICE_NAME = /^[A-Za-z0-9._-]+$/;
const MGMTDEV_PART = /^[A-Za-z0-9._:-]+$/;

/** Thrown before anything is sent when a name cannot be a vdpa / VDUSE device name. */
export class VdpaNameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VdpaNameError';
  }
}

/**
 * A vdpa (and VDUSE) device name: non-empty, < 256 bytes, only [A-Za-z0-9._-], and not "." or ".."
 * (it becomes a sysfs and /dev path component).
 */
export function validateDeviceName(name: string): string {
  if (typeof name !== 'string' || name.length === 0) throw new VdpaNameError('vdpa device name is empty');
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) {
    throw new VdpaNameError(
      `vdpa device name is longer than ${MAX_NAME_BYTES} bytes: ${JSON.stringify(name)}`,
    );
  }
  if (!DEVICE_NAME.test(name)) {
    throw new VdpaNameError(`vdpa device name may only contain [A-Za-z0-9._-]: ${JSON.stringify(name)}`);
  }
  if (name === '.' || name === '..')
    throw new VdpaNameError(`vdpa device name cannot be ${JSON.stringify(name)}`);
  return name;
}

export interface MgmtDevHandle {
  readonly busName?: string;
  readonly devName: string;
}

/** "vduse" or "bus/device" (e.g. "pci/0000:00:04.0"), as the vdpa tool writes them. */
export function parseMgmtDev(handle: string): MgmtDevHandle {
  if (typeof handle !== 'string' || handle.length === 0) {
    throw new VdpaNameError('vdpa management device name is empty');
  }
  const parts = handle.split('/');
  if (
    parts.length > 2 ||
    parts.some((p) => p.length === 0 || p.length > MAX_NAME_BYTES || !MGMTDEV_PART.test(p))
  ) {
    throw new VdpaNameError(
      `vdpa management device must be "name" or "bus/name" of [A-Za-z0-9._:-]: ${JSON.stringify(handle)}`,
    );
  }
  return parts.length === 2 ? { busName: parts[0], devName: parts[1] } : { devName: parts[0] };
}

export function formatMgmtDev(handle: MgmtDevHandle): string {
  return handle.busName ? `${handle.busName}/${handle.devName}` : handle.devName;
}

function mgmtDevAttrs(handle: MgmtDevHandle): AttrSpec[] {
  const attrs: AttrSpec[] = [];
  if (handle.busName) attrs.push(attr.string(VDPA_ATTR_MGMTDEV_BUS_NAME, handle.busName));
  attrs.push(attr.string(VDPA_ATTR_MGMTDEV_DEV_NAME, handle.devName));
  return attrs;
}

/** DEV_NEW: `vdpa dev add name NAME mgmtdev MGMTDEV`. */
export function devNewAttributes(name: string, mgmtdev: string): AttrSpec[] {
  validateDeviceName(name);
  return [attr.string(VDPA_ATTR_DEV_NAME, name), ...mgmtDevAttrs(parseMgmtDev(mgmtdev))];
}

/** DEV_DEL and DEV_GET take the device name alone. */
export function devNameAttributes(name: string): AttrSpec[] {
  validateDeviceName(name);
  return [attr.string(VDPA_ATTR_DEV_NAME, name)];
}

export interface ManagementDevice {
  readonly busName?: string;
  readonly devName: string;
  /** "vduse" or "bus/dev": what addDevice() takes as mgmtdev. */
  readonly handle: string;
  /** Virtio classes it can create, e.g. ['net', 'block']. */
  readonly supportedClasses?: string[];
  readonly supportedClassIds?: number[];
  readonly maxVqs?: number;
  readonly supportedFeatures?: bigint;
}

export interface VdpaDeviceInfo {
  readonly name: string;
  /** "vduse" or "bus/dev". */
  readonly mgmtdev: string;
  /** Virtio device id (2 = block). */
  readonly deviceId: number;
  /** Class name of deviceId, e.g. 'block'. */
  readonly deviceClass: string;
  readonly vendorId: number;
  readonly maxVqs: number;
  readonly maxVqSize: number;
  readonly minVqSize?: number;
}

function required<T>(value: T | undefined, what: string, command: string): T {
  if (value === undefined) throw new NetlinkFormatError(`vdpa ${command} reply without ${what}`);
  return value;
}

export function decodeManagementDevice(message: GenlMessage): ManagementDevice {
  const a = message.attrs;
  const busName = a.string(VDPA_ATTR_MGMTDEV_BUS_NAME);
  const devName = required(a.string(VDPA_ATTR_MGMTDEV_DEV_NAME), 'MGMTDEV_DEV_NAME', 'MGMTDEV_GET');
  const classes = a.u64(VDPA_ATTR_MGMTDEV_SUPPORTED_CLASSES);
  const maxVqs = a.u32(VDPA_ATTR_DEV_MGMTDEV_MAX_VQS);
  const features = a.u64(VDPA_ATTR_DEV_SUPPORTED_FEATURES);
  const result: {
    -readonly [K in keyof ManagementDevice]: ManagementDevice[K];
  } = { devName, handle: formatMgmtDev({ busName, devName }) };
  if (busName !== undefined) result.busName = busName;
  if (classes !== undefined) {
    const ids: number[] = [];
    for (let bit = 0; bit < 64; bit++) if ((classes >> BigInt(bit)) & 1n) ids.push(bit);
    result.supportedClassIds = ids;
    result.supportedClasses = ids.map(virtioClassName);
  }
  if (maxVqs !== undefined) result.maxVqs = maxVqs;
  if (features !== undefined) result.supportedFeatures = features;
  return result;
}

export function decodeDeviceInfo(message: GenlMessage): VdpaDeviceInfo {
  const a = message.attrs;
  const busName = a.string(VDPA_ATTR_MGMTDEV_BUS_NAME);
  const devName = required(a.string(VDPA_ATTR_MGMTDEV_DEV_NAME), 'MGMTDEV_DEV_NAME', 'DEV_GET');
  const deviceId = required(a.u32(VDPA_ATTR_DEV_ID), 'DEV_ID', 'DEV_GET');
  const info: { -readonly [K in keyof VdpaDeviceInfo]: VdpaDeviceInfo[K] } = {
    name: required(a.string(VDPA_ATTR_DEV_NAME), 'DEV_NAME', 'DEV_GET'),
    mgmtdev: formatMgmtDev({ busName, devName }),
    deviceId,
    deviceClass: virtioClassName(deviceId),
    vendorId: required(a.u32(VDPA_ATTR_DEV_VENDOR_ID), 'DEV_VENDOR_ID', 'DEV_GET'),
    maxVqs: required(a.u32(VDPA_ATTR_DEV_MAX_VQS), 'DEV_MAX_VQS', 'DEV_GET'),
    maxVqSize: required(a.u16(VDPA_ATTR_DEV_MAX_VQ_SIZE), 'DEV_MAX_VQ_SIZE', 'DEV_GET'),
  };
  const minVqSize = a.u16(VDPA_ATTR_DEV_MIN_VQ_SIZE);
  if (minVqSize !== undefined) info.minVqSize = minVqSize;
  return info;
}

/*
 * VDUSE user API (include/uapi/linux/vduse.h), x86_64 encodings, and the byte layouts of the
 * structures exchanged with the kernel.
 */
export const VDUSE_API_VERSION = 0;
export const VDUSE_NAME_MAX = 256;
export const CONTROL_PATH = '/dev/vduse/control';

export const ioctls = {
  GET_API_VERSION: 0x80088100,
  SET_API_VERSION: 0x40088101,
  CREATE_DEV: 0x41508102,
  DESTROY_DEV: 0x41008103,
  IOTLB_GET_FD: 0xc0208110,
  DEV_GET_FEATURES: 0x80088111,
  DEV_SET_CONFIG: 0x40088112,
  DEV_INJECT_CONFIG_IRQ: 0x00008113,
  VQ_SETUP: 0x40208114,
  VQ_GET_INFO: 0xc0308115,
  VQ_SETUP_KICKFD: 0x40088116,
  VQ_INJECT_IRQ: 0x40048117,
} as const;

export const DEV_CONFIG_HEADER_SIZE = 336;
export const MESSAGE_SIZE = 152;

export const enum RequestType {
  GetVqState = 0,
  SetStatus = 1,
  UpdateIotlb = 2,
}

export const RESULT_OK = 0;
export const RESULT_FAILED = 1;

export const enum DeviceStatus {
  Acknowledge = 1,
  Driver = 2,
  DriverOk = 4,
  FeaturesOk = 8,
  NeedsReset = 0x40,
  Failed = 0x80,
}

export const ACCESS_RO = 1;
export const ACCESS_WO = 2;
export const ACCESS_RW = 3;

export interface DeviceSpec {
  name: string;
  deviceId: number;
  vendorId: number;
  features: bigint;
  queueCount: number;
  queueAlign: number;
  config: Buffer;
}

export function encodeDeviceConfig(spec: DeviceSpec): Buffer {
  const buffer = Buffer.alloc(DEV_CONFIG_HEADER_SIZE + spec.config.length);
  encodeName(spec.name).copy(buffer, 0);
  buffer.writeUInt32LE(spec.vendorId, 256);
  buffer.writeUInt32LE(spec.deviceId, 260);
  buffer.writeBigUInt64LE(spec.features, 264);
  buffer.writeUInt32LE(spec.queueCount, 272);
  buffer.writeUInt32LE(spec.queueAlign, 276);
  buffer.writeUInt32LE(spec.config.length, 332);
  spec.config.copy(buffer, DEV_CONFIG_HEADER_SIZE);
  return buffer;
}

/** A NUL-terminated, NUL-padded 256-byte name field. */
export function encodeName(name: string): Buffer {
  const field = Buffer.alloc(VDUSE_NAME_MAX);
  const bytes = Buffer.from(name, 'utf8');
  if (bytes.length === 0 || bytes.length >= VDUSE_NAME_MAX) throw new RangeError(`bad VDUSE name length`);
  bytes.copy(field);
  return field;
}

export function encodeVqConfig(index: number, maxSize: number): Buffer {
  const buffer = Buffer.alloc(32);
  buffer.writeUInt32LE(index, 0);
  buffer.writeUInt16LE(maxSize, 4);
  return buffer;
}

export interface VqInfo {
  index: number;
  num: number;
  descAddr: bigint;
  driverAddr: bigint;
  deviceAddr: bigint;
  availIndex: number;
  ready: boolean;
}

export function decodeVqInfo(buffer: Buffer): VqInfo {
  return {
    index: buffer.readUInt32LE(0),
    num: buffer.readUInt32LE(4),
    descAddr: buffer.readBigUInt64LE(8),
    driverAddr: buffer.readBigUInt64LE(16),
    deviceAddr: buffer.readBigUInt64LE(24),
    availIndex: buffer.readUInt16LE(32),
    ready: buffer.readUInt8(40) !== 0,
  };
}

export interface IotlbEntry {
  offset: bigint;
  start: bigint;
  last: bigint;
  perm: number;
}

export function encodeIotlbQuery(start: bigint, last: bigint): Buffer {
  const buffer = Buffer.alloc(32);
  buffer.writeBigUInt64LE(start, 8);
  buffer.writeBigUInt64LE(last, 16);
  return buffer;
}

export function decodeIotlbEntry(buffer: Buffer): IotlbEntry {
  return {
    offset: buffer.readBigUInt64LE(0),
    start: buffer.readBigUInt64LE(8),
    last: buffer.readBigUInt64LE(16),
    perm: buffer.readUInt8(24),
  };
}

export type ControlRequest =
  | { type: RequestType.GetVqState; id: number; queue: number }
  | { type: RequestType.SetStatus; id: number; status: number }
  | { type: RequestType.UpdateIotlb; id: number; start: bigint; last: bigint }
  | { type: 'unknown'; id: number; rawType: number };

export function decodeRequest(message: Buffer): ControlRequest {
  const rawType = message.readUInt32LE(0);
  const id = message.readUInt32LE(4);
  switch (rawType) {
    case RequestType.GetVqState:
      return { type: RequestType.GetVqState, id, queue: message.readUInt32LE(24) };
    case RequestType.SetStatus:
      return { type: RequestType.SetStatus, id, status: message.readUInt8(24) };
    case RequestType.UpdateIotlb:
      return {
        type: RequestType.UpdateIotlb,
        id,
        start: message.readBigUInt64LE(24),
        last: message.readBigUInt64LE(32),
      };
    default:
      return { type: 'unknown', id, rawType };
  }
}

export function encodeResponse(
  id: number,
  ok: boolean,
  vqState?: { queue: number; availIndex: number },
): Buffer {
  const message = Buffer.alloc(MESSAGE_SIZE);
  message.writeUInt32LE(id, 0);
  message.writeUInt32LE(ok ? RESULT_OK : RESULT_FAILED, 4);
  if (vqState) {
    message.writeUInt32LE(vqState.queue, 24);
    message.writeUInt16LE(vqState.availIndex, 28);
  }
  return message;
}

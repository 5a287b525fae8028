import { SysError } from './errors';
import { check, closeFd, errno as lastErrno, raw } from './libc';

/*
 * Generic netlink, spoken over an AF_NETLINK socket.
 *
 * The first half of this file is pure: message encoding, bounds-checked decoding and the reply state
 * machine (ReplyCollector). The second half (GenlSocket) only moves bytes between those functions and
 * the kernel. Requests run on koffi's worker threads: the kernel processes a generic netlink request
 * inside send(2), and some requests (vdpa DEV_NEW / DEV_DEL) wait there for a VDUSE daemon that may
 * live in this very process; blocking the event loop would deadlock it.
 */

// ---- constants (include/uapi/linux/netlink.h, genetlink.h) -------------------------------------------

export const AF_NETLINK = 16;
export const NETLINK_GENERIC = 16;
export const SOCK_RAW = 3;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SO_RCVTIMEO = 20;
export const SOL_NETLINK = 270;
export const NETLINK_EXT_ACK = 11;
export const MSG_TRUNC = 0x20;

export const NLMSG_HDRLEN = 16;
export const GENL_HDRLEN = 4;
export const NLA_HDRLEN = 4;

export const NLM_F_REQUEST = 0x01;
export const NLM_F_MULTI = 0x02;
export const NLM_F_ACK = 0x04;
export const NLM_F_DUMP_INTR = 0x10;
export const NLM_F_ROOT = 0x100;
export const NLM_F_MATCH = 0x200;
export const NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH;
/** In an NLMSG_ERROR: the original request was not echoed beyond its header. */
export const NLM_F_CAPPED = 0x100;
/** In an NLMSG_ERROR or NLMSG_DONE: extended-ack attributes follow. */
export const NLM_F_ACK_TLVS = 0x200;

export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLMSG_OVERRUN = 4;

export const NLMSGERR_ATTR_MSG = 1;
export const NLMSGERR_ATTR_OFFS = 2;
export const NLMSGERR_ATTR_MISS_TYPE = 5;

export const NLA_F_NESTED = 0x8000;
export const NLA_F_NET_BYTEORDER = 0x4000;
export const NLA_TYPE_MASK = 0x3fff;

export const GENL_ID_CTRL = 0x10;
export const CTRL_CMD_GETFAMILY = 3;
export const CTRL_ATTR_FAMILY_ID = 1;
export const CTRL_ATTR_FAMILY_NAME = 2;
export const CTRL_ATTR_VERSION = 3;
export const CTRL_ATTR_HDRSIZE = 4;
export const CTRL_ATTR_MAXATTR = 5;

const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;

export function nlAlign(length: number): number {
  return (length + 3) & ~3;
}

// ---- errors -----------------------------------------------------------------------------------------

/** A reply that does not follow the netlink wire format (truncated, bad lengths, wrong types). */
export class NetlinkFormatError extends Error {
  constructor(message: string) {
    super(`malformed netlink message: ${message}`);
    this.name = 'NetlinkFormatError';
  }
}

export interface ExtAck {
  /** NLMSGERR_ATTR_MSG: the kernel's human-readable reason. */
  message?: string;
  /** NLMSGERR_ATTR_OFFS: byte offset of the offending attribute in our request. */
  offset?: number;
  /** NLMSGERR_ATTR_MISS_TYPE: a required attribute that was missing. */
  missingType?: number;
}

/** The kernel refused a netlink request: errno (name in .code) plus the extended ack, if any. */
export class NetlinkError extends SysError {
  readonly operation: string;
  readonly extAck: ExtAck;

  constructor(operation: string, errno: number, extAck: ExtAck = {}, detail?: string) {
    super(operation, errno);
    this.name = 'NetlinkError';
    this.operation = operation;
    this.extAck = extAck;
    const reason = detail ?? extAck.message;
    this.message = reason ? `${operation}: ${reason} (${this.code})` : `${operation}: ${this.code}`;
  }
}

// ---- attribute encoding -----------------------------------------------------------------------------

export type AttrSpec =
  | { readonly type: number; readonly kind: 'string'; readonly value: string }
  | { readonly type: number; readonly kind: 'u8' | 'u16' | 'u32'; readonly value: number }
  | { readonly type: number; readonly kind: 'u64'; readonly value: bigint }
  | { readonly type: number; readonly kind: 'bytes'; readonly value: Uint8Array }
  | { readonly type: number; readonly kind: 'flag' }
  | { readonly type: number; readonly kind: 'nested'; readonly value: readonly AttrSpec[] };

export const attr = {
  /** A NUL-terminated string (NLA_NUL_STRING / NLA_STRING as the kernel expects). */
  string: (type: number, value: string): AttrSpec => ({ type, kind: 'string', value }),
  u8: (type: number, value: number): AttrSpec => ({ type, kind: 'u8', value }),
  u16: (type: number, value: number): AttrSpec => ({ type, kind: 'u16', value }),
  u32: (type: number, value: number): AttrSpec => ({ type, kind: 'u32', value }),
  u64: (type: number, value: bigint): AttrSpec => ({ type, kind: 'u64', value }),
  bytes: (type: number, value: Uint8Array): AttrSpec => ({ type, kind: 'bytes', value }),
  flag: (type: number): AttrSpec => ({ type, kind: 'flag' }),
  nested: (type: number, value: readonly AttrSpec[]): AttrSpec => ({ type, kind: 'nested', value }),
};

function checkInteger(value: number, max: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(`netlink attribute ${what}: ${value} is out of range 0..${max}`);
  }
}

function attrPayload(spec: AttrSpec): Buffer {
  switch (spec.kind) {
    case 'string': {
      const text = Buffer.from(spec.value, 'utf8');
      if (text.includes(0)) throw new RangeError(`netlink attribute ${spec.type}: string contains NUL`);
      return Buffer.concat([text, Buffer.alloc(1)]);
    }
    case 'u8': {
      checkInteger(spec.value, 0xff, `${spec.type}`);
      return Buffer.from([spec.value]);
    }
    case 'u16': {
      checkInteger(spec.value, U16_MAX, `${spec.type}`);
      const b = Buffer.alloc(2);
      b.writeUInt16LE(spec.value);
      return b;
    }
    case 'u32': {
      checkInteger(spec.value, U32_MAX, `${spec.type}`);
      const b = Buffer.alloc(4);
      b.writeUInt32LE(spec.value);
      return b;
    }
    case 'u64': {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(spec.value);
      return b;
    }
    case 'bytes':
      return Buffer.from(spec.value);
    case 'flag':
      return Buffer.alloc(0);
    case 'nested':
      return encodeAttributes(spec.value);
  }
}

/** Encodes attributes back to back, each padded to 4 bytes (nla_len excludes the padding). */
export function encodeAttributes(attrs: readonly AttrSpec[]): Buffer {
  const parts: Buffer[] = [];
  for (const spec of attrs) {
    checkInteger(spec.type, NLA_TYPE_MASK, 'type');
    const payload = attrPayload(spec);
    const length = NLA_HDRLEN + payload.length;
    if (length > U16_MAX)
      throw new RangeError(`netlink attribute ${spec.type} is too long (${length} bytes)`);
    const out = Buffer.alloc(nlAlign(length));
    out.writeUInt16LE(length, 0);
    out.writeUInt16LE(spec.type | (spec.kind === 'nested' ? NLA_F_NESTED : 0), 2);
    payload.copy(out, NLA_HDRLEN);
    parts.push(out);
  }
  return Buffer.concat(parts);
}

export interface GenlRequest {
  /** The generic netlink family id (nlmsg_type). */
  readonly familyId: number;
  readonly cmd: number;
  readonly version: number;
  readonly flags: number;
  readonly seq: number;
  /** Sender port id; 0 lets the kernel use the socket's. */
  readonly pid?: number;
  readonly attrs?: readonly AttrSpec[];
}

/** nlmsghdr (16 B) + genlmsghdr (4 B) + attributes. */
export function encodeGenlMessage(request: GenlRequest): Buffer {
  checkInteger(request.familyId, U16_MAX, 'family id');
  checkInteger(request.cmd, 0xff, 'cmd');
  checkInteger(request.version, 0xff, 'version');
  checkInteger(request.flags, U16_MAX, 'flags');
  checkInteger(request.seq, U32_MAX, 'seq');
  const body = encodeAttributes(request.attrs ?? []);
  const header = Buffer.alloc(NLMSG_HDRLEN + GENL_HDRLEN);
  header.writeUInt32LE(header.length + body.length, 0);
  header.writeUInt16LE(request.familyId, 4);
  header.writeUInt16LE(request.flags, 6);
  header.writeUInt32LE(request.seq, 8);
  header.writeUInt32LE(request.pid ?? 0, 12);
  header.writeUInt8(request.cmd, 16);
  header.writeUInt8(request.version, 17);
  return Buffer.concat([header, body]);
}

/** The nlctrl request that maps a family name to its id. */
export function encodeGetFamily(name: string, seq: number): Buffer {
  return encodeGenlMessage({
    familyId: GENL_ID_CTRL,
    cmd: CTRL_CMD_GETFAMILY,
    version: 1,
    flags: NLM_F_REQUEST | NLM_F_ACK,
    seq,
    attrs: [attr.string(CTRL_ATTR_FAMILY_NAME, name)],
  });
}

// ---- decoding ---------------------------------------------------------------------------------------

export interface RawAttr {
  /** Attribute type without the NLA_F_NESTED / NLA_F_NET_BYTEORDER bits. */
  readonly type: number;
  readonly nested: boolean;
  readonly value: Buffer;
}

/** A decoded attribute list with typed, length-checked accessors. Unknown attributes are kept. */
export class Attributes {
  constructor(readonly list: readonly RawAttr[]) {}

  has(type: number): boolean {
    return this.list.some((a) => a.type === type);
  }

  /** The first attribute of `type`, if present. */
  raw(type: number): Buffer | undefined {
    return this.list.find((a) => a.type === type)?.value;
  }

  /** Every attribute of `type`, in order. */
  all(type: number): Buffer[] {
    return this.list.filter((a) => a.type === type).map((a) => a.value);
  }

  string(type: number): string | undefined {
    const value = this.raw(type);
    if (value === undefined) return undefined;
    const end = value.indexOf(0);
    return value.toString('utf8', 0, end < 0 ? value.length : end);
  }

  u8(type: number): number | undefined {
    return this.fixed(type, 1)?.readUInt8(0);
  }

  u16(type: number): number | undefined {
    return this.fixed(type, 2)?.readUInt16LE(0);
  }

  u32(type: number): number | undefined {
    return this.fixed(type, 4)?.readUInt32LE(0);
  }

  u64(type: number): bigint | undefined {
    return this.fixed(type, 8)?.readBigUInt64LE(0);
  }

  nested(type: number): Attributes | undefined {
    const value = this.raw(type);
    return value === undefined ? undefined : parseAttributes(value);
  }

  private fixed(type: number, size: number): Buffer | undefined {
    const value = this.raw(type);
    if (value === undefined) return undefined;
    if (value.length < size) {
      throw new NetlinkFormatError(`attribute ${type} has ${value.length} bytes, expected ${size}`);
    }
    return value;
  }
}

/** Parses a run of attributes; every length is checked against the buffer before it is used. */
export function parseAttributes(buffer: Buffer): Attributes {
  const list: RawAttr[] = [];
  let offset = 0;
  while (offset < buffer.length) {
    if (buffer.length - offset < NLA_HDRLEN) {
      throw new NetlinkFormatError(`${buffer.length - offset} stray bytes after the last attribute`);
    }
    const length = buffer.readUInt16LE(offset);
    const rawType = buffer.readUInt16LE(offset + 2);
    if (length < NLA_HDRLEN || offset + length > buffer.length) {
      throw new NetlinkFormatError(
        `attribute ${rawType & NLA_TYPE_MASK} at offset ${offset} has length ${length}, ${buffer.length - offset} bytes left`,
      );
    }
    list.push({
      type: rawType & NLA_TYPE_MASK,
      nested: (rawType & NLA_F_NESTED) !== 0,
      value: buffer.subarray(offset + NLA_HDRLEN, offset + length),
    });
    offset += nlAlign(length); // the last attribute's padding may be missing
  }
  return new Attributes(list);
}

export interface NlMessage {
  readonly type: number;
  readonly flags: number;
  readonly seq: number;
  readonly pid: number;
  /** The bytes after the 16-byte header, up to nlmsg_len. */
  readonly payload: Buffer;
}

/** Splits one received datagram into its netlink messages. */
export function splitMessages(datagram: Buffer): NlMessage[] {
  const messages: NlMessage[] = [];
  let offset = 0;
  while (offset < datagram.length) {
    const left = datagram.length - offset;
    if (left < NLMSG_HDRLEN) throw new NetlinkFormatError(`${left} bytes cannot hold a message header`);
    const length = datagram.readUInt32LE(offset);
    if (length < NLMSG_HDRLEN || length > left) {
      throw new NetlinkFormatError(`message at offset ${offset} claims ${length} bytes, ${left} available`);
    }
    messages.push({
      type: datagram.readUInt16LE(offset + 4),
      flags: datagram.readUInt16LE(offset + 6),
      seq: datagram.readUInt32LE(offset + 8),
      pid: datagram.readUInt32LE(offset + 12),
      payload: datagram.subarray(offset + NLMSG_HDRLEN, offset + length),
    });
    offset += nlAlign(length);
  }
  return messages;
}

export interface GenlMessage {
  readonly familyId: number;
  readonly cmd: number;
  readonly version: number;
  readonly flags: number;
  readonly attrs: Attributes;
}

export function decodeGenlMessage(message: NlMessage): GenlMessage {
  if (message.payload.length < GENL_HDRLEN) {
    throw new NetlinkFormatError(
      `generic netlink message of ${message.payload.length} bytes has no genlmsghdr`,
    );
  }
  return {
    familyId: message.type,
    cmd: message.payload.readUInt8(0),
    version: message.payload.readUInt8(1),
    flags: message.flags,
    attrs: parseAttributes(message.payload.subarray(GENL_HDRLEN)),
  };
}

function decodeExtAck(tlvs: Buffer): ExtAck {
  const attrs = parseAttributes(tlvs);
  const ack: ExtAck = {};
  const message = attrs.string(NLMSGERR_ATTR_MSG);
  if (message !== undefined && message !== '') ack.message = message;
  const offset = attrs.u32(NLMSGERR_ATTR_OFFS);
  if (offset !== undefined) ack.offset = offset;
  const missing = attrs.u32(NLMSGERR_ATTR_MISS_TYPE);
  if (missing !== undefined) ack.missingType = missing;
  return ack;
}

export interface NlErrorReply {
  /** 0 for an ack, otherwise a positive errno. */
  readonly errno: number;
  readonly extAck: ExtAck;
}

/**
 * Decodes an NLMSG_ERROR payload: `int error; struct nlmsghdr request[, request payload]; [TLVs]`.
 * The request is echoed whole unless NLM_F_CAPPED is set (always capped for an ack).
 */
export function decodeErrorReply(message: NlMessage): NlErrorReply {
  const payload = message.payload;
  if (payload.length < 4 + NLMSG_HDRLEN) {
    throw new NetlinkFormatError(`NLMSG_ERROR of ${payload.length} bytes (need ${4 + NLMSG_HDRLEN})`);
  }
  const error = payload.readInt32LE(0);
  if (error > 0) throw new NetlinkFormatError(`NLMSG_ERROR with positive error ${error}`);
  let extAck: ExtAck = {};
  if (message.flags & NLM_F_ACK_TLVS) {
    const echoed =
      error === 0 || message.flags & NLM_F_CAPPED ? NLMSG_HDRLEN : nlAlign(payload.readUInt32LE(4));
    if (echoed < NLMSG_HDRLEN || 4 + echoed > payload.length) {
      throw new NetlinkFormatError(`NLMSG_ERROR echoes ${echoed} bytes of ${payload.length - 4}`);
    }
    extAck = decodeExtAck(payload.subarray(4 + echoed));
  }
  return { errno: error === 0 ? 0 : -error, extAck };
}

/** NLMSG_DONE carries `int error` (a dump that failed part-way), optionally followed by TLVs. */
export function decodeDone(message: NlMessage): NlErrorReply {
  if (message.payload.length < 4) return { errno: 0, extAck: {} };
  const error = message.payload.readInt32LE(0);
  if (error > 0) throw new NetlinkFormatError(`NLMSG_DONE with positive error ${error}`);
  const extAck = message.flags & NLM_F_ACK_TLVS ? decodeExtAck(message.payload.subarray(4)) : {};
  return { errno: error === 0 ? 0 : -error, extAck };
}

export type ReplyMode = 'ack' | 'dump';

/**
 * Collects the replies to one request. `ack` mode: data messages until the NLMSG_ERROR ack; `dump`
 * mode: NLM_F_MULTI messages until NLMSG_DONE. Messages for another sequence number (late replies to
 * an earlier request that timed out) are ignored. Kernel errors are thrown as NetlinkError.
 */
export class ReplyCollector {
  readonly messages: GenlMessage[] = [];
  private finished = false;
  private interrupted = false;

  constructor(
    readonly seq: number,
    readonly mode: ReplyMode,
    readonly operation: string,
  ) {}

  get done(): boolean {
    return this.finished;
  }

  /** NLM_F_DUMP_INTR was seen: the dump may be inconsistent and should be retried. */
  get dumpInterrupted(): boolean {
    return this.interrupted;
  }

  /** Feeds one datagram; returns true when the reply is complete. */
  feed(datagram: Buffer): boolean {
    for (const message of splitMessages(datagram)) {
      if (this.finished) break;
      if (message.seq !== this.seq) continue;
      if (message.flags & NLM_F_DUMP_INTR) this.interrupted = true;
      switch (message.type) {
        case NLMSG_NOOP:
          break;
        case NLMSG_OVERRUN:
          throw new NetlinkError(
            this.operation,
            105 /* ENOBUFS */,
            {},
            'netlink receive overrun, replies lost',
          );
        case NLMSG_ERROR: {
          const reply = decodeErrorReply(message);
          if (reply.errno !== 0) throw new NetlinkError(this.operation, reply.errno, reply.extAck);
          this.finished = true;
          break;
        }
        case NLMSG_DONE: {
          const reply = decodeDone(message);
          if (reply.errno !== 0) throw new NetlinkError(this.operation, reply.errno, reply.extAck);
          if (this.mode === 'dump') this.finished = true;
          break;
        }
        default:
          this.messages.push(decodeGenlMessage(message));
      }
    }
    return this.finished;
  }
}

export interface FamilyInfo {
  readonly id: number;
  readonly name: string;
  readonly version: number;
  readonly maxAttr: number;
}

export function decodeFamily(message: GenlMessage): FamilyInfo {
  const id = message.attrs.u16(CTRL_ATTR_FAMILY_ID);
  if (id === undefined) throw new NetlinkFormatError('nlctrl reply without CTRL_ATTR_FAMILY_ID');
  return {
    id,
    name: message.attrs.string(CTRL_ATTR_FAMILY_NAME) ?? '',
    version: message.attrs.u32(CTRL_ATTR_VERSION) ?? 0,
    maxAttr: message.attrs.u32(CTRL_ATTR_MAXATTR) ?? 0,
  };
}

// ---- the socket -------------------------------------------------------------------------------------

export interface GenlSocketOptions {
  /** How long to wait for each reply datagram (SO_RCVTIMEO). Default 10 s. */
  readonly timeoutMs?: number;
  /** Receive buffer for one datagram. Default 64 KiB. */
  readonly recvBufferSize?: number;
}

interface AsyncResult {
  readonly result: number;
  readonly errno: number;
}

type AsyncCallable = { async: (...args: unknown[]) => unknown };

/** Runs a libc call on a koffi worker thread; errno is the worker call's own. */
function callAsync(fn: AsyncCallable, ...args: unknown[]): Promise<AsyncResult> {
  return new Promise((resolve, reject) => {
    fn.async(...args, (error: unknown, value: unknown) => {
      if (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      const result = Number(value);
      resolve({ result, errno: result < 0 ? lastErrno() : 0 });
    });
  });
}

const EINTR = 4;
const EAGAIN = 11;
const ETIMEDOUT = 110;
const EBADF = 9;

/** A generic netlink socket with request/ack and dump exchanges, one at a time. */
export class GenlSocket {
  private fd: number;
  private seq: number;
  private readonly buffer: Buffer;
  private readonly timeoutMs: number;
  private tail: Promise<unknown> = Promise.resolve();
  private readonly families = new Map<string, FamilyInfo>();

  private constructor(fd: number, options: GenlSocketOptions) {
    this.fd = fd;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.buffer = Buffer.alloc(options.recvBufferSize ?? 64 * 1024);
    this.seq = Math.floor(Date.now() / 1000) >>> 0;
  }

  static open(options: GenlSocketOptions = {}): GenlSocket {
    const fd = check(raw.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC), 'netlink socket');
    try {
      const one = Buffer.alloc(4);
      one.writeInt32LE(1);
      // Extended acks are an optional nicety (Linux >= 4.12); ignore a refusal.
      raw.setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, one, 4);
      const timeoutMs = options.timeoutMs ?? 10_000;
      const timeval = Buffer.alloc(16);
      timeval.writeBigInt64LE(BigInt(Math.floor(timeoutMs / 1000)), 0);
      timeval.writeBigInt64LE(BigInt((timeoutMs % 1000) * 1000), 8);
      check(raw.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, timeval, 16), 'setsockopt SO_RCVTIMEO');
      const address = Buffer.alloc(12); // sockaddr_nl: family, pad, pid 0 (kernel assigns), groups 0
      address.writeUInt16LE(AF_NETLINK, 0);
      check(raw.bind(fd, address, address.length), 'bind netlink socket');
    } catch (error) {
      closeFd(fd);
      throw error;
    }
    return new GenlSocket(fd, options);
  }

  get closed(): boolean {
    return this.fd < 0;
  }

  /** Resolves a family through nlctrl; null when the kernel does not know it (ENOENT). */
  async resolveFamily(name: string): Promise<FamilyInfo | null> {
    const cached = this.families.get(name);
    if (cached) return cached;
    try {
      const replies = await this.exchange(
        (seq) => encodeGetFamily(name, seq),
        'ack',
        `nlctrl GETFAMILY ${name}`,
      );
      if (replies.length === 0) throw new NetlinkFormatError(`nlctrl sent no reply for family ${name}`);
      const family = decodeFamily(replies[0]);
      this.families.set(name, family);
      return family;
    } catch (error) {
      if (error instanceof NetlinkError && error.code === 'ENOENT') return null;
      throw error;
    }
  }

  /** A request with NLM_F_ACK: returns the reply messages that came before the ack. */
  request(
    familyId: number,
    cmd: number,
    version: number,
    attrs: readonly AttrSpec[],
    operation: string,
  ): Promise<GenlMessage[]> {
    return this.exchange(
      (seq) => encodeGenlMessage({ familyId, cmd, version, flags: NLM_F_REQUEST | NLM_F_ACK, seq, attrs }),
      'ack',
      operation,
    );
  }

  /** A dump (NLM_F_DUMP): every message until NLMSG_DONE. Retried when the kernel flags it inconsistent. */
  async dump(
    familyId: number,
    cmd: number,
    version: number,
    attrs: readonly AttrSpec[],
    operation: string,
  ): Promise<GenlMessage[]> {
    for (let attempt = 1; ; attempt++) {
      let interrupted = false;
      const messages = await this.exchange(
        (seq) => encodeGenlMessage({ familyId, cmd, version, flags: NLM_F_REQUEST | NLM_F_DUMP, seq, attrs }),
        'dump',
        operation,
        (collector) => (interrupted = collector.dumpInterrupted),
      );
      if (!interrupted) return messages;
      if (attempt >= 3) throw new NetlinkError(operation, EINTR, {}, 'dump kept changing while it was read');
    }
  }

  /** Closes the socket once the exchange in flight, if any, has finished. */
  async close(): Promise<void> {
    const pending = this.tail;
    this.tail = pending.then(
      () => this.closeNow(),
      () => this.closeNow(),
    );
    await this.tail;
  }

  private closeNow(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    closeFd(fd);
  }

  private exchange(
    build: (seq: number) => Buffer,
    mode: ReplyMode,
    operation: string,
    inspect?: (collector: ReplyCollector) => void,
  ): Promise<GenlMessage[]> {
    const run = this.tail.then(
      () => this.exchangeNow(build, mode, operation, inspect),
      () => this.exchangeNow(build, mode, operation, inspect),
    );
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async exchangeNow(
    build: (seq: number) => Buffer,
    mode: ReplyMode,
    operation: string,
    inspect?: (collector: ReplyCollector) => void,
  ): Promise<GenlMessage[]> {
    if (this.fd < 0) throw new NetlinkError(operation, EBADF, {}, 'the netlink socket is closed');
    this.seq = (this.seq + 1) >>> 0 || 1;
    const message = build(this.seq);
    const collector = new ReplyCollector(this.seq, mode, operation);
    const sent = await callAsync(raw.send as unknown as AsyncCallable, this.fd, message, message.length, 0);
    if (sent.result < 0) throw new NetlinkError(operation, sent.errno, {}, 'netlink send failed');
    if (sent.result !== message.length) {
      throw new NetlinkError(
        operation,
        5 /* EIO */,
        {},
        `short netlink send (${sent.result} of ${message.length})`,
      );
    }
    while (!collector.done) {
      const got = await callAsync(
        raw.recv as unknown as AsyncCallable,
        this.fd,
        this.buffer,
        this.buffer.length,
        MSG_TRUNC,
      );
      if (got.result < 0) {
        if (got.errno === EINTR) continue;
        if (got.errno === EAGAIN) {
          throw new NetlinkError(
            operation,
            ETIMEDOUT,
            {},
            `no reply from the kernel within ${this.timeoutMs} ms`,
          );
        }
        throw new NetlinkError(operation, got.errno, {}, 'netlink receive failed');
      }
      if (got.result > this.buffer.length) {
        throw new NetlinkFormatError(
          `${operation}: reply of ${got.result} bytes does not fit the ${this.buffer.length}-byte buffer`,
        );
      }
      collector.feed(Buffer.from(this.buffer.subarray(0, got.result)));
    }
    inspect?.(collector);
    return collector.messages;
  }
}

import { Access, GuestMemory, Segment } from './memory';

const DESC_SIZE = 16;
const DESC_F_NEXT = 1;
const DESC_F_WRITE = 2;
const DESC_F_INDIRECT = 4;
const AVAIL_F_NO_INTERRUPT = 1;
const USED_F_NO_NOTIFY = 1;
/** A chain may not move more than 4 GiB: used.len is 32 bits. */
const MAX_CHAIN_BYTES = 0xffffffff;

export interface QueueLayout {
  size: number;
  descAddr: number;
  availAddr: number;
  usedAddr: number;
}

export interface QueueOptions {
  eventIdx: boolean;
  indirect: boolean;
  /** Where the device resumes: normally the ring's used index, more after a restart. */
  lastAvailIdx?: number;
  /** Told of every chain taken and returned, so a successor can finish what was in flight. */
  tracker?: InflightTracker;
}

/** Records which chains the device holds (the in-flight log of a restartable server). */
export interface InflightTracker {
  /** A chain was taken from the avail ring; called before pop() hands it out. */
  taken(head: number): void;
  /** A chain is on the used ring and used.idx, now `usedIdx`, is published. */
  returned(head: number, usedIdx: number): void;
}

/** A descriptor chain taken from the avail ring. */
export interface Chain {
  readonly head: number;
  readonly readable: Segment[];
  readonly writable: Segment[];
  /** Set when the chain is well formed but one of its buffers is unusable: answer it with an error. */
  readonly fault?: string;
  /** The chain's last descriptor is a mapped, device-writable buffer: the last of `writable`. */
  readonly tailWritable: boolean;
}

/** The ring itself cannot be trusted any more: stop serving the queue. */
export class QueueBrokenError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'QueueBrokenError';
  }
}

/**
 * The device side of a split virtqueue (virtio 1.x, 2.7). Every index, address and length read
 * from guest-writable memory is checked before use.
 */
export class SplitQueue {
  readonly size: number;
  private readonly desc: DataView;
  private readonly availIdx: Uint16Array;
  private readonly availRing: DataView;
  private readonly used: DataView;
  private readonly usedFlagsIdx: Uint16Array;
  private lastAvail: number;
  private usedIdx: number;
  private signalledUsed: number;
  private readonly eventIdx: boolean;
  private readonly indirect: boolean;
  private readonly tracker: InflightTracker | undefined;

  constructor(
    private readonly memory: GuestMemory,
    layout: QueueLayout,
    options: QueueOptions,
  ) {
    const { size } = layout;
    if (size === 0 || size > 32768 || (size & (size - 1)) !== 0) {
      throw new QueueBrokenError(`queue size ${size} is not a power of two up to 32768`);
    }
    this.size = size;
    this.eventIdx = options.eventIdx;
    this.indirect = options.indirect;
    this.tracker = options.tracker;
    const desc = this.mapRing(layout.descAddr, DESC_SIZE * size, Access.Read, 'descriptor table');
    const avail = this.mapRing(layout.availAddr, 6 + 2 * size, Access.Read, 'avail ring');
    const used = this.mapRing(layout.usedAddr, 6 + 8 * size, Access.Write, 'used ring');
    if (avail.bytes.byteOffset % 2 !== 0 || used.bytes.byteOffset % 4 !== 0) {
      throw new QueueBrokenError('misaligned ring');
    }
    this.desc = viewOf(desc);
    this.availIdx = new Uint16Array(avail.bytes.buffer, avail.bytes.byteOffset, 2);
    this.availRing = viewOf(avail);
    this.used = viewOf(used);
    this.usedFlagsIdx = new Uint16Array(used.bytes.buffer, used.bytes.byteOffset, 2);
    this.usedIdx = Atomics.load(this.usedFlagsIdx, 1);
    this.signalledUsed = this.usedIdx;
    this.lastAvail = options.lastAvailIdx ?? this.usedIdx;
  }

  get lastAvailIdx(): number {
    return this.lastAvail;
  }

  get usedIndex(): number {
    return this.usedIdx;
  }

  /** The driver's avail.idx: chains it has made available so far (modulo 2^16). */
  get availIndex(): number {
    return Atomics.load(this.availIdx, 1);
  }

  /** Continues taking chains at avail index `lastAvailIdx` (after a restart: see the in-flight log). */
  resumeAt(lastAvailIdx: number): void {
    this.lastAvail = lastAvailIdx & 0xffff;
  }

  /** Number of chains the driver has made available and the device has not taken yet. */
  pending(): number {
    const pending = (Atomics.load(this.availIdx, 1) - this.lastAvail) & 0xffff;
    if (pending > this.size)
      throw new QueueBrokenError(`avail index moved ${pending} entries in a ring of ${this.size}`);
    return pending;
  }

  /** Takes the next available chain, or null when there is none. */
  pop(): Chain | null {
    if (this.pending() === 0) return null;
    const head = this.availRing.getUint16(4 + 2 * (this.lastAvail % this.size), true);
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    if (head >= this.size) throw new QueueBrokenError(`avail ring names descriptor ${head} of ${this.size}`);
    const chain = this.walk(head);
    this.tracker?.taken(head);
    return chain;
  }

  /**
   * Walks the chain at `head` again, with every check pop() makes: a chain a previous server took
   * and did not return. Nothing is recorded: the chain is still in flight.
   */
  chainAt(head: number): Chain {
    if (head >= this.size)
      throw new QueueBrokenError(`in-flight head ${head} outside a ring of ${this.size}`);
    return this.walk(head);
  }

  /** Returns a chain to the driver with the number of bytes written into its writable buffers. */
  pushUsed(head: number, written: number): void {
    const slot = 4 + 8 * (this.usedIdx % this.size);
    this.used.setUint32(slot, head, true);
    this.used.setUint32(slot + 4, written, true);
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    // A sequentially consistent store orders the element writes before the index the driver polls.
    Atomics.store(this.usedFlagsIdx, 1, this.usedIdx);
    this.tracker?.returned(head, this.usedIdx);
  }

  /** The head in used-ring entry `index` (modulo 2^16), as the device wrote it. */
  usedHead(index: number): number {
    return this.used.getUint32(4 + 8 * (index % this.size), true);
  }

  /** Whether the driver wants an interrupt for what was pushed since the last one (2.7.10). */
  needsInterrupt(): boolean {
    const previous = this.signalledUsed;
    const current = this.usedIdx;
    if (previous === current) return false;
    this.signalledUsed = current;
    if (!this.eventIdx) return (Atomics.load(this.availIdx, 0) & AVAIL_F_NO_INTERRUPT) === 0;
    const usedEvent = this.availRing.getUint16(4 + 2 * this.size, true);
    return ((current - usedEvent - 1) & 0xffff) < ((current - previous) & 0xffff);
  }

  /** Asks the driver not to kick while the device is busy anyway. */
  suppressKicks(): void {
    if (!this.eventIdx) Atomics.store(this.usedFlagsIdx, 0, USED_F_NO_NOTIFY);
  }

  /**
   * Asks the driver to kick for the next chain. Returns false when chains arrived meanwhile, so the
   * caller keeps working instead of sleeping through them.
   */
  armKicks(): boolean {
    if (this.eventIdx) {
      this.used.setUint16(4 + 8 * this.size, this.lastAvail, true);
      // Full fence between publishing avail_event and re-reading avail.idx (store-load ordering).
      Atomics.store(this.usedFlagsIdx, 1, this.usedIdx);
    } else {
      Atomics.store(this.usedFlagsIdx, 0, 0);
    }
    return this.pending() === 0;
  }

  private walk(head: number): Chain {
    const readable: Segment[] = [];
    const writable: Segment[] = [];
    let fault: string | undefined;
    let table = this.desc;
    let tableSize = this.size;
    let index = head;
    let seen = 0;
    let total = 0;
    let inIndirect = false;
    let tailWritable = false;
    let sawWritable = false;
    for (;;) {
      if (index >= tableSize)
        throw new QueueBrokenError(`descriptor ${index} outside a table of ${tableSize}`);
      if (++seen > tableSize)
        throw new QueueBrokenError(`descriptor chain from ${head} loops or is too long`);
      const at = index * DESC_SIZE;
      const addrLow = table.getUint32(at, true);
      const addrHigh = table.getUint32(at + 4, true);
      const length = table.getUint32(at + 8, true);
      const flags = table.getUint16(at + 12, true);
      const next = table.getUint16(at + 14, true);
      const address = addrHigh >= 0x200000 ? Number.NaN : addrHigh * 0x100000000 + addrLow;

      if (flags & DESC_F_INDIRECT) {
        if (!this.indirect) throw new QueueBrokenError('indirect descriptor without VIRTIO_F_INDIRECT_DESC');
        if (inIndirect) throw new QueueBrokenError('nested indirect descriptor table');
        if (flags & DESC_F_NEXT) throw new QueueBrokenError('indirect descriptor with NEXT set');
        if (length === 0 || length % DESC_SIZE !== 0) {
          throw new QueueBrokenError(`indirect table length ${length} is not a multiple of ${DESC_SIZE}`);
        }
        const indirect = this.memory.translate(address, length, Access.Read);
        if (!indirect) throw new QueueBrokenError(`indirect table at ${address} is not mapped`);
        table = viewOf(indirect);
        tableSize = length / DESC_SIZE;
        index = 0;
        seen = 0;
        inIndirect = true;
        continue;
      }

      total += length;
      if (total > MAX_CHAIN_BYTES) fault ??= 'chain larger than 4 GiB';
      const access = flags & DESC_F_WRITE ? Access.Write : Access.Read;
      if (access === Access.Read && sawWritable) fault ??= 'device-readable buffer after a writable one';
      if (access === Access.Write) sawWritable = true;
      tailWritable = false;
      if (length > 0) {
        const segment = this.memory.translate(address, length, access);
        if (!segment) {
          fault ??= `buffer [${address}, +${length}) is not mapped for ${access === Access.Write ? 'writing' : 'reading'}`;
        } else if (access === Access.Write) {
          writable.push(segment);
          tailWritable = true;
        } else {
          readable.push(segment);
        }
      }
      if (!(flags & DESC_F_NEXT)) break;
      index = next;
    }
    return fault === undefined
      ? { head, readable, writable, tailWritable }
      : { head, readable, writable, tailWritable, fault };
  }

  private mapRing(iova: number, length: number, access: Access, what: string): Segment {
    const segment = this.memory.translate(iova, length, access);
    if (!segment) throw new QueueBrokenError(`${what} at ${iova} (+${length}) is not mapped`);
    return segment;
  }
}

function viewOf(segment: Segment): DataView {
  return new DataView(segment.bytes.buffer, segment.bytes.byteOffset, segment.bytes.byteLength);
}

import { QueueLayout } from '../../src/virtio/split-queue';
import { TestMemory } from './guest-memory';

/** Descriptor flags (virtio 1.x, 2.7.5). */
export const F_NEXT = 1;
export const F_WRITE = 2;
export const F_INDIRECT = 4;
export const AVAIL_F_NO_INTERRUPT = 1;
export const USED_F_NO_NOTIFY = 1;

export interface RawDesc {
  /** Up to 64 bits; a number above 2^53 loses precision, so use a bigint for those. */
  addr: number | bigint;
  len: number;
  flags: number;
  next: number;
}

/** One buffer of a chain as the driver describes it. */
export interface ChainBuffer {
  addr: number;
  len: number;
  /** Device-writable (VIRTQ_DESC_F_WRITE). */
  write?: boolean;
}

/** Writes one descriptor (16 bytes: addr u64, len u32, flags u16, next u16) at `view[offset]`. */
export function writeDesc(view: DataView, offset: number, desc: RawDesc): void {
  view.setBigUint64(offset, BigInt(desc.addr), true);
  view.setUint32(offset + 8, desc.len, true);
  view.setUint16(offset + 12, desc.flags, true);
  view.setUint16(offset + 14, desc.next, true);
}

/** Virtio 1.x split ring sizes (2.7): descriptor table, driver (avail) area, device (used) area. */
export function ringSizes(size: number): { desc: number; avail: number; used: number } {
  return { desc: 16 * size, avail: 6 + 2 * size, used: 6 + 8 * size };
}

/**
 * The driver side of a split virtqueue in TestMemory: builds descriptor chains, publishes them in
 * the avail ring and reads back what the device put in the used ring. Offsets follow 2.7:
 * avail = {flags u16, idx u16, ring[size] u16, used_event u16},
 * used = {flags u16, idx u16, ring[size] {id u32, len u32}, avail_event u16}.
 */
export class RingBuilder {
  readonly layout: QueueLayout;
  private nextFree = 0;
  private availIdx = 0;

  constructor(
    readonly memory: TestMemory,
    readonly size: number,
    layout?: Partial<QueueLayout>,
    /** The region the rings are allocated in when no address is given. */
    region = 0,
  ) {
    const sizes = ringSizes(size);
    this.layout = {
      size,
      descAddr: layout?.descAddr ?? memory.alloc(region, sizes.desc, 16),
      availAddr: layout?.availAddr ?? memory.alloc(region, sizes.avail, 2),
      usedAddr: layout?.usedAddr ?? memory.alloc(region, sizes.used, 4),
    };
  }

  get descAddr(): number {
    return this.layout.descAddr;
  }

  /** Writes descriptor `index` of the queue's table verbatim. */
  setDesc(index: number, desc: RawDesc): void {
    writeDesc(this.memory.view(this.layout.descAddr + 16 * index, 16), 0, desc);
  }

  /** Writes an indirect table at `addr` verbatim. */
  writeTable(addr: number, descs: readonly RawDesc[]): void {
    const view = this.memory.view(addr, 16 * descs.length);
    descs.forEach((desc, i) => writeDesc(view, 16 * i, desc));
  }

  /** Takes `count` descriptor slots (wrapping round the table); returns their indices. */
  private take(count: number): number[] {
    if (count > this.size) throw new Error(`test bug: chain of ${count} in a table of ${this.size}`);
    const slots: number[] = [];
    for (let i = 0; i < count; i++) {
      slots.push(this.nextFree);
      this.nextFree = (this.nextFree + 1) % this.size;
    }
    return slots;
  }

  /** Writes a direct chain into free table slots (linked through `next`); returns its head. */
  addChain(buffers: readonly ChainBuffer[]): number {
    const slots = this.take(buffers.length);
    buffers.forEach((buffer, i) => {
      const last = i === buffers.length - 1;
      this.setDesc(slots[i]!, {
        addr: buffer.addr,
        len: buffer.len,
        flags: (buffer.write ? F_WRITE : 0) | (last ? 0 : F_NEXT),
        next: last ? 0 : slots[i + 1]!,
      });
    });
    return slots[0]!;
  }

  /**
   * Writes an indirect table at `tableAddr` holding `buffers` (entries 0..n-1 linked in order) and
   * one table descriptor pointing at it; returns that descriptor's index.
   */
  addIndirect(tableAddr: number, buffers: readonly ChainBuffer[]): number {
    this.writeTable(
      tableAddr,
      buffers.map((buffer, i) => {
        const last = i === buffers.length - 1;
        return {
          addr: buffer.addr,
          len: buffer.len,
          flags: (buffer.write ? F_WRITE : 0) | (last ? 0 : F_NEXT),
          next: last ? 0 : i + 1,
        };
      }),
    );
    const [slot] = this.take(1);
    this.setDesc(slot!, { addr: tableAddr, len: 16 * buffers.length, flags: F_INDIRECT, next: 0 });
    return slot!;
  }

  /** Puts `heads` in the avail ring and then moves avail.idx past them. */
  publish(...heads: number[]): void {
    const view = this.availView();
    for (const head of heads) {
      view.setUint16(4 + 2 * (this.availIdx % this.size), head, true);
      this.availIdx = (this.availIdx + 1) & 0xffff;
    }
    view.setUint16(2, this.availIdx, true);
  }

  /** Sets avail.idx (and where publish() continues) without touching ring entries. */
  setAvailIdx(idx: number): void {
    this.availIdx = idx & 0xffff;
    this.availView().setUint16(2, this.availIdx, true);
  }

  /** Writes a raw entry of the avail ring. */
  setAvailEntry(slot: number, head: number): void {
    this.availView().setUint16(4 + 2 * slot, head, true);
  }

  setAvailFlags(flags: number): void {
    this.availView().setUint16(0, flags, true);
  }

  setUsedEvent(idx: number): void {
    this.availView().setUint16(4 + 2 * this.size, idx, true);
  }

  /** Sets used.idx, as a ring left over from before a device restart would have it. */
  setUsedIdx(idx: number): void {
    this.usedView().setUint16(2, idx, true);
  }

  usedFlags(): number {
    return this.usedView().getUint16(0, true);
  }

  usedIdx(): number {
    return this.usedView().getUint16(2, true);
  }

  /** Used ring element in slot `slot` (not an index: callers reduce modulo size). */
  usedElem(slot: number): { id: number; len: number } {
    const view = this.usedView();
    return { id: view.getUint32(4 + 8 * slot, true), len: view.getUint32(8 + 8 * slot, true) };
  }

  availEvent(): number {
    return this.usedView().getUint16(4 + 8 * this.size, true);
  }

  private availView(): DataView {
    return this.memory.view(this.layout.availAddr, ringSizes(this.size).avail);
  }

  private usedView(): DataView {
    return this.memory.view(this.layout.usedAddr, ringSizes(this.size).used);
  }
}

import assert from 'node:assert/strict';
import { Segment } from '../../src/virtio/memory';
import { Chain, QueueBrokenError, QueueOptions, SplitQueue } from '../../src/virtio/split-queue';
import { TestMemory } from '../support/guest-memory';
import {
  AVAIL_F_NO_INTERRUPT,
  F_INDIRECT,
  F_NEXT,
  F_WRITE,
  RingBuilder,
  USED_F_NO_NOTIFY,
  ringSizes,
} from '../support/ring-builder';

const RW = 0x100000;
const RO = 0x200000;
const WO = 0x300000;
/** Between the regions: mapped by nobody. */
const GAP = 0x180000;
/** Data buffers in the read-write region, clear of the rings allocated at its start. */
const DATA = RW + 0x8000;
const TABLE = RW + 0xc000;

function newMemory(): TestMemory {
  return new TestMemory([
    { iova: RW, size: 0x10000, access: 'rw' },
    { iova: RO, size: 0x4000, access: 'ro' },
    { iova: WO, size: 0x4000, access: 'wo' },
  ]);
}

/** A segment as (process address, length), to compare with what the IOVA should translate to. */
function shape(segments: readonly Segment[]): Array<[number, number]> {
  return segments.map((s) => [s.address, s.bytes.byteLength]);
}

describe('SplitQueue', () => {
  let memory: TestMemory;
  let ring: RingBuilder;

  /** Process address of an IOVA, as a correct translation gives it. */
  function at(iova: number): number {
    const region = memory.regionOf(iova, 1)!;
    return region.mapping.address + (iova - region.iova);
  }

  function queue(options: Partial<QueueOptions> = {}): SplitQueue {
    return new SplitQueue(memory, ring.layout, { eventIdx: false, indirect: false, ...options });
  }

  function popOne(q: SplitQueue): Chain {
    const chain = q.pop();
    assert.ok(chain, 'expected a chain');
    return chain;
  }

  beforeEach(() => {
    memory = newMemory();
    ring = new RingBuilder(memory, 8);
  });

  afterEach(() => memory.free());

  describe('well-formed chains', () => {
    it('returns nothing from an empty ring', () => {
      const q = queue();
      assert.equal(q.pending(), 0);
      assert.equal(q.pop(), null);
      assert.equal(q.lastAvailIdx, 0);
    });

    it('pops a direct chain: readable header, writable data, writable status', () => {
      const head = ring.addChain([
        { addr: DATA, len: 16 },
        { addr: DATA + 0x100, len: 512, write: true },
        { addr: WO + 0x10, len: 1, write: true },
      ]);
      ring.publish(head);
      const q = queue();
      assert.equal(q.pending(), 1);
      const chain = popOne(q);
      assert.equal(chain.head, head);
      assert.deepEqual(shape(chain.readable), [[at(DATA), 16]]);
      assert.deepEqual(shape(chain.writable), [
        [at(DATA + 0x100), 512],
        [at(WO + 0x10), 1],
      ]);
      assert.equal(chain.tailWritable, true);
      assert.equal(chain.fault, undefined);
      assert.equal(q.lastAvailIdx, 1);
      assert.equal(q.pop(), null);
    });

    it('hands out the guest bytes themselves, not copies', () => {
      memory.write(DATA, Uint8Array.from([1, 2, 3, 4]));
      ring.publish(
        ring.addChain([
          { addr: DATA, len: 4 },
          { addr: DATA + 4, len: 4, write: true },
        ]),
      );
      const chain = popOne(queue());
      assert.deepEqual([...chain.readable[0]!.bytes], [1, 2, 3, 4]);
      chain.writable[0]!.bytes.set([9, 8, 7, 6]);
      assert.deepEqual([...memory.bytes(DATA + 4, 4)], [9, 8, 7, 6]);
    });

    it('pops chains in avail order with heads taken from the ring, wrapping round it', () => {
      const q = queue();
      const seen: number[] = [];
      for (let round = 0; round < 5; round++) {
        const heads = [0, 1, 2].map((i) => ring.addChain([{ addr: DATA + 64 * i, len: 8 + i }]));
        ring.publish(...heads);
        for (const head of heads) {
          const chain = popOne(q);
          assert.equal(chain.head, head);
          seen.push(chain.readable[0]!.bytes.byteLength);
          q.pushUsed(chain.head, 0);
        }
        assert.equal(q.pop(), null);
      }
      assert.deepEqual(seen, [8, 9, 10, 8, 9, 10, 8, 9, 10, 8, 9, 10, 8, 9, 10]);
      assert.equal(q.lastAvailIdx, 15);
    });

    it('accepts a chain using every descriptor of the table', () => {
      const buffers = Array.from({ length: 8 }, (_, i) => ({ addr: DATA + 32 * i, len: 32, write: i >= 4 }));
      ring.publish(ring.addChain(buffers));
      const chain = popOne(queue());
      assert.equal(chain.readable.length, 4);
      assert.equal(chain.writable.length, 4);
      assert.equal(chain.fault, undefined);
    });

    it('skips zero-length buffers and reports a readable tail as not writable', () => {
      ring.publish(
        ring.addChain([
          { addr: DATA, len: 16 },
          { addr: DATA + 16, len: 0 },
          { addr: DATA + 32, len: 8 },
        ]),
      );
      const chain = popOne(queue());
      assert.deepEqual(shape(chain.readable), [
        [at(DATA), 16],
        [at(DATA + 32), 8],
      ]);
      assert.deepEqual(chain.writable, []);
      assert.equal(chain.tailWritable, false);
      assert.equal(chain.fault, undefined);
    });

    it('reports tailWritable false when the last writable descriptor is empty', () => {
      ring.publish(
        ring.addChain([
          { addr: DATA, len: 16 },
          { addr: DATA + 16, len: 8, write: true },
          { addr: DATA + 32, len: 0, write: true },
        ]),
      );
      const chain = popOne(queue());
      assert.equal(chain.writable.length, 1);
      assert.equal(chain.tailWritable, false);
    });

    it('pops an indirect chain from its table', () => {
      const head = ring.addIndirect(TABLE, [
        { addr: RO, len: 16 },
        { addr: DATA, len: 4096, write: true },
        { addr: DATA + 4096, len: 1, write: true },
      ]);
      ring.publish(head);
      const chain = popOne(queue({ indirect: true }));
      assert.equal(chain.head, head);
      assert.deepEqual(shape(chain.readable), [[at(RO), 16]]);
      assert.deepEqual(shape(chain.writable), [
        [at(DATA), 4096],
        [at(DATA + 4096), 1],
      ]);
      assert.equal(chain.tailWritable, true);
      assert.equal(chain.fault, undefined);
    });

    it('accepts an indirect table in a read-only region and longer than the queue', () => {
      const buffers = Array.from({ length: 20 }, (_, i) => ({ addr: DATA + 8 * i, len: 8, write: i >= 10 }));
      ring.writeTable(
        RO + 0x100,
        buffers.map((b, i) => ({
          addr: b.addr,
          len: b.len,
          flags: (b.write ? F_WRITE : 0) | (i < 19 ? F_NEXT : 0),
          next: i + 1,
        })),
      );
      ring.setDesc(0, { addr: RO + 0x100, len: 16 * 20, flags: F_INDIRECT, next: 0 });
      ring.publish(0);
      const chain = popOne(queue({ indirect: true }));
      assert.equal(chain.readable.length, 10);
      assert.equal(chain.writable.length, 10);
      assert.equal(chain.fault, undefined);
    });

    it('follows direct descriptors into an indirect table at the end of the chain', () => {
      ring.writeTable(TABLE, [{ addr: DATA + 16, len: 8, flags: F_WRITE, next: 0 }]);
      ring.setDesc(3, { addr: DATA, len: 16, flags: F_NEXT, next: 5 });
      ring.setDesc(5, { addr: TABLE, len: 16, flags: F_INDIRECT, next: 0 });
      ring.publish(3);
      const chain = popOne(queue({ indirect: true }));
      assert.deepEqual(shape(chain.readable), [[at(DATA), 16]]);
      assert.deepEqual(shape(chain.writable), [[at(DATA + 16), 8]]);
    });
  });

  describe('used ring', () => {
    it('writes id and len into the slot of used.idx and then moves used.idx', () => {
      const q = queue();
      q.pushUsed(5, 0x1234);
      q.pushUsed(2, 1);
      assert.deepEqual(ring.usedElem(0), { id: 5, len: 0x1234 });
      assert.deepEqual(ring.usedElem(1), { id: 2, len: 1 });
      assert.equal(ring.usedIdx(), 2);
      assert.equal(q.usedIndex, 2);
    });

    it('wraps the indices at 65536 and keeps the ring slots modulo the size', () => {
      ring.setUsedIdx(65534);
      ring.setAvailIdx(65534);
      const q = queue();
      assert.equal(q.lastAvailIdx, 65534);
      assert.equal(q.usedIndex, 65534);
      const heads = [0, 1, 2, 3].map((i) => ring.addChain([{ addr: DATA + 16 * i, len: 16 }]));
      ring.publish(...heads);
      assert.equal(q.pending(), 4);
      for (const head of heads) {
        const chain = popOne(q);
        assert.equal(chain.head, head);
        q.pushUsed(chain.head, 100 + head);
      }
      assert.equal(q.lastAvailIdx, 2);
      assert.equal(ring.usedIdx(), 2);
      // 65534 % 8 = 6: slots 6, 7, 0, 1.
      assert.deepEqual(ring.usedElem(6), { id: heads[0], len: 100 + heads[0]! });
      assert.deepEqual(ring.usedElem(7), { id: heads[1], len: 100 + heads[1]! });
      assert.deepEqual(ring.usedElem(0), { id: heads[2], len: 100 + heads[2]! });
      assert.deepEqual(ring.usedElem(1), { id: heads[3], len: 100 + heads[3]! });
      assert.equal(q.pop(), null);
    });

    it('resumes from lastAvailIdx when given one (after a device restart)', () => {
      ring.setUsedIdx(3);
      ring.setAvailEntry(5, 7);
      ring.setAvailEntry(6, 4);
      ring.setAvailIdx(7);
      ring.setDesc(7, { addr: DATA, len: 70, flags: 0, next: 0 });
      ring.setDesc(4, { addr: DATA, len: 40, flags: 0, next: 0 });
      const q = queue({ lastAvailIdx: 5 });
      assert.equal(q.usedIndex, 3);
      assert.equal(q.pending(), 2);
      assert.equal(popOne(q).readable[0]!.bytes.byteLength, 70);
      assert.equal(popOne(q).readable[0]!.bytes.byteLength, 40);
      assert.equal(q.pop(), null);
      q.pushUsed(7, 0);
      assert.deepEqual(ring.usedElem(3), { id: 7, len: 0 });
      assert.equal(ring.usedIdx(), 4);
    });
  });

  describe('restart support', () => {
    it('tells the tracker of a chain before pop() returns it, faulty chains included', () => {
      const events: string[] = [];
      const q = queue({
        tracker: {
          taken: (head) => events.push(`taken ${head} at ${q.lastAvailIdx}`),
          returned: (head, usedIdx) => events.push(`returned ${head} ${usedIdx}`),
        },
      });
      ring.setDesc(2, { addr: GAP, len: 8, flags: F_WRITE, next: 0 });
      ring.publish(ring.addChain([{ addr: DATA, len: 1 }]), 2);
      const chain = popOne(q);
      events.push(`popped ${chain.head}`);
      assert.match(popOne(q).fault ?? '', /not mapped/);
      assert.deepEqual(events, ['taken 0 at 1', 'popped 0', 'taken 2 at 2']);
    });

    it('tells the tracker of a returned chain once used.idx is published', () => {
      const seen: Array<[number, number, number, { id: number; len: number }]> = [];
      const q = queue({
        tracker: {
          taken: () => undefined,
          returned: (head, usedIdx) => seen.push([head, usedIdx, ring.usedIdx(), ring.usedElem(0)]),
        },
      });
      q.pushUsed(6, 9);
      assert.deepEqual(seen, [[6, 1, 1, { id: 6, len: 9 }]]);
    });

    it('does not tell the tracker of a chain that breaks the queue', () => {
      let taken = 0;
      const q = queue({ tracker: { taken: () => taken++, returned: () => undefined } });
      ring.setDesc(1, { addr: DATA, len: 1, flags: F_NEXT, next: 1 });
      ring.publish(1);
      assert.throws(() => q.pop(), QueueBrokenError);
      assert.equal(taken, 0);
    });

    it('walks a chain again by its head with the checks of pop(), telling nobody', () => {
      let taken = 0;
      const q = queue({ tracker: { taken: () => taken++, returned: () => undefined } });
      const head = ring.addChain([
        { addr: DATA, len: 16 },
        { addr: DATA + 0x100, len: 512, write: true },
      ]);
      ring.publish(head);
      const first = popOne(q);
      const again = q.chainAt(head);
      assert.deepEqual(shape(again.readable), shape(first.readable));
      assert.deepEqual(shape(again.writable), shape(first.writable));
      assert.equal(taken, 1);
      assert.equal(q.lastAvailIdx, 1);
      assert.throws(() => q.chainAt(8), /in-flight head 8 outside a ring of 8/);
      ring.setDesc(5, { addr: DATA, len: 1, flags: F_NEXT, next: 5 });
      assert.throws(() => q.chainAt(5), /loops or is too long/);
    });

    it('resumes taking chains where it is told, modulo 2^16', () => {
      const heads = [0, 1, 2].map((i) => ring.addChain([{ addr: DATA + 16 * i, len: 16 }]));
      ring.publish(...heads);
      const q = queue();
      assert.equal(q.availIndex, 3);
      q.resumeAt(65536 + 2);
      assert.equal(q.lastAvailIdx, 2);
      assert.equal(q.pending(), 1);
      assert.equal(popOne(q).head, heads[2]);
    });

    it('reads back the heads it put on the used ring, by used index', () => {
      ring.setUsedIdx(65535);
      const q = queue();
      q.pushUsed(3, 0);
      q.pushUsed(5, 0);
      assert.equal(q.usedHead(65535), 3);
      assert.equal(q.usedHead(0), 5);
    });
  });

  describe('interrupts', () => {
    it('never asks for one when nothing was used', () => {
      assert.equal(queue({ eventIdx: true }).needsInterrupt(), false);
      assert.equal(queue({ eventIdx: false }).needsInterrupt(), false);
    });

    it('without EVENT_IDX follows VRING_AVAIL_F_NO_INTERRUPT', () => {
      const q = queue();
      q.pushUsed(0, 0);
      assert.equal(q.needsInterrupt(), true);
      assert.equal(q.needsInterrupt(), false, 'nothing new since the last interrupt');
      ring.setAvailFlags(AVAIL_F_NO_INTERRUPT);
      q.pushUsed(1, 0);
      assert.equal(q.needsInterrupt(), false);
      ring.setAvailFlags(0);
      q.pushUsed(2, 0);
      assert.equal(q.needsInterrupt(), true);
    });

    it('with EVENT_IDX interrupts exactly when used.idx passes used_event', () => {
      const q = queue({ eventIdx: true });
      ring.setUsedEvent(0);
      q.pushUsed(0, 0); // used 0 -> 1 crosses used_event 0
      assert.equal(q.needsInterrupt(), true);
      q.pushUsed(1, 0); // 1 -> 2: used_event 0 already passed
      assert.equal(q.needsInterrupt(), false);
      ring.setUsedEvent(4);
      q.pushUsed(2, 0);
      q.pushUsed(3, 0); // 2 -> 4: event 4 not yet passed (needs idx 5)
      assert.equal(q.needsInterrupt(), false);
      q.pushUsed(4, 0); // 4 -> 5 crosses 4
      assert.equal(q.needsInterrupt(), true);
      ring.setUsedEvent(6);
      q.pushUsed(5, 0);
      q.pushUsed(6, 0);
      q.pushUsed(7, 0); // 5 -> 8 crosses 6 in the middle of the batch
      assert.equal(q.needsInterrupt(), true);
    });

    it('with EVENT_IDX ignores the NO_INTERRUPT flag', () => {
      const q = queue({ eventIdx: true });
      ring.setAvailFlags(AVAIL_F_NO_INTERRUPT);
      ring.setUsedEvent(0);
      q.pushUsed(0, 0);
      assert.equal(q.needsInterrupt(), true);
    });

    it('with EVENT_IDX compares modulo 2^16 across the wrap', () => {
      ring.setUsedIdx(65534);
      const q = queue({ eventIdx: true });
      ring.setUsedEvent(65535);
      for (let i = 0; i < 3; i++) q.pushUsed(i, 0); // 65534 -> 1 crosses 65535
      assert.equal(q.needsInterrupt(), true);
      ring.setUsedEvent(2);
      q.pushUsed(3, 0); // 1 -> 2 does not cross 2
      assert.equal(q.needsInterrupt(), false);
      q.pushUsed(4, 0); // 2 -> 3 crosses 2
      assert.equal(q.needsInterrupt(), true);
      ring.setUsedEvent(65000); // far behind: (4 - 65000 - 1) & 0xffff = 539 is not < 1
      q.pushUsed(5, 0);
      assert.equal(q.needsInterrupt(), false);
    });
  });

  describe('kick suppression', () => {
    it('without EVENT_IDX sets and clears VRING_USED_F_NO_NOTIFY', () => {
      const q = queue();
      q.suppressKicks();
      assert.equal(ring.usedFlags(), USED_F_NO_NOTIFY);
      assert.equal(q.armKicks(), true);
      assert.equal(ring.usedFlags(), 0);
    });

    it('with EVENT_IDX publishes avail_event = lastAvailIdx and leaves flags alone', () => {
      const q = queue({ eventIdx: true });
      q.suppressKicks();
      assert.equal(ring.usedFlags(), 0);
      ring.publish(ring.addChain([{ addr: DATA, len: 1 }]), ring.addChain([{ addr: DATA, len: 1 }]));
      popOne(q);
      popOne(q);
      assert.equal(q.armKicks(), true);
      assert.equal(ring.availEvent(), 2);
      assert.equal(ring.usedIdx(), 0, 'the fence must not move used.idx');
    });

    it('armKicks returns false when chains arrived that were not popped', () => {
      for (const eventIdx of [true, false]) {
        memory.free();
        memory = newMemory();
        ring = new RingBuilder(memory, 8);
        const q = queue({ eventIdx });
        ring.publish(ring.addChain([{ addr: DATA, len: 1 }]), ring.addChain([{ addr: DATA, len: 1 }]));
        popOne(q);
        assert.equal(q.armKicks(), false, `eventIdx ${eventIdx}`);
        if (eventIdx) assert.equal(ring.availEvent(), 1);
        popOne(q);
        assert.equal(q.armKicks(), true, `eventIdx ${eventIdx}`);
      }
    });
  });

  describe('structurally broken rings', () => {
    function assertBroken(q: SplitQueue, pattern: RegExp): void {
      assert.throws(
        () => q.pop(),
        (error: unknown) => error instanceof QueueBrokenError && pattern.test(error.message),
      );
    }

    it('rejects a head index >= size', () => {
      ring.publish(8);
      assertBroken(queue(), /descriptor 8 of 8/);
    });

    it('rejects a next index out of range', () => {
      ring.setDesc(0, { addr: DATA, len: 1, flags: F_NEXT, next: 8 });
      ring.publish(0);
      assertBroken(queue(), /descriptor 8 outside a table of 8/);
    });

    it('rejects a loop a -> b -> a', () => {
      ring.setDesc(2, { addr: DATA, len: 1, flags: F_NEXT, next: 6 });
      ring.setDesc(6, { addr: DATA, len: 1, flags: F_NEXT, next: 2 });
      ring.publish(2);
      assertBroken(queue(), /loops or is too long/);
    });

    it('rejects a descriptor pointing at itself', () => {
      ring.setDesc(1, { addr: DATA, len: 1, flags: F_NEXT | F_WRITE, next: 1 });
      ring.publish(1);
      assertBroken(queue(), /loops or is too long/);
    });

    it('rejects a chain longer than its indirect table', () => {
      ring.writeTable(TABLE, [
        { addr: DATA, len: 1, flags: F_NEXT, next: 1 },
        { addr: DATA, len: 1, flags: F_NEXT, next: 2 },
        { addr: DATA, len: 1, flags: F_NEXT, next: 0 },
      ]);
      ring.setDesc(0, { addr: TABLE, len: 48, flags: F_INDIRECT, next: 0 });
      ring.publish(0);
      assertBroken(queue({ indirect: true }), /loops or is too long/);
    });

    it('rejects an indirect descriptor without VIRTIO_F_INDIRECT_DESC', () => {
      ring.publish(ring.addIndirect(TABLE, [{ addr: DATA, len: 16 }]));
      assertBroken(queue({ indirect: false }), /without VIRTIO_F_INDIRECT_DESC/);
    });

    it('rejects a nested indirect table', () => {
      ring.writeTable(TABLE + 0x100, [{ addr: DATA, len: 16, flags: 0, next: 0 }]);
      ring.writeTable(TABLE, [{ addr: TABLE + 0x100, len: 16, flags: F_INDIRECT, next: 0 }]);
      ring.setDesc(0, { addr: TABLE, len: 16, flags: F_INDIRECT, next: 0 });
      ring.publish(0);
      assertBroken(queue({ indirect: true }), /nested/);
    });

    it('rejects an indirect descriptor with NEXT', () => {
      ring.writeTable(TABLE, [{ addr: DATA, len: 16, flags: 0, next: 0 }]);
      ring.setDesc(0, { addr: TABLE, len: 16, flags: F_INDIRECT | F_NEXT, next: 1 });
      ring.setDesc(1, { addr: DATA, len: 1, flags: F_WRITE, next: 0 });
      ring.publish(0);
      assertBroken(queue({ indirect: true }), /NEXT/);
    });

    for (const length of [0, 24, 8, 17]) {
      it(`rejects an indirect table of ${length} bytes`, () => {
        ring.setDesc(0, { addr: TABLE, len: length, flags: F_INDIRECT, next: 0 });
        ring.publish(0);
        assertBroken(queue({ indirect: true }), new RegExp(`indirect table length ${length}`));
      });
    }

    it('rejects an unmapped indirect table, one straddling a region end and one in write-only memory', () => {
      for (const addr of [GAP, RW + 0x10000 - 16, WO]) {
        ring.setDesc(0, { addr, len: 32, flags: F_INDIRECT, next: 0 });
        ring.setAvailIdx(0);
        ring.publish(0);
        assertBroken(queue({ indirect: true }), /is not mapped/);
      }
    });

    it('rejects an indirect table with its address above 2^53', () => {
      ring.setDesc(0, { addr: (1n << 53n) + BigInt(TABLE), len: 16, flags: F_INDIRECT, next: 0 });
      ring.writeTable(TABLE, [{ addr: DATA, len: 1, flags: F_WRITE, next: 0 }]);
      ring.publish(0);
      assertBroken(queue({ indirect: true }), /is not mapped/);
    });

    it('rejects a next index out of range inside an indirect table', () => {
      ring.writeTable(TABLE, [
        { addr: DATA, len: 1, flags: F_NEXT, next: 2 },
        { addr: DATA, len: 1, flags: 0, next: 0 },
      ]);
      ring.setDesc(0, { addr: TABLE, len: 32, flags: F_INDIRECT, next: 0 });
      ring.publish(0);
      assertBroken(queue({ indirect: true }), /descriptor 2 outside a table of 2/);
    });

    it('rejects avail.idx moving more than the ring size, in pop() and pending()', () => {
      ring.setAvailIdx(9);
      const q = queue();
      assertBroken(q, /avail index moved 9 entries in a ring of 8/);
      assert.throws(() => q.pending(), QueueBrokenError);
      assert.throws(() => q.armKicks(), QueueBrokenError);
    });

    it('rejects avail.idx moving backwards (seen as a jump of nearly 2^16)', () => {
      ring.setUsedIdx(10);
      ring.setAvailIdx(9);
      assertBroken(queue(), /avail index moved 65535 entries/);
    });

    it('accepts avail.idx moving by exactly the ring size', () => {
      const heads = Array.from({ length: 8 }, (_, i) => ring.addChain([{ addr: DATA + i, len: 1 }]));
      ring.publish(...heads);
      const q = queue();
      assert.equal(q.pending(), 8);
      for (const head of heads) assert.equal(popOne(q).head, head);
    });
  });

  describe('chains with unusable buffers (fault, not broken)', () => {
    /** A chain: header, data buffer `bad`, then a good status byte. */
    function withData(bad: { addr: number | bigint; len: number; write: boolean }): Chain {
      ring.setDesc(0, { addr: DATA, len: 16, flags: F_NEXT, next: 1 });
      ring.setDesc(1, { addr: bad.addr, len: bad.len, flags: F_NEXT | (bad.write ? F_WRITE : 0), next: 2 });
      ring.setDesc(2, { addr: DATA + 0x1000, len: 1, flags: F_WRITE, next: 0 });
      ring.publish(0);
      const q = queue();
      const chain = popOne(q);
      assert.equal(q.pop(), null, 'the queue goes on after a fault');
      return chain;
    }

    it('faults a buffer in unmapped memory and still reports the status byte', () => {
      const chain = withData({ addr: GAP, len: 512, write: true });
      assert.match(chain.fault ?? '', /is not mapped for writing/);
      assert.equal(chain.head, 0);
      assert.equal(chain.tailWritable, true);
      assert.deepEqual(shape(chain.writable), [[at(DATA + 0x1000), 1]]);
      assert.deepEqual(shape(chain.readable), [[at(DATA), 16]]);
    });

    it('faults a buffer straddling the end of a region', () => {
      const chain = withData({ addr: RO + 0x4000 - 8, len: 16, write: false });
      assert.match(chain.fault ?? '', /not mapped for reading/);
      assert.equal(chain.readable.length, 1);
    });

    it('faults a device-readable buffer after a writable one', () => {
      ring.setDesc(0, { addr: DATA, len: 16, flags: F_NEXT | F_WRITE, next: 1 });
      ring.setDesc(1, { addr: DATA + 16, len: 16, flags: F_NEXT, next: 2 });
      ring.setDesc(2, { addr: DATA + 32, len: 1, flags: F_WRITE, next: 0 });
      ring.publish(0);
      const chain = popOne(queue());
      assert.match(chain.fault ?? '', /readable buffer after a writable one/);
      assert.equal(chain.tailWritable, true);
    });

    it('faults a write into a read-only region', () => {
      const chain = withData({ addr: RO, len: 512, write: true });
      assert.match(chain.fault ?? '', /not mapped for writing/);
    });

    it('faults a read from a write-only region', () => {
      const chain = withData({ addr: WO, len: 512, write: false });
      assert.match(chain.fault ?? '', /not mapped for reading/);
    });

    it('faults addresses with high bits set instead of truncating them into a region', () => {
      for (const addr of [
        (1n << 53n) + BigInt(DATA),
        (1n << 63n) + BigInt(DATA),
        (1n << 32n) * 0x1fffffn + BigInt(DATA),
        0xffff_ffff_ffff_f000n,
      ]) {
        memory.free();
        memory = newMemory();
        ring = new RingBuilder(memory, 8);
        const chain = withData({ addr, len: 16, write: true });
        assert.match(chain.fault ?? '', /is not mapped/, `address ${addr.toString(16)}`);
        assert.equal(chain.writable.length, 1, 'only the status byte is usable');
      }
    });
  });

  describe('construction', () => {
    it('rejects sizes that are not a power of two up to 32768', () => {
      for (const size of [0, 3, 6, 100, 65536]) {
        assert.throws(
          () => new SplitQueue(memory, { ...ring.layout, size }, { eventIdx: false, indirect: false }),
          (error: unknown) => error instanceof QueueBrokenError && /not a power of two/.test(error.message),
          `size ${size}`,
        );
      }
    });

    it('accepts size 1', () => {
      const small = new RingBuilder(memory, 1);
      small.publish(small.addChain([{ addr: DATA, len: 1, write: true }]));
      const q = new SplitQueue(memory, small.layout, { eventIdx: true, indirect: true });
      assert.equal(popOne(q).writable.length, 1);
      q.pushUsed(0, 1);
      assert.deepEqual(small.usedElem(0), { id: 0, len: 1 });
    });

    const sizes = ringSizes(8);
    const cases: Array<[string, Partial<{ descAddr: number; availAddr: number; usedAddr: number }>]> = [
      ['descriptor table unmapped', { descAddr: GAP }],
      ['descriptor table straddling the region end', { descAddr: RW + 0x10000 - sizes.desc + 16 }],
      ['descriptor table in write-only memory', { descAddr: WO }],
      ['avail ring unmapped', { availAddr: GAP }],
      ['avail ring in write-only memory', { availAddr: WO }],
      ['used ring unmapped', { usedAddr: GAP }],
      ['used ring in read-only memory', { usedAddr: RO }],
      ['used ring straddling the region end', { usedAddr: WO + 0x4000 - 64 }],
      ['descriptor table above 2^53', { descAddr: 2 ** 53 + RW }],
    ];
    for (const [what, change] of cases) {
      it(`throws QueueBrokenError: ${what}`, () => {
        assert.throws(
          () => new SplitQueue(memory, { ...ring.layout, ...change }, { eventIdx: true, indirect: true }),
          (error: unknown) => error instanceof QueueBrokenError && /is not mapped/.test(error.message),
        );
      });
    }

    it('accepts rings in separate regions with the least access each needs', () => {
      const layout = { size: 8, descAddr: RO, availAddr: RO + 0x200, usedAddr: WO };
      const q = new SplitQueue(memory, layout, { eventIdx: false, indirect: false });
      assert.equal(q.pop(), null);
    });

    it('throws QueueBrokenError for a misaligned avail or used ring', () => {
      assert.throws(
        () =>
          new SplitQueue(
            memory,
            { ...ring.layout, availAddr: DATA + 1 },
            { eventIdx: false, indirect: false },
          ),
        /misaligned/,
      );
      assert.throws(
        () =>
          new SplitQueue(
            memory,
            { ...ring.layout, usedAddr: DATA + 2 },
            { eventIdx: false, indirect: false },
          ),
        /misaligned/,
      );
    });
  });
});

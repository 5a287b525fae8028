import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Segment } from '../../src/virtio/memory';
import { Chain, QueueBrokenError, SplitQueue } from '../../src/virtio/split-queue';
import { TestMemory } from '../support/guest-memory';
import { F_INDIRECT, F_NEXT, F_WRITE, RawDesc, writeDesc } from '../support/ring-builder';

/*
 * Random descriptor tables, avail rings and indirect tables: every pop() must give a chain whose
 * segments are the right bytes of mapped memory with the right access (as a reference walker of
 * 2.7.5 computes them), or throw QueueBrokenError; nothing else, and pop() never writes memory.
 */

const RW = 0x100000;
const RW_SIZE = 0x4000;
const RO = 0x200000;
const WO = 0x300000;
const SMALL = 0x1000;
const GAP = 0x180000;
const DESC = RW;
const AVAIL = RW + 0x200;
const USED = RW + 0x300;
const TABLES = [RW + 0x800, RW + 0xa00, RW + 0xc00];
const MAX_SIZE = 16;
const MAX_CHAIN = 0xffffffff;

interface Case {
  size: number;
  indirect: boolean;
  eventIdx: boolean;
  start: number;
  advance: number;
  avail: number[];
  desc: RawDesc[];
  tables: RawDesc[][];
}

const u16 = fc.integer({ min: 0, max: 0xffff });

const addrArb: fc.Arbitrary<bigint> = fc.oneof(
  // Near the edges of every region and in the gap.
  fc
    .tuple(
      fc.constantFrom(RW, RW + RW_SIZE, RO, RO + SMALL, WO, WO + SMALL, GAP, 0),
      fc.integer({ min: -48, max: 0x1000 }),
    )
    .map(([base, delta]) => BigInt(Math.max(0, base + delta))),
  // Indirect tables (and just beside them).
  fc.tuple(fc.constantFrom(...TABLES), fc.constantFrom(0, 0, 0, 16, -16, 1)).map(([t, d]) => BigInt(t + d)),
  // Anything at all, including above 2^53 and addresses whose low 53 bits hit a region.
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  fc
    .tuple(fc.integer({ min: 1, max: 0x7ff }), fc.constantFrom(RW, RO, WO))
    .map(([high, low]) => (BigInt(high) << 53n) | BigInt(low)),
);

const lenArb = fc.oneof(
  fc.integer({ min: 0, max: 64 }),
  fc.integer({ min: 1, max: 16 }).map((n) => 16 * n),
  fc.integer({ min: 0, max: RW_SIZE + 64 }),
  fc.constantFrom(0xffffffff, 0x80000000, 0xfffffff0),
  fc.integer({ min: 0, max: 0xffffffff }),
);

const flagsArb = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 7 }) },
  { weight: 3, arbitrary: fc.constantFrom(F_NEXT, F_NEXT, F_NEXT | F_WRITE, F_WRITE, F_INDIRECT) },
  { weight: 1, arbitrary: u16 },
);

/** Mostly indices inside a table of `size`, sometimes just outside, rarely anything. */
function indexArb(size: number): fc.Arbitrary<number> {
  return fc.oneof(
    { weight: 12, arbitrary: fc.integer({ min: 0, max: size - 1 }) },
    { weight: 1, arbitrary: fc.integer({ min: size, max: size + 1 }) },
    { weight: 1, arbitrary: u16 },
  );
}

function descArb(size: number, tableWeight: number): fc.Arbitrary<RawDesc> {
  return fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record({ addr: addrArb, len: lenArb, flags: flagsArb, next: indexArb(size) }),
    },
    // A plausible buffer: inside a region, small.
    {
      weight: 6,
      arbitrary: fc.record({
        addr: fc
          .tuple(fc.constantFrom(RW + 0x1000, RO, WO), fc.integer({ min: 0, max: 0x800 }))
          .map(([base, off]) => BigInt(base + off)),
        len: fc.integer({ min: 0, max: 0x200 }),
        flags: fc.constantFrom(0, F_NEXT, F_WRITE, F_WRITE | F_NEXT),
        next: indexArb(size),
      }),
    },
    // A table descriptor: mostly right, sometimes with a bad length or NEXT.
    {
      weight: tableWeight,
      arbitrary: fc.record({
        addr: fc.constantFrom(...TABLES).map(BigInt),
        len: fc.oneof(
          fc.integer({ min: 1, max: 16 }).map((n) => 16 * n),
          fc.integer({ min: 0, max: 300 }),
        ),
        flags: fc.oneof(
          { weight: 5, arbitrary: fc.constant(F_INDIRECT) },
          { weight: 1, arbitrary: flagsArb },
        ),
        next: indexArb(size),
      }),
    },
  );
}

const caseArb: fc.Arbitrary<Case> = fc.constantFrom(1, 2, 4, 8, 16).chain((size) =>
  fc.record({
    size: fc.constant(size),
    indirect: fc.oneof(
      { weight: 3, arbitrary: fc.constant(true) },
      { weight: 1, arbitrary: fc.constant(false) },
    ),
    eventIdx: fc.boolean(),
    start: fc.oneof(fc.integer({ min: 0, max: 20 }), fc.integer({ min: 0xffe0, max: 0xffff }), u16),
    advance: fc.oneof(
      { weight: 10, arbitrary: fc.integer({ min: 0, max: size }) },
      { weight: 1, arbitrary: fc.integer({ min: size + 1, max: size + 2 }) },
      { weight: 1, arbitrary: u16 },
    ),
    avail: fc.array(indexArb(size), { minLength: MAX_SIZE, maxLength: MAX_SIZE }),
    desc: fc.array(descArb(size, 4), { minLength: MAX_SIZE, maxLength: MAX_SIZE }),
    tables: fc.array(fc.array(descArb(16, 1), { minLength: 0, maxLength: 16 }), {
      minLength: 3,
      maxLength: 3,
    }),
  }),
);

type Expected =
  | { broken: true }
  | {
      broken: false;
      readable: Array<[number, number]>;
      writable: Array<[number, number]>;
      fault: boolean;
      tailWritable: boolean;
      /** Descriptors the chain may span: its tables' sizes. */
      limit: number;
    };

describe('SplitQueue fuzz', function () {
  // 3000 runs: 0.5 s idle here, up to 1.8 s loaded; a slow CI runner gets more than ten times that.
  this.timeout(30_000);

  let memory: TestMemory;

  before(() => {
    memory = new TestMemory([
      { iova: RW, size: RW_SIZE, access: 'rw' },
      { iova: RO, size: SMALL, access: 'ro' },
      { iova: WO, size: SMALL, access: 'wo' },
    ]);
  });

  after(() => memory.free());

  /** Where [addr, addr + len) lives in process memory if a region holds it with `write` access. */
  function translate(addr: bigint, len: number, write: boolean): number | null {
    for (const region of memory.regions) {
      const start = BigInt(region.iova);
      if (addr < start || addr + BigInt(len) > start + BigInt(region.size)) continue;
      if (write ? region.access === 'ro' : region.access === 'wo') return null;
      return region.mapping.address + Number(addr - start);
    }
    return null;
  }

  function readDesc(view: DataView, index: number): RawDesc {
    return {
      addr: view.getBigUint64(16 * index, true),
      len: view.getUint32(16 * index + 8, true),
      flags: view.getUint16(16 * index + 12, true),
      next: view.getUint16(16 * index + 14, true),
    };
  }

  /** The reference walk of one chain (virtio 1.x 2.7.5), from what is in memory. */
  function expected(c: Case, head: number): Expected {
    if (head >= c.size) return { broken: true };
    let view = memory.view(DESC, 16 * c.size);
    let tableSize = c.size;
    let limit = c.size;
    let index = head;
    let visited = 0;
    let inIndirect = false;
    let total = 0;
    let fault = false;
    let tailWritable = false;
    const readable: Array<[number, number]> = [];
    const writable: Array<[number, number]> = [];
    let sawWrite = false;
    for (;;) {
      if (index >= tableSize || ++visited > tableSize) return { broken: true };
      const d = readDesc(view, index);
      const addr = BigInt(d.addr);
      if (d.flags & F_INDIRECT) {
        if (!c.indirect || inIndirect || d.flags & F_NEXT || d.len === 0 || d.len % 16 !== 0)
          return { broken: true };
        if (translate(addr, d.len, false) === null) return { broken: true };
        view = memory.view(Number(addr), d.len);
        tableSize = d.len / 16;
        limit += tableSize;
        index = 0;
        visited = 0;
        inIndirect = true;
        continue;
      }
      const write = (d.flags & F_WRITE) !== 0;
      total += d.len;
      if (total > MAX_CHAIN) fault = true;
      // virtio 2.7.4.2: no device-readable descriptor after any device-writable one, empty or not.
      if (!write && sawWrite) fault = true;
      if (write) sawWrite = true;
      tailWritable = false;
      if (d.len > 0) {
        const address = translate(addr, d.len, write);
        if (address === null) fault = true;
        else if (write) {
          writable.push([address, d.len]);
          tailWritable = true;
        } else readable.push([address, d.len]);
      }
      if (!(d.flags & F_NEXT)) break;
      index = d.next;
    }
    return { broken: false, readable, writable, fault, tailWritable, limit };
  }

  function load(c: Case): void {
    for (const region of memory.regions) region.mapping.bytes.fill(0);
    const desc = memory.view(DESC, 16 * MAX_SIZE);
    c.desc.forEach((d, i) => writeDesc(desc, 16 * i, d));
    c.tables.forEach((table, t) => {
      const view = memory.view(TABLES[t]!, 16 * 16);
      table.forEach((d, i) => writeDesc(view, 16 * i, d));
    });
    const avail = memory.view(AVAIL, 6 + 2 * MAX_SIZE);
    avail.setUint16(2, (c.start + c.advance) & 0xffff, true);
    for (let i = 0; i < c.size; i++) avail.setUint16(4 + 2 * i, c.avail[i]!, true);
    memory.view(USED, 4).setUint16(2, c.start, true);
  }

  function checkSegments(segments: readonly Segment[], write: boolean): void {
    for (const segment of segments) {
      const where = memory.locate(segment);
      assert.ok(where, `segment at ${segment.address} is not inside mapped memory`);
      assert.notEqual(where.region.access, write ? 'ro' : 'wo', 'segment in a region without the access');
      assert.ok(segment.bytes.byteLength > 0);
    }
  }

  function shape(segments: readonly Segment[]): Array<[number, number]> {
    return segments.map((s) => [s.address, s.bytes.byteLength]);
  }

  it('pops valid chains or throws QueueBrokenError, never anything else', () => {
    const outcomes = { chains: 0, faults: 0, broken: 0, empty: 0, indirect: 0 };
    fc.assert(
      fc.property(caseArb, (c) => {
        load(c);
        const before = memory.regions.map((r) => Buffer.from(r.mapping.bytes));
        const q = new SplitQueue(
          memory,
          { size: c.size, descAddr: DESC, availAddr: AVAIL, usedAddr: USED },
          { eventIdx: c.eventIdx, indirect: c.indirect },
        );
        const pending = c.advance & 0xffff;
        // At most `size` chains, then one more pop that must find nothing.
        for (let n = 0; n <= c.size; n++) {
          const head = c.avail[(c.start + n) % c.size]!;
          const want: Expected =
            pending > c.size
              ? { broken: true }
              : n >= pending
                ? { broken: false, readable: [], writable: [], fault: false, tailWritable: false, limit: 0 }
                : expected(c, head);
          let chain: Chain | null;
          try {
            chain = q.pop();
          } catch (error) {
            if (!(error instanceof QueueBrokenError)) throw error;
            assert.equal(want.broken, true, `pop ${n} threw ${error.message} for a well-formed chain`);
            outcomes.broken++;
            break;
          }
          assert.equal(want.broken, false, `pop ${n} accepted a broken chain`);
          if (n >= pending) {
            assert.equal(chain, null, `pop ${n} of ${pending} returned a chain`);
            outcomes.empty++;
            break;
          }
          assert.ok(chain, `pop ${n} of ${pending} returned nothing`);
          if (want.broken) break;
          checkSegments(chain.readable, false);
          checkSegments(chain.writable, true);
          assert.ok(
            chain.readable.length + chain.writable.length <= want.limit,
            'more segments than descriptors',
          );
          assert.equal(chain.head, head);
          assert.deepEqual(shape(chain.readable), want.readable);
          assert.deepEqual(shape(chain.writable), want.writable);
          assert.equal(chain.fault !== undefined, want.fault, `fault: ${chain.fault}`);
          assert.equal(chain.tailWritable, want.tailWritable);
          if (chain.tailWritable) assert.ok(chain.writable.length > 0);
          outcomes.chains++;
          if (chain.fault !== undefined) outcomes.faults++;
          if (want.limit > c.size) outcomes.indirect++;
        }
        memory.regions.forEach((r, i) =>
          assert.ok(before[i]!.equals(r.mapping.bytes), 'pop() wrote guest memory'),
        );
      }),
      { numRuns: 3000 },
    );
    if (process.env.FUZZ_STATS) console.log(outcomes);
    // The generators must reach every outcome often enough to mean something.
    assert.ok(outcomes.chains > 600, JSON.stringify(outcomes));
    assert.ok(outcomes.faults > 200, JSON.stringify(outcomes));
    assert.ok(outcomes.broken > 300, JSON.stringify(outcomes));
    assert.ok(outcomes.indirect > 40, JSON.stringify(outcomes));
  });
});

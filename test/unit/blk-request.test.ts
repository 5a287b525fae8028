import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FileBackend } from '../../src/backend/file';
import { BlockBackend, IoResult } from '../../src/backend/types';
import { blkLimits } from '../../src/virtio/blk/config';
import { BlkLimits, BlkRequestHandler } from '../../src/virtio/blk/request-handler';
import { Segment } from '../../src/virtio/memory';
import { Chain, QueueBrokenError, SplitQueue } from '../../src/virtio/split-queue';
import { TestMemory } from '../support/guest-memory';
import { ChainBuffer, F_NEXT, F_WRITE, RingBuilder } from '../support/ring-builder';

const T_IN = 0;
const T_OUT = 1;
const T_FLUSH = 4;
const T_GET_ID = 8;
const T_DISCARD = 11;
const T_WRITE_ZEROES = 13;
const S_OK = 0;
const S_IOERR = 1;
const S_UNSUPP = 2;
/** What a status byte holds before the device writes it. */
const UNTOUCHED = 0xee;
/** When the tests say a request was taken (a performance.now() reading, passed through to the observer). */
const TAKEN_AT = 1234.5;

const RW = 0x100000;
const RW_SIZE = 0x100000;
const RO = 0x400000;
const WO = 0x500000;
const SMALL = 0x10000;
const GAP = 0x300000;
const CAPACITY = 1 << 20;
const SERIAL = 'serial-0123456789abcdef-longer-than-20';

function header(type: number, sector: bigint | number, ioprio = 0): Uint8Array {
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, type, true);
  view.setUint32(4, ioprio, true);
  view.setBigUint64(8, BigInt(sector), true);
  return bytes;
}

function rangeSegment(sector: bigint | number, sectors: number, flags: number): Uint8Array {
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, BigInt(sector), true);
  view.setUint32(8, sectors, true);
  view.setUint32(12, flags, true);
  return bytes;
}

function concat(segments: readonly Uint8Array[]): Buffer {
  return Buffer.concat(segments.map((s) => Buffer.from(s)));
}

interface Submitted {
  chain: Chain;
  written: number;
  status: number;
  /** Copies of the writable data buffers (status descriptor excluded). */
  dataIn: Buffer;
}

describe('BlkRequestHandler over SplitQueue and FileBackend', function () {
  // Real files behind the backend: up to 0.04 s for a case here under load.
  this.timeout(5_000);
  let dir: string;
  let file: string;
  let memory: TestMemory;
  let ring: RingBuilder;
  let queue: SplitQueue;
  let backend: FileBackend;
  let errors: string[];
  /** What the backend threw for each failed request (undefined when the request itself was bad). */
  let causes: unknown[];
  let capacity: number;

  function limits(overrides: Partial<BlkLimits> = {}): BlkLimits {
    const base = blkLimits({
      capacityBytes: CAPACITY,
      queues: 1,
      queueSize: 64,
      blockSize: 512,
      readOnly: false,
      keepAllocation: false,
      serial: SERIAL,
    });
    return { ...base, ...overrides };
  }

  function handler(overrides: Partial<BlkLimits> = {}, store: BlockBackend = backend): BlkRequestHandler {
    return new BlkRequestHandler(
      store,
      limits(overrides),
      () => capacity,
      (head, message, cause) => {
        errors.push(`${head}: ${message}`);
        causes.push(cause);
      },
    );
  }

  /** Places `data` in region `region` and returns a readable buffer for it. */
  function out(data: Uint8Array, region = 0): ChainBuffer {
    const addr = memory.alloc(region, Math.max(1, data.byteLength), 1);
    memory.write(addr, data);
    return { addr, len: data.byteLength };
  }

  /** A writable buffer of `len` bytes filled with UNTOUCHED. */
  function into(len: number, region = 0): ChainBuffer {
    const addr = memory.alloc(region, Math.max(1, len), 1);
    memory.bytes(addr, Math.max(1, len)).fill(UNTOUCHED);
    return { addr, len, write: true };
  }

  /** Publishes the chain, pops it, handles it with `h` and returns it to the used ring. */
  async function submit(h: BlkRequestHandler, buffers: ChainBuffer[]): Promise<Submitted> {
    ring.publish(ring.addChain(buffers));
    const chain = queue.pop();
    assert.ok(chain);
    const written = await h.handle(chain, TAKEN_AT);
    queue.pushUsed(chain.head, written);
    const last = buffers[buffers.length - 1]!;
    const status = memory.bytes(last.addr + last.len - 1, 1)[0]!;
    const writable = buffers.filter((b) => b.write);
    const dataIn = concat(
      writable.map((b, i) => memory.bytes(b.addr, i === writable.length - 1 ? b.len - 1 : b.len)),
    );
    const used = ring.usedElem((queue.usedIndex - 1) % ring.size);
    assert.deepEqual(used, { id: chain.head, len: written }, 'used element');
    return { chain, written, status, dataIn };
  }

  /** A request as Linux sends it: header, data out, data in, status byte, each in its own buffer. */
  function request(
    h: BlkRequestHandler,
    type: number,
    sector: bigint | number,
    data: { out?: Uint8Array[]; inLengths?: number[] } = {},
  ): Promise<Submitted> {
    const buffers = [out(header(type, sector))];
    for (const d of data.out ?? []) buffers.push(out(d));
    for (const len of data.inLengths ?? []) buffers.push(into(len));
    buffers.push(into(1));
    return submit(h, buffers);
  }

  function fileBytes(offset: number, length: number): Buffer {
    const result = Buffer.alloc(length);
    const fd = fs.openSync(file, 'r');
    try {
      fs.readSync(fd, result, 0, length, offset);
    } finally {
      fs.closeSync(fd);
    }
    return result;
  }

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vduse-blk-test-'));
  });

  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  beforeEach(() => {
    file = path.join(dir, `disk-${Math.random().toString(16).slice(2)}.img`);
    fs.writeFileSync(file, '');
    fs.truncateSync(file, CAPACITY);
    backend = FileBackend.open(file, false);
    memory = new TestMemory([
      { iova: RW, size: RW_SIZE, access: 'rw' },
      { iova: RO, size: SMALL, access: 'ro' },
      { iova: WO, size: SMALL, access: 'wo' },
    ]);
    ring = new RingBuilder(memory, 64);
    queue = new SplitQueue(memory, ring.layout, { eventIdx: true, indirect: true });
    errors = [];
    causes = [];
    capacity = CAPACITY;
  });

  afterEach(() => {
    backend.close();
    memory.free();
    fs.rmSync(file, { force: true });
  });

  describe('data path', () => {
    it('writes with OUT and reads the same bytes back with IN', async () => {
      const h = handler();
      const data = randomBytes(4096);
      const w = await request(h, T_OUT, 8, { out: [data] });
      assert.equal(w.status, S_OK);
      assert.equal(w.written, 1);
      assert.deepEqual(fileBytes(4096, 4096), data);
      assert.deepEqual(fileBytes(0, 4096), Buffer.alloc(4096), 'nothing before sector 8 changed');
      const r = await request(h, T_IN, 8, { inLengths: [4096] });
      assert.equal(r.status, S_OK);
      assert.equal(r.written, 4097);
      assert.deepEqual(r.dataIn, data);
      assert.deepEqual(errors, []);
    });

    it('gathers and scatters many segments of odd sizes in different regions', async () => {
      const h = handler();
      const data = randomBytes(8192);
      const cuts = [0, 1, 100, 612, 2048, 2049, 4000, 8192];
      const pieces = cuts.slice(1).map((end, i) => data.subarray(cuts[i], end));
      const buffers = [out(header(T_OUT, 16))];
      pieces.forEach((piece, i) => buffers.push(out(piece, i % 2 === 0 ? 1 : 0)));
      buffers.push(into(1, 2));
      const w = await submit(h, buffers);
      assert.equal(w.status, S_OK);
      assert.deepEqual(fileBytes(16 * 512, 8192), data);

      const lengths = [3, 509, 1000, 24, 4096, 2560];
      const reads = [out(header(T_IN, 16), 1)];
      lengths.forEach((len, i) => reads.push(into(len, i % 2 === 0 ? 2 : 0)));
      reads.push(into(1));
      const r = await submit(h, reads);
      assert.equal(r.status, S_OK);
      assert.equal(r.written, 8193);
      assert.deepEqual(r.dataIn, data);
    });

    it('accepts the header split across two descriptors', async () => {
      const h = handler();
      const data = randomBytes(512);
      const head = header(T_OUT, 3);
      const w = await submit(h, [out(head.subarray(0, 5)), out(head.subarray(5)), out(data), into(1)]);
      assert.equal(w.status, S_OK);
      assert.deepEqual(fileBytes(3 * 512, 512), data);
    });

    it('accepts header and data in one descriptor', async () => {
      const h = handler();
      const data = randomBytes(1024);
      const w = await submit(h, [out(concat([header(T_OUT, 1), data])), into(1)]);
      assert.equal(w.status, S_OK);
      assert.deepEqual(fileBytes(512, 1024), data);
    });

    it('finds the status byte at the end of the data descriptor', async () => {
      const h = handler();
      const data = randomBytes(1024);
      await request(h, T_OUT, 2, { out: [data] });
      const combined = into(1025);
      const r = await submit(h, [out(header(T_IN, 2)), combined]);
      assert.equal(r.status, S_OK);
      assert.equal(r.written, 1025);
      assert.deepEqual(Buffer.from(memory.bytes(combined.addr, 1024)), data);
      assert.equal(memory.bytes(combined.addr + 1024, 1)[0], S_OK);
    });

    it('reads at the last sector and a zero-length IN succeeds', async () => {
      const h = handler();
      const data = randomBytes(512);
      await request(h, T_OUT, CAPACITY / 512 - 1, { out: [data] });
      const r = await request(h, T_IN, CAPACITY / 512 - 1, { inLengths: [512] });
      assert.equal(r.status, S_OK);
      assert.deepEqual(r.dataIn, data);
      const empty = await request(h, T_IN, 0);
      assert.equal(empty.status, S_OK);
      assert.equal(empty.written, 1);
    });

    it('serves a capacity that grew since the handler was made', async () => {
      const h = handler();
      const beyond = await request(h, T_IN, CAPACITY / 512, { inLengths: [512] });
      assert.equal(beyond.status, S_IOERR);
      capacity = CAPACITY + 4096;
      fs.truncateSync(file, capacity);
      const now = await request(h, T_IN, CAPACITY / 512, { inLengths: [512] });
      assert.equal(now.status, S_OK);
      assert.deepEqual(now.dataIn, Buffer.alloc(512));
    });
  });

  describe('observer', () => {
    it('is told the type, data bytes, outcome and start of every request as it completes', async () => {
      const seen: Array<{ type: number; dataBytes: number; ok: boolean }> = [];
      const observed = new BlkRequestHandler(
        backend,
        limits(),
        () => capacity,
        (head, message) => errors.push(`${head}: ${message}`),
        {
          finished(type, dataBytes, ok, startedAt) {
            assert.equal(startedAt, TAKEN_AT);
            seen.push({ type, dataBytes, ok });
          },
        },
      );
      await request(observed, T_OUT, 8, { out: [randomBytes(4096)] });
      await request(observed, T_IN, 8, { inLengths: [1024, 512] });
      await request(observed, T_FLUSH, 0, {});
      await request(observed, 99, 0, {});
      await request(observed, T_IN, CAPACITY / 512, { inLengths: [512] });
      assert.deepEqual(seen, [
        { type: T_OUT, dataBytes: 4096, ok: true },
        { type: T_IN, dataBytes: 1536, ok: true },
        { type: T_FLUSH, dataBytes: 0, ok: true },
        { type: 99, dataBytes: 0, ok: false },
        { type: T_IN, dataBytes: 512, ok: false },
      ]);
    });
  });

  describe('other commands', () => {
    it('FLUSH completes with OK and writes only the status byte', async () => {
      const r = await request(handler(), T_FLUSH, 0);
      assert.equal(r.status, S_OK);
      assert.equal(r.written, 1);
    });

    it('GET_ID returns the first 20 bytes of the serial', async () => {
      const r = await request(handler(), T_GET_ID, 0, { inLengths: [20] });
      assert.equal(r.status, S_OK);
      assert.equal(r.written, 21);
      assert.equal(r.dataIn.toString('latin1'), SERIAL.slice(0, 20));
    });

    it('GET_ID pads a short serial with NULs and counts at most 20 bytes written', async () => {
      const h = handler({ serial: Buffer.concat([Buffer.from('abc'), Buffer.alloc(17)]) });
      const r = await request(h, T_GET_ID, 0, { inLengths: [512] });
      assert.equal(r.status, S_OK);
      assert.equal(r.written, 21);
      assert.deepEqual(r.dataIn.subarray(0, 20), Buffer.concat([Buffer.from('abc'), Buffer.alloc(17)]));
      assert.deepEqual(
        r.dataIn.subarray(20),
        Buffer.alloc(492, UNTOUCHED),
        'bytes past the serial untouched',
      );
    });

    it('GET_ID into a buffer shorter than 20 bytes fills what fits', async () => {
      const r = await request(handler(), T_GET_ID, 0, { inLengths: [8] });
      assert.equal(r.status, S_OK);
      assert.equal(r.written, 9);
      assert.equal(r.dataIn.toString('latin1'), SERIAL.slice(0, 8));
    });

    it('DISCARD punches a hole that reads back as zeroes', async () => {
      const h = handler();
      const data = randomBytes(65536);
      await request(h, T_OUT, 0, { out: [data] });
      backend.flush();
      const before = fs.statSync(file).blocks;
      assert.ok(before >= 128, `blocks ${before}`);
      const d = await request(h, T_DISCARD, 0, { out: [rangeSegment(0, 128, 0)] });
      assert.equal(d.status, S_OK);
      assert.equal(d.written, 1);
      const after = fs.statSync(file).blocks;
      assert.ok(after <= before - 128, `blocks ${before} -> ${after}`);
      const r = await request(h, T_IN, 0, { inLengths: [65536] });
      assert.deepEqual(r.dataIn, Buffer.alloc(65536));
      assert.equal(fs.statSync(file).size, CAPACITY, 'DISCARD keeps the size');
    });

    it('WRITE_ZEROES without UNMAP zeroes the range and keeps it allocated', async () => {
      const h = handler();
      const data = randomBytes(65536);
      await request(h, T_OUT, 0, { out: [data] });
      backend.flush();
      const z = await request(h, T_WRITE_ZEROES, 8, { out: [rangeSegment(8, 64, 0)] });
      assert.equal(z.status, S_OK);
      assert.equal(z.written, 1);
      assert.ok(fs.statSync(file).blocks >= 128, 'still allocated');
      const r = await request(h, T_IN, 0, { inLengths: [65536] });
      assert.deepEqual(r.dataIn.subarray(0, 4096), data.subarray(0, 4096));
      assert.deepEqual(r.dataIn.subarray(4096, 4096 + 32768), Buffer.alloc(32768));
      assert.deepEqual(r.dataIn.subarray(4096 + 32768), data.subarray(4096 + 32768));
    });

    it('WRITE_ZEROES with UNMAP zeroes the range and releases its space', async () => {
      const h = handler();
      await request(h, T_OUT, 0, { out: [randomBytes(65536)] });
      backend.flush();
      const before = fs.statSync(file).blocks;
      const z = await request(h, T_WRITE_ZEROES, 0, { out: [rangeSegment(0, 128, 1)] });
      assert.equal(z.status, S_OK);
      assert.ok(fs.statSync(file).blocks <= before - 128);
      assert.deepEqual(fileBytes(0, 65536), Buffer.alloc(65536));
    });

    it('answers an unknown type with UNSUPP and without logging an error', async () => {
      const r = await request(handler(), 99, 0, { inLengths: [512] });
      assert.equal(r.status, S_UNSUPP);
      assert.equal(r.written, 1);
      assert.deepEqual(r.dataIn, Buffer.alloc(512, UNTOUCHED));
      assert.deepEqual(errors, []);
    });

    it('answers DISCARD with flags set, and WRITE_ZEROES with flags beyond UNMAP, with UNSUPP', async () => {
      const h = handler();
      await request(h, T_OUT, 0, { out: [Buffer.alloc(512, 7)] });
      const d = await request(h, T_DISCARD, 0, { out: [rangeSegment(0, 1, 1)] });
      assert.equal(d.status, S_UNSUPP);
      const z = await request(h, T_WRITE_ZEROES, 0, { out: [rangeSegment(0, 1, 2)] });
      assert.equal(z.status, S_UNSUPP);
      assert.deepEqual(fileBytes(0, 512), Buffer.alloc(512, 7), 'nothing was discarded');
    });

    it('rejects range payloads of the wrong size, too many segments or too many sectors', async () => {
      const h = handler();
      const cases: Array<[string, Uint8Array[]]> = [
        ['empty', []],
        ['15 bytes', [rangeSegment(0, 1, 0).subarray(0, 15)]],
        ['two segments', [rangeSegment(0, 1, 0), rangeSegment(8, 1, 0)]],
        ['65537 sectors', [rangeSegment(0, 65537, 0)]],
        ['beyond capacity', [rangeSegment(CAPACITY / 512 - 1, 2, 0)]],
      ];
      for (const [what, payload] of cases) {
        for (const type of [T_DISCARD, T_WRITE_ZEROES]) {
          const r = await request(h, type, 0, { out: payload });
          assert.equal(r.status, S_IOERR, `${what} type ${type}`);
        }
      }
    });
  });

  describe('errors', () => {
    it('fails a read past the capacity with IOERR and leaves the buffer alone', async () => {
      const h = handler();
      for (const [sector, len] of [
        [CAPACITY / 512 - 1, 1024],
        [CAPACITY / 512, 512],
        [2n ** 63n, 512],
        [2n ** 64n - 1n, 512],
        [2 ** 44, 512],
      ] as Array<[number | bigint, number]>) {
        const r = await request(h, T_IN, sector, { inLengths: [len] });
        assert.equal(r.status, S_IOERR, `sector ${sector}`);
        assert.equal(r.written, 1);
        assert.deepEqual(r.dataIn, Buffer.alloc(len, UNTOUCHED));
      }
      assert.equal(errors.length, 5);
    });

    it('fails a write past the capacity with IOERR and leaves the file untouched', async () => {
      const h = handler();
      const w = await request(h, T_OUT, CAPACITY / 512 - 1, { out: [Buffer.alloc(1024, 1)] });
      assert.equal(w.status, S_IOERR);
      const stat = fs.statSync(file);
      assert.equal(stat.size, CAPACITY);
      assert.equal(stat.blocks, 0);
      assert.deepEqual(fileBytes(CAPACITY - 512, 512), Buffer.alloc(512));
    });

    it('fails lengths that are not whole sectors or blocks, and unaligned sectors', async () => {
      const h = handler();
      assert.equal((await request(h, T_OUT, 0, { out: [Buffer.alloc(100, 1)] })).status, S_IOERR);
      assert.equal((await request(h, T_IN, 0, { inLengths: [513] })).status, S_IOERR);
      const h4k = handler({ blockSize: 4096 });
      assert.equal((await request(h4k, T_OUT, 1, { out: [Buffer.alloc(4096, 1)] })).status, S_IOERR);
      assert.equal((await request(h4k, T_OUT, 0, { out: [Buffer.alloc(512, 1)] })).status, S_IOERR);
      assert.equal((await request(h4k, T_IN, 8, { inLengths: [4096] })).status, S_OK);
      assert.equal(fs.statSync(file).blocks, 0, 'nothing was written');
    });

    it('fails a header shorter than 16 bytes with IOERR', async () => {
      const r = await submit(handler(), [out(header(T_FLUSH, 0).subarray(0, 12)), into(1)]);
      assert.equal(r.status, S_IOERR);
      assert.equal(r.written, 1);
    });

    it('refuses OUT, DISCARD and WRITE_ZEROES on a read-only device but serves IN and FLUSH', async () => {
      const h = handler({ readOnly: true });
      assert.equal((await request(h, T_OUT, 0, { out: [Buffer.alloc(512, 1)] })).status, S_IOERR);
      assert.equal((await request(h, T_DISCARD, 0, { out: [rangeSegment(0, 1, 0)] })).status, S_IOERR);
      assert.equal((await request(h, T_WRITE_ZEROES, 0, { out: [rangeSegment(0, 1, 0)] })).status, S_IOERR);
      assert.equal((await request(h, T_IN, 0, { inLengths: [512] })).status, S_OK);
      assert.equal((await request(h, T_FLUSH, 0)).status, S_OK);
      assert.equal(fs.statSync(file).blocks, 0);
      assert.equal(errors.length, 3);
    });

    it('answers a chain with a fault with IOERR and does no I/O', async () => {
      const h = handler();
      const r = await submit(h, [out(header(T_OUT, 0)), { addr: GAP, len: 512 }, into(1)]);
      assert.match(r.chain.fault ?? '', /not mapped/);
      assert.equal(r.status, S_IOERR);
      assert.equal(r.written, 1);
      assert.equal(errors.length, 1);
      assert.match(errors[0]!, /not mapped/);
      assert.equal(fs.statSync(file).blocks, 0);
      // A read whose data buffer is in read-only memory.
      const ro = await submit(h, [out(header(T_IN, 0)), { addr: RO, len: 512, write: true }, into(1)]);
      assert.equal(ro.status, S_IOERR);
    });

    it('throws QueueBrokenError for a chain with no writable status byte', () => {
      const h = handler();
      const cases: ChainBuffer[][] = [
        [out(header(T_FLUSH, 0))],
        [out(header(T_IN, 0)), into(512), out(new Uint8Array(1))],
        [out(header(T_FLUSH, 0)), into(0)],
        [out(header(T_FLUSH, 0)), { addr: GAP, len: 1, write: true }],
      ];
      for (const buffers of cases) {
        ring.publish(ring.addChain(buffers));
        const chain = queue.pop();
        assert.ok(chain);
        assert.throws(() => h.handle(chain, TAKEN_AT), QueueBrokenError);
      }
    });
  });

  describe('asynchronous backends', () => {
    /** Stands in for a network backend: completes each operation when the test says so. */
    class DeferredBackend implements BlockBackend {
      readonly calls: string[] = [];
      private pending: Array<{ resolve: () => void; reject: (error: Error) => void }> = [];

      private later(call: string): Promise<void> {
        this.calls.push(call);
        return new Promise<void>((resolve, reject) => this.pending.push({ resolve, reject }));
      }

      read(offset: number, segments: readonly Segment[]): IoResult {
        return this.later(`read ${offset} ${segments.map((s) => s.bytes.byteLength).join('+')}`).then(() => {
          for (const s of segments) s.bytes.fill(0x5a);
        });
      }
      write(offset: number, segments: readonly Segment[]): IoResult {
        return this.later(`write ${offset} ${segments.map((s) => s.bytes.byteLength).join('+')}`);
      }
      flush(): IoResult {
        return this.later('flush');
      }
      discard(offset: number, length: number): IoResult {
        return this.later(`discard ${offset} ${length}`);
      }
      writeZeroes(offset: number, length: number, mayUnmap: boolean): IoResult {
        return this.later(`zeroes ${offset} ${length} ${mayUnmap}`);
      }
      close(): void {}

      settle(error?: Error): void {
        const next = this.pending.shift();
        assert.ok(next, 'no operation pending');
        if (error) next.reject(error);
        else next.resolve();
      }
    }

    async function start(store: DeferredBackend, buffers: ChainBuffer[]) {
      ring.publish(ring.addChain(buffers));
      const chain = queue.pop();
      assert.ok(chain);
      const result = handler({}, store).handle(chain, TAKEN_AT);
      assert.ok(result instanceof Promise, 'an asynchronous backend gives a Promise');
      const last = buffers[buffers.length - 1]!;
      return { result, status: () => memory.bytes(last.addr + last.len - 1, 1)[0] };
    }

    it('completes IN when the backend resolves, and only then sets the status', async () => {
      const store = new DeferredBackend();
      const data = into(1024);
      const { result, status } = await start(store, [out(header(T_IN, 4)), data, into(1)]);
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(status(), UNTOUCHED, 'status written before completion');
      assert.deepEqual(store.calls, ['read 2048 1024']);
      store.settle();
      assert.equal(await result, 1025);
      assert.equal(status(), S_OK);
      assert.deepEqual(Buffer.from(memory.bytes(data.addr, 1024)), Buffer.alloc(1024, 0x5a));
    });

    it('completes OUT and FLUSH with a written length of 1', async () => {
      const store = new DeferredBackend();
      const w = await start(store, [out(header(T_OUT, 0)), out(Buffer.alloc(512)), into(1)]);
      store.settle();
      assert.equal(await w.result, 1);
      assert.equal(w.status(), S_OK);
      const f = await start(store, [out(header(T_FLUSH, 0)), into(1)]);
      store.settle();
      assert.equal(await f.result, 1);
      assert.equal(f.status(), S_OK);
      assert.deepEqual(store.calls, ['write 0 512', 'flush']);
    });

    it('answers IOERR when the backend rejects', async () => {
      const store = new DeferredBackend();
      const { result, status } = await start(store, [out(header(T_IN, 0)), into(512), into(1)]);
      const reset = new Error('connection reset');
      store.settle(reset);
      assert.equal(await result, 1);
      assert.equal(status(), S_IOERR);
      assert.equal(errors.length, 1);
      assert.match(errors[0]!, /connection reset/);
      assert.deepEqual(causes, [reset], 'the error itself is passed on (its errno tells ENOSPC apart)');
    });

    it('passes WRITE_ZEROES with UNMAP through as mayUnmap', async () => {
      const store = new DeferredBackend();
      const { result, status } = await start(store, [
        out(header(T_WRITE_ZEROES, 0)),
        out(rangeSegment(16, 8, 1)),
        into(1),
      ]);
      store.settle();
      assert.equal(await result, 1);
      assert.equal(status(), S_OK);
      assert.deepEqual(store.calls, ['zeroes 8192 4096 true']);
    });
  });

  it('keeps descriptor flags consistent (builder self-check)', () => {
    // The chain helpers must link descriptors exactly as the driver would.
    const head = ring.addChain([
      { addr: RW, len: 16 },
      { addr: RW, len: 1, write: true },
    ]);
    const view = memory.view(ring.descAddr + 16 * head, 32);
    assert.equal(view.getUint16(12, true), F_NEXT);
    assert.equal(view.getUint16(14, true), head + 1);
    assert.equal(view.getUint16(16 + 12, true), F_WRITE);
  });
});

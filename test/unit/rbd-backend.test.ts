import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { CephError } from '../../src/backend/ceph-error';
import { RadosConnectOptions } from '../../src/backend/rados-client';
import { RbdBackend, RbdBackendProvider } from '../../src/backend/rbd';
import { RbdLocation, RbdSharing } from '../../src/backend/descriptor';
import { RbdImage } from '../../src/backend/rbd-image';
import { openBackend } from '../../src/backend/open-backend';
import * as libc from '../../src/sys/libc';
import { Segment, segmentOf } from '../../src/virtio/memory';
import { useCephCluster } from '../support/ceph-cluster';
import { TestPollLoop } from '../support/poll-loop';

const KiB = 1024;
const MiB = 1024 * KiB;
/** RBD's default object size: a discard of whole objects frees them, so they read back as zeroes. */
const OBJECT = 4 * MiB;
const IMAGE_SIZE = 64 * MiB;

/** Guest-like memory: one anonymous mapping (stable addresses) handed out as segments. */
class GuestBuffers {
  private readonly mapping: libc.Mapping;
  private used = 0;

  constructor(size: number) {
    this.mapping = libc.mapAnonymous(size);
  }

  /** Fresh segments of these lengths, back to back. */
  segments(lengths: readonly number[]): Segment[] {
    return lengths.map((length) => {
      const offset = this.used;
      this.used += length;
      if (this.used > this.mapping.length) throw new Error('test bug: guest buffers exhausted');
      return segmentOf(this.mapping.bytes, this.mapping.address, offset, length);
    });
  }

  free(): void {
    this.mapping.unmap();
  }
}

function fill(segments: readonly Segment[], data: Uint8Array): void {
  let at = 0;
  for (const segment of segments) {
    segment.bytes.set(data.subarray(at, at + segment.bytes.byteLength));
    at += segment.bytes.byteLength;
  }
}

function gather(segments: readonly Segment[]): Buffer {
  return Buffer.concat(segments.map((segment) => segment.bytes));
}

/** Splits `total` bytes into `parts` uneven pieces (none empty). */
function uneven(total: number, parts: number): number[] {
  const lengths = Array.from(
    { length: parts - 1 },
    (_, i) => Math.floor(total / parts) + (i % 2 ? 700 : -700),
  );
  return [...lengths, total - lengths.reduce((a, b) => a + b, 0)];
}

async function rejectsWithKind(promise: Promise<unknown>, kind: CephError['kind']): Promise<CephError> {
  const error = await promise.then(
    () => assert.fail(`expected a ${kind} CephError`),
    (failure: unknown) => failure,
  );
  assert.ok(error instanceof CephError, `not a CephError: ${String(error)}`);
  assert.equal(error.kind, kind, error.message);
  return error;
}

describe('RBD backend: librbd through koffi against a single-node Ceph cluster', function () {
  // Each case waits on a real cluster: generous for a slow, busy CI machine.
  this.timeout(120_000);
  const cluster = useCephCluster();
  const admin = (): RadosConnectOptions => ({ conf: cluster.conf, keyring: cluster.adminKeyring });
  const rbdUser = (): RadosConnectOptions => ({
    conf: cluster.conf,
    user: cluster.user,
    keyring: cluster.userKeyring,
  });
  const at = (image: string): RbdLocation => ({ pool: cluster.pool, image });

  describe('I/O', () => {
    let provider: RbdBackendProvider;
    let loop: TestPollLoop;
    let backend: RbdBackend;
    let memory: GuestBuffers;

    before(async () => {
      provider = await RbdBackendProvider.open(admin(), at('io'), IMAGE_SIZE);
      loop = new TestPollLoop();
      backend = new RbdBackend(provider.image.handle, { readOnly: false }, loop);
      memory = new GuestBuffers(64 * MiB);
    });

    after(async () => {
      backend?.close();
      await loop?.stopped();
      await provider?.close();
      memory?.free();
    });

    it('created the image at the size asked for', () => {
      assert.equal(provider.image.created, true);
      assert.equal(provider.size(), IMAGE_SIZE);
    });

    it('writes 128 multi-segment requests in flight at once and reads them back differently split', async () => {
      const length = 64 * KiB;
      const data = Array.from({ length: 128 }, () => randomBytes(length));
      const written = data.map((bytes, i) => {
        // Every 16th request has more segments than a pooled iovec table holds.
        const segments = memory.segments(uneven(length, i % 16 === 0 ? 40 : 4));
        fill(segments, bytes);
        return backend.write(i * length, segments);
      });
      await Promise.all(written);
      const readBack = data.map((_, i) => {
        const segments = memory.segments(uneven(length, 7));
        return backend.read(i * length, segments).then(() => gather(segments));
      });
      const contents = await Promise.all(readBack);
      contents.forEach((bytes, i) => assert.ok(bytes.equals(data[i]!), `request ${i} read back differently`));
    });

    it('after a flush, another client reads what was written', async () => {
      const data = randomBytes(256 * KiB);
      const segments = memory.segments([data.length]);
      fill(segments, data);
      await backend.write(16 * MiB, segments);
      await backend.flush();
      const other = await RbdImage.open(admin(), at('io'));
      const reader = new RbdBackend(other.handle, { readOnly: true }, loop);
      try {
        const target = memory.segments([data.length]);
        await reader.read(16 * MiB, target);
        assert.ok(gather(target).equals(data));
      } finally {
        reader.close();
        await other.close();
      }
    });

    it('write-zeroes reads back as zeroes exactly over its range, with and without unmapping', async () => {
      for (const mayUnmap of [true, false]) {
        const base = mayUnmap ? 20 * MiB : 21 * MiB;
        const data = randomBytes(64 * KiB);
        const segments = memory.segments([data.length]);
        fill(segments, data);
        await backend.write(base, segments);
        await backend.writeZeroes(base + 5000, 20_000, mayUnmap);
        const target = memory.segments([data.length]);
        await backend.read(base, target);
        const expected = Buffer.from(data);
        expected.fill(0, 5000, 25_000);
        assert.ok(gather(target).equals(expected), `mayUnmap ${mayUnmap}`);
      }
    });

    it('a discard of whole objects reads back as zeroes; with keepAllocation it changes nothing', async () => {
      const keeping = new RbdBackend(provider.image.handle, { readOnly: false, keepAllocation: true }, loop);
      try {
        for (const [which, base] of [
          [backend, 2 * OBJECT],
          [keeping, 3 * OBJECT],
        ] as const) {
          const data = randomBytes(OBJECT);
          const segments = memory.segments([OBJECT]);
          fill(segments, data);
          await which.write(base, segments);
          await which.discard(base, OBJECT);
          const target = memory.segments([OBJECT]);
          await backend.read(base, target);
          const expected = which === keeping ? data : Buffer.alloc(OBJECT);
          assert.ok(gather(target).equals(expected), which === keeping ? 'kept' : 'discarded');
        }
      } finally {
        keeping.close();
      }
    });

    it('rejects reads past the end of the image, and reads that cross it', async () => {
      const size = provider.size();
      await assert.rejects(Promise.resolve(backend.read(size, memory.segments([4096]))));
      await assert.rejects(
        Promise.resolve(backend.read(size - 4096, memory.segments([8192]))),
        /4096 of 8192 bytes/,
      );
    });

    it('a read-only backend refuses writes, discards and write-zeroes', () => {
      const readOnly = new RbdBackend(provider.image.handle, { readOnly: true }, loop);
      try {
        assert.throws(() => readOnly.write(0, memory.segments([512])), /read-only/);
        assert.throws(() => readOnly.discard(0, 512), /read-only/);
        assert.throws(() => readOnly.writeZeroes(0, 512, true), /read-only/);
      } finally {
        readOnly.close();
      }
    });

    it('grows online (the queue side serves the new end at once) and refuses to shrink', async () => {
      const size = provider.size();
      await provider.resize(size + 8 * MiB);
      assert.equal(provider.size(), size + 8 * MiB);
      const data = randomBytes(8 * KiB);
      const segments = memory.segments([data.length]);
      fill(segments, data);
      await backend.write(size + 8 * MiB - data.length, segments);
      const target = memory.segments([data.length]);
      await backend.read(size + 8 * MiB - data.length, target);
      assert.ok(gather(target).equals(data));
      await assert.rejects(provider.resize(size), RangeError);
      assert.equal(provider.size(), size + 8 * MiB);
    });
  });

  describe('opening and errors', () => {
    it('creates a missing image only when given a size, grows a smaller one, and removes what it created', async () => {
      await rejectsWithKind(RbdBackendProvider.open(admin(), at('made'), undefined), 'not-found');
      const made = await RbdBackendProvider.open(admin(), at('made'), 8 * MiB);
      assert.equal(made.image.created, true);
      await made.close();
      const grown = await RbdBackendProvider.open(admin(), at('made'), 12 * MiB);
      assert.equal(grown.image.created, false);
      assert.equal(grown.size(), 12 * MiB);
      await grown.close();
      await grown.removeIfCreated(); // not created by this opening: stays
      const again = await RbdBackendProvider.open(rbdUser(), at('made'), undefined);
      assert.equal(again.size(), 12 * MiB);
      await again.close();
      await made.removeIfCreated();
      await rejectsWithKind(RbdImage.open(admin(), at('made')), 'not-found');
    });

    it('a missing pool or image is not-found, naming it', async () => {
      const pool = await rejectsWithKind(
        RbdImage.open(admin(), { pool: 'no-such-pool', image: 'x' }),
        'not-found',
      );
      assert.match(pool.message, /no-such-pool/);
      const image = await rejectsWithKind(RbdImage.open(rbdUser(), at('no-such-image')), 'not-found');
      assert.match(image.message, /no-such-image/);
      assert.equal(image.code, 'ENOENT');
    });

    it('a wrong key is a permission error that does not show the key', async () => {
      const key = 'AQBnCRRrAAAAABAAqaTJHgAJ4YhNdbT8Gr5cEw==';
      const error = await rejectsWithKind(
        RbdImage.open(
          { conf: cluster.conf, user: cluster.user, key, timeouts: { mountSeconds: 20 } },
          at('io'),
        ),
        'permission',
      );
      assert.match(error.message, /client\.vduse-csi/);
      assert.doesNotMatch(error.message + String(error.stack), new RegExp(key.slice(0, 12)));
    });

    it('monitors that do not answer are unavailable once the mount timeout passes', async () => {
      const error = await rejectsWithKind(
        RbdImage.open(
          { monHost: '127.0.0.1:1', keyring: cluster.adminKeyring, timeouts: { mountSeconds: 3 } },
          at('io'),
        ),
        'unavailable',
      );
      assert.equal(error.code, 'ETIMEDOUT');
    });
  });

  describe('exclusive lock and fencing', () => {
    let first: RbdImage;
    let second: RbdImage | undefined;
    let loop: TestPollLoop;
    let memory: GuestBuffers;

    before(async () => {
      first = await RbdImage.open(admin(), at('locked'), { sizeBytes: 16 * MiB });
      loop = new TestPollLoop();
      memory = new GuestBuffers(MiB);
    });

    after(async () => {
      await second?.close();
      // The first client is blocklisted by then: closing it still returns (with or without an error).
      await first?.close().catch(() => undefined);
      await loop?.stopped();
      memory?.free();
    });

    it('is free before anyone takes it; the holder sees itself as the owner', async () => {
      assert.deepEqual(await first.lockOwners(), []);
      await first.acquireExclusiveLock();
      assert.equal(first.isExclusiveLockOwner(), true);
      assert.deepEqual(await first.lockOwners(), [first.myLockOwnerName()]);
    });

    it('a second client (rbd profile only) sees the first as owner and is refused at once, naming it', async () => {
      second = await RbdImage.open(rbdUser(), at('locked'));
      assert.notEqual(second.myLockOwnerName(), first.myLockOwnerName());
      assert.deepEqual(await second.lockOwners(), [first.myLockOwnerName()]);
      const refused = await second.acquireExclusiveLock().then(
        () => assert.fail('acquired a lock a live client holds'),
        (error: unknown) => error,
      );
      assert.ok(refused instanceof CephError && refused.kind === 'busy', String(refused));
      assert.ok(refused.message.includes(first.myLockOwnerName()), refused.message);
      assert.equal(second.isExclusiveLockOwner(), false);
    });

    it('breaking the lock fences the first client: its next write fails, and the second holds the lock', async () => {
      const writer = new RbdBackend(first.handle, { readOnly: false }, loop);
      try {
        const segments = memory.segments([4096]);
        await writer.write(0, segments);
        await second!.breakLockOf(first.myLockOwnerName());
        await rejectsWithKind(writer.write(4096, memory.segments([4096])), 'fenced');
      } finally {
        writer.close();
      }
      await second!.acquireExclusiveLock();
      assert.equal(second!.isExclusiveLockOwner(), true);
      assert.deepEqual(await second!.lockOwners(), [second!.myLockOwnerName()]);
      const reader = new RbdBackend(second!.handle, { readOnly: false }, loop);
      try {
        await reader.write(8192, memory.segments([4096]));
      } finally {
        reader.close();
      }
    });
  });

  describe('sharing with other nodes', () => {
    const providers: RbdBackendProvider[] = [];
    const backends: RbdBackend[] = [];
    let loop: TestPollLoop;
    let memory: GuestBuffers;

    before(async () => {
      loop = new TestPollLoop();
      memory = new GuestBuffers(4 * MiB);
      await RbdBackendProvider.open(admin(), at('shared'), 16 * MiB).then((made) => made.close());
    });

    after(async () => {
      backends.forEach((backend) => backend.close());
      await Promise.all(providers.map((provider) => provider.close().catch(() => undefined)));
      await loop?.stopped();
      memory?.free();
    });

    /** A server of the shared image (each on a client of its own, as on a node of its own). */
    const serve = async (
      sharing: RbdSharing | undefined,
      predecessors: string[] = [],
    ): Promise<{ provider: RbdBackendProvider; backend: RbdBackend }> => {
      const client = { conf: cluster.conf, user: cluster.user, keyring: cluster.userKeyring };
      const provider = await openBackend({ kind: 'rbd', location: at('shared'), client, sharing }, undefined);
      assert.ok(provider instanceof RbdBackendProvider);
      providers.push(provider);
      await provider.lock(predecessors);
      const backend = new RbdBackend(provider.image.handle, { readOnly: false }, loop);
      backends.push(backend);
      return { provider, backend };
    };
    const write = async (backend: RbdBackend, offset: number, data: Buffer): Promise<void> => {
      const segments = memory.segments([data.length]);
      fill(segments, data);
      await backend.write(offset, segments);
      await backend.flush();
    };
    const read = async (backend: RbdBackend, offset: number, length: number): Promise<Buffer> => {
      const segments = memory.segments([length]);
      await backend.read(offset, segments);
      return gather(segments);
    };

    it('multi-writers take turns with the lock: each writes, each reads the others (never from a cache), nobody is fenced', async () => {
      const a = await serve('multi-writer');
      const b = await serve('multi-writer');
      assert.notEqual(a.provider.lockHolder, b.provider.lockHolder);
      const written: Buffer[] = [];
      for (let round = 0; round < 3; round++) {
        for (const [index, writer] of [a, b].entries()) {
          const data = randomBytes(4 * KiB);
          written[index] = data;
          await write(writer.backend, index * MiB, data);
          assert.deepEqual(await writer.provider.image.lockOwners(), [writer.provider.lockHolder]);
        }
        for (const reader of [a, b])
          for (const [index, data] of written.entries())
            assert.ok((await read(reader.backend, index * MiB, data.length)).equals(data));
      }
    });

    it("a multi-writer's successor fences the predecessor it names, never another node's live writer", async () => {
      const [dead, live] = [await serve('multi-writer'), await serve('multi-writer')];
      await write(dead.backend, 0, randomBytes(4 * KiB));
      const successor = await serve('multi-writer', [dead.provider.lockHolder!]);
      await rejectsWithKind(write(dead.backend, 4 * KiB, randomBytes(4 * KiB)), 'fenced');
      await write(live.backend, 8 * KiB, randomBytes(4 * KiB));
      await serve('multi-writer', [dead.provider.lockHolder!, '127.0.0.1:0/1']);
      await write(live.backend, 8 * KiB, randomBytes(4 * KiB));
      await write(successor.backend, 12 * KiB, randomBytes(4 * KiB));
    });

    it('a single-node server takes the lock from multi-writers, whose writes then fail: modes do not mix', async () => {
      const writer = await serve('multi-writer');
      await write(writer.backend, 0, randomBytes(4 * KiB));
      const single = await serve(undefined);
      assert.deepEqual(await single.provider.image.lockOwners(), [single.provider.lockHolder]);
      const refused = await rejectsWithKind(write(writer.backend, 0, randomBytes(4 * KiB)), 'busy');
      assert.equal(refused.code, 'EROFS');
      single.backend.close();
      await single.provider.close();
    });

    it('a read-only server takes no lock, reads beside a holder that keeps it, and cannot write', async () => {
      const holder = await serve(undefined);
      const data = randomBytes(4 * KiB);
      await write(holder.backend, 2 * MiB, data);
      const reader = await serve('read-only');
      assert.equal(reader.provider.lockHolder, undefined);
      assert.ok((await read(reader.backend, 2 * MiB, data.length)).equals(data));
      assert.deepEqual(await holder.provider.image.lockOwners(), [holder.provider.lockHolder]);
      const refused = await rejectsWithKind(write(reader.backend, 0, data), 'busy');
      assert.equal(refused.code, 'EROFS');
      await assert.rejects(reader.provider.resize(32 * MiB), /open read-only/);
      await assert.rejects(
        RbdBackendProvider.open(rbdUser(), at('shared'), 32 * MiB, 'read-only'),
        /never created or grown/,
      );
    });
  });
});

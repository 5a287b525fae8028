import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FileBackend, FileBackendProvider } from '../../src/backend/file';
import { segmentOf } from '../../src/virtio/memory';
import { openQueueBackend } from '../../src/backend/queue-backend';
import { FdWatcher } from '../../src/backend/types';
import { SysError } from '../../src/sys/errors';
import * as libc from '../../src/sys/libc';
import { carve, joined, lengths } from '../support/segments';
import { skipBecause } from '../support/skips';

describe('FileBackend', () => {
  let dir: string;
  let file: string;
  let mapping: libc.Mapping;
  const opened: FileBackend[] = [];

  function open(readOnly = false): FileBackend {
    const backend = FileBackend.open(file, readOnly);
    opened.push(backend);
    return backend;
  }

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vduse-file-test-'));
  });

  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  beforeEach(() => {
    file = path.join(dir, `image-${Math.random().toString(16).slice(2)}`);
    mapping = libc.mapAnonymous(1 << 20);
  });

  afterEach(() => {
    while (opened.length > 0) opened.pop()!.close();
    mapping.unmap();
    fs.rmSync(file, { force: true });
  });

  it('zero-fills the part of a read beyond the end of a shorter file, across segments', () => {
    const content = randomBytes(1000);
    fs.writeFileSync(file, content);
    const segments = carve(mapping, [512, 300, 700, 2584]);
    mapping.bytes.fill(0xff, 0, 8192);
    open().read(0, segments);
    const got = joined(segments);
    assert.deepEqual(got.subarray(0, 1000), content);
    assert.deepEqual(got.subarray(1000), Buffer.alloc(4096 - 1000));
    assert.equal(mapping.bytes[4096], 0xff, 'nothing past the segments was written');
  });

  it('reads zeroes from entirely past the end of the file', () => {
    fs.writeFileSync(file, randomBytes(512));
    const segments = carve(mapping, [100, 412]);
    mapping.bytes.fill(0xff, 0, 512);
    open().read(4096, segments);
    assert.deepEqual(joined(segments), Buffer.alloc(512));
  });

  it('writes and reads more than IOV_MAX segments at an offset', () => {
    fs.writeFileSync(file, '');
    const sizes = lengths(2500, 300);
    const total = sizes.reduce((a, b) => a + b, 0);
    const data = randomBytes(total);
    const source = carve(mapping, sizes);
    mapping.bytes.set(data, 0);
    const backend = open();
    backend.write(12345, source);
    const onDisk = fs.readFileSync(file);
    assert.equal(onDisk.length, 12345 + total);
    assert.deepEqual(onDisk.subarray(12345), data);

    mapping.bytes.fill(0, 0, total);
    const target = carve(mapping, [...sizes].reverse(), 0);
    backend.read(12345, target);
    assert.deepEqual(joined(target), data);
  });

  it('zero-fills from the middle of a segment in a later batch when the file ends there', () => {
    const sizes = lengths(1500, 200, 3);
    const total = sizes.reduce((a, b) => a + b, 0);
    // End the file inside segment 1200, which the second preadv (after IOV_MAX) reaches.
    const before1200 = sizes.slice(0, 1200).reduce((a, b) => a + b, 0);
    const fileLength = before1200 + Math.floor(sizes[1200]! / 2);
    const content = randomBytes(fileLength);
    fs.writeFileSync(file, content);
    mapping.bytes.fill(0xff, 0, total);
    const segments = carve(mapping, sizes);
    open().read(0, segments);
    const got = joined(segments);
    assert.deepEqual(got.subarray(0, fileLength), content);
    assert.deepEqual(got.subarray(fileLength), Buffer.alloc(total - fileLength));
  });

  it('skips zero-length segments', () => {
    fs.writeFileSync(file, Buffer.from('abcdefgh'));
    const segments = carve(mapping, [0, 3, 0, 0, 5, 0]);
    open().read(0, segments);
    assert.equal(joined(segments).toString(), 'abcdefgh');
  });

  it('resumes a short preadv inside a segment (a transfer over 2 GiB is cut at 0x7ffff000)', function () {
    this.timeout(20000);
    // Linux moves at most MAX_RW_COUNT = 0x7ffff000 bytes per call. Filler segments all alias one
    // scratch buffer (holes read as zeroes, cheaply); the cut falls 4 KiB into `probe`.
    const cut = 0x7ffff000;
    const chunk = 64 << 20;
    const scratch = libc.mapAnonymous(chunk);
    try {
      const fillerLengths = [...Array(31).fill(chunk), cut - 4096 - 31 * chunk] as number[];
      const fillerTotal = fillerLengths.reduce((a, b) => a + b, 0);
      assert.equal(fillerTotal, cut - 4096);
      const marker = randomBytes(16384);
      fs.writeFileSync(file, '');
      fs.truncateSync(file, fillerTotal + 16384);
      const fd = fs.openSync(file, 'r+');
      fs.writeSync(fd, marker, 0, marker.length, fillerTotal);
      fs.closeSync(fd);
      const fillers = fillerLengths.map((length) => segmentOf(scratch.bytes, scratch.address, 0, length));
      const [probe, tail] = carve(mapping, [8192, 8192]);
      open().read(0, [...fillers, probe!, tail!]);
      assert.deepEqual(Buffer.from(probe!.bytes), marker.subarray(0, 8192));
      assert.deepEqual(Buffer.from(tail!.bytes), marker.subarray(8192));
    } finally {
      scratch.unmap();
    }
  });

  it('punches holes with discard and keeps the size', () => {
    fs.writeFileSync(file, randomBytes(65536));
    const backend = open();
    backend.flush();
    backend.discard(4096, 8192);
    const onDisk = fs.readFileSync(file);
    assert.equal(onDisk.length, 65536);
    assert.deepEqual(onDisk.subarray(4096, 12288), Buffer.alloc(8192));
    assert.ok(fs.statSync(file).blocks <= 128 - 16);
  });

  it('zeroes a range with writeZeroes and keeps it allocated', () => {
    const data = randomBytes(65536);
    fs.writeFileSync(file, data);
    const backend = open();
    backend.writeZeroes(8192, 16384, false);
    const onDisk = fs.readFileSync(file);
    assert.deepEqual(onDisk.subarray(0, 8192), data.subarray(0, 8192));
    assert.deepEqual(onDisk.subarray(8192, 24576), Buffer.alloc(16384));
    assert.deepEqual(onDisk.subarray(24576), data.subarray(24576));
    assert.ok(fs.statSync(file).blocks >= 128);
  });

  it('falls back to punch + allocate where ZERO_RANGE is unsupported (tmpfs)', function () {
    const shm = '/dev/shm';
    if (!fs.existsSync(shm)) skipBecause(this, `no tmpfs at ${shm} on this machine`);
    const shmFile = path.join(shm, `vduse-file-test-${process.pid}-${Date.now()}`);
    const data = randomBytes(65536);
    fs.writeFileSync(shmFile, data);
    const backend = FileBackend.open(shmFile, false);
    try {
      backend.writeZeroes(0, 32768, false);
      const onDisk = fs.readFileSync(shmFile);
      assert.deepEqual(onDisk.subarray(0, 32768), Buffer.alloc(32768));
      assert.deepEqual(onDisk.subarray(32768), data.subarray(32768));
      assert.ok(fs.statSync(shmFile).blocks >= 128, 'the zeroed range stays allocated');
      backend.writeZeroes(0, 65536, true);
      assert.deepEqual(fs.readFileSync(shmFile), Buffer.alloc(65536));
      assert.equal(fs.statSync(shmFile).blocks, 0, 'UNMAP released the space');
    } finally {
      backend.close();
      fs.rmSync(shmFile, { force: true });
    }
  });

  it('reports failed writes on a read-only backend as SysError EBADF', () => {
    fs.writeFileSync(file, Buffer.alloc(4096));
    const backend = open(true);
    assert.throws(
      () => backend.write(0, carve(mapping, [512])),
      (error: unknown) => error instanceof SysError && error.code === 'EBADF',
    );
    assert.throws(
      () => backend.discard(0, 4096),
      (error: unknown) => error instanceof SysError && error.code === 'EBADF',
    );
  });
});

describe('FileBackendProvider', () => {
  let dir: string;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vduse-provider-test-'));
  });

  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('creates a sparse image of the size asked for', () => {
    const file = path.join(dir, 'new.img');
    const provider = FileBackendProvider.create(file, 64 << 20);
    assert.equal(provider.size(), 64 << 20);
    assert.equal(fs.statSync(file).blocks, 0);
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    provider.removeIfCreated();
    assert.equal(fs.existsSync(file), false);
  });

  it('refuses a missing image without a size instead of making an empty one', () => {
    const file = path.join(dir, 'missing.img');
    assert.throws(
      () => FileBackendProvider.create(file, undefined),
      new Error(`image ${file} does not exist (a new image is made only when a size is given)`),
    );
    assert.equal(fs.existsSync(file), false);
  });

  it('grows an existing image on create but never shrinks it, and keeps it on removeIfCreated', () => {
    const file = path.join(dir, 'existing.img');
    fs.writeFileSync(file, Buffer.alloc(8192, 3));
    assert.equal(FileBackendProvider.create(file, 4096).size(), 8192);
    assert.equal(FileBackendProvider.create(file, undefined).size(), 8192);
    const provider = FileBackendProvider.create(file, 16384);
    assert.equal(provider.size(), 16384);
    assert.deepEqual(fs.readFileSync(file).subarray(0, 8192), Buffer.alloc(8192, 3));
    provider.removeIfCreated();
    assert.equal(fs.existsSync(file), true);
    fs.rmSync(file);
  });

  it('resize grows and refuses to shrink', async () => {
    const file = path.join(dir, 'resize.img');
    const provider = FileBackendProvider.create(file, 1 << 20);
    await provider.resize(2 << 20);
    assert.equal(provider.size(), 2 << 20);
    assert.equal(fs.statSync(file).size, 2 << 20);
    await provider.resize(2 << 20);
    assert.equal(provider.size(), 2 << 20);
    await assert.rejects(provider.resize((2 << 20) - 1), RangeError);
    assert.equal(provider.size(), 2 << 20);
    provider.removeIfCreated();
  });

  it('opens queue backends that read what another wrote, watching no descriptor', () => {
    const watcher: FdWatcher = {
      watch: () => assert.fail('a file backend completes synchronously: it watches nothing'),
      unwatch: () => assert.fail('a file backend watches nothing'),
    };
    const file = path.join(dir, 'open.img');
    const provider = FileBackendProvider.create(file, 4096);
    const mapping = libc.mapAnonymous(4096);
    const writer = openQueueBackend(provider.queueSpec, { readOnly: false, keepAllocation: false, watcher });
    const reader = openQueueBackend(provider.queueSpec, { readOnly: true, keepAllocation: false, watcher });
    try {
      mapping.bytes.fill(0x42, 0, 512);
      writer.write(512, carve(mapping, [512]));
      mapping.bytes.fill(0, 0, 512);
      reader.read(512, carve(mapping, [512]));
      assert.deepEqual(Buffer.from(mapping.bytes.subarray(0, 512)), Buffer.alloc(512, 0x42));
    } finally {
      writer.close();
      reader.close();
      mapping.unmap();
      provider.removeIfCreated();
    }
  });
});

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FileBackend } from '../../src/backend/file';
import { SLOTS } from '../../src/backend/large-io-layout';
import { LARGE_IO_BYTES, LargeIoPool } from '../../src/backend/large-io-pool';
import { SysError } from '../../src/sys/errors';
import * as libc from '../../src/sys/libc';
import { TestPollLoop } from '../support/poll-loop';
import { carve, joined, lengths } from '../support/segments';

const MiB = 1 << 20;

function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

function threads(): number {
  return Number(/^Threads:\s+(\d+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1]);
}

describe('large reads and writes of image files on helper threads', function () {
  this.timeout(120_000);
  let dir: string;
  let file: string;
  let mapping: libc.Mapping;
  let loop: TestPollLoop;
  let pool: LargeIoPool;
  let backend: FileBackend | undefined;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vduse-large-io-'));
    file = path.join(dir, 'image');
    mapping = libc.mapAnonymous(64 * MiB);
    loop = new TestPollLoop();
    pool = new LargeIoPool(loop);
  });

  afterEach(async () => {
    backend?.close();
    backend = undefined;
    // Its helpers gone, the next test counts threads from a settled process.
    await pool.close();
    await loop.stopped();
    mapping.unmap();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function open(readOnly = false): FileBackend {
    const opened = FileBackend.open(file, readOnly, false, pool);
    backend = opened;
    return opened;
  }

  it('hands a large read to a helper and fills its segments; a small one is done inline', async () => {
    const content = randomBytes(4 * MiB);
    fs.writeFileSync(file, content);
    const segments = carve(mapping, lengths(200, 8192), 0);
    const total = joined(segments).length;
    assert.ok(total >= LARGE_IO_BYTES);
    const pending = open().read(4096, segments);
    assert.ok(pending instanceof Promise, 'a large read completes later');
    await pending;
    assert.deepEqual(joined(segments), content.subarray(4096, 4096 + total));

    const small = carve(mapping, [512, 512], 32 * MiB);
    assert.equal(backend!.read(0, small), undefined, 'a small read completes at once');
    assert.deepEqual(joined(small), content.subarray(0, 1024));
  });

  it('zero-fills a large read past the end of the file, and writes a large write whole', async () => {
    const content = randomBytes(100_000);
    fs.writeFileSync(file, content);
    mapping.bytes.fill(0xff, 0, MiB);
    const segments = carve(mapping, [300_000, 300_000]);
    await open().read(0, segments);
    const got = joined(segments);
    assert.deepEqual(got.subarray(0, content.length), content);
    assert.deepEqual(got.subarray(content.length), Buffer.alloc(600_000 - content.length));

    const data = randomBytes(MiB);
    mapping.bytes.set(data, 0);
    const written = backend!.write(MiB, carve(mapping, [MiB / 2, MiB / 4, MiB / 4]));
    assert.ok(written instanceof Promise);
    await written;
    assert.deepEqual(fs.readFileSync(file).subarray(MiB, 2 * MiB), data);
  });

  it(`completes ${SLOTS * 2} large requests at once, more than it has slots (the rest are done inline)`, async () => {
    const content = randomBytes(SLOTS * 2 * 256 * 1024);
    fs.writeFileSync(file, content);
    const reader = open();
    const requests = Array.from({ length: SLOTS * 2 }, (_, index) => {
      const segments = carve(mapping, [128 * 1024, 128 * 1024], index * 256 * 1024);
      return { index, segments, done: reader.read(index * 256 * 1024, segments) };
    });
    assert.ok(requests.filter((request) => request.done instanceof Promise).length >= SLOTS);
    assert.ok(
      requests.some((request) => request.done === undefined),
      'with every slot taken, inline',
    );
    await Promise.all(requests.map((request) => request.done));
    for (const { index, segments } of requests)
      assert.deepEqual(joined(segments), content.subarray(index * 256 * 1024, (index + 1) * 256 * 1024));
  });

  it('fails a large request the kernel refuses with its errno and the image named', async () => {
    fs.writeFileSync(file, randomBytes(MiB));
    const readOnly = open(true);
    await assert.rejects(
      async () => readOnly.write(0, carve(mapping, [MiB])),
      (error: unknown) => error instanceof SysError && error.code === 'EBADF' && error.message.includes(file),
    );
  });

  it('ends its helper threads and closes its eventfd on close', async () => {
    fs.writeFileSync(file, randomBytes(MiB));
    const fdsBefore = openFds();
    const threadsBefore = threads();
    const reader = open();
    await reader.read(0, carve(mapping, [MiB]));
    assert.ok(threads() > threadsBefore, 'helpers started');
    reader.close();
    backend = undefined;
    await pool.close();
    const deadline = Date.now() + 60_000;
    while (threads() > threadsBefore && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 50));
    // At most as many as before: threads and descriptors of earlier tests may end meanwhile.
    assert.ok(threads() <= threadsBefore, `helpers ended: ${threads()} threads, ${threadsBefore} before`);
    assert.ok(openFds() <= fdsBefore, `no descriptor left: ${openFds()} open, ${fdsBefore} before`);
  });
});

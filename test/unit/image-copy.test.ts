import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CopyMethod, CopyResult, MAX_COPY_CHUNK, copyImage } from '../../src/storage/image-copy';
import { requireRoot, skipBecause } from '../support/skips';

const MiB = 1024 * 1024;
/** Allowance for filesystem metadata (extent tree blocks, preallocation) in allocated-size checks. */
const ALLOCATION_SLACK = MiB;

interface Extent {
  offset: number;
  bytes: Buffer;
}

/** A sparse file of `size` bytes holding only `extents`. */
function writeSparse(file: string, size: number, extents: readonly Extent[]): void {
  const fd = fs.openSync(file, 'w');
  try {
    fs.ftruncateSync(fd, size);
    for (const { offset, bytes } of extents) fs.writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    fs.closeSync(fd);
  }
}

function allocatedBytes(file: string): number {
  return fs.statSync(file).blocks * 512;
}

function temporaries(directory: string): string[] {
  return fs.readdirSync(directory).filter((name) => name.includes('.tmp-'));
}

/** Asserts equal sizes and bytes, naming the first differing MiB. */
function assertSameBytes(actual: string, expected: string): void {
  const size = fs.statSync(expected).size;
  assert.equal(fs.statSync(actual).size, size, 'sizes differ');
  const a = fs.openSync(actual, 'r');
  const b = fs.openSync(expected, 'r');
  try {
    const bufferA = Buffer.alloc(MiB);
    const bufferB = Buffer.alloc(MiB);
    for (let offset = 0; offset < size; offset += MiB) {
      const length = Math.min(MiB, size - offset);
      fs.readSync(a, bufferA, 0, length, offset);
      fs.readSync(b, bufferB, 0, length, offset);
      if (!bufferA.subarray(0, length).equals(bufferB.subarray(0, length))) {
        assert.fail(`contents differ in the MiB at offset ${offset}`);
      }
    }
  } finally {
    fs.closeSync(a);
    fs.closeSync(b);
  }
}

function assertZeros(file: string, from: number, to: number): void {
  const fd = fs.openSync(file, 'r');
  try {
    const buffer = Buffer.alloc(MiB);
    const zeros = Buffer.alloc(MiB);
    for (let offset = from; offset < to; offset += MiB) {
      const length = Math.min(MiB, to - offset);
      fs.readSync(fd, buffer, 0, length, offset);
      assert.ok(
        buffer.subarray(0, length).equals(zeros.subarray(0, length)),
        `non-zero byte in the MiB at ${offset}`,
      );
    }
  } finally {
    fs.closeSync(fd);
  }
}

function run(command: string, args: string[]): void {
  execFileSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Mounts a filesystem for the suite, or skips it saying why not. */
function mountForSuite(
  context: Mocha.Context,
  mountPoint: string,
  mountArgs: (mountPoint: string) => string[],
  prepare?: () => void,
): void {
  requireRoot(context, 'mounting needs root');
  try {
    prepare?.();
    fs.mkdirSync(mountPoint, { recursive: true });
    run('mount', mountArgs(mountPoint));
  } catch (error) {
    skipBecause(
      context,
      `cannot mount a filesystem at ${mountPoint}: ${(error as Error).message.split('\n')[0]}`,
    );
  }
}

function unmount(mountPoint: string): void {
  try {
    run('umount', [mountPoint]);
  } catch {
    // not mounted (the suite was skipped)
  }
}

/**
 * The behaviour every filesystem must show. `expectedMethod` is asserted where the filesystem is
 * known (tmpfs cannot reflink, an xfs made with reflink=1 can); elsewhere either method is accepted.
 */
function copiesCorrectly(where: () => string, expectedMethod?: CopyMethod): void {
  let dir: string;
  let name = 0;
  const file = (label: string) => path.join(dir, `${label}-${++name}.img`);

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(where(), 'image-copy-'));
  });

  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  function assertMethod(method: CopyMethod): void {
    if (expectedMethod) assert.equal(method, expectedMethod);
  }

  it('copies a sparse 64 MiB image byte for byte and keeps its holes', async () => {
    const source = file('source');
    const target = file('target');
    const size = 64 * MiB;
    const extents = [
      { offset: 0, bytes: randomBytes(4096 + 100) },
      // Unaligned data crossing the 32 MiB mark, with holes on both sides.
      { offset: 32 * MiB - 5000, bytes: randomBytes(12_000) },
      // Explicit zeros are data, not a hole: they must be copied as such.
      { offset: 40 * MiB, bytes: Buffer.alloc(8192) },
      { offset: size - 1, bytes: Buffer.from([0xa5]) },
    ];
    writeSparse(source, size, extents);

    const result = await copyImage(source, target);

    assertMethod(result.method);
    assertSameBytes(target, source);
    assert.equal(result.sizeBytes, size);
    assert.ok(
      allocatedBytes(target) <= allocatedBytes(source) + ALLOCATION_SLACK,
      `target allocates ${allocatedBytes(target)} bytes, source ${allocatedBytes(source)}`,
    );
    if (result.method === 'sparse-copy') {
      const written = extents.reduce((sum, extent) => sum + extent.bytes.length, 0);
      assert.ok(result.bytesCopied >= written, `copied ${result.bytesCopied} < written ${written}`);
      assert.ok(result.bytesCopied <= allocatedBytes(source), `copied ${result.bytesCopied} bytes of holes`);
    } else {
      assert.equal(result.bytesCopied, 0);
    }
    assert.equal(fs.statSync(target).mode & 0o077, 0, 'the image is readable by others');
    assert.deepEqual(temporaries(dir), []);
  });

  it('copies an image that is all hole', async () => {
    const source = file('source');
    const target = file('target');
    writeSparse(source, 64 * MiB, []);

    const result = await copyImage(source, target);

    assertMethod(result.method);
    assert.equal(result.bytesCopied, 0);
    assert.equal(fs.statSync(target).size, 64 * MiB);
    assert.ok(allocatedBytes(target) <= ALLOCATION_SLACK, `target allocates ${allocatedBytes(target)} bytes`);
    assertZeros(target, 0, 64 * MiB);
  });

  it('copies a zero-length image', async () => {
    const source = file('source');
    const target = file('target');
    writeSparse(source, 0, []);

    const result = await copyImage(source, target);

    assertMethod(result.method);
    assert.deepEqual(
      { bytesCopied: result.bytesCopied, sizeBytes: result.sizeBytes },
      { bytesCopied: 0, sizeBytes: 0 },
    );
    assert.equal(fs.statSync(target).size, 0);
  });

  it('copies a data extent longer than one copy chunk', async () => {
    const source = file('source');
    const target = file('target');
    const data = randomBytes(MAX_COPY_CHUNK + 3 * MiB + 123);
    writeSparse(source, 80 * MiB, [{ offset: 4 * MiB, bytes: data }]);

    const result = await copyImage(source, target);

    assertMethod(result.method);
    assertSameBytes(target, source);
    if (result.method === 'sparse-copy') assert.ok(result.bytesCopied >= data.length);
  });

  it('extends the target to sizeBytes with a tail that reads as zeros and stays a hole', async () => {
    const source = file('source');
    const target = file('target');
    const head = randomBytes(4096);
    writeSparse(source, MiB, [
      { offset: 0, bytes: head },
      { offset: MiB - 1, bytes: Buffer.from([0x5a]) },
    ]);

    const result = await copyImage(source, target, { sizeBytes: 16 * MiB });

    assertMethod(result.method);
    assert.equal(result.sizeBytes, 16 * MiB);
    assert.equal(fs.statSync(target).size, 16 * MiB);
    const copied = fs.readFileSync(target).subarray(0, MiB);
    assert.ok(copied.equals(fs.readFileSync(source)), 'the first MiB differs from the source');
    assertZeros(target, MiB, 16 * MiB);
    assert.ok(allocatedBytes(target) <= allocatedBytes(source) + ALLOCATION_SLACK);
  });

  it('keeps the source size when sizeBytes is smaller', async () => {
    const source = file('source');
    const target = file('target');
    writeSparse(source, 2 * MiB, [{ offset: MiB, bytes: randomBytes(100) }]);

    const result = await copyImage(source, target, { sizeBytes: MiB });

    assert.equal(result.sizeBytes, 2 * MiB);
    assertSameBytes(target, source);
  });

  it('replaces an existing target by rename, never rewriting it in place', async () => {
    const source = file('source');
    const target = file('target');
    writeSparse(source, 4 * MiB, [{ offset: MiB, bytes: randomBytes(5000) }]);
    const oldContents = randomBytes(6 * MiB);
    fs.writeFileSync(target, oldContents);
    const oldFd = fs.openSync(target, 'r');
    try {
      await copyImage(source, target);

      assertSameBytes(target, source);
      // A reader of the old file still sees all of it: the new image is a different inode.
      const stillThere = Buffer.alloc(oldContents.length);
      fs.readSync(oldFd, stillThere, 0, stillThere.length, 0);
      assert.ok(stillThere.equals(oldContents), 'the old image was modified');
      assert.notEqual(fs.fstatSync(oldFd).ino, fs.statSync(target).ino);
    } finally {
      fs.closeSync(oldFd);
    }
    assert.deepEqual(temporaries(dir), []);
  });

  it('fails clearly when the source is missing, leaving the target as it was', async () => {
    const source = file('missing');
    const target = file('target');
    fs.writeFileSync(target, 'old image');

    await assert.rejects(copyImage(source, target), (error: NodeJS.ErrnoException) => {
      assert.equal(error.code, 'ENOENT');
      assert.ok(error.message.includes(source), error.message);
      return true;
    });
    assert.equal(fs.readFileSync(target, 'utf8'), 'old image');
    assert.deepEqual(temporaries(dir), []);
  });

  it('fails clearly when the target directory is missing', async () => {
    const source = file('source');
    writeSparse(source, MiB, [{ offset: 0, bytes: randomBytes(10) }]);
    const target = path.join(dir, 'no-such-directory', 'target.img');

    await assert.rejects(copyImage(source, target), (error: NodeJS.ErrnoException) => {
      assert.equal(error.code, 'ENOENT');
      assert.ok(error.message.includes(target), error.message);
      return true;
    });
    assert.deepEqual(temporaries(dir), []);
  });

  it('removes the temporary file when the copy fails after it was written', async () => {
    const source = file('source');
    writeSparse(source, 2 * MiB, [{ offset: 0, bytes: randomBytes(MiB) }]);
    // The copy itself succeeds; the final rename cannot replace a directory.
    const target = path.join(dir, 'occupied');
    fs.mkdirSync(target);
    fs.writeFileSync(path.join(target, 'inside'), 'x');

    await assert.rejects(copyImage(source, target), (error: NodeJS.ErrnoException) => {
      assert.equal(error.code, 'EISDIR');
      assert.ok(error.message.includes(target), error.message);
      return true;
    });
    assert.deepEqual(temporaries(dir), []);
    assert.deepEqual(fs.readdirSync(target), ['inside']);
  });

  it('rejects a source that is not a regular file', async () => {
    const target = file('target');
    await assert.rejects(copyImage(dir, target), /is not a regular file/);
    assert.deepEqual(temporaries(dir), []);
    assert.equal(fs.existsSync(target), false);
  });

  it('rejects a negative or fractional sizeBytes', async () => {
    const source = file('source');
    writeSparse(source, MiB, []);
    await assert.rejects(copyImage(source, file('target'), { sizeBytes: -1 }), RangeError);
    await assert.rejects(copyImage(source, file('target'), { sizeBytes: 1.5 }), RangeError);
    assert.deepEqual(temporaries(dir), []);
  });
}

describe('copyImage', function () {
  this.timeout(60_000);

  describe(`in ${os.tmpdir()}`, () => {
    copiesCorrectly(() => os.tmpdir());
  });

  it('keeps the event loop running while it copies 256 MiB of data', async function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'image-copy-'));
    try {
      const source = path.join(dir, 'source.img');
      const target = path.join(dir, 'target.img');
      const block = randomBytes(64 * MiB);
      writeSparse(
        source,
        512 * MiB,
        [0, 1, 2, 3].map((i) => ({ offset: i * 128 * MiB, bytes: block })),
      );
      // Each loop turn looks at the copy in progress: a copy that ran on this thread would only ever
      // be seen empty or complete, never with some of its data extents written.
      const sizesSeen = new Set<number>();
      let copying = true;
      const lookAtCopy = (): void => {
        if (!copying) return;
        for (const name of fs.readdirSync(dir)) {
          if (name.startsWith('target.img.tmp-')) {
            sizesSeen.add(fs.statSync(path.join(dir, name), { throwIfNoEntry: false })?.size ?? 0);
          }
        }
        setImmediate(lookAtCopy);
      };
      setImmediate(lookAtCopy);
      let result: CopyResult;
      try {
        result = await copyImage(source, target);
      } finally {
        copying = false;
      }
      if (result.method === 'reflink') skipBecause(this, `${os.tmpdir()} reflinks: nothing is copied`);
      const partial = [...sizesSeen].filter((size) => size > 0 && size < 448 * MiB);
      assert.ok(partial.length > 0, `copy seen only at sizes ${[...sizesSeen].join(', ')}`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  describe('on tmpfs (/dev/shm), which has SEEK_DATA/SEEK_HOLE but no reflink', () => {
    before(function () {
      if (!fs.existsSync('/dev/shm')) skipBecause(this, 'no tmpfs at /dev/shm on this machine');
    });
    copiesCorrectly(() => '/dev/shm', 'sparse-copy');
  });

  describe('on xfs with reflink=1 (loop-mounted image)', () => {
    const work = path.join(os.tmpdir(), `image-copy-xfs-${process.pid}`);
    const mountPoint = path.join(work, 'mnt');
    const image = path.join(work, 'xfs.img');

    before(function () {
      mountForSuite(
        this,
        mountPoint,
        (at) => ['-o', 'loop', image, at],
        () => {
          fs.mkdirSync(work, { recursive: true });
          fs.closeSync(fs.openSync(image, 'w'));
          fs.truncateSync(image, 512 * MiB); // sparse; mkfs.xfs wants at least 300 MiB
          run('mkfs.xfs', ['-q', '-f', '-m', 'reflink=1', image]);
        },
      );
    });

    after(() => {
      unmount(mountPoint);
      fs.rmSync(work, { recursive: true, force: true });
    });

    copiesCorrectly(() => mountPoint, 'reflink');

    it('gives the reflinked copy its own blocks when the source is later written', async () => {
      const source = path.join(mountPoint, 'cow-source.img');
      const target = path.join(mountPoint, 'cow-target.img');
      const original = randomBytes(MiB);
      writeSparse(source, 4 * MiB, [{ offset: 0, bytes: original }]);

      assert.equal((await copyImage(source, target)).method, 'reflink');
      writeSparse(source, 4 * MiB, [{ offset: 0, bytes: randomBytes(MiB) }]);

      assert.ok(
        fs.readFileSync(target).subarray(0, MiB).equals(original),
        'the copy changed with its source',
      );
    });
  });

  describe('across filesystems (tmpfs source, target elsewhere)', () => {
    let sourceDir: string;
    let targetDir: string;

    before(function () {
      if (!fs.existsSync('/dev/shm')) skipBecause(this, 'no tmpfs at /dev/shm on this machine');
      sourceDir = fs.mkdtempSync('/dev/shm/image-copy-');
      targetDir = fs.mkdtempSync(path.join(os.tmpdir(), 'image-copy-'));
    });

    after(() => {
      if (sourceDir) fs.rmSync(sourceDir, { recursive: true, force: true });
      if (targetDir) fs.rmSync(targetDir, { recursive: true, force: true });
    });

    // copy_file_range refuses (EXDEV) between filesystems of different types: read/write takes over.
    it('copies exactly and keeps holes when copy_file_range cannot be used', async () => {
      const source = path.join(sourceDir, 'source.img');
      const target = path.join(targetDir, 'target.img');
      const big = randomBytes(9 * MiB + 77);
      writeSparse(source, 64 * MiB, [
        { offset: 0, bytes: randomBytes(3000) },
        { offset: 20 * MiB + 1, bytes: big },
        { offset: 64 * MiB - 1, bytes: Buffer.from([1]) },
      ]);

      const result = await copyImage(source, target, { sizeBytes: 96 * MiB });

      assert.equal(result.method, 'sparse-copy');
      assert.equal(fs.statSync(target).size, 96 * MiB);
      const head = fs.openSync(target, 'r');
      try {
        const copied = Buffer.alloc(64 * MiB);
        fs.readSync(head, copied, 0, copied.length, 0);
        assert.ok(copied.equals(fs.readFileSync(source)), 'the first 64 MiB differ from the source');
      } finally {
        fs.closeSync(head);
      }
      assertZeros(target, 64 * MiB, 96 * MiB);
      assert.ok(allocatedBytes(target) <= allocatedBytes(source) + ALLOCATION_SLACK);
    });
  });

  describe('on a full filesystem (a 4 MiB tmpfs)', () => {
    const mountPoint = path.join(os.tmpdir(), `image-copy-full-${process.pid}`);
    let sourceDir: string;

    before(function () {
      mountForSuite(this, mountPoint, (at) => [
        '-t',
        'tmpfs',
        '-o',
        'size=4m,mode=0700',
        'image-copy-test',
        at,
      ]);
      sourceDir = fs.mkdtempSync(path.join(os.tmpdir(), 'image-copy-'));
    });

    after(() => {
      unmount(mountPoint);
      fs.rmSync(mountPoint, { recursive: true, force: true });
      if (sourceDir) fs.rmSync(sourceDir, { recursive: true, force: true });
    });

    it('fails with ENOSPC mid-copy, keeps the old target and removes the temporary file', async () => {
      const source = path.join(sourceDir, 'source.img');
      const target = path.join(mountPoint, 'target.img');
      writeSparse(source, 32 * MiB, [{ offset: MiB, bytes: randomBytes(8 * MiB) }]);
      fs.writeFileSync(target, 'old image');

      await assert.rejects(copyImage(source, target), (error: NodeJS.ErrnoException) => {
        assert.equal(error.code, 'ENOSPC');
        assert.ok(error.message.includes(target), error.message);
        return true;
      });
      assert.equal(fs.readFileSync(target, 'utf8'), 'old image');
      assert.deepEqual(temporaries(mountPoint), []);
    });
  });
});

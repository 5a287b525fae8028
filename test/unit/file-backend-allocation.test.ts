import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FileBackend } from '../../src/backend/file';

/*
 * What DISCARD and WRITE_ZEROES with unmap do to an image's allocated blocks (stat's blocks): a
 * thin image releases them, a thick one (keepAllocation) keeps every block, on a filesystem with
 * FALLOC_FL_ZERO_RANGE (ext4, xfs) and on tmpfs, which has none.
 */

const KiB = 1024;
const MiB = 1024 * KiB;
const IMAGE_BYTES = 4 * MiB;
/** DISCARD of 1 MiB at 256 KiB. */
const DISCARDED = { offset: 256 * KiB, length: MiB };
/** WRITE_ZEROES with unmap across several MiB boundaries, not a whole number of MiB. */
const ZEROED = { offset: 1536 * KiB, length: 2 * MiB + 4 * KiB };
const SECTOR = 512;

function allocatedBytes(file: string): number {
  return fs.statSync(file).blocks * SECTOR;
}

function slice(data: Buffer, range: { offset: number; length: number }): Buffer {
  return data.subarray(range.offset, range.offset + range.length);
}

function directories(): Array<{ label: string; dir: string }> {
  const found = [{ label: `${os.tmpdir()} (its own filesystem)`, dir: os.tmpdir() }];
  if (fs.existsSync('/dev/shm')) found.push({ label: 'tmpfs (/dev/shm: no ZERO_RANGE)', dir: '/dev/shm' });
  return found;
}

for (const { label, dir: base } of directories()) {
  describe(`FileBackend allocation on ${label}`, () => {
    let dir: string;
    let file: string;
    let data: Buffer;
    let backend: FileBackend | undefined;

    before(() => (dir = fs.mkdtempSync(path.join(base, 'vduse-allocation-test-'))));
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    beforeEach(() => {
      file = path.join(dir, `image-${Math.random().toString(16).slice(2)}.img`);
      data = randomBytes(IMAGE_BYTES);
      fs.writeFileSync(file, data);
      assert.ok(allocatedBytes(file) >= IMAGE_BYTES, 'the image starts fully allocated');
    });

    afterEach(() => {
      backend?.close();
      backend = undefined;
      fs.rmSync(file, { force: true });
    });

    /** Discards, then writes zeroes with unmap; returns the image's bytes afterwards. */
    function discardAndZero(keepAllocation: boolean): Buffer {
      backend = FileBackend.open(file, false, keepAllocation);
      backend.discard(DISCARDED.offset, DISCARDED.length);
      backend.writeZeroes(ZEROED.offset, ZEROED.length, true);
      backend.flush();
      return fs.readFileSync(file);
    }

    function assertUntouchedOutside(onDisk: Buffer): void {
      assert.equal(onDisk.length, IMAGE_BYTES, 'the size stays');
      assert.deepEqual(onDisk.subarray(0, DISCARDED.offset), data.subarray(0, DISCARDED.offset));
      const between = { offset: DISCARDED.offset + DISCARDED.length, length: 0 };
      between.length = ZEROED.offset - between.offset;
      assert.deepEqual(slice(onDisk, between), slice(data, between));
      const end = ZEROED.offset + ZEROED.length;
      assert.deepEqual(onDisk.subarray(end), data.subarray(end));
    }

    it('a thin image releases the blocks of a discard and of write-zeroes with unmap', () => {
      const onDisk = discardAndZero(false);
      assertUntouchedOutside(onDisk);
      assert.deepEqual(slice(onDisk, DISCARDED), Buffer.alloc(DISCARDED.length));
      assert.deepEqual(slice(onDisk, ZEROED), Buffer.alloc(ZEROED.length));
      const released = DISCARDED.length + ZEROED.length;
      assert.ok(
        allocatedBytes(file) <= IMAGE_BYTES - released,
        `${allocatedBytes(file)} bytes allocated after releasing ${released} of ${IMAGE_BYTES}`,
      );
    });

    it('a thick image (keepAllocation) keeps every block, and write-zeroes still reads back zeroes', () => {
      const before = allocatedBytes(file);
      const onDisk = discardAndZero(true);
      assertUntouchedOutside(onDisk);
      assert.deepEqual(slice(onDisk, ZEROED), Buffer.alloc(ZEROED.length));
      const discarded = slice(onDisk, DISCARDED);
      assert.ok(
        discarded.equals(Buffer.alloc(DISCARDED.length)) || discarded.equals(slice(data, DISCARDED)),
        'a discarded range reads back as zeroes (ZERO_RANGE) or as it was',
      );
      // ext4 may add a block of extent tree for the extents ZERO_RANGE splits.
      assert.ok(allocatedBytes(file) >= before, `${allocatedBytes(file)} of ${before} bytes still allocated`);
    });
  });
}

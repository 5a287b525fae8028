import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageDirectory } from '../../src/storage/images';

const MiB = 1024 * 1024;
const ID = `vol-${'0'.repeat(31)}1`;

function writeAt(path: string, data: Buffer, offset: number): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, data, 0, data.length, offset);
  } finally {
    closeSync(fd);
  }
}

describe('ImageDirectory.holdsNoData: whether a stage may skip probing a new device', () => {
  let dir: string;
  let images: ImageDirectory;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vduse-images-test-'));
    images = new ImageDirectory(dir);
    images.ensureDirectory('volumes');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('is true for a new (sparse) image', async () => {
    await images.createEmpty('volumes', ID, 64 * MiB);
    assert.equal(images.holdsNoData('volumes', ID), true);
  });

  it('is false once anything was written, even one byte at the far end or zeroes', async () => {
    await images.createEmpty('volumes', ID, 64 * MiB);
    writeAt(images.path('volumes', ID), Buffer.from([1]), 64 * MiB - 1);
    assert.equal(images.holdsNoData('volumes', ID), false);

    const other = `vol-${'0'.repeat(31)}2`;
    await images.createEmpty('volumes', other, 64 * MiB);
    writeAt(images.path('volumes', other), Buffer.alloc(4096), 32 * MiB);
    assert.equal(images.holdsNoData('volumes', other), false, 'written zeroes are data: no guessing');
  });

  it('throws for a missing image rather than calling it blank', () => {
    assert.throws(() => images.holdsNoData('volumes', ID), { code: 'ENOENT' });
  });
});

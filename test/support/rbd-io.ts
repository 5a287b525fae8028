import koffi from 'koffi';
import { RadosConnectOptions } from '../../src/backend/rados-client';
import { RbdLocation } from '../../src/backend/descriptor';
import { RbdImage } from '../../src/backend/rbd-image';

/** Synchronous librbd reads and writes, for tests to put known data into an image and read it back. */
const lib = koffi.load('librbd.so.1');
const rbdWrite = lib.func(
  'int64_t rbd_write(void *image, uint64_t offset, size_t length, const void *buffer)',
);
const rbdRead = lib.func('int64_t rbd_read(void *image, uint64_t offset, size_t length, _Out_ void *buffer)');

async function withImage<T>(
  options: RadosConnectOptions,
  location: RbdLocation,
  action: (image: RbdImage) => T,
): Promise<T> {
  const image = await RbdImage.open(options, location);
  try {
    return action(image);
  } finally {
    await image.close();
  }
}

export function writeRbd(
  options: RadosConnectOptions,
  location: RbdLocation,
  offset: number,
  data: Buffer,
): Promise<void> {
  return withImage(options, location, (image) => {
    const written = Number(rbdWrite(image.handle, offset, data.length, data));
    if (written !== data.length) throw new Error(`rbd_write of ${image.name} returned ${written}`);
  });
}

export function readRbd(
  options: RadosConnectOptions,
  location: RbdLocation,
  offset: number,
  length: number,
): Promise<Buffer> {
  return withImage(options, location, (image) => {
    const data = Buffer.alloc(length);
    const read = Number(rbdRead(image.handle, offset, length, data));
    if (read !== length) throw new Error(`rbd_read of ${image.name} returned ${read}`);
    return data;
  });
}

import koffi, { type LibraryHandle } from 'koffi';
import { SysError } from './errors';

/*
 * Bindings for copying file ranges: extent discovery (lseek SEEK_DATA/SEEK_HOLE), in-kernel copies
 * (copy_file_range), reflinks (FICLONE) and reserving blocks (fallocate). The copy and allocation
 * calls run on the libuv threadpool through koffi's `.async`, because one call can move tens of MiB;
 * koffi restores the worker thread's errno while the completion callback runs, so failures still
 * carry their errno.
 */
const libc = koffi.load('libc.so.6');
type NativeFunction = ReturnType<LibraryHandle['func']>;

const raw = {
  lseek: libc.func('int64_t lseek(int fd, int64_t offset, int whence)'),
  copyFileRange: libc.func(
    'intptr_t copy_file_range(int fdIn, void *offIn, int fdOut, void *offOut, size_t length, unsigned int flags)',
  ),
  ioctlInt: libc.func('int ioctl(int fd, unsigned long request, intptr_t arg)'),
  fallocate: libc.func('int fallocate(int fd, int mode, int64_t offset, int64_t len)'),
};

export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;
/** _IOW(0x94, 9, int): make the destination share all of the source's extents. */
export const FICLONE = 0x40049409;

function checkNumber(result: number | bigint, operation: string): number {
  const value = Number(result);
  if (value < 0) throw new SysError(operation, koffi.errno());
  return value;
}

function callAsync(fn: NativeFunction, args: unknown[], operation: string): Promise<number> {
  return new Promise((resolve, reject) => {
    fn.async(...args, (error: unknown, result: number | bigint) => {
      if (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      try {
        resolve(checkNumber(result, operation));
      } catch (failure) {
        reject(failure);
      }
    });
  });
}

/**
 * Start of the first data extent at or after `offset`, or null when only a hole remains
 * (ENXIO: the offset is at or past the end of file, or the rest of the file is a hole).
 */
export function seekData(fd: number, offset: number, what = 'lseek SEEK_DATA'): number | null {
  const result = Number(raw.lseek(fd, offset, SEEK_DATA));
  if (result >= 0) return result;
  const code = koffi.errno();
  if (code === 6 /* ENXIO */) return null;
  throw new SysError(what, code);
}

/** Start of the first hole at or after `offset`; the end of file counts as a hole. */
export function seekHole(fd: number, offset: number, what = 'lseek SEEK_HOLE'): number {
  return checkNumber(raw.lseek(fd, offset, SEEK_HOLE), what);
}

/**
 * copy_file_range(2) of up to `length` bytes between explicit offsets, on the threadpool.
 * Returns the bytes copied, which may be fewer than asked and is 0 at the source's end of file.
 */
export function copyFileRange(
  fdIn: number,
  offsetIn: number,
  fdOut: number,
  offsetOut: number,
  length: number,
  what = 'copy_file_range',
): Promise<number> {
  const offIn = Buffer.alloc(8);
  const offOut = Buffer.alloc(8);
  offIn.writeBigInt64LE(BigInt(offsetIn));
  offOut.writeBigInt64LE(BigInt(offsetOut));
  return callAsync(raw.copyFileRange, [fdIn, offIn, fdOut, offOut, length, 0], what);
}

/** ioctl(FICLONE): replaces `fdOut`'s contents with a reflink of all of `fdIn`, on the threadpool. */
export async function cloneFile(fdOut: number, fdIn: number, what = 'ioctl FICLONE'): Promise<void> {
  await callAsync(raw.ioctlInt, [fdOut, FICLONE, fdIn], what);
}

/**
 * fallocate(2) mode 0 on the threadpool: allocates the blocks of every hole in the range (data stays
 * as it is; holes read as zeroes), so later writes there cannot fail for want of space.
 */
export async function allocateRange(
  fd: number,
  offset: number,
  length: number,
  what = 'fallocate',
): Promise<void> {
  if (length > 0) await callAsync(raw.fallocate, [fd, 0, offset, length], what);
}

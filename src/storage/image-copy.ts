import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { constants } from 'node:os';
import * as path from 'node:path';
import { SysError } from '../sys/errors';
import { cloneFile, copyFileRange, seekData, seekHole } from '../sys/file-ranges';

export type CopyMethod = 'reflink' | 'sparse-copy';

export interface CopyImageOptions {
  /** Size of the target when larger than the source (a volume created bigger than its snapshot). */
  sizeBytes?: number;
}

export interface CopyResult {
  method: CopyMethod;
  /** Bytes of data copied; 0 for a reflink, which shares the source's extents instead. */
  bytesCopied: number;
  /** Size of the target after the copy. */
  sizeBytes: number;
}

/** Upper bound on one copy_file_range call, so a copy never holds a threadpool thread for long. */
export const MAX_COPY_CHUNK = 64 * 1024 * 1024;
const BOUNCE_BUFFER_SIZE = 4 * 1024 * 1024;

const { EOPNOTSUPP, EXDEV, EINVAL, ENOTTY, ENOSYS } = constants.errno;
/** FICLONE errors that mean "this filesystem (pair) cannot reflink", not "the copy failed". */
const REFLINK_UNSUPPORTED = new Set([EOPNOTSUPP, EXDEV, EINVAL, ENOTTY, ENOSYS]);
/** copy_file_range errors after which a plain read/write copy still works (e.g. across filesystems). */
const COPY_FILE_RANGE_UNSUPPORTED = new Set([EXDEV, ENOSYS, EOPNOTSUPP, EINVAL]);

/**
 * Copies the image file `source` to `target`, keeping holes as holes. The copy is written to a
 * temporary file beside `target`, synced, then renamed over `target`, so `target` is either left as
 * it was or replaced by a complete copy. The source must not be written meanwhile (the caller pauses
 * writers); every system call that can take long runs on the libuv threadpool.
 */
export async function copyImage(
  source: string,
  target: string,
  options: CopyImageOptions = {},
): Promise<CopyResult> {
  const requestedSize = options.sizeBytes ?? 0;
  if (!Number.isSafeInteger(requestedSize) || requestedSize < 0) {
    throw new RangeError(`sizeBytes must be a non-negative integer, got ${requestedSize}`);
  }
  const temporary = `${target}.tmp-${randomBytes(6).toString('hex')}`;
  let input: FileHandle | undefined;
  let output: FileHandle | undefined;
  let createdTemporary = false;
  let renamed = false;
  try {
    input = await fsp.open(source, 'r');
    const stat = await input.stat();
    if (!stat.isFile()) throw new Error(`${source} is not a regular file`);
    output = await fsp.open(temporary, 'wx', 0o600);
    createdTemporary = true;

    const label = `${source} -> ${temporary}`;
    const reflinked = await tryReflink(input, output, label);
    const bytesCopied = reflinked ? 0 : await copyDataExtents(input, output, stat.size, label);
    const sizeBytes = Math.max(stat.size, requestedSize);
    await output.truncate(sizeBytes);
    await output.sync();
    await output.close();
    output = undefined;

    await fsp.rename(temporary, target);
    renamed = true;
    await syncDirectory(path.dirname(target));
    return { method: reflinked ? 'reflink' : 'sparse-copy', bytesCopied, sizeBytes };
  } catch (error) {
    await output?.close().catch(() => undefined);
    if (createdTemporary && !renamed) await fsp.rm(temporary, { force: true }).catch(() => undefined);
    throw withContext(error, `copy ${source} to ${target}`);
  } finally {
    await input?.close().catch(() => undefined);
  }
}

async function tryReflink(input: FileHandle, output: FileHandle, label: string): Promise<boolean> {
  try {
    await cloneFile(output.fd, input.fd, `ioctl FICLONE ${label}`);
    return true;
  } catch (error) {
    if (error instanceof SysError && REFLINK_UNSUPPORTED.has(error.errno)) return false;
    throw error;
  }
}

/** Copies each data extent of the first `size` bytes of `input`; returns the bytes copied. */
async function copyDataExtents(
  input: FileHandle,
  output: FileHandle,
  size: number,
  label: string,
): Promise<number> {
  const copier = new RangeCopier(input, output, label);
  let copied = 0;
  let offset = 0;
  while (offset < size) {
    const dataStart = seekData(input.fd, offset, `lseek SEEK_DATA ${label}`);
    if (dataStart === null || dataStart >= size) break;
    const dataEnd = Math.min(seekHole(input.fd, dataStart, `lseek SEEK_HOLE ${label}`), size);
    await copier.copy(dataStart, dataEnd - dataStart);
    copied += dataEnd - dataStart;
    offset = dataEnd;
  }
  return copied;
}

/** Copies ranges to the same offsets, in-kernel while the filesystems allow it, else through a buffer. */
class RangeCopier {
  private inKernel = true;
  private bounce: Buffer | undefined;

  constructor(
    private readonly input: FileHandle,
    private readonly output: FileHandle,
    private readonly label: string,
  ) {}

  async copy(start: number, length: number): Promise<void> {
    let done = 0;
    while (done < length) {
      const at = start + done;
      const chunk = Math.min(length - done, MAX_COPY_CHUNK);
      const copied = this.inKernel
        ? await this.copyInKernel(at, chunk)
        : await this.copyThroughBuffer(at, chunk);
      if (copied === 0) {
        throw new Error(
          `${this.label}: source ended at byte ${at}, before its size (was it written during the copy?)`,
        );
      }
      done += copied;
    }
  }

  private async copyInKernel(at: number, length: number): Promise<number> {
    try {
      return await copyFileRange(
        this.input.fd,
        at,
        this.output.fd,
        at,
        length,
        `copy_file_range ${this.label}`,
      );
    } catch (error) {
      if (!(error instanceof SysError && COPY_FILE_RANGE_UNSUPPORTED.has(error.errno))) throw error;
      this.inKernel = false;
      return this.copyThroughBuffer(at, length);
    }
  }

  private async copyThroughBuffer(at: number, length: number): Promise<number> {
    this.bounce ??= Buffer.allocUnsafe(BOUNCE_BUFFER_SIZE);
    const { bytesRead } = await this.input.read(this.bounce, 0, Math.min(length, this.bounce.length), at);
    let written = 0;
    while (written < bytesRead) {
      const { bytesWritten } = await this.output.write(
        this.bounce,
        written,
        bytesRead - written,
        at + written,
      );
      written += bytesWritten;
    }
    return bytesRead;
  }
}

async function syncDirectory(directory: string): Promise<void> {
  const handle = await fsp.open(directory, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Prefixes the message with what was being done, keeping the error's class and code for callers. */
function withContext(error: unknown, doing: string): unknown {
  if (error instanceof Error) error.message = `${doing}: ${error.message}`;
  return error;
}

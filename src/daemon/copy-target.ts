import { lstat, realpath } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { describeBackend } from '../backend/descriptor';
import { log } from '../log';
import { copyImage } from '../storage/image-copy';
import type { BlkDeviceServer } from './blk-device-server';

/** A copy target the admin op `copy` refuses; nothing was made. */
export class CopyTargetRefused extends Error {
  constructor(target: string, reason: string) {
    super(`refusing to copy to ${JSON.stringify(target)}: ${reason}`);
    this.name = 'CopyTargetRefused';
  }
}

/**
 * Where a server may write a point-in-time copy of its image: a new file directly in one of
 * `directories` (the plugin gives its data directory's `volumes` and `snapshots`). The target's
 * directory is compared after resolving its symlinks, so no symlinked directory leads elsewhere;
 * `..` and `.` are refused outright, and so is anything already at the target (a symlink
 * included): a copy never replaces a file. Returns the target with its directory resolved, which
 * the copy then writes (its temporary file is created O_EXCL, and the rename does not follow a
 * symlink either).
 */
export async function confineCopyTarget(target: string, directories: readonly string[]): Promise<string> {
  if (!isAbsolute(target)) throw new CopyTargetRefused(target, 'not an absolute path');
  if (target.split('/').some((part) => part === '..' || part === '.'))
    throw new CopyTargetRefused(target, 'the path has . or .. components');
  const name = basename(target);
  if (name === '' || target.endsWith('/')) throw new CopyTargetRefused(target, 'no file name');
  const directory = await resolvedDirectory(dirname(target));
  const allowed = await Promise.all(directories.map(resolvedDirectory));
  if (directory === null || !allowed.includes(directory))
    throw new CopyTargetRefused(
      target,
      `its directory is not one copies may go to (${directories.join(', ') || 'none given'})`,
    );
  const resolved = join(directory, name);
  if (await exists(resolved))
    throw new CopyTargetRefused(target, 'something is there already (a copy never replaces a file)');
  return resolved;
}

/** The directory with its symlinks resolved, or null when it does not exist. */
async function resolvedDirectory(path: string): Promise<string | null> {
  try {
    return await realpath(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

/** Whether anything, a dangling symlink included, has this name. */
async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

/**
 * Copies a served image file to `target` (confined to the server's copy directories) while the
 * device's queues are held still, so the copy is one point in time.
 */
export async function copyServedImage(
  server: Pick<BlkDeviceServer, 'options' | 'whilePaused'>,
  target: string,
): Promise<void> {
  const { name, backend, copyDirs } = server.options;
  if (backend.kind !== 'file')
    throw new Error(
      `copy is for image files; ${describeBackend(backend)} is copied by RBD snapshots and clones`,
    );
  const confined = await confineCopyTarget(target, copyDirs);
  const { method } = await server.whilePaused(() => copyImage(backend.path, confined));
  log.info('image copied while the queues were paused', { device: name, target: confined, method });
}

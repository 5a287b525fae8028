import { lstat, realpath } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join } from 'node:path';

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

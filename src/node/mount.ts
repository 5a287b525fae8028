import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { isMountPoint } from './mountinfo';
import { runTool, ToolError } from './run';

export interface MountOptions {
  /** Passed as -t; omit for bind mounts or to let mount(8) probe. */
  fsType?: string;
  /** Options for -o, one per element (e.g. ['noatime', 'nodev']). */
  options?: readonly string[];
  bind?: boolean;
  readOnly?: boolean;
}

/**
 * Mounts `source` on `target` with mount(8). A bind mount ignores most options on the initial
 * mount, so read-only and the other options are applied with a second "remount,bind" call; if
 * that fails the bind is undone, so a mount that was asked to be read-only is never left writable.
 * A read-only mount does not stop writes to a device node bound onto it: the kernel checks the
 * flag for files and directories only.
 */
export async function mount(source: string, target: string, options: MountOptions = {}): Promise<void> {
  const extra = options.options ?? [];
  if (options.bind) {
    await runTool('mount', ['--bind', '--', source, target]);
    if (!options.readOnly && extra.length === 0) return;
    const remount = ['remount', 'bind', ...(options.readOnly ? ['ro'] : []), ...extra];
    try {
      await runTool('mount', ['-o', remount.join(','), '--', target]);
    } catch (error) {
      await unmount(target).catch(() => undefined);
      throw error;
    }
    return;
  }
  const all = [...(options.readOnly ? ['ro'] : []), ...extra];
  await runTool('mount', [
    ...(options.fsType ? ['-t', options.fsType] : []),
    ...(all.length > 0 ? ['-o', all.join(',')] : []),
    '--',
    source,
    target,
  ]);
}

/** Unmounts the topmost mount at `target`; a target that is not mounted (or absent) counts as done. */
export async function unmount(target: string): Promise<void> {
  if (!(await isMountPoint(target))) return;
  try {
    await runTool('umount', ['--', target]);
  } catch (error) {
    // Someone else may have unmounted it between the check and umount.
    if (error instanceof ToolError && /not mounted/.test(error.stderr)) return;
    if (!(await isMountPoint(target))) return;
    throw error;
  }
}

/** Creates `dir` and its parents if needed; fails if something other than a directory is there. */
export async function ensureDirectory(dir: string, mode = 0o750): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode });
  const stats = await fs.stat(dir);
  if (!stats.isDirectory()) throw new Error(`${dir} exists and is not a directory`);
}

/**
 * Creates an empty regular file at `file` (and its parent directories) to serve as the target of
 * a block-device bind mount. An existing regular file is kept, and so is a block device, which is
 * what an existing bind mount of a device over the file looks like.
 */
export async function ensureFile(file: string, mode = 0o640): Promise<void> {
  await ensureDirectory(path.dirname(file));
  try {
    const handle = await fs.open(file, 'wx', mode);
    await handle.close();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    const stats = await fs.stat(file);
    if (!stats.isFile() && !stats.isBlockDevice()) {
      throw new Error(`${file} exists and is neither a regular file nor a block device`);
    }
  }
}

/**
 * Removes a mount target once it is no longer needed: an empty directory or an empty regular file.
 * Anything else (still mounted, not empty, a symlink, a device node) is refused rather than
 * removed, so data behind the path is never touched. An absent path counts as removed.
 */
export async function removeMountTarget(target: string): Promise<void> {
  let stats;
  try {
    stats = await fs.lstat(target);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  if (stats.isSymbolicLink()) throw new Error(`refusing to remove ${target}: it is a symbolic link`);
  if (await isMountPoint(target)) throw new Error(`refusing to remove ${target}: it is still mounted`);
  if (stats.isDirectory()) {
    // rmdir only removes an empty directory, and fails with EBUSY if it became a mount point.
    await fs.rmdir(target);
  } else if (stats.isFile() && stats.size === 0) {
    await fs.unlink(target);
  } else {
    throw new Error(`refusing to remove ${target}: not an empty directory or empty regular file`);
  }
}

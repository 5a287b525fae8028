import { promises as fs } from 'node:fs';
import * as path from 'node:path';

/** One line of /proc/<pid>/mountinfo (see proc(5)), with the kernel's octal escapes decoded. */
export interface MountInfo {
  mountId: number;
  parentId: number;
  /** "major:minor" of the device holding the filesystem (0:N for pseudo filesystems). */
  majorMinor: string;
  /** The directory of the filesystem that is mounted here; not "/" for bind mounts of a subtree. */
  root: string;
  mountPoint: string;
  /** Per-mount options (rw, nosuid, relatime...). */
  options: string[];
  /** Propagation tags such as "shared:1" or "master:3"; empty when the mount is private. */
  optionalFields: string[];
  fsType: string;
  source: string;
  /** Per-superblock options, e.g. overlay's lowerdir=... or ext4's errors=remount-ro. */
  superOptions: string[];
}

export const MOUNTINFO_PATH = '/proc/self/mountinfo';

/** Parses the whole text of a mountinfo file; blank lines are skipped. */
export function parseMountInfo(text: string): MountInfo[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map(parseMountInfoLine);
}

/**
 * Fields are separated by single spaces; the kernel escapes space, tab, newline and backslash
 * (and, in option values, commas) as \ooo, so splitting before decoding is safe.
 */
export function parseMountInfoLine(line: string): MountInfo {
  const fields = line.split(' ');
  const separator = fields.indexOf('-', 6);
  if (fields.length < 10 || separator < 0 || fields.length < separator + 4) {
    throw new Error(`malformed mountinfo line: ${JSON.stringify(line)}`);
  }
  const [mountId, parentId, majorMinor, root, mountPoint, options] = fields;
  const [fsType, source, superOptions] = fields.slice(separator + 1);
  return {
    mountId: parseId(mountId, line),
    parentId: parseId(parentId, line),
    majorMinor,
    root: unescapeOctal(root),
    mountPoint: unescapeOctal(mountPoint),
    options: splitOptions(options),
    optionalFields: fields.slice(6, separator).filter((field) => field !== ''),
    fsType: unescapeOctal(fsType),
    source: unescapeOctal(source),
    superOptions: splitOptions(superOptions),
  };
}

export function unescapeOctal(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

function splitOptions(text: string): string[] {
  return text === '' ? [] : text.split(',').map(unescapeOctal);
}

function parseId(text: string, line: string): number {
  if (!/^\d+$/.test(text)) throw new Error(`malformed mount id ${JSON.stringify(text)} in: ${line}`);
  return Number(text);
}

export async function readMountInfo(file = MOUNTINFO_PATH): Promise<MountInfo[]> {
  return parseMountInfo(await fs.readFile(file, 'utf8'));
}

export async function findMounts(predicate: (mount: MountInfo) => boolean): Promise<MountInfo[]> {
  return (await readMountInfo()).filter(predicate);
}

/**
 * The mount visible at `target` (the topmost of any stacked there), or null when `target` is not
 * a mount point or does not exist.
 */
export async function mountAt(target: string): Promise<MountInfo | null> {
  const resolved = await resolveMountPath(target);
  if (resolved === null) return null;
  return topmost(await findMounts((mount) => mount.mountPoint === resolved));
}

export async function isMountPoint(target: string): Promise<boolean> {
  return (await mountAt(target)) !== null;
}

/**
 * Among mounts stacked on one mount point, the topmost is the one that no other is mounted on.
 * Exported for tests.
 */
export function topmost(stacked: readonly MountInfo[]): MountInfo | null {
  const covered = new Set(stacked.map((mount) => mount.parentId));
  const uncovered = stacked.filter((mount) => !covered.has(mount.mountId));
  return uncovered.at(-1) ?? stacked.at(-1) ?? null;
}

/**
 * realpath, because mountinfo lists canonical paths. A broken mount (a dead FUSE daemon, a stale
 * NFS handle) makes realpath fail with something other than ENOENT; the lexical path is then the
 * best guess, so such a mount can still be found and unmounted.
 */
async function resolveMountPath(target: string): Promise<string | null> {
  try {
    return await fs.realpath(target);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    return path.resolve(target);
  }
}

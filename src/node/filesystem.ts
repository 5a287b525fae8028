import { promises as fs } from 'node:fs';
import { mount } from './mount';
import { mountAt } from './mountinfo';
import { isToolExit, runTool, ToolError } from './run';

export type FilesystemType = 'ext4' | 'xfs';

export const SUPPORTED_FILESYSTEMS: readonly FilesystemType[] = ['ext4', 'xfs'];

/** What blkid's low-level probe found on a device. */
export type DeviceContent =
  | { kind: 'blank' }
  | { kind: 'filesystem'; fsType: string }
  /** A partition table and no filesystem on the whole device: not ours to format. */
  | { kind: 'partitioned'; partitionTableType: string };

/** makeFilesystem was asked to format a device that already holds something. */
export class DeviceNotBlankError extends Error {
  constructor(
    readonly device: string,
    readonly found: string,
  ) {
    super(`device ${device} is not blank (it has ${found}); refusing to create a filesystem on it`);
    this.name = 'DeviceNotBlankError';
  }
}

/** The device holds a filesystem (or partitions) other than the one the volume asks for. */
export class FilesystemMismatchError extends Error {
  constructor(
    readonly device: string,
    readonly found: string,
    readonly requested: string,
  ) {
    super(`device ${device} has ${found}, volume asked for ${requested}`);
    this.name = 'FilesystemMismatchError';
  }
}

// blkid(8): 2 = nothing found, 8 = ambivalent low-level probe (several signatures).
const BLKID_NOTHING_FOUND = 2;
const BLKID_AMBIVALENT = 8;

/**
 * Probes the device's signatures with `blkid -p`, which reads the device itself instead of
 * blkid's cache. blkid also exits with "nothing found" for a path that does not exist or cannot
 * be read, so the path is checked first: a missing device must never look blank.
 */
export async function probeDevice(device: string): Promise<DeviceContent> {
  await assertReadable(device);
  let stdout: string;
  try {
    ({ stdout } = await runTool('blkid', ['-p', '-o', 'export', '-s', 'TYPE', '-s', 'PTTYPE', '--', device]));
  } catch (error) {
    if (isToolExit(error, BLKID_NOTHING_FOUND)) return { kind: 'blank' };
    if (isToolExit(error, BLKID_AMBIVALENT)) {
      throw new Error(`device ${device} carries several conflicting signatures (blkid -p is ambivalent)`, {
        cause: error,
      });
    }
    throw error;
  }
  const values = parseExport(stdout);
  const fsType = values.get('TYPE');
  if (fsType) return { kind: 'filesystem', fsType };
  const partitionTableType = values.get('PTTYPE');
  if (partitionTableType) return { kind: 'partitioned', partitionTableType };
  // blkid exited 0 but named neither: treat as unknown content, never as blank.
  throw new Error(`blkid found an unidentified signature on ${device}: ${stdout.trim()}`);
}

/**
 * The filesystem type on `device` (ext4, xfs, swap, crypto_LUKS...), or null when it is blank.
 * A whole-device partition table is reported as "<type> partition table" so that callers
 * comparing types refuse it rather than formatting over it.
 */
export async function detectFilesystem(device: string): Promise<string | null> {
  const content = await probeDevice(device);
  switch (content.kind) {
    case 'blank':
      return null;
    case 'filesystem':
      return content.fsType;
    case 'partitioned':
      return `${content.partitionTableType} partition table`;
  }
}

function parseExport(stdout: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const equals = line.indexOf('=');
    if (equals > 0) values.set(line.slice(0, equals), line.slice(equals + 1));
  }
  return values;
}

async function assertReadable(device: string): Promise<void> {
  const handle = await fs.open(device, 'r');
  await handle.close();
}

const MAX_LABEL_LENGTH: Record<FilesystemType, number> = { ext4: 16, xfs: 12 };

/**
 * Creates a filesystem on a blank device. The device is probed first and anything already on it
 * is refused, so this can never destroy data; the force flags below only stop the tools from
 * asking questions.
 *
 * ext4: -E lazy_itable_init=1,lazy_journal_init=1 makes mkfs write almost nothing, so it is fast
 *   and keeps a sparse backing image sparse; the kernel later zeroes the inode tables in the
 *   background with WRITE_ZEROES, which our virtio-blk backend turns into hole punches (zeroes in
 *   place on a thick volume). nodiscard, because a new volume's image is already all holes (or
 *   reserved), and a whole-device discard of a large volume (in 32 MiB requests through the
 *   user-space daemon) would only add time to NodeStage.
 * xfs: -K (no discard) for the same reason. mkfs.xfs from xfsprogs 5.19 on refuses filesystems
 *   smaller than 300 MB.
 */
export async function makeFilesystem(
  device: string,
  fsType: FilesystemType,
  options: { label?: string } = {},
): Promise<void> {
  const found = await detectFilesystem(device);
  if (found !== null) throw new DeviceNotBlankError(device, found);
  await formatProbedBlank(device, fsType, options);
}

/** makeFilesystem on a device its caller has just probed blank (one blkid, not two, per stage). */
async function formatProbedBlank(
  device: string,
  fsType: FilesystemType,
  options: { label?: string },
): Promise<void> {
  if (options.label !== undefined && options.label.length > MAX_LABEL_LENGTH[fsType]) {
    throw new Error(`label ${JSON.stringify(options.label)} is longer than ${fsType} allows`);
  }
  const label = options.label !== undefined ? ['-L', options.label] : [];
  switch (fsType) {
    case 'ext4':
      await runTool('mkfs.ext4', [
        '-F',
        '-q',
        '-E',
        'lazy_itable_init=1,lazy_journal_init=1,nodiscard',
        ...label,
        '--',
        device,
      ]);
      return;
    case 'xfs':
      await runTool('mkfs.xfs', ['-f', '-q', '-K', ...label, '--', device]);
      return;
    default:
      throw new Error(`unsupported filesystem type ${String(fsType)}`);
  }
}

/**
 * Grows a mounted filesystem to fill its (already enlarged) device. ext4 grows online through
 * the device; xfs only through its mount point. Both are no-ops when there is nothing to grow.
 */
export async function growFilesystem(
  device: string,
  mountPoint: string,
  fsType: FilesystemType,
): Promise<void> {
  switch (fsType) {
    case 'ext4':
      try {
        await runTool('resize2fs', ['--', device], { timeoutMs: 10 * 60_000 });
      } catch (error) {
        // The kernel refuses EXT4_IOC_RESIZE_FS with EPERM to a process without CAP_SYS_RESOURCE.
        if (error instanceof ToolError && /Permission denied to resize/.test(error.stderr)) {
          throw new Error(`online resize of ext4 on ${device} needs CAP_SYS_RESOURCE`, { cause: error });
        }
        throw error;
      }
      return;
    case 'xfs':
      await runTool('xfs_growfs', ['-d', '--', mountPoint], { timeoutMs: 10 * 60_000 });
      return;
    default:
      throw new Error(`unsupported filesystem type ${String(fsType)}`);
  }
}

// e2fsck(8) exit status bits: 1 = errors corrected, 2 = reboot advised (meaningless for a data
// volume), 4 = errors left uncorrected; higher bits mean fsck itself failed.
const E2FSCK_CORRECTED_BITS = 1 | 2;
const E2FSCK_UNCORRECTED = 4;

/**
 * Runs `fsck.ext4 -p` on an unmounted ext4 device: it returns at once when the filesystem was
 * cleanly unmounted, and otherwise replays the journal and repairs what is safe to repair.
 * xfs needs nothing here: it replays its log when mounted.
 */
export async function checkFilesystem(device: string, fsType: FilesystemType): Promise<void> {
  if (fsType !== 'ext4') return;
  try {
    await runTool('fsck.ext4', ['-p', '--', device], { timeoutMs: 30 * 60_000 });
  } catch (error) {
    if (!(error instanceof ToolError) || error.exitCode === null) throw error;
    if ((error.exitCode & ~E2FSCK_CORRECTED_BITS) === 0) return;
    if (error.exitCode & E2FSCK_UNCORRECTED) {
      throw new Error(`ext4 filesystem on ${device} has errors that fsck.ext4 -p could not repair`, {
        cause: error,
      });
    }
    throw error;
  }
}

export interface FormatAndMountOptions {
  /** Extra mount options (noatime...). */
  mountOptions?: readonly string[];
  readOnly?: boolean;
  /** Label for a filesystem created now; ignored when the device is already formatted. */
  label?: string;
  /**
   * The caller knows every byte of the device reads as zero (a new device over a backing store
   * nothing wrote), so there is nothing to probe: blkid is skipped.
   */
  knownBlank?: boolean;
}

/**
 * Mounts `device` on `target` as `fsType`, creating the filesystem only if the device is blank.
 * A device holding anything else is refused with FilesystemMismatchError and left untouched.
 * Already mounted there (a retried NodeStage) is success; another device there is an error.
 */
export async function safeFormatAndMount(
  device: string,
  target: string,
  fsType: FilesystemType,
  options: FormatAndMountOptions = {},
): Promise<void> {
  const deviceNumber = await blockDeviceNumber(device);
  const existing = await mountAt(target);
  if (existing !== null) {
    if (deviceNumber !== null && existing.majorMinor === deviceNumber && existing.root === '/') return;
    throw new Error(`${target} is already a mount point of ${existing.source} (${existing.fsType})`);
  }
  const found = options.knownBlank ? null : await detectFilesystem(device);
  if (found === null) {
    if (options.readOnly) {
      throw new Error(`cannot mount blank device ${device} read-only: it has no filesystem`);
    }
    await formatProbedBlank(device, fsType, options.label !== undefined ? { label: options.label } : {});
  } else if (found !== fsType) {
    throw new FilesystemMismatchError(device, found, fsType);
  } else if (!options.readOnly) {
    await checkFilesystem(device, fsType);
  }
  await mount(device, target, {
    fsType,
    readOnly: options.readOnly ?? false,
    options: options.mountOptions ?? [],
  });
}

/** "major:minor" of a block device node (as mountinfo shows it), or null for any other file. */
export async function blockDeviceNumber(device: string): Promise<string | null> {
  const stats = await fs.stat(device, { bigint: true });
  if (!stats.isBlockDevice()) return null;
  return `${deviceMajor(stats.rdev)}:${deviceMinor(stats.rdev)}`;
}

// glibc's dev_t layout (gnu_dev_major / gnu_dev_minor).
function deviceMajor(rdev: bigint): bigint {
  return ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & 0xfffff000n);
}

function deviceMinor(rdev: bigint): bigint {
  return (rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n);
}

export interface FilesystemStats {
  kind: 'filesystem';
  totalBytes: number;
  availableBytes: number;
  usedBytes: number;
  totalInodes: number;
  freeInodes: number;
  usedInodes: number;
}

export interface BlockDeviceStats {
  kind: 'block';
  totalBytes: number;
}

export type VolumeStats = FilesystemStats | BlockDeviceStats;

/**
 * Capacity of the volume at `volumePath`: the filesystem's usage for a mounted filesystem, or the
 * size of the device for a block volume (a device node, or a file a device is bind-mounted on).
 */
export async function volumeStats(volumePath: string): Promise<VolumeStats> {
  const deviceNumber = await blockDeviceNumber(volumePath);
  if (deviceNumber !== null) {
    // /sys/dev/block/M:m/size counts 512-byte sectors whatever the device's logical block size.
    const sectors = BigInt((await fs.readFile(`/sys/dev/block/${deviceNumber}/size`, 'utf8')).trim());
    return { kind: 'block', totalBytes: Number(sectors * 512n) };
  }
  // Node exposes only f_bsize; for ext4 and xfs it equals f_frsize, the unit of the block counts.
  const s = await fs.statfs(volumePath, { bigint: true });
  return {
    kind: 'filesystem',
    totalBytes: Number(s.blocks * s.bsize),
    availableBytes: Number(s.bavail * s.bsize),
    usedBytes: Number((s.blocks - s.bfree) * s.bsize),
    totalInodes: Number(s.files),
    freeInodes: Number(s.ffree),
    usedInodes: Number(s.files - s.ffree),
  };
}

import { existsSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { validateDeviceName } from './messages';

/*
 * Finding the block device virtio-vdpa creates for a vdpa device:
 *   /sys/bus/vdpa/devices/<name>/virtio<N>/block/<vdX>  ->  /dev/<vdX>
 */

export interface BlockDeviceLookupOptions {
  /** Default /sys (tests point it at a fake tree). */
  readonly sysfsRoot?: string;
  /** Default /dev. */
  readonly devRoot?: string;
}

export interface WaitOptions extends BlockDeviceLookupOptions {
  /** Default 30 s (generous: software-emulated VMs probe slowly). */
  readonly timeoutMs?: number;
  /** Default 20 ms. */
  readonly intervalMs?: number;
}

/** Thrown when the block device does not show up (or go away) in time. */
export class BlockDeviceTimeoutError extends Error {
  readonly code = 'ETIMEDOUT';

  constructor(
    message: string,
    readonly vdpaDevice: string,
  ) {
    super(message);
    this.name = 'BlockDeviceTimeoutError';
  }
}

function listDir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

/** The vdX name of the block device bound to vdpa device `name`, or null when there is none (yet). */
export function findBlockDeviceName(name: string, options: BlockDeviceLookupOptions = {}): string | null {
  validateDeviceName(name);
  const vdpaDir = join(options.sysfsRoot ?? '/sys', 'bus', 'vdpa', 'devices', name);
  for (const entry of listDir(vdpaDir).sort()) {
    if (!/^virtio\d+$/.test(entry)) continue;
    const disks = listDir(join(vdpaDir, entry, 'block')).sort();
    if (disks.length > 0) return disks[0];
  }
  return null;
}

/**
 * True when vdpa device `name` has a virtio device that no driver holds: virtio_blk's probe of it
 * failed. That happens when the process that added the device dies during the probe (the probe
 * runs in its netlink call and waits for the device's answers), and a probe is never retried.
 */
export function virtioProbeFailed(name: string, options: BlockDeviceLookupOptions = {}): boolean {
  validateDeviceName(name);
  const vdpaDir = join(options.sysfsRoot ?? '/sys', 'bus', 'vdpa', 'devices', name);
  return listDir(vdpaDir).some(
    (entry) => /^virtio\d+$/.test(entry) && !existsSync(join(vdpaDir, entry, 'driver')),
  );
}

/** major:minor of a block device as sysfs states it (/sys/class/block/<dev>/dev), or null. */
function sysfsDevNumber(sysfsRoot: string, disk: string): { major: number; minor: number } | null {
  try {
    const [major, minor] = readFileSync(join(sysfsRoot, 'class', 'block', disk, 'dev'), 'utf8')
      .trim()
      .split(':')
      .map(Number);
    return Number.isInteger(major) && Number.isInteger(minor) ? { major, minor } : null;
  } catch {
    return null;
  }
}

/** glibc's gnu_dev_major / gnu_dev_minor. */
export function splitRdev(rdev: number | bigint): { major: number; minor: number } {
  const dev = BigInt(rdev);
  return {
    major: Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & 0xfffff000n)),
    minor: Number((dev & 0xffn) | ((dev >> 12n) & 0xffffff00n)),
  };
}

/** True when `path` is a block device node and, if sysfs states the numbers, the right one. */
function isBlockDeviceNode(path: string, expected: { major: number; minor: number } | null): boolean {
  try {
    const stats = statSync(path);
    if (!stats.isBlockDevice()) return false;
    if (!expected) return true;
    const actual = splitRdev(stats.rdev);
    return actual.major === expected.major && actual.minor === expected.minor;
  } catch {
    return false;
  }
}

/** Why a vdpa device may have no block device: it is missing, or not bound to virtio_vdpa. */
function driverHint(sysfsRoot: string, name: string): string {
  const bus = join(sysfsRoot, 'bus', 'vdpa');
  if (!existsSync(join(bus, 'devices', name))) return '; the vdpa device does not exist';
  let driver: string | null = null;
  try {
    driver = basename(readlinkSync(join(bus, 'devices', name, 'driver')));
  } catch {
    driver = null;
  }
  if (driver === 'virtio_vdpa') return '';
  if (!existsSync(join(bus, 'drivers', 'virtio_vdpa'))) {
    return `; the virtio_vdpa driver is not loaded (modprobe virtio_vdpa)`;
  }
  return driver ? `; it is bound to ${driver}, not virtio_vdpa` : '; it is bound to no driver';
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Waits until the block device of vdpa device `name` exists in sysfs and as a block device node in
 * /dev; returns its path (e.g. /dev/vda).
 */
export async function waitForBlockDevice(name: string, options: WaitOptions = {}): Promise<string> {
  validateDeviceName(name);
  const timeoutMs = options.timeoutMs ?? 30_000;
  const intervalMs = options.intervalMs ?? 20;
  const sysfsRoot = options.sysfsRoot ?? '/sys';
  const devRoot = options.devRoot ?? '/dev';
  const deadline = Date.now() + timeoutMs;
  let seen: string | null = null;
  for (;;) {
    seen = findBlockDeviceName(name, options);
    if (seen) {
      const path = join(devRoot, seen);
      if (isBlockDeviceNode(path, sysfsDevNumber(sysfsRoot, seen))) return path;
    }
    if (Date.now() >= deadline) break;
    await sleep(intervalMs);
  }
  const state = seen
    ? `sysfs shows block device ${seen} but ${join(devRoot, seen)} is not (the right) block device node`
    : `no block device under ${join(sysfsRoot, 'bus', 'vdpa', 'devices', name)}/virtio*/block${driverHint(sysfsRoot, name)}`;
  throw new BlockDeviceTimeoutError(
    `vdpa device ${JSON.stringify(name)}: no block device after ${timeoutMs} ms (${state})`,
    name,
  );
}

/** Waits until vdpa device `name` has no block device any more (after DEV_DEL). */
export async function waitForBlockDeviceGone(name: string, options: WaitOptions = {}): Promise<void> {
  validateDeviceName(name);
  const timeoutMs = options.timeoutMs ?? 30_000;
  const intervalMs = options.intervalMs ?? 20;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const disk = findBlockDeviceName(name, options);
    if (disk === null) return;
    if (Date.now() >= deadline) {
      throw new BlockDeviceTimeoutError(
        `vdpa device ${JSON.stringify(name)}: block device ${disk} still present after ${timeoutMs} ms`,
        name,
      );
    }
    await sleep(intervalMs);
  }
}

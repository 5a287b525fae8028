import { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { BackendDescriptor } from '../src/backend/descriptor';
import { run } from '../test/kernel/support';
import { FioTarget } from './fio';
import { log } from './log';
import { processTree } from './proc';

/** A volume to serve: a device name and its storage (an image file or an RBD image). */
export interface Volume {
  name: string;
  backend: BackendDescriptor;
}

/** The image file of a volume, for layouts that serve nothing else. */
export function imageFile({ name, backend }: Volume): string {
  if (backend.kind !== 'file') throw new Error(`${name}: this layout serves image files only`);
  return backend.path;
}

export interface ServeOptions {
  queues: number;
  /** Where the serving processes' logs go. */
  logDir: string;
  readyTimeoutMs: number;
}

/** Volumes being served, until stop(). */
export interface ServedVolumes {
  /** Volume name -> where fio does its I/O (mostly a block device, /dev/vdX). */
  targets: Map<string, FioTarget>;
  /** How many processes serve them (0: the kernel or fio itself does). */
  processes: number;
  /** Every process serving them, descendants included (what CPU and memory are counted over). */
  pids(): number[];
  alive(): boolean;
  /** SIGKILLs the process serving I/O right now (layouts with one); answers its pid. */
  kill?(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * One way of serving volumes as VDUSE block devices. Every case runs on every layout it is given,
 * so another way (such as a node daemon) is a new Layout, not a change to the cases.
 */
export interface Layout {
  name: string;
  /** One line for the report. */
  description: string;
  serve(volumes: Volume[], options: ServeOptions): Promise<ServedVolumes>;
}

/** Volumes served by `children` and their descendants. */
export function servedBy(
  children: ChildProcess[],
  devices: Map<string, string>,
  stop: () => Promise<void>,
): ServedVolumes {
  return {
    targets: deviceTargets(devices),
    processes: children.length,
    pids: () => children.flatMap((child) => processTree(child.pid!)),
    alive: () => children.every(isRunning),
    stop,
  };
}

/** Volume name -> block device path, as fio targets. */
export function deviceTargets(devices: Map<string, string>): Map<string, FioTarget> {
  return new Map([...devices].map(([name, path]) => [name, { kind: 'device', path }]));
}

/** The block device of a served volume: cases that read /sys/block need one. */
export function devicePath(target: FioTarget): string {
  if (target.kind !== 'device') throw new Error('this case needs a block device');
  return target.path;
}

export function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** SIGTERM, then SIGKILL if the process is still there after `graceMs`. */
export async function terminate(child: ChildProcess, graceMs: number): Promise<void> {
  if (!isRunning(child)) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => {
    log(`pid ${child.pid} did not exit ${graceMs / 1000} s after SIGTERM; killing it`);
    child.kill('SIGKILL');
  }, graceMs);
  await exited;
  clearTimeout(timer);
}

/** Removes the vdpa device `name` if it is still there. */
export function removeVdpaDevice(name: string): void {
  if (!existsSync(`/sys/bus/vdpa/devices/${name}`)) return;
  try {
    run('vdpa', ['dev', 'del', name]);
  } catch (error) {
    log(`vdpa dev del ${name}: ${String(error)}`);
  }
}

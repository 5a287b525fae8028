import { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { run } from '../test/kernel/support';
import { log } from './log';
import { processTree } from './proc';

/** A volume to serve: a device name and its image file. */
export interface Volume {
  name: string;
  image: string;
}

export interface ServeOptions {
  queues: number;
  /** Where the serving processes' logs go. */
  logDir: string;
  readyTimeoutMs: number;
}

/** Volumes being served, until stop(). */
export interface ServedVolumes {
  /** Volume name -> its block device (/dev/vdX). */
  devices: Map<string, string>;
  /** How many processes serve them. */
  processes: number;
  /** Every process serving them, descendants included (what CPU and memory are counted over). */
  pids(): number[];
  alive(): boolean;
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
    devices,
    processes: children.length,
    pids: () => children.flatMap((child) => processTree(child.pid!)),
    alive: () => children.every(isRunning),
    stop,
  };
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

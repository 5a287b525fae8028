import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { requireVduse, run, sh } from '../test/kernel/support';
import { BenchConfig } from './config';
import { MiB } from './fio';

/** Fails unless this machine can run the bench: VDUSE (the VM of test/vm/run.sh) and the tools. */
export function checkEnvironment(rbd: boolean): void {
  requireVduse();
  const cephTools = ['ceph', 'rbd', 'rbd-nbd', 'ceph-mon', 'ceph-osd'];
  for (const tool of ['qemu-storage-daemon', 'vdpa', 'fio', 'dd', 'getconf', ...(rbd ? cephTools : [])]) {
    try {
      sh(`command -v ${tool}`);
    } catch {
      throw new Error(`missing tool: ${tool} (run scripts/install-deps.sh)`);
    }
  }
}

/** What the figures were measured on and with. */
export function benchInfo(config: BenchConfig): Record<string, unknown> {
  return {
    kernel: release(),
    qemuStorageDaemon: run('qemu-storage-daemon', ['--version']).split('\n')[0],
    fio: run('fio', ['--version']).trim(),
    node: process.version,
    cpus: cpus().length,
    date: new Date().toISOString(),
    runtimeS: config.runtimeS,
    rampS: config.rampS,
    repeats: config.repeats,
    queues: config.queueCounts,
    imageMiB: config.imageMiB,
    numjobs: '= queues (iodepth per job)',
  };
}

/** Random bytes from the kernel: with crypto.randomBytes the prefill took 37 s in the VM, 5-9 s so. */
function kernelRandom(bytes: number): Buffer {
  const buffer = Buffer.alloc(bytes);
  const random = openSync('/dev/urandom', 'r');
  try {
    for (let filled = 0; filled < bytes;) filled += readSync(random, buffer, filled, bytes - filled, null);
  } finally {
    closeSync(random);
  }
  return buffer;
}

/** Writes `sizeMiB` of random data to `path`, so reads are of real data, not holes. */
export function prefill(path: string, sizeMiB: number): void {
  const chunk = kernelRandom(16 * MiB);
  const fd = openSync(path, 'w');
  try {
    for (let offset = 0; offset < sizeMiB * MiB; offset += chunk.length)
      writeSync(fd, chunk, 0, Math.min(chunk.length, sizeMiB * MiB - offset));
  } finally {
    closeSync(fd);
  }
}

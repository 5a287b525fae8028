import { ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { waitForBlockDevice } from '../src/vdpa/block-device';
import { run, waitFor } from '../test/kernel/support';
import {
  isRunning,
  Layout,
  removeVdpaDevice,
  servedBy,
  ServedVolumes,
  ServeOptions,
  terminate,
  Volume,
} from './layout';

/** The C reference: qemu-storage-daemon's vduse-blk export, one daemon per volume. */
export const qemuLayout: Layout = {
  name: 'qemu',
  description: 'qemu-storage-daemon --export vduse-blk, one process per volume',
  async serve(volumes: Volume[], options: ServeOptions): Promise<ServedVolumes> {
    // Launched together, then waited for: start-up under emulation is slow.
    const daemons = volumes.map((volume) => launch(volume, options));
    const stop = async (): Promise<void> => {
      for (const [index, daemon] of daemons.entries()) {
        removeVdpaDevice(volumes[index]!.name);
        await terminate(daemon, 30_000);
      }
    };
    try {
      const devices = new Map<string, string>();
      for (const [index, { name }] of volumes.entries()) {
        const daemon = daemons[index]!;
        await waitFor(
          `/dev/vduse/${name}`,
          () => existsSync(`/dev/vduse/${name}`) || !isRunning(daemon),
          options.readyTimeoutMs,
        );
        if (!isRunning(daemon))
          throw new Error(`qemu-storage-daemon of ${name} exited; see ${options.logDir}`);
        run('vdpa', ['dev', 'add', 'name', name, 'mgmtdev', 'vduse']);
        devices.set(name, await waitForBlockDevice(name, { timeoutMs: 60_000 }));
      }
      return servedBy(daemons, devices, stop);
    } catch (error) {
      await stop();
      throw error;
    }
  },
};

/** The block node of a volume: its image file, or its RBD image through qemu's rbd driver (librbd). */
function blockdev({ backend }: Volume): string {
  if (backend.kind === 'file') return `file,node-name=f,filename=${backend.path},cache.direct=off`;
  const { location, client } = backend;
  return (
    `rbd,node-name=f,pool=${location.pool},image=${location.image},conf=${client.conf!},` +
    `user=${client.user!},cache.direct=off`
  );
}

function launch(volume: Volume, options: ServeOptions): ChildProcess {
  const { name } = volume;
  const logFd = openSync(join(options.logDir, `daemon-${name}.log`), 'a');
  try {
    return spawn(
      'qemu-storage-daemon',
      [
        '--blockdev',
        blockdev(volume),
        '--export',
        `vduse-blk,id=e,node-name=f,name=${name},num-queues=${options.queues},writable=on`,
      ],
      { stdio: ['ignore', logFd, logFd] },
    );
  } finally {
    closeSync(logFd);
  }
}

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { serve } from '../test/kernel/support';
import { imageFile, Layout, removeVdpaDevice, servedBy, terminate } from './layout';

/** Our device server: `vduse-csi blk serve`, one process serving every volume on shared threads. */
export const oursLayout: Layout = {
  name: 'ours',
  description: 'vduse-csi blk serve, one process for all volumes',
  async serve(volumes, options) {
    const server = await serve(
      [
        ...volumes.flatMap((volume) => ['--file', imageFile(volume), '--name', volume.name]),
        '--queues',
        `${options.queues}`,
      ],
      options.readyTimeoutMs,
    );
    const devices = new Map(server.devices.map(({ name, path }) => [name, path]));
    return servedBy([server.process], devices, async () => {
      await terminate(server.process, 60_000);
      writeFileSync(
        join(options.logDir, `daemon-${volumes[0]!.name}.log`),
        `${server.stderr()}\n[stdout]\n${server.stdout()}`,
      );
      // The server removes its devices itself; one that did not leaves them to us.
      for (const { name } of volumes) removeVdpaDevice(name);
    });
  },
};

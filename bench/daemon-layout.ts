import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { callDaemon } from '../src/daemon/control-client';
import { daemonStatus, stopDaemons } from '../test/support/daemon-processes';
import { BLK_CLI, scratchDir, waitFor } from '../test/kernel/support';
import { announced, startDaemon } from '../test/kernel/daemon-support';
import { Layout, removeVdpaDevice, servedBy, ServedVolumes, ServeOptions, terminate, Volume } from './layout';

/**
 * The per-node device daemon: one `vduse-csi daemon run --keep-standby` for every volume, each added
 * through its control socket. Its warm standby is counted with it (CPU and memory).
 */
export const daemonLayout = daemonLayoutWith(
  'daemon',
  'vduse-csi daemon run --keep-standby, volumes added over its control socket',
  [],
);

/** The same daemon with its request counters off: what counting each request costs. */
export const uncountedDaemonLayout = daemonLayoutWith(
  'daemon-uncounted',
  'the daemon layout with --no-request-counters (no per-device request metrics)',
  ['--no-request-counters'],
);

/** The same daemon with helper threads for large requests: what those bring. */
export const largeIoDaemonLayout = daemonLayoutWith(
  'daemon-large-io',
  'the daemon layout with --large-io-helpers (requests of 128 KiB or more on helper threads)',
  ['--large-io-helpers'],
);

function daemonLayoutWith(name: string, description: string, flags: string[]): Layout {
  return {
    name,
    description,
    serve: (volumes, options) => serveFromDaemon(volumes, options, flags),
  };
}

async function serveFromDaemon(
  volumes: Volume[],
  options: ServeOptions,
  flags: string[],
): Promise<ServedVolumes> {
  // On the scratch tmpfs: the output directory is 9p, where a unix socket cannot be made.
  const stateDir = scratchDir('daemon-state');
  const daemon = startDaemon(BLK_CLI, stateDir, ['--keep-standby', ...flags]);
  const stop = async (): Promise<void> => {
    for (const { name } of volumes)
      await callDaemon(stateDir, { op: 'remove', name }).catch(() => removeVdpaDevice(name));
    await terminate(daemon.process, 60_000);
    // After a kill the successor and its standby serve: they go too.
    await stopDaemons(stateDir);
    writeFileSync(join(options.logDir, `daemon-${volumes[0]!.name}.log`), daemon.output());
  };
  try {
    await waitFor(
      'the daemon to serve',
      () => announced(daemon.output(), 'daemon').length > 0,
      options.readyTimeoutMs,
    );
    const added = await Promise.all(
      volumes.map(({ name, backend }) =>
        callDaemon(
          stateDir,
          {
            op: 'add',
            device: {
              name,
              backend,
              queues: options.queues,
              queueSize: 256,
              blockSize: 512,
              readOnly: false,
              keepAllocation: false,
            },
          },
          options.readyTimeoutMs,
        ),
      ),
    );
    // The standby is part of what this layout costs: measure with it there.
    await waitFor(
      'its standby',
      () => announced(daemon.output(), 'standby').length > 0,
      options.readyTimeoutMs,
    );
    const devices = new Map(added.map((reply) => [String(reply.name), String(reply.path)]));
    return {
      ...servedBy([daemon.process], devices, stop),
      // The daemon serving now (not necessarily the first): its standby takes over.
      kill: async () => {
        const live = await daemonStatus(stateDir);
        if (!live) throw new Error('no daemon answers on its control socket');
        process.kill(live.pid, 'SIGKILL');
        return live.pid;
      },
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

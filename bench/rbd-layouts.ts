import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { isAlive } from '../test/support/daemon-processes';
import { RbdFioTarget } from './fio';
import { deviceTargets, Layout, ServedVolumes, Volume } from './layout';
import { log } from './log';
import { processesWith, processTree } from './proc';

/*
 * The other ways of reaching an RBD image the bench compares ours with: the kernel's rbd module,
 * rbd-nbd (ceph-csi's userspace mounter) and fio's own rbd engine (librbd in fio, no block device).
 * qemu-storage-daemon's rbd driver is the qemu layout given an RBD volume.
 */

/** How long a map or unmap may take under the VM's software emulation before it counts as stuck. */
const MAP_TIMEOUT_MS = 300_000;

/** The RBD image of a volume as fio's rbd engine names it (the cluster's conf, user, pool, image). */
export function rbdTarget({ name, backend }: Volume): RbdFioTarget {
  if (backend.kind !== 'rbd') throw new Error(`${name}: this layout serves RBD images only`);
  const { conf, user } = backend.client;
  if (conf === undefined || user === undefined) throw new Error(`${name}: the bench names conf and user`);
  return { kind: 'rbd', conf, user, pool: backend.location.pool, image: backend.location.image };
}

function spec({ pool, image }: RbdFioTarget): string {
  return `${pool}/${image}`;
}

function runBounded(command: string, args: string[]): string {
  return execFileSync(command, args, {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: MAP_TIMEOUT_MS,
  }).trim();
}

/** Runs every undo step, logging (not throwing) the failures: one stuck device must not keep others. */
function undoAll(steps: Array<[string, () => void]>): void {
  for (const [what, step] of steps) {
    try {
      step();
    } catch (error) {
      log(`${what}: ${String(error)}`);
    }
  }
}

/** Maps each volume with `map` (answering its device); `unmap` undoes one. */
async function mapEach(
  volumes: Volume[],
  map: (target: RbdFioTarget) => string,
  unmap: (target: RbdFioTarget, device: string) => void,
): Promise<{ devices: Map<string, string>; stop: () => Promise<void> }> {
  const devices = new Map<string, string>();
  const mapped: Array<[string, () => void]> = [];
  const stop = (): Promise<void> => {
    undoAll(mapped);
    return Promise.resolve();
  };
  try {
    for (const volume of volumes) {
      const target = rbdTarget(volume);
      const device = map(target);
      devices.set(volume.name, device);
      mapped.push([`unmap ${device}`, () => unmap(target, device)]);
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { devices, stop };
}

export const krbdLayout: Layout = {
  name: 'krbd',
  description: "the kernel's rbd module (rbd map -o noudev), no user-space server",
  async serve(volumes: Volume[]): Promise<ServedVolumes> {
    const { devices, stop } = await mapEach(
      volumes,
      (target) =>
        runBounded('rbd', ['--conf', target.conf, '--id', target.user, 'map', '-o', 'noudev', spec(target)]),
      ({ conf, user }, device) =>
        runBounded('rbd', ['--conf', conf, '--id', user, 'unmap', '-o', 'noudev', device]),
    );
    return {
      targets: deviceTargets(devices),
      processes: 0,
      pids: () => [],
      alive: () => [...devices.values()].every((device) => existsSync(device)),
      stop,
    };
  },
};

export const rbdNbdLayout: Layout = {
  name: 'rbd-nbd',
  description:
    "rbd-nbd map (ceph-csi's userspace mounter: librbd behind the kernel's nbd), one process per volume",
  async serve(volumes: Volume[]): Promise<ServedVolumes> {
    runBounded('modprobe', ['nbd']);
    const { devices, stop } = await mapEach(
      volumes,
      (target) => runBounded('rbd-nbd', ['--conf', target.conf, '--id', target.user, 'map', spec(target)]),
      ({ conf, user }, device) => runBounded('rbd-nbd', ['--conf', conf, '--id', user, 'unmap', device]),
    );
    // `rbd-nbd map` forks the process that serves and exits: find the servers by their command line.
    const servers = volumes.flatMap((volume) => processesWith('rbd-nbd', ['map', spec(rbdTarget(volume))]));
    if (servers.length !== volumes.length) {
      await stop();
      throw new Error('an rbd-nbd map left no process serving');
    }
    return {
      targets: deviceTargets(devices),
      processes: servers.length,
      pids: () => servers.filter(isAlive).flatMap(processTree),
      alive: () => servers.every(isAlive),
      kill: () => {
        process.kill(servers[0]!, 'SIGKILL');
        return Promise.resolve(servers[0]!);
      },
      stop,
    };
  },
};

export const fioRbdLayout: Layout = {
  name: 'fio-rbd',
  description: "fio's rbd engine: librbd inside fio, no block device (the ceiling of any librbd client)",
  serve(volumes: Volume[]): Promise<ServedVolumes> {
    return Promise.resolve({
      targets: new Map(volumes.map((volume) => [volume.name, rbdTarget(volume)])),
      processes: 0,
      pids: () => [],
      alive: () => true,
      stop: () => Promise.resolve(),
    });
  },
};

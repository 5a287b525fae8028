import { execFile } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { run, scratchDir } from '../test/kernel/support';
import { BenchConfig } from './config';
import { prefill } from './environment';
import { MiB } from './fio';
import { KillFigures, killUnderVerifiedWrites } from './kill-case';
import { MemoryFigures, memoryFigures } from './memory-case';
import { Layout, ServedVolumes } from './layout';
import { log } from './log';
import { ThroughputRuns, throughputCase } from './throughput';

/*
 * The RBD case: one single-node Ceph cluster (scripts/ceph-cluster.sh, memstore OSD) started once,
 * one image per client in the same pool, all the same size and prefilled with the same random
 * data, and the throughput case's fio jobs on each client; then, while they still serve, the
 * memory of each client with a serving process is read and those processes are SIGKILLed under
 * verified writes.
 */

const SCRIPT = join(__dirname, '../../scripts/ceph-cluster.sh');
const POOL = 'rbd';
/** Every client authenticates as the admin: what differs between them is the data path. */
const USER = 'admin';
/**
 * Logging that costs the OSD and every librbd client CPU on each request (in-memory gathering of
 * debug levels up to 5), off: the clients, not the OSD's logging, are what the case compares.
 * (memstore logs as filestore.)
 */
const QUIET_SUBSYSTEMS = [
  'osd',
  'ms',
  'objecter',
  'rados',
  'rbd',
  'filestore',
  'optracker',
  'monc',
  'auth',
  'objclass',
  'throttle',
  'finisher',
  'tp',
  'buffer',
  'heartbeatmap',
  'perfcounter',
  'asok',
];

export interface RbdResults {
  cephStartS: number;
  prefillS: number;
  imageMiB: number;
  raw: ThroughputRuns;
  kills: KillFigures[];
  /** Each client with a serving process, serving its one image, read after the jobs (librbd's cache filled). */
  memory: Record<string, MemoryFigures>;
}

async function cephCluster(action: 'start' | 'stop', dir: string, memstoreBytes: number): Promise<string> {
  const { stdout } = await promisify(execFile)(SCRIPT, [action, dir], {
    env: { ...process.env, VDUSE_CSI_CEPH_POOL: POOL, VDUSE_CSI_CEPH_MEMSTORE_BYTES: `${memstoreBytes}` },
    timeout: 1_000_000,
  });
  return stdout.trim();
}

function seconds(since: number): number {
  return (performance.now() - since) / 1000;
}

/** Clients that a SIGKILL means something to: they have a process serving a block device. */
function killable(served: Map<string, ServedVolumes>): Array<[string, ServedVolumes]> {
  return [...served].filter(([, volumes]) => volumes.kill !== undefined);
}

export async function rbdCase(
  config: BenchConfig,
  layouts: Layout[],
  rawDir: string,
  failures: string[],
): Promise<RbdResults> {
  const { imageMiB } = config.rbd;
  const dir = scratchDir('bench-ceph');
  // memstore's capacity (held in memory only as written): every image, and room for the kills' writes.
  const memstoreBytes = (layouts.length + 1) * imageMiB * MiB * 2;
  let started = performance.now();
  const conf = await cephCluster('start', dir, memstoreBytes);
  const cephStartS = seconds(started);
  log(`ceph started in ${cephStartS.toFixed(1)} s (${conf})`);
  try {
    // One call (a ceph CLI start costs seconds under emulation); the monitor hands it to every daemon and client.
    const quiet = join(dir, 'quiet.conf');
    writeFileSync(quiet, `[global]\n${QUIET_SUBSYSTEMS.map((name) => `debug_${name} = 0/0\n`).join('')}`);
    run('ceph', ['--conf', conf, 'config', 'assimilate-conf', '-i', quiet]);

    started = performance.now();
    const data = join(config.scratchDir, 'bench-rbd.img');
    prefill(data, imageMiB);
    for (const layout of layouts)
      run('rbd', ['--conf', conf, 'import', '--no-progress', data, `${POOL}/bench-${layout.name}`]);
    rmSync(data);
    const prefillS = seconds(started);
    log(`prefilled ${layouts.length} images of ${imageMiB} MiB in ${prefillS.toFixed(1)} s`);

    const kills: KillFigures[] = [];
    const memory: Record<string, MemoryFigures> = {};
    let killed = false;
    const raw = await throughputCase(
      config,
      {
        layouts,
        volume: (layout, queues) => ({
          name: `rbd-${layout.name}${queues}`,
          backend: {
            kind: 'rbd',
            location: { pool: POOL, image: `bench-${layout.name}` },
            client: { conf, user: USER, keyring: join(dir, `ceph.client.${USER}.keyring`) },
          },
        }),
        volumeBytes: imageMiB * MiB,
        afterJobs: async (served) => {
          if (killed) return; // once, at the first queue count
          killed = true;
          for (const [layout, volumes] of served)
            if (volumes.processes > 0) memory[layout] = memoryFigures(volumes);
          for (const [layout, volumes] of killable(served)) {
            try {
              kills.push(await killUnderVerifiedWrites(layout, volumes, config.rbd.killMiB));
              log(`kill ${layout}: ${JSON.stringify(kills.at(-1))}`);
            } catch (error) {
              failures.push(`kill ${layout}: FAILED: ${String(error)}`);
            }
          }
        },
      },
      rawDir,
      failures,
    );
    return { cephStartS, prefillS, imageMiB, raw, kills, memory };
  } finally {
    await cephCluster('stop', dir, memstoreBytes).catch((error: unknown) =>
      log(`ceph stop: ${String(error)}`),
    );
  }
}

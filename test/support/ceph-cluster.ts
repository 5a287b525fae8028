import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const SCRIPT = join(__dirname, '../../../scripts/ceph-cluster.sh');
/** ~10 s on a host, ~140 s under the VM's software emulation; slow shared CI machines need more. */
const START_TIMEOUT_MS = 600_000;
const STOP_TIMEOUT_MS = 120_000;
const POOL = 'rbd';
const USER = 'vduse-csi';

/** A running single-node cluster (scripts/ceph-cluster.sh), valid between the suite's hooks. */
export interface TestCephCluster {
  readonly dir: string;
  readonly conf: string;
  readonly pool: string;
  readonly adminKeyring: string;
  /** A user with nothing but `profile rbd` on the pool (without "client."). */
  readonly user: string;
  readonly userKeyring: string;
}

async function runScript(action: 'start' | 'stop', dir: string, timeout: number): Promise<string> {
  try {
    const { stdout } = await promisify(execFile)(SCRIPT, [action, dir], {
      timeout,
      env: { ...process.env, VDUSE_CSI_CEPH_POOL: POOL, VDUSE_CSI_CEPH_USER: USER },
    });
    return stdout.trim();
  } catch (error) {
    const { stderr } = error as { stderr?: string };
    throw new Error(`scripts/ceph-cluster.sh ${action} ${dir} failed: ${stderr ?? String(error)}`);
  }
}

/** One cluster for every suite of a mocha run: a start costs minutes under the VM's emulation. */
let shared: { dir: string; conf: Promise<string> } | undefined;

// A root-level hook: runs once, after every suite of the run.
after(async function () {
  this.timeout(STOP_TIMEOUT_MS);
  if (!shared) return;
  await shared.conf.catch(() => undefined);
  await runScript('stop', shared.dir, STOP_TIMEOUT_MS - 10_000);
  rmSync(shared.dir, { recursive: true, force: true });
});

/**
 * The run's throwaway cluster (state under os.tmpdir()), started by the first suite that needs it,
 * in its `before`, and stopped after the last suite of the run. Suites share it, so each removes
 * the images it makes. The fields are readable from the `before` hooks that follow.
 */
export function useCephCluster(): TestCephCluster {
  let dir: string | undefined;
  let conf: string | undefined;
  const started = (): { dir: string; conf: string } => {
    if (dir === undefined || conf === undefined) throw new Error('test bug: the Ceph cluster is not started');
    return { dir, conf };
  };

  before(async function () {
    this.timeout(START_TIMEOUT_MS);
    if (!shared) {
      const sharedDir = mkdtempSync(join(tmpdir(), 'vduse-ceph-'));
      shared = { dir: sharedDir, conf: runScript('start', sharedDir, START_TIMEOUT_MS - 10_000) };
    }
    conf = await shared.conf;
    dir = shared.dir;
  });

  return {
    get dir() {
      return started().dir;
    },
    get conf() {
      return started().conf;
    },
    pool: POOL,
    get adminKeyring() {
      return join(started().dir, 'ceph.client.admin.keyring');
    },
    user: USER,
    get userKeyring() {
      return join(started().dir, `ceph.client.${USER}.keyring`);
    },
  };
}

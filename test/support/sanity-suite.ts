import { ServiceError, status } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdirSync, rmSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { stagedVolumes } from '../../src/csi/node-records';
import { unmount } from '../../src/node/mount';
import { isMountPoint } from '../../src/node/mountinfo';
import { CsiHarness, MiB, Reply } from './csi-harness';

/*
 * How the kubernetes-csi sanity suite (csi-test v5.4.0) surrounds and asks its Node cases: its
 * capability, its made-up ids, its path checks, and its per-case directories and clean-up. Shared by
 * the unit replay of its cases and by the kernel test of its lifecycle cases.
 */

export type AccessType = 'mount' | 'block';

/** Every NodeServiceCapability the suite accepts; any other type fails it. */
export const SUITE_NODE_CAPABILITIES = [
  'UNKNOWN',
  'STAGE_UNSTAGE_VOLUME',
  'GET_VOLUME_STATS',
  'EXPAND_VOLUME',
  'VOLUME_CONDITION',
  'SINGLE_NODE_MULTI_WRITER',
  'VOLUME_MOUNT_GROUP',
];

/**
 * The StorageClass parameters the replays run the suite with (`csi-sanity --csi.testvolumeparameters`
 * a YAML file of them), which it sends with every CreateVolume: its 10 GiB volumes are never written
 * and live on data directories smaller than one of them, so they belong in a thin class that allows
 * the node to be overcommitted that far; the default class (no overcommit) would refuse them.
 */
export const SUITE_VOLUME_PARAMETERS: Readonly<Record<string, string>> = { overcommitRatio: '500' };

/** The suite's idempotency count: each stage and publish of its lifecycle case is sent this often. */
export const REPEATS = 10;

/** The capability the suite sends: single node writer; for mount no fs_type and no flags. */
export function suiteCapability(accessType: AccessType): object {
  const access_mode = { mode: 'SINGLE_NODE_WRITER' };
  return accessType === 'mount' ? { mount: {}, access_mode } : { block: {}, access_mode };
}

/** Shaped like the suite's default generator's ids: well-formed to it, never made by this plugin. */
export function fakeVolumeId(): string {
  return `fake-vol-id-${randomUUID().slice(0, 10)}`;
}

/** The suite's path check: what stat(2) finds at `path`. */
export function pathKind(path: string): 'file' | 'directory' | 'other' | 'not found' {
  try {
    const stats = statSync(path);
    return stats.isFile() ? 'file' : stats.isDirectory() ? 'directory' : 'other';
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'not found';
    throw error;
  }
}

/** The suite's clean-up accepts success or NOT_FOUND from the node calls, nothing else. */
export async function expectDoneOrNotFound(csi: CsiHarness, method: string, request: object): Promise<void> {
  try {
    await csi.call('node', method, request);
  } catch (error) {
    const { code, details } = error as ServiceError;
    assert.equal(code, status.NOT_FOUND, `${method}: ${details}`);
  }
}

/**
 * One case's surroundings as the suite makes them: it creates the target's parent and the staging
 * directory (mkdir, not -p: it fails if they exist) before the case; after it, it unpublishes,
 * unstages and deletes every volume the case created, then removes both directories (rmdir: it
 * fails if the plugin left anything in them, and then so does the next case's mkdir).
 */
export class SuiteCase {
  readonly mountDir: string;
  readonly stagingDir: string;
  private readonly volumeIds: string[] = [];

  constructor(private readonly csi: CsiHarness) {
    this.mountDir = join(csi.root, 'csi-mount');
    this.stagingDir = join(csi.root, 'csi-staging');
    mkdirSync(this.mountDir);
    mkdirSync(this.stagingDir);
  }

  /** The suite publishes at a path inside its directory, which the plugin must create. */
  get target(): string {
    return join(this.mountDir, 'target');
  }

  async createVolume(name: string, accessType: AccessType, extra: object = {}): Promise<Reply> {
    const created: Reply = await this.csi.call('controller', 'CreateVolume', {
      name: `${name}-${accessType}`,
      volume_capabilities: [suiteCapability(accessType)],
      capacity_range: { required_bytes: 16 * MiB },
      parameters: { ...SUITE_VOLUME_PARAMETERS },
      ...extra,
    });
    this.volumeIds.push(created.volume.volume_id);
    return created;
  }

  async cleanUp(): Promise<void> {
    for (const volume_id of [...this.volumeIds].reverse()) {
      await expectDoneOrNotFound(this.csi, 'NodeUnpublishVolume', { volume_id, target_path: this.target });
      await expectDoneOrNotFound(this.csi, 'NodeUnstageVolume', {
        volume_id,
        staging_target_path: this.stagingDir,
      });
      await this.csi.call('controller', 'DeleteVolume', { volume_id });
    }
    rmdirSync(this.mountDir);
    rmdirSync(this.stagingDir);
  }

  /** Whatever a failed case left behind, so the next one starts clean. */
  async scrub(): Promise<void> {
    for (const path of [this.target, this.stagingDir]) while (await isMountPoint(path)) await unmount(path);
    for (const volumeId of this.volumeIds) stagedVolumes(this.csi.options.stateDir).delete(volumeId);
    rmSync(this.mountDir, { recursive: true, force: true });
    rmSync(this.stagingDir, { recursive: true, force: true });
  }
}

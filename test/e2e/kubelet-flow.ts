import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { CsiHarness, MiB, Reply, blockCapability, mountCapability } from '../support/csi-harness';

export type VolumeKind = 'ext4' | 'xfs' | 'block';

/**
 * Where the flow sends its calls and finds the node's files: one plugin serving every service, or
 * a controller and a node plugin behind one front (controller calls to one, node calls to the other).
 */
export type CsiEndpoints = Pick<CsiHarness, 'root' | 'options' | 'call'>;

/** Reports a step of the flow: the demo prints it, tests keep it quiet. */
export type Reporter = (step: string, facts?: Record<string, unknown>) => void;

function sh(script: string): string {
  return execFileSync('bash', ['-euo', 'pipefail', '-c', script], { encoding: 'utf8' });
}

function capabilityOf(kind: VolumeKind): object {
  return kind === 'block' ? blockCapability() : mountCapability(kind);
}

/** Where kubelet would stage and publish a volume, under the harness root. */
function paths(csi: CsiEndpoints, volumeId: string, pod: string): { staging: string; target: string } {
  const staging = join(csi.root, 'kubelet', 'staging', volumeId);
  mkdirSync(staging, { recursive: true });
  const podDir = join(csi.root, 'kubelet', 'pods', pod);
  mkdirSync(podDir, { recursive: true });
  return { staging, target: join(podDir, 'volume') };
}

export interface Published {
  volumeId: string;
  staging: string;
  target: string;
}

export async function stageAndPublish(
  csi: CsiEndpoints,
  kind: VolumeKind,
  volumeId: string,
  pod: string,
  /** What kubelet adds to NodePublishVolume's volume_context of a driver with podInfoOnMount. */
  podInfo: Record<string, string> = {},
): Promise<Published> {
  const { staging, target } = paths(csi, volumeId, pod);
  const capability = capabilityOf(kind);
  await csi.call('node', 'NodeStageVolume', {
    volume_id: volumeId,
    staging_target_path: staging,
    volume_capability: capability,
  });
  await csi.call('node', 'NodePublishVolume', {
    volume_id: volumeId,
    staging_target_path: staging,
    target_path: target,
    volume_capability: capability,
    volume_context: podInfo,
  });
  return { volumeId, staging, target };
}

export async function unpublishAndUnstage(csi: CsiEndpoints, volume: Published): Promise<void> {
  await csi.call('node', 'NodeUnpublishVolume', { volume_id: volume.volumeId, target_path: volume.target });
  await csi.call('node', 'NodeUnstageVolume', {
    volume_id: volume.volumeId,
    staging_target_path: volume.staging,
  });
}

/** CreateVolume (2 queues), then stage and publish it for a pod named after the volume. */
export async function createPublished(
  csi: CsiEndpoints,
  kind: VolumeKind,
  name: string,
  sizeMiB = 512,
): Promise<Published> {
  const { volume } = (await csi.call('controller', 'CreateVolume', {
    name,
    capacity_range: { required_bytes: sizeMiB * MiB },
    volume_capabilities: [capabilityOf(kind)],
    parameters: { queues: '2' },
  })) as Reply;
  return stageAndPublish(csi, kind, volume.volume_id, name);
}

/** Unpublish, unstage and delete: what the CO does when the pod and the claim go. */
export async function removePublished(csi: CsiEndpoints, volume: Published): Promise<void> {
  await unpublishAndUnstage(csi, volume);
  await csi.call('controller', 'DeleteVolume', { volume_id: volume.volumeId });
}

/** Writes `label`-tagged random data (a file, or 1 MiB at an offset of the raw device) and returns its digest. */
export function writeData(kind: VolumeKind, target: string, label: string, offsetMiB: number): string {
  if (kind === 'block') {
    return sh(
      `head -c 1048576 /dev/urandom > /tmp/${label}.bin && ` +
        `dd if=/tmp/${label}.bin of=${target} bs=1M seek=${offsetMiB} oflag=direct conv=fsync status=none && ` +
        `sha256sum < /tmp/${label}.bin | cut -d' ' -f1 && rm /tmp/${label}.bin`,
    ).trim();
  }
  return sh(
    `head -c 1048576 /dev/urandom > ${target}/${label}.bin && sync -f ${target}/${label}.bin && sha256sum < ${target}/${label}.bin | cut -d' ' -f1`,
  ).trim();
}

/**
 * The digest of what `writeData` wrote, read with O_DIRECT: from the device, never from the page
 * cache, so it is what the device server stored even while the filesystem is still mounted.
 */
export function readDigest(kind: VolumeKind, target: string, label: string, offsetMiB: number): string {
  const source = kind === 'block' ? `if=${target} skip=${offsetMiB} count=1` : `if=${target}/${label}.bin`;
  return sh(`dd ${source} bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1`).trim();
}

/** What the pod sees at its target: the raw device's bytes, or the filesystem's (statfs). */
export function sizeSeenByPod(kind: VolumeKind | 'mount', target: string): number {
  if (kind === 'block') return Number(sh(`blockdev --getsize64 ${target}`).trim());
  const stats = statfsSync(target);
  return stats.blocks * stats.bsize;
}

/**
 * What kubelet and the sidecars do with a volume, over gRPC: create, stage, publish, write, tear
 * down, stage again and read back, expand while published, snapshot, restore from the snapshot,
 * and clean up. Asserts every step's effect on the real system.
 */
export async function kubeletFlow(
  csi: CsiEndpoints,
  kind: VolumeKind,
  report: Reporter = () => undefined,
): Promise<void> {
  const name = `demo-${kind}-${process.pid}`;
  const capability = capabilityOf(kind);
  const { volume } = (await csi.call('controller', 'CreateVolume', {
    name,
    capacity_range: { required_bytes: 512 * MiB },
    volume_capabilities: [capability],
    parameters: { queues: '2' },
  })) as Reply;
  const volumeId: string = volume.volume_id;
  report('CreateVolume', {
    volume: volumeId,
    bytes: volume.capacity_bytes,
    image: join(csi.options.dataDir, 'volumes', `${volumeId}.img`),
  });

  let published = await stageAndPublish(csi, kind, volumeId, `${kind}-pod-a`);
  const device = readFileSync(join(csi.options.stateDir, 'node', `${volumeId}.json`), 'utf8');
  const devicePath = (JSON.parse(device) as { devicePath: string }).devicePath;
  assert.match(devicePath, /^\/dev\/vd[a-z]+$/);
  report('NodeStageVolume + NodePublishVolume', {
    device: devicePath,
    staging: published.staging,
    target: published.target,
    mount: mountLine(published.target),
  });

  const first = writeData(kind, published.target, 'first', 4);
  report('pod writes 1 MiB', { sha256: first });

  await unpublishAndUnstage(csi, published);
  assert.ok(!existsSync(`/dev/vduse/${volumeId}`), 'device removed on unstage');
  assert.equal(mountLine(published.target), null);
  report('NodeUnpublishVolume + NodeUnstageVolume', { deviceGone: !existsSync(devicePath) || 'reused name' });

  published = await stageAndPublish(csi, kind, volumeId, `${kind}-pod-a`);
  assert.equal(readDigest(kind, published.target, 'first', 4), first, 'data survives unstage and stage');
  report('staged and published again: data intact', { sha256: first });

  const stats = (await csi.call('node', 'NodeGetVolumeStats', {
    volume_id: volumeId,
    volume_path: published.target,
  })) as Reply;
  assert.equal(stats.volume_condition.abnormal, false);
  report('NodeGetVolumeStats', { usage: stats.usage, condition: stats.volume_condition.message });

  const before = sizeSeenByPod(kind, published.target);
  const expanded = (await csi.call('controller', 'ControllerExpandVolume', {
    volume_id: volumeId,
    capacity_range: { required_bytes: 768 * MiB },
    volume_capability: capability,
  })) as Reply;
  await csi.call('node', 'NodeExpandVolume', {
    volume_id: volumeId,
    volume_path: published.target,
    staging_target_path: published.staging,
    capacity_range: { required_bytes: 768 * MiB },
    volume_capability: capability,
  });
  const after = sizeSeenByPod(kind, published.target);
  assert.ok(after > before, `pod sees the volume grow (${before} -> ${after})`);
  if (kind === 'block') assert.equal(after, 768 * MiB);
  report('ControllerExpandVolume + NodeExpandVolume while published', {
    bytesBefore: before,
    bytesAfter: after,
    nodeExpansionRequired: expanded.node_expansion_required,
  });

  const { snapshot } = (await csi.call('controller', 'CreateSnapshot', {
    name: `${name}-snap`,
    source_volume_id: volumeId,
  })) as Reply;
  const later = writeData(kind, published.target, 'later', 8);
  report('CreateSnapshot while published', { snapshot: snapshot.snapshot_id, bytes: snapshot.size_bytes });

  const { volume: restored } = (await csi.call('controller', 'CreateVolume', {
    name: `${name}-restored`,
    volume_capabilities: [capability],
    volume_content_source: { snapshot: { snapshot_id: snapshot.snapshot_id } },
    parameters: { queues: '2' },
  })) as Reply;
  const restoredPublished = await stageAndPublish(csi, kind, restored.volume_id, `${kind}-pod-b`);
  assert.equal(
    readDigest(kind, restoredPublished.target, 'first', 4),
    first,
    'restored volume has the snapshot data',
  );
  if (kind === 'block') assert.notEqual(readDigest(kind, restoredPublished.target, 'later', 8), later);
  else
    assert.ok(
      !existsSync(join(restoredPublished.target, 'later.bin')),
      'writes after the snapshot are not in it',
    );
  report('CreateVolume from the snapshot, staged and published', {
    volume: restored.volume_id,
    sha256: first,
  });

  await unpublishAndUnstage(csi, restoredPublished);
  await unpublishAndUnstage(csi, published);
  await csi.call('controller', 'DeleteSnapshot', { snapshot_id: snapshot.snapshot_id });
  await csi.call('controller', 'DeleteVolume', { volume_id: restored.volume_id });
  await csi.call('controller', 'DeleteVolume', { volume_id: volumeId });
  assertNothingLeft(csi);
  report('cleaned up: no device, mount, image or record left');
}

function mountLine(path: string): string | null {
  const line = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((entry) => entry.split(' ')[4] === path);
  if (!line) return null;
  const [, rest] = line.split(' - ');
  return rest ? `${rest.split(' ').slice(0, 2).join(' ')} on ${path}` : path;
}

/** No VDUSE or vdpa device, no mount under the harness root, no image or node record left. */
export function assertNothingLeft(csi: CsiEndpoints): void {
  const listing = (path: string): string[] => (existsSync(path) ? readdirSync(path) : []);
  assert.deepEqual(
    listing('/dev/vduse').filter((entry) => entry !== 'control'),
    [],
    'VDUSE devices left',
  );
  assert.deepEqual(listing('/sys/bus/vdpa/devices'), [], 'vdpa devices left');
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((entry) => (entry.split(' ')[4] ?? '').startsWith(`${csi.root}/`));
  assert.deepEqual(mounts, [], 'mounts left');
  assert.deepEqual(listing(join(csi.options.dataDir, 'volumes')), [], 'volume images left');
  assert.deepEqual(listing(join(csi.options.dataDir, 'snapshots')), [], 'snapshot images left');
  assert.deepEqual(listing(join(csi.options.stateDir, 'node')), [], 'node records left');
  assert.deepEqual(listing(join(csi.options.stateDir, 'devices')), [], 'device records left');
}

import { PVC_NAME, PVC_NAMESPACE } from '../../src/csi/claim';
import { deviceNameOf, stagedVolumes } from '../../src/csi/node-records';
import assert from 'node:assert/strict';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import { assertNothingLeft, readDigest, sizeSeenByPod, VolumeKind, writeData } from '../e2e/kubelet-flow';
import { keyOf, monitorsOf } from '../support/ceph-client';
import { useCephCluster } from '../support/ceph-cluster';
import { CsiHarness, MiB, Reply, blockCapability, mountCapability } from '../support/csi-harness';
import { eventually } from '../support/eventually';
import { blocklisted, lockAddresses } from './rbd-checks';
import { RbdSharing } from '../../src/backend/descriptor';
import { callDaemon } from '../../src/daemon/control-client';
import { daemonProcesses, daemonStatus } from '../support/daemon-processes';
import { RunningDaemon, announced, startDaemon } from './daemon-support';
import { BLK_CLI, TAKEOVER_TIMEOUT_MS, requireVduse, scratchDir, sh, waitFor } from './support';

/** How Kubernetes asks for ReadWriteMany and ReadOnlyMany volumes. */
const RWX = 'MULTI_NODE_MULTI_WRITER';
const ROX = 'MULTI_NODE_READER_ONLY';

/** Every process's command line: a key must never be in one (anyone can read /proc/PID/cmdline). */
function allCommandLines(): string[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .flatMap((pid) => {
      try {
        return [readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ')];
      } catch {
        return []; // exited meanwhile
      }
    });
}

function filesUnder(directory: string): string[] {
  if (!existsSync(directory)) return [];
  return readdirSync(directory, { recursive: true, encoding: 'utf8' })
    .map((name) => join(directory, name))
    .filter((path) => existsSync(path) && statSync(path).isFile());
}

/** A node plugin's view of one volume: where kubelet stages and publishes it for a pod. */
interface Attached {
  node: CsiHarness;
  staging: string;
  target: string;
  capability: object;
}

describe('RBD volumes through the CSI plugin on a real kernel and Ceph cluster', function () {
  // Under software emulation every Ceph round trip is slow; waits are for conditions, not times.
  this.timeout(900_000);
  const ceph = useCephCluster();
  let nodeA: CsiHarness;
  let nodeB: CsiHarness;
  let key: string;
  let secrets: Record<string, string>;
  let monitors: string;

  before(async () => {
    requireVduse();
    key = keyOf(ceph.userKeyring);
    secrets = { userID: ceph.user, userKey: key };
    monitors = monitorsOf(ceph.conf);
    const clusterFile = join(ceph.dir, 'clusters.json');
    writeFileSync(clusterFile, JSON.stringify([{ clusterID: 'test', monitors: [monitors] }]));
    // Node A also runs the controller; node B is a second node plugin (own node id and state).
    nodeA = await CsiHarness.start({
      root: scratchDir('csi-rbd-a'),
      nodeId: 'node-a',
      cephClusters: clusterFile,
    });
    nodeB = await CsiHarness.start({
      root: scratchDir('csi-rbd-b'),
      mode: 'node',
      nodeId: 'node-b',
      cephClusters: clusterFile,
    });
  });

  afterEach(function () {
    const out = process.env.VDUSE_CSI_OUT;
    if (this.currentTest?.state !== 'failed' || !out) return;
    // The device servers' logs go with the VM's output: the scratch directory goes with the VM.
    for (const node of [nodeA, nodeB]) {
      for (const path of filesUnder(join(node.options.stateDir, 'logs')))
        copyFileSync(path, join(out, `csi-rbd-${node.options.nodeId}-${basename(path)}`));
    }
  });

  after(async () => {
    await nodeB?.stop();
    await nodeA?.stop();
  });

  const create = async (
    name: string,
    kind: VolumeKind,
    parameters: Record<string, string>,
    bytes: number,
    mode?: string,
  ) =>
    (
      (await nodeA.call('controller', 'CreateVolume', {
        name,
        capacity_range: { required_bytes: bytes },
        volume_capabilities: [capabilityOf(kind, mode)],
        parameters: { backend: 'rbd', pool: ceph.pool, ...parameters },
        secrets,
      })) as Reply
    ).volume;

  const stage = async (
    node: CsiHarness,
    volume: Reply,
    kind: VolumeKind,
    pod: string,
    mode?: string,
  ): Promise<Attached> => {
    const staging = join(node.root, 'kubelet', 'staging', pod);
    const podDir = join(node.root, 'kubelet', 'pods', pod);
    mkdirSync(staging, { recursive: true });
    mkdirSync(podDir, { recursive: true });
    const capability = capabilityOf(kind, mode);
    await node.call('node', 'NodeStageVolume', {
      volume_id: volume.volume_id,
      staging_target_path: staging,
      volume_capability: capability,
      volume_context: volume.volume_context,
      secrets,
    });
    const target = join(podDir, 'volume');
    await node.call('node', 'NodePublishVolume', {
      volume_id: volume.volume_id,
      staging_target_path: staging,
      target_path: target,
      volume_capability: capability,
    });
    return { node, staging, target, capability };
  };

  const unstage = async (volume: Reply, attached: Attached): Promise<void> => {
    const { node, staging, target } = attached;
    await node.callRetryingAborted('node', 'NodeUnpublishVolume', {
      volume_id: volume.volume_id,
      target_path: target,
    });
    await node.callRetryingAborted('node', 'NodeUnstageVolume', {
      volume_id: volume.volume_id,
      staging_target_path: staging,
    });
  };

  const imageOf = (volume: Reply): string => `${ceph.pool}/${volume.volume_id.split(':')[5]}`;

  /** The volume's image as `rbd export` reads it, into a file of that name: its path. */
  const exportImage = (volume: Reply, file: string): string => {
    const exported = join(nodeB.root, file);
    sh(`rbd -c ${ceph.conf} export ${imageOf(volume)} ${exported} 2>/dev/null`);
    return exported;
  };

  /** The volume's key is only in its node's keyring file: never in argv, logs or other records. */
  const assertKeyConfined = (node: CsiHarness, staged: boolean): void => {
    assert.ok(!allCommandLines().some((line) => line.includes(key)), 'a key is on a command line');
    const holding = filesUnder(node.options.stateDir).filter((path) =>
      readFileSync(path, 'utf8').includes(key),
    );
    if (!staged) {
      assert.deepEqual(holding, [], 'a key stayed after unstaging');
      return;
    }
    assert.equal(holding.length, 1, `the key is in ${holding.join(', ')}`);
    const [keyring] = holding;
    assert.match(keyring!, /\/ceph\/rbd-[0-9a-f]{32}\/keyring$/);
    assert.equal(statSync(keyring!).mode & 0o777, 0o600);
    assert.equal(statSync(join(keyring!, '..')).mode & 0o777, 0o700);
  };

  it('moves an ext4 volume from node A to node B with its files; one node at a time; expands online', async () => {
    const claim = { name: 'data', namespace: 'apps' };
    const volume = await create(
      'pvc-ext4',
      'ext4',
      { clusterID: 'test', [PVC_NAME]: claim.name, [PVC_NAMESPACE]: claim.namespace },
      256 * MiB,
    );
    assert.match(volume.volume_id, /^rbd:c:test:rbd::csi-vol-[0-9a-f]{32}$/);
    assert.deepEqual(volume.accessible_topology, []);
    const onA = await stage(nodeA, volume, 'ext4', 'pod-a');
    // Its claim came with volume_context: the node's Events of the device go there.
    const staged = stagedVolumes(nodeA.options.stateDir).get(deviceNameOf(volume.volume_id));
    assert.deepEqual(staged?.claim, claim);
    const digests = [writeData('ext4', onA.target, 'one', 0), writeData('ext4', onA.target, 'two', 0)];
    assertKeyConfined(nodeA, true);

    // Node B cannot serve it while node A holds the image's exclusive lock, and keeps nothing of it.
    const refused = await nodeB.expectCode(
      'node',
      'NodeStageVolume',
      {
        volume_id: volume.volume_id,
        staging_target_path: join(nodeB.root, 'kubelet', 'staging', 'pod-early'),
        volume_capability: mountCapability('ext4'),
        volume_context: volume.volume_context,
        secrets,
      },
      'FAILED_PRECONDITION',
    );
    assert.match(refused, /held by/);
    assertKeyConfined(nodeB, false);

    // The plugin restarts (an upgrade, a crash): the staged volume is found again.
    await nodeA.restart('SIGTERM');
    const stats = await nodeA.call('node', 'NodeGetVolumeStats', {
      volume_id: volume.volume_id,
      volume_path: onA.target,
    });
    assert.equal(stats.volume_condition.abnormal, false, stats.volume_condition.message);

    const before = sizeSeenByPod('ext4', onA.target);
    const grown = await nodeA.call('controller', 'ControllerExpandVolume', {
      volume_id: volume.volume_id,
      capacity_range: { required_bytes: 512 * MiB },
      volume_capability: onA.capability,
      secrets,
    });
    assert.equal(grown.node_expansion_required, true);
    await nodeA.call('node', 'NodeExpandVolume', {
      volume_id: volume.volume_id,
      volume_path: onA.target,
      capacity_range: { required_bytes: 512 * MiB },
    });
    assert.ok(sizeSeenByPod('ext4', onA.target) > before + 200 * MiB, 'the filesystem grew');
    const device = sh(`findmnt -n -o SOURCE ${onA.staging}`).trim();
    assert.equal(Number(sh(`blockdev --getsize64 ${device}`)), 512 * MiB, 'the device grew');

    await unstage(volume, onA);
    assertKeyConfined(nodeA, false);

    const onB = await stage(nodeB, volume, 'ext4', 'pod-b');
    assert.deepEqual(
      ['one', 'two'].map((label) => readDigest('ext4', onB.target, label, 0)),
      digests,
      'node B reads what node A wrote',
    );
    assert.ok(sizeSeenByPod('ext4', onB.target) > 400 * MiB);
    const busy = await nodeA.expectCode(
      'controller',
      'DeleteVolume',
      { volume_id: volume.volume_id, secrets },
      'FAILED_PRECONDITION',
    );
    assert.match(busy, /still open on a node/);
    await unstage(volume, onB);
    await nodeA.call('controller', 'DeleteVolume', { volume_id: volume.volume_id, secrets });
    assert.throws(() => sh(`rbd -c ${ceph.conf} info ${ceph.pool}/${volume.volume_id.split(':')[5]} 2>&1`));
    assertKeyConfined(nodeB, false);
    for (const node of [nodeA, nodeB]) assertNothingLeft(node);
  });

  it('restores a snapshot of a staged ext4 volume, and clones it, on another node with the files it had', async () => {
    const volume = await create('pvc-snap-source', 'ext4', { clusterID: 'test' }, 256 * MiB);
    const onA = await stage(nodeA, volume, 'ext4', 'pod-snap-a');
    const kept = writeData('ext4', onA.target, 'kept', 0);
    // Taken while node A serves the volume: librbd has the serving device server take it.
    const { snapshot } = await nodeA.call('controller', 'CreateSnapshot', {
      name: 'snap-staged',
      source_volume_id: volume.volume_id,
      secrets,
    });
    assert.match(snapshot.snapshot_id, /^rbd-snap:c:test:rbd::[0-9a-f]{32}$/);
    writeData('ext4', onA.target, 'later', 0);
    const restore = async (name: string, source: object) =>
      (
        (await nodeA.call('controller', 'CreateVolume', {
          name,
          capacity_range: { required_bytes: 256 * MiB },
          volume_capabilities: [capabilityOf('ext4')],
          parameters: { backend: 'rbd', pool: ceph.pool, clusterID: 'test' },
          volume_content_source: source,
          secrets,
        })) as Reply
      ).volume;
    const restored = await restore('pvc-snap-restored', { snapshot: { snapshot_id: snapshot.snapshot_id } });
    const onB = await stage(nodeB, restored, 'ext4', 'pod-snap-b');
    assert.equal(readDigest('ext4', onB.target, 'kept', 0), kept, 'the restore has what the snapshot had');
    assert.ok(!existsSync(join(onB.target, 'later.bin')), 'and nothing written after it');
    await unstage(restored, onB);
    await unstage(volume, onA);
    const cloned = await restore('pvc-snap-cloned', { volume: { volume_id: volume.volume_id } });
    const clonedOnB = await stage(nodeB, cloned, 'ext4', 'pod-clone-b');
    assert.equal(readDigest('ext4', clonedOnB.target, 'kept', 0), kept);
    assert.ok(existsSync(join(clonedOnB.target, 'later.bin')), 'a clone has what its volume had');
    await unstage(cloned, clonedOnB);
    await nodeA.call('controller', 'DeleteSnapshot', { snapshot_id: snapshot.snapshot_id, secrets });
    for (const made of [volume, restored, cloned])
      await nodeA.call('controller', 'DeleteVolume', { volume_id: made.volume_id, secrets });
    const left = sh(`rbd -c ${ceph.conf} ls ${ceph.pool}; rbd -c ${ceph.conf} trash ls --all ${ceph.pool}`);
    const made = [volume, restored, cloned].map((each) => each.volume_id.split(':')[5]!);
    made.push(`csi-snap-${snapshot.snapshot_id.split(':')[5]}`);
    assert.deepEqual(
      made.filter((image) => left.includes(image)),
      [],
      'an image or trash entry is left',
    );
    for (const node of [nodeA, nodeB]) assertNothingLeft(node);
  });

  it('serves a Block volume whose class lists monitors: what the pod wrote is what rbd export reads', async () => {
    const volume = await create('pvc-block', 'block', { monitors }, 64 * MiB);
    assert.match(volume.volume_id, /^rbd:m:[0-9a-f]{16}:rbd::csi-vol-[0-9a-f]{32}$/);
    const onB = await stage(nodeB, volume, 'block', 'pod-block');
    const digest = writeData('block', onB.target, 'raw', 5);
    assertKeyConfined(nodeB, true);
    await unstage(volume, onB);
    assert.equal(exportedDigest(exportImage(volume, 'exported.img'), 5), digest);
    await nodeA.call('controller', 'DeleteVolume', { volume_id: volume.volume_id, secrets });
    for (const node of [nodeA, nodeB]) assertNothingLeft(node);
  });

  describe('multi-node access modes', () => {
    // Node A's plugin stages the volume; node C is a device daemon that serves it as node C's plugin
    // would have it (`add` with the stage's sharing). All nodes share this VM's kernel, where a
    // volume's device name exists once, so node C names its devices otherwise.
    let nodeC: string;
    let daemonC: RunningDaemon;

    before(async () => {
      nodeC = join(scratchDir('csi-rbd-c'), 'state');
      daemonC = startDaemon(BLK_CLI, nodeC, []);
      await waitFor(
        'node C to serve',
        () => announced(daemonC.output(), 'daemon').length === 1,
        TAKEOVER_TIMEOUT_MS,
      );
    });

    // Node C's devices go even when a case failed half-way: one left behind fails every later
    // file's "nothing left" check.
    after(async () => {
      for (const sharing of ['read-only', 'multi-writer'] as const)
        await removeOnC(sharing).catch(() => undefined);
      for (const pid of daemonProcesses(nodeC)) process.kill(pid, 'SIGKILL');
    });

    /** Node C serves the volume's image shared as `sharing`: the device's path. */
    const serveOnC = async (volume: Reply, sharing: RbdSharing): Promise<string> => {
      const [, , , pool, , image] = volume.volume_id.split(':');
      const served = await callDaemon(
        nodeC,
        {
          op: 'add',
          device: {
            name: `node-c-${sharing}`,
            queues: 1,
            queueSize: 128,
            blockSize: 512,
            readOnly: sharing === 'read-only',
            keepAllocation: false,
            backend: {
              kind: 'rbd',
              location: { pool: pool!, image: image! },
              client: { conf: ceph.conf, user: ceph.user, keyring: ceph.userKeyring },
              sharing,
            },
          },
        },
        TAKEOVER_TIMEOUT_MS,
      );
      return String(served.path);
    };
    const removeOnC = async (sharing: RbdSharing): Promise<void> => {
      await callDaemon(nodeC, { op: 'remove', name: `node-c-${sharing}` }, TAKEOVER_TIMEOUT_MS);
    };

    it('serves a MULTI_NODE_MULTI_WRITER Block volume on two nodes: each reads what the other wrote, through a kill of one', async () => {
      const volume = await create('pvc-shared', 'block', { clusterID: 'test' }, 64 * MiB, RWX);
      const image = imageOf(volume);
      const onA = await stage(nodeA, volume, 'block', 'pod-shared-a', RWX);
      const onC = await serveOnC(volume, 'multi-writer');
      const written = new Map<number, string>();
      /** `target` writes a MiB with O_DIRECT, then both nodes read every MiB written so far. */
      const writeAndCrossRead = (target: string, offsetMiB: number): void => {
        written.set(offsetMiB, writeData('block', target, `shared-${offsetMiB}`, offsetMiB));
        for (const reader of [onA.target, onC])
          for (const [offset, digest] of written)
            assert.equal(readDigest('block', reader, '', offset), digest, `${reader} at ${offset} MiB`);
      };
      writeAndCrossRead(onC, 2);
      const [writerC] = lockAddresses(ceph.conf, image);
      assert.ok(writerC, "librbd gave node C's writer the lock for its write");
      writeAndCrossRead(onA.target, 1);
      const [writerA] = lockAddresses(ceph.conf, image);
      assert.ok(writerA && writerA !== writerC, 'and handed it to node A for its write');

      // Node A's daemon dies holding the lock: its standby fences that client, and serves on shared.
      const killed = (await daemonStatus(nodeA.options.stateDir))!;
      process.kill(killed.pid, 'SIGKILL');
      await eventually(async () => {
        const successor = await daemonStatus(nodeA.options.stateDir);
        assert.ok(successor && successor.pid !== killed.pid && successor.devices.length === 1);
      }, TAKEOVER_TIMEOUT_MS);
      // Over what both read before: neither may answer from a cache.
      writeAndCrossRead(onA.target, 2);
      writeAndCrossRead(onC, 1);
      const fenced = blocklisted(ceph.conf);
      assert.ok(fenced.includes(writerA), `the dead writer ${writerA} is fenced:\n${fenced}`);
      assert.ok(!fenced.includes(writerC), `node C's live writer ${writerC} is not fenced:\n${fenced}`);

      const exported = exportImage(volume, 'shared.img');
      for (const [offset, digest] of written)
        assert.equal(exportedDigest(exported, offset), digest, `rbd export at ${offset} MiB`);
      await unstage(volume, onA);
      await removeOnC('multi-writer');
      await nodeA.call('controller', 'DeleteVolume', { volume_id: volume.volume_id, secrets });
      assertNothingLeft(nodeA);
    });

    it('serves a MULTI_NODE_READER_ONLY ext4 volume on two nodes read-only; single-node stages stay exclusive', async () => {
      const volume = await create('pvc-readers', 'ext4', { clusterID: 'test' }, 64 * MiB, ROX);
      const writer = await stage(nodeA, volume, 'ext4', 'pod-writer');
      const digest = writeData('ext4', writer.target, 'shared', 0);
      const refused = await nodeB.expectCode(
        'node',
        'NodeStageVolume',
        {
          volume_id: volume.volume_id,
          staging_target_path: join(nodeB.root, 'kubelet', 'staging', 'pod-second-writer'),
          volume_capability: mountCapability('ext4'),
          volume_context: volume.volume_context,
          secrets,
        },
        'FAILED_PRECONDITION',
      );
      assert.match(refused, /held by/);
      await unstage(volume, writer);

      const onA = await stage(nodeA, volume, 'ext4', 'pod-reader-a', ROX);
      const onC = await serveOnC(volume, 'read-only');
      const mountedOnC = join(nodeC, 'mounted');
      mkdirSync(mountedOnC);
      sh(`mount -t ext4 -o ro ${onC} ${mountedOnC}`);
      try {
        const readers = [
          { device: sh(`findmnt -n -o SOURCE ${onA.staging}`).trim(), files: onA.target },
          { device: onC, files: mountedOnC },
        ];
        for (const { device, files } of readers) {
          assert.equal(readDigest('ext4', files, 'shared', 0), digest);
          assert.equal(sh(`blockdev --getro ${device}`).trim(), '1', `${device} is read-only`);
          assert.throws(() => sh(`touch ${files}/new`), /Read-only file system/);
          assert.throws(
            () => sh(`dd if=/dev/zero of=${device} bs=4k count=1 oflag=direct status=none`),
            /Read-only file system|Operation not permitted|Permission denied/,
          );
        }
        assert.deepEqual(lockAddresses(ceph.conf, imageOf(volume)), [], 'readers take no lock');
      } finally {
        sh(`umount ${mountedOnC}`);
      }
      await unstage(volume, onA);
      await removeOnC('read-only');
      await nodeA.call('controller', 'DeleteVolume', { volume_id: volume.volume_id, secrets });
      for (const node of [nodeA, nodeB]) assertNothingLeft(node);
    });
  });
});

function exportedDigest(exported: string, offsetMiB: number): string {
  return sh(
    `dd if=${exported} bs=1M skip=${offsetMiB} count=1 status=none | sha256sum | cut -d' ' -f1`,
  ).trim();
}

function capabilityOf(kind: VolumeKind, mode = 'SINGLE_NODE_WRITER'): object {
  return kind === 'block' ? blockCapability(mode) : mountCapability(kind, mode);
}

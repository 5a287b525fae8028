import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import winston from 'winston';
import { RbdImage } from '../../src/backend/rbd-image';
import { log } from '../../src/log';
import { PVC_NAME, PVC_NAMESPACE, claimOfContext } from '../../src/csi/claim';
import { monitorDigest } from '../../src/csi/rbd/monitors';
import { rbdImageNameFor, rbdSnapshotImageNameFor } from '../../src/csi/rbd/volume-id';
import { useCephCluster } from '../support/ceph-cluster';
import { keyOf, monitorsOf } from '../support/ceph-client';
import { CsiHarness } from '../support/csi-harness';
import { readRbd, writeRbd } from '../support/rbd-io';

const MiB = 1024 * 1024;
const MOUNT = {
  access_type: 'mount',
  mount: { fs_type: 'ext4' },
  access_mode: { mode: 'SINGLE_NODE_WRITER' },
};
const BLOCK = { access_type: 'block', block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } };

interface RbdInfo {
  size: number;
  features: string[];
}

function filesUnder(directory: string): string[] {
  return readdirSync(directory, { recursive: true, encoding: 'utf8' })
    .map((name) => join(directory, name))
    .filter((path) => statSync(path).isFile());
}

describe('RBD volumes: the controller against a real Ceph cluster', function () {
  this.timeout(120_000);
  const ceph = useCephCluster();
  let harness: CsiHarness;
  let key: string;
  let secrets: Record<string, string>;
  let monitors: string;
  const logged: string[] = [];
  const capture = new winston.transports.Stream({
    stream: new Writable({
      write(chunk: Buffer, _encoding, done) {
        logged.push(chunk.toString());
        done();
      },
    }),
  });

  const rbd = (...args: string[]): string =>
    execFileSync('rbd', ['-c', ceph.conf, '--keyring', ceph.adminKeyring, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  const info = (image: string): RbdInfo => JSON.parse(rbd('info', '--format', 'json', image)) as RbdInfo;
  const imageOf = (id: string): string => {
    const [, , , pool, namespace, image] = id.split(':');
    return namespace ? `${pool}/${namespace}/${image}` : `${pool}/${image}`;
  };
  const create = (name: string, parameters: Record<string, string>, extra: object = {}) =>
    harness.call('controller', 'CreateVolume', {
      name,
      volume_capabilities: [MOUNT],
      parameters: { backend: 'rbd', pool: ceph.pool, ...parameters },
      secrets,
      ...extra,
    });

  before(async () => {
    key = keyOf(ceph.userKeyring);
    secrets = { userID: ceph.user, userKey: key };
    monitors = monitorsOf(ceph.conf);
    const root = join(ceph.dir, 'csi');
    execFileSync('mkdir', ['-p', root]);
    const clusterFile = join(ceph.dir, 'clusters.json');
    writeFileSync(clusterFile, JSON.stringify([{ clusterID: 'test', monitors: [monitors] }]));
    // Every call at debug level (requests included) goes to the capture, none to the console.
    log.transports.forEach((transport) => (transport.silent = true));
    log.add(capture);
    harness = await CsiHarness.start({ mode: 'controller', cephClusters: clusterFile, logLevel: 'debug' });
  });

  after(async () => {
    await harness?.stop();
    log.remove(capture);
    log.transports.forEach((transport) => (transport.silent = false));
  });

  it('creates an image named after the CO name, idempotently, and deletes it', async () => {
    const { volume } = await create(
      'pvc-a',
      { clusterID: 'test' },
      { capacity_range: { required_bytes: 64 * MiB } },
    );
    assert.match(volume.volume_id, /^rbd:c:test:rbd::csi-vol-[0-9a-f]{32}$/);
    assert.equal(Number(volume.capacity_bytes), 64 * MiB);
    assert.deepEqual(volume.accessible_topology, []);
    assert.deepEqual(volume.volume_context, { queues: '1', queueSize: '256', blockSize: '512' });
    const made = info(imageOf(volume.volume_id));
    assert.equal(made.size, 64 * MiB);
    assert.deepEqual([...made.features].sort(), [
      'deep-flatten',
      'exclusive-lock',
      'fast-diff',
      'layering',
      'object-map',
    ]);
    const again = await create(
      'pvc-a',
      { clusterID: 'test' },
      { capacity_range: { required_bytes: 64 * MiB } },
    );
    assert.equal(again.volume.volume_id, volume.volume_id);
    await harness.expectCode(
      'controller',
      'CreateVolume',
      {
        name: 'pvc-a',
        volume_capabilities: [MOUNT],
        parameters: { backend: 'rbd', pool: ceph.pool, clusterID: 'test' },
        capacity_range: { required_bytes: 128 * MiB },
        secrets,
      },
      'ALREADY_EXISTS',
    );
    await harness.call('controller', 'DeleteVolume', { volume_id: volume.volume_id, secrets });
    assert.throws(() => info(imageOf(volume.volume_id)));
    await harness.call('controller', 'DeleteVolume', { volume_id: volume.volume_id, secrets });
  });

  it('names a cluster by its monitors, found again after a restart, with the features asked for', async () => {
    const { volume } = await create('pvc-m', {
      monitors,
      imageFeatures: 'layering,exclusive-lock',
      [PVC_NAME]: 'data',
      [PVC_NAMESPACE]: 'apps',
    });
    assert.equal(volume.volume_id.split(':')[2], monitorDigest([monitors]));
    assert.equal(volume.volume_context.monitors, monitors);
    // The claim travels to the node (an RBD volume has no record there), for its Events.
    assert.deepEqual(claimOfContext(volume.volume_context), { name: 'data', namespace: 'apps' });
    assert.deepEqual([...info(imageOf(volume.volume_id)).features].sort(), ['exclusive-lock', 'layering']);
    await harness.restart();
    const grown = await harness.call('controller', 'ControllerExpandVolume', {
      volume_id: volume.volume_id,
      capacity_range: { required_bytes: 2048 * MiB },
      secrets,
    });
    assert.equal(Number(grown.capacity_bytes), 2048 * MiB);
    assert.equal(grown.node_expansion_required, true);
    assert.equal(info(imageOf(volume.volume_id)).size, 2048 * MiB);
    await harness.expectCode(
      'controller',
      'ControllerExpandVolume',
      {
        volume_id: volume.volume_id,
        capacity_range: { required_bytes: MiB, limit_bytes: 1024 * MiB },
        secrets,
      },
      'OUT_OF_RANGE',
    );
    await harness.call('controller', 'DeleteVolume', { volume_id: volume.volume_id, secrets });
  });

  it('refuses to delete an image a client holds, naming the holder', async () => {
    const { volume } = await create(
      'pvc-held',
      { clusterID: 'test' },
      { capacity_range: { required_bytes: 8 * MiB } },
    );
    const [, , , pool, , image] = volume.volume_id.split(':');
    const holder = await RbdImage.open(
      { conf: ceph.conf, keyring: ceph.adminKeyring },
      { pool: pool!, image: image! },
    );
    try {
      await holder.acquireExclusiveLock();
      const why = await harness.expectCode(
        'controller',
        'DeleteVolume',
        { volume_id: volume.volume_id, secrets },
        'FAILED_PRECONDITION',
      );
      assert.ok(why.includes(holder.myLockOwnerName()), why);
    } finally {
      await holder.close();
    }
    await harness.call('controller', 'DeleteVolume', { volume_id: volume.volume_id, secrets });
  });

  it('answers bad parameters, secrets and clusters with the codes a CO acts on', async function () {
    this.timeout(180_000);
    const base = { name: 'pvc-bad', volume_capabilities: [MOUNT], secrets };
    const rbdClass = { backend: 'rbd', pool: ceph.pool, clusterID: 'test' };
    const expect = (request: object, code: Parameters<CsiHarness['expectCode']>[3]) =>
      harness.expectCode('controller', 'CreateVolume', { ...base, ...request }, code);
    await expect({ parameters: rbdClass, secrets: {} }, 'INVALID_ARGUMENT');
    await expect({ parameters: { ...rbdClass, imageFeatures: 'layering' } }, 'INVALID_ARGUMENT');
    await expect({ parameters: { ...rbdClass, clusterID: 'elsewhere' } }, 'FAILED_PRECONDITION');
    await expect({ parameters: { ...rbdClass, pool: 'no-such-pool' } }, 'NOT_FOUND');
    const wrongKey = await expect(
      { parameters: rbdClass, secrets: { userID: ceph.user, userKey: keyOf(ceph.adminKeyring) } },
      'PERMISSION_DENIED',
    );
    assert.ok(!wrongKey.includes(keyOf(ceph.adminKeyring)));
    for (const capability of [
      { ...MOUNT, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } },
      { ...BLOCK, access_mode: { mode: 'MULTI_NODE_SINGLE_WRITER' } },
    ])
      await expect({ parameters: rbdClass, volume_capabilities: [capability] }, 'INVALID_ARGUMENT');
    await expect(
      { parameters: rbdClass, volume_content_source: { volume: { volume_id: 'rbd:c:test:rbd::csi-vol-x' } } },
      'NOT_FOUND',
    );
    await expect({ parameters: { backend: 'rbd', pool: ceph.pool, monitors: '127.0.0.1:1' } }, 'UNAVAILABLE');
  });

  it('answers what it cannot do for RBD volumes yet with a clear code, never a wrong answer', async () => {
    const sharedBlock = { ...BLOCK, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } };
    const sharedMount = { ...MOUNT, access_mode: { mode: 'MULTI_NODE_READER_ONLY' } };
    const { volume } = await create(
      'pvc-q',
      { clusterID: 'test' },
      { capacity_range: { required_bytes: 8 * MiB }, volume_capabilities: [sharedBlock, sharedMount] },
    );
    const id = volume.volume_id;
    await harness.expectCode('controller', 'ControllerGetVolume', { volume_id: id }, 'UNIMPLEMENTED');
    await harness.expectCode(
      'controller',
      'ControllerGetVolume',
      { volume_id: 'rbd:c:test:rbd::../x' },
      'NOT_FOUND',
    );
    await harness.expectCode(
      'controller',
      'GetCapacity',
      { parameters: { backend: 'rbd', pool: ceph.pool, clusterID: 'test' } },
      'UNIMPLEMENTED',
    );
    const confirmed = await harness.call('controller', 'ValidateVolumeCapabilities', {
      volume_id: id,
      volume_capabilities: [BLOCK, sharedBlock, sharedMount],
      secrets,
    });
    assert.equal(confirmed.confirmed?.volume_capabilities.length, 3, JSON.stringify(confirmed));
    const refused = await harness.call('controller', 'ValidateVolumeCapabilities', {
      volume_id: id,
      volume_capabilities: [{ ...MOUNT, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } }],
      secrets,
    });
    assert.equal(refused.confirmed, null);
    assert.match(refused.message, /MULTI_NODE_MULTI_WRITER is for Block volumes only/);
    await harness.call('controller', 'DeleteVolume', { volume_id: id, secrets });
    await harness.expectCode(
      'controller',
      'ValidateVolumeCapabilities',
      { volume_id: id, volume_capabilities: [BLOCK], secrets },
      'NOT_FOUND',
    );
    await harness.call('controller', 'DeleteVolume', { volume_id: 'rbd:not-an-id', secrets });
  });

  describe('snapshots and clones', () => {
    const admin = () => ({ conf: ceph.conf, keyring: ceph.adminKeyring });
    const locationOf = (id: string) => {
      const [, , , pool, , image] = id.split(':');
      return { pool: pool!, image: image! };
    };
    const snapshotImageOf = (id: string) => `${ceph.pool}/csi-snap-${id.split(':').pop()!}`;
    const snapshot = (name: string, sourceId: string) =>
      harness.call('controller', 'CreateSnapshot', { name, source_volume_id: sourceId, secrets });
    const fromSnapshot = (snapshotId: string) => ({ snapshot: { snapshot_id: snapshotId } });
    const fromVolume = (volumeId: string) => ({ volume: { volume_id: volumeId } });
    const listImages = () => rbd('ls', ceph.pool).split('\n').filter(Boolean);
    const trashed = () => rbd('trash', 'ls', '--all', ceph.pool).split('\n').filter(Boolean);
    const parentOf = (image: string) =>
      (JSON.parse(rbd('info', '--format', 'json', image)) as { parent?: object }).parent;
    let imagesBefore: string[];
    let trashBefore: string[];

    before(() => {
      imagesBefore = listImages();
      trashBefore = trashed();
    });

    it('restores the data a volume had when it was snapshotted, into a larger clone; clones a volume; nothing leaks', async () => {
      const first = randomBytes(MiB);
      const second = randomBytes(MiB);
      const { volume: source } = await create(
        'pvc-snap-source',
        { clusterID: 'test' },
        { capacity_range: { required_bytes: 16 * MiB } },
      );
      await writeRbd(admin(), locationOf(source.volume_id), 4096, first);
      const { snapshot: taken } = await snapshot('snap-1', source.volume_id);
      assert.match(taken.snapshot_id, /^rbd-snap:c:test:rbd::[0-9a-f]{32}$/);
      assert.equal(taken.source_volume_id, source.volume_id);
      assert.equal(Number(taken.size_bytes), 16 * MiB);
      assert.equal(taken.ready_to_use, true);
      assert.ok(Math.abs(Number(taken.creation_time.seconds) * 1000 - Date.now()) < 600_000);
      const again = await snapshot('snap-1', source.volume_id);
      assert.deepEqual(again.snapshot, taken);
      // The volume keeps no snapshot of its own: the snapshot is an image of its own.
      assert.equal(rbd('snap', 'ls', imageOf(source.volume_id)).trim(), '');
      await writeRbd(admin(), locationOf(source.volume_id), 4096, second);

      const { volume: restored } = await create(
        'pvc-restored',
        { clusterID: 'test' },
        {
          capacity_range: { required_bytes: 32 * MiB },
          volume_content_source: fromSnapshot(taken.snapshot_id),
        },
      );
      assert.equal(Number(restored.capacity_bytes), 32 * MiB);
      assert.deepEqual(restored.content_source, { ...fromSnapshot(taken.snapshot_id), type: 'snapshot' });
      assert.equal(info(imageOf(restored.volume_id)).size, 32 * MiB);
      assert.deepEqual(await readRbd(admin(), locationOf(restored.volume_id), 4096, MiB), first);
      const restoredAgain = await create(
        'pvc-restored',
        { clusterID: 'test' },
        {
          capacity_range: { required_bytes: 32 * MiB },
          volume_content_source: fromSnapshot(taken.snapshot_id),
        },
      );
      assert.equal(restoredAgain.volume.volume_id, restored.volume_id);

      const { volume: cloned } = await create(
        'pvc-cloned',
        { clusterID: 'test' },
        {
          volume_content_source: fromVolume(source.volume_id),
        },
      );
      assert.equal(Number(cloned.capacity_bytes), 16 * MiB);
      assert.deepEqual(await readRbd(admin(), locationOf(cloned.volume_id), 4096, MiB), second);
      assert.equal(rbd('snap', 'ls', imageOf(source.volume_id)).trim(), '', 'the temporary snapshot is gone');

      for (const filter of [{ snapshot_id: taken.snapshot_id }, { source_volume_id: source.volume_id }]) {
        const listed = await harness.call('controller', 'ListSnapshots', { ...filter, secrets });
        assert.deepEqual(
          listed.entries.map((entry: { snapshot: object }) => entry.snapshot),
          [taken],
        );
      }

      // The source volume goes while the snapshot and the clones read from it; then the snapshot.
      await harness.call('controller', 'DeleteVolume', { volume_id: source.volume_id, secrets });
      assert.ok(!listImages().includes(locationOf(source.volume_id).image));
      const { volume: late } = await create(
        'pvc-late',
        { clusterID: 'test' },
        {
          volume_content_source: fromSnapshot(taken.snapshot_id),
        },
      );
      assert.deepEqual(await readRbd(admin(), locationOf(late.volume_id), 4096, MiB), first);
      await harness.call('controller', 'DeleteSnapshot', { snapshot_id: taken.snapshot_id, secrets });
      await harness.call('controller', 'DeleteSnapshot', { snapshot_id: taken.snapshot_id, secrets });
      const afterDelete = await harness.call('controller', 'ListSnapshots', {
        snapshot_id: taken.snapshot_id,
        secrets,
      });
      assert.deepEqual(afterDelete.entries, []);
      assert.deepEqual(await readRbd(admin(), locationOf(restored.volume_id), 4096, MiB), first);
      await harness.expectCode(
        'controller',
        'CreateVolume',
        {
          name: 'pvc-too-late',
          volume_capabilities: [MOUNT],
          parameters: { backend: 'rbd', pool: ceph.pool, clusterID: 'test' },
          volume_content_source: fromSnapshot(taken.snapshot_id),
          secrets,
        },
        'NOT_FOUND',
      );
      for (const volume of [restored, cloned, late])
        await harness.call('controller', 'DeleteVolume', { volume_id: volume.volume_id, secrets });
      assert.deepEqual(listImages(), imagesBefore, 'every image is gone');
      assert.deepEqual(trashed(), trashBefore, 'nothing is left in the trash');
    });

    it('flattens a clone with more ancestors than maxCloneDepth, keeping its data', async () => {
      const data = randomBytes(64 * 1024);
      const { volume: base } = await create(
        'pvc-depth-0',
        { clusterID: 'test' },
        {
          capacity_range: { required_bytes: 8 * MiB },
        },
      );
      await writeRbd(admin(), locationOf(base.volume_id), 0, data);
      const { snapshot: taken } = await snapshot('snap-depth', base.volume_id);
      assert.ok(parentOf(snapshotImageOf(taken.snapshot_id)), 'the snapshot image is a clone');
      const restore = (name: string, maxCloneDepth?: string) =>
        create(
          name,
          { clusterID: 'test', ...(maxCloneDepth === undefined ? {} : { maxCloneDepth }) },
          {
            volume_content_source: fromSnapshot(taken.snapshot_id),
          },
        );
      const { volume: shallow } = await restore('pvc-depth-2');
      assert.ok(parentOf(imageOf(shallow.volume_id)), 'two ancestors are within the default');
      const { volume: flat } = await restore('pvc-depth-flat', '1');
      assert.equal(parentOf(imageOf(flat.volume_id)), undefined);
      const { volume: flatClone } = await create(
        'pvc-depth-clone',
        { clusterID: 'test', maxCloneDepth: '0' },
        {
          volume_content_source: fromVolume(base.volume_id),
        },
      );
      assert.equal(parentOf(imageOf(flatClone.volume_id)), undefined);
      for (const volume of [shallow, flat, flatClone])
        assert.deepEqual(await readRbd(admin(), locationOf(volume.volume_id), 0, data.length), data);
      await harness.call('controller', 'DeleteSnapshot', { snapshot_id: taken.snapshot_id, secrets });
      for (const volume of [base, shallow, flat, flatClone])
        await harness.call('controller', 'DeleteVolume', { volume_id: volume.volume_id, secrets });
      assert.deepEqual(listImages(), imagesBefore);
      assert.deepEqual(trashed(), trashBefore);
    });

    it('snapshots and clones a volume whose lock a serving node holds (librbd asks the holder)', async () => {
      const data = randomBytes(64 * 1024);
      const { volume } = await create(
        'pvc-served',
        { clusterID: 'test' },
        {
          capacity_range: { required_bytes: 8 * MiB },
        },
      );
      await writeRbd(admin(), locationOf(volume.volume_id), 0, data);
      const holder = await RbdImage.open(admin(), locationOf(volume.volume_id));
      let taken: { snapshot_id: string };
      let cloned: { volume_id: string };
      try {
        await holder.acquireExclusiveLock();
        taken = (await snapshot('snap-served', volume.volume_id)).snapshot;
        cloned = (
          await create(
            'pvc-served-clone',
            { clusterID: 'test' },
            {
              volume_content_source: fromVolume(volume.volume_id),
            },
          )
        ).volume;
        assert.ok(holder.isExclusiveLockOwner(), 'the holder kept its lock');
      } finally {
        await holder.close();
      }
      const { volume: restored } = await create(
        'pvc-served-restored',
        { clusterID: 'test' },
        {
          volume_content_source: fromSnapshot(taken.snapshot_id),
        },
      );
      for (const made of [cloned, restored])
        assert.deepEqual(await readRbd(admin(), locationOf(made.volume_id), 0, data.length), data);
      await harness.call('controller', 'DeleteSnapshot', { snapshot_id: taken.snapshot_id, secrets });
      for (const made of [volume, cloned, restored])
        await harness.call('controller', 'DeleteVolume', { volume_id: made.volume_id, secrets });
      assert.deepEqual(listImages(), imagesBefore);
      assert.deepEqual(trashed(), trashBefore);
    });

    it('finishes what a controller that stopped halfway left (a clone without its snapshot or origin)', async () => {
      const data = randomBytes(64 * 1024);
      const { volume } = await create(
        'pvc-halfway',
        { clusterID: 'test' },
        {
          capacity_range: { required_bytes: 8 * MiB },
        },
      );
      await writeRbd(admin(), locationOf(volume.volume_id), 0, data);
      const image = imageOf(volume.volume_id);
      // CreateSnapshot stopped after the clone: no origin, no snapshot of its own, the temporary one left.
      const snapshotImage = rbdSnapshotImageNameFor('snap-halfway');
      rbd('snap', 'create', `${image}@${snapshotImage}`);
      rbd('clone', `${image}@${snapshotImage}`, `${ceph.pool}/${snapshotImage}`);
      const { snapshot: taken } = await snapshot('snap-halfway', volume.volume_id);
      assert.equal(snapshotImageOf(taken.snapshot_id), `${ceph.pool}/${snapshotImage}`);
      assert.equal(rbd('snap', 'ls', image).trim(), '', 'the temporary snapshot is gone');
      // CreateVolume from a volume stopped after the clone.
      const cloneImage = rbdImageNameFor('pvc-halfway-clone');
      rbd('snap', 'create', `${image}@${cloneImage}`);
      rbd('clone', `${image}@${cloneImage}`, `${ceph.pool}/${cloneImage}`);
      await harness.expectCode(
        'controller',
        'CreateVolume',
        {
          name: 'pvc-halfway-clone',
          volume_capabilities: [MOUNT],
          parameters: { backend: 'rbd', pool: ceph.pool, clusterID: 'test' },
          volume_content_source: fromSnapshot(taken.snapshot_id),
          secrets,
        },
        'ALREADY_EXISTS',
      );
      const { volume: cloned } = await create(
        'pvc-halfway-clone',
        { clusterID: 'test' },
        {
          volume_content_source: fromVolume(volume.volume_id),
        },
      );
      assert.equal(imageOf(cloned.volume_id), `${ceph.pool}/${cloneImage}`);
      assert.equal(rbd('snap', 'ls', image).trim(), '', 'the temporary snapshot is gone');
      assert.deepEqual(await readRbd(admin(), locationOf(cloned.volume_id), 0, data.length), data);
      await harness.call('controller', 'DeleteSnapshot', { snapshot_id: taken.snapshot_id, secrets });
      for (const made of [volume, cloned])
        await harness.call('controller', 'DeleteVolume', { volume_id: made.volume_id, secrets });
      assert.deepEqual(listImages(), imagesBefore);
      assert.deepEqual(trashed(), trashBefore);
    });

    it('answers bad sources, names and secrets with their codes, leaving nothing behind', async () => {
      const { volume } = await create(
        'pvc-snap-codes',
        { clusterID: 'test' },
        {
          capacity_range: { required_bytes: 16 * MiB },
        },
      );
      const { volume: other } = await create(
        'pvc-snap-other',
        { clusterID: 'test' },
        {
          capacity_range: { required_bytes: 8 * MiB },
        },
      );
      const { snapshot: taken } = await snapshot('snap-codes', volume.volume_id);
      const digest = taken.snapshot_id.split(':').pop()!;
      const expectSnapshot = (request: object, code: Parameters<CsiHarness['expectCode']>[3]) =>
        harness.expectCode('controller', 'CreateSnapshot', { secrets, ...request }, code);
      await expectSnapshot({ name: 'snap-codes', source_volume_id: other.volume_id }, 'ALREADY_EXISTS');
      await expectSnapshot({ name: 'snap-x', source_volume_id: 'rbd:c:test:rbd::csi-vol-gone' }, 'NOT_FOUND');
      await expectSnapshot({ name: 'snap-x', source_volume_id: 'rbd:c:test:rbd::../x' }, 'NOT_FOUND');
      await expectSnapshot(
        { name: 'snap-x', source_volume_id: volume.volume_id, secrets: {} },
        'INVALID_ARGUMENT',
      );
      await expectSnapshot({ name: '', source_volume_id: volume.volume_id }, 'INVALID_ARGUMENT');

      const expectVolume = (name: string, request: object, code: Parameters<CsiHarness['expectCode']>[3]) =>
        harness.expectCode(
          'controller',
          'CreateVolume',
          {
            name,
            volume_capabilities: [MOUNT],
            parameters: { backend: 'rbd', pool: ceph.pool, clusterID: 'test' },
            secrets,
            ...request,
          },
          code,
        );
      const source = { volume_content_source: fromSnapshot(taken.snapshot_id) };
      await expectVolume(
        'pvc-small',
        { ...source, capacity_range: { required_bytes: 8 * MiB } },
        'OUT_OF_RANGE',
      );
      await expectVolume(
        'pvc-small',
        { ...source, capacity_range: { limit_bytes: 8 * MiB } },
        'OUT_OF_RANGE',
      );
      await expectVolume('pvc-snap-other', source, 'ALREADY_EXISTS');
      const { volume: restored } = await create('pvc-snap-restored', { clusterID: 'test' }, source);
      await expectVolume(
        'pvc-snap-restored',
        { volume_content_source: fromVolume(volume.volume_id) },
        'ALREADY_EXISTS',
      );
      await expectVolume('pvc-snap-restored', {}, 'ALREADY_EXISTS');
      await expectVolume(
        'pvc-x',
        { volume_content_source: fromSnapshot(`rbd-snap:c:test:rbd::${'0'.repeat(32)}`) },
        'NOT_FOUND',
      );
      await expectVolume(
        'pvc-x',
        { volume_content_source: fromSnapshot('rbd-snap:c:test:rbd::zz') },
        'NOT_FOUND',
      );
      await expectVolume(
        'pvc-x',
        { volume_content_source: fromSnapshot(`rbd-snap:c:elsewhere:rbd::${digest}`) },
        'INVALID_ARGUMENT',
      );
      await expectVolume(
        'pvc-x',
        { volume_content_source: fromSnapshot(`rbd-snap:c:test:other::${digest}`) },
        'INVALID_ARGUMENT',
      );
      await expectVolume(
        'pvc-x',
        { volume_content_source: fromSnapshot(`snap-${'0'.repeat(32)}`) },
        'INVALID_ARGUMENT',
      );
      await expectVolume(
        'pvc-x',
        { volume_content_source: fromVolume(`vol-${'0'.repeat(32)}`) },
        'INVALID_ARGUMENT',
      );
      await expectVolume(
        'pvc-x',
        {
          ...source,
          parameters: { backend: 'rbd', pool: ceph.pool, clusterID: 'test', imageFeatures: 'exclusive-lock' },
        },
        'INVALID_ARGUMENT',
      );
      await expectVolume(
        'pvc-x',
        {
          ...source,
          parameters: { backend: 'rbd', pool: ceph.pool, clusterID: 'test', maxCloneDepth: '-1' },
        },
        'INVALID_ARGUMENT',
      );
      await expectVolume('pvc-x', { ...source, parameters: {} }, 'INVALID_ARGUMENT');
      await harness.expectCode(
        'controller',
        'ListSnapshots',
        { snapshot_id: taken.snapshot_id },
        'INVALID_ARGUMENT',
      );
      const none = await harness.call('controller', 'ListSnapshots', {
        snapshot_id: 'rbd-snap:c:test:rbd::zz',
        secrets,
      });
      assert.deepEqual(none.entries, []);
      await harness.expectCode(
        'controller',
        'DeleteSnapshot',
        { snapshot_id: taken.snapshot_id },
        'INVALID_ARGUMENT',
      );
      await harness.call('controller', 'DeleteSnapshot', { snapshot_id: 'rbd-snap:not-one', secrets });

      await harness.call('controller', 'DeleteSnapshot', { snapshot_id: taken.snapshot_id, secrets });
      for (const made of [volume, other, restored])
        await harness.call('controller', 'DeleteVolume', { volume_id: made.volume_id, secrets });
      assert.deepEqual(listImages(), imagesBefore);
      assert.deepEqual(trashed(), trashBefore);
    });
  });

  // After every other case (nested suites run after the cases beside them).
  describe('afterwards', () => {
    it('never writes a key into its logs or records', () => {
      assert.ok(
        logged.some((line) => line.includes('CreateVolume')) &&
          logged.some((line) => line.includes('CreateSnapshot')),
        'the calls were logged',
      );
      for (const secret of [key, keyOf(ceph.adminKeyring)]) {
        assert.ok(!logged.some((line) => line.includes(secret)), 'a key reached the log');
        for (const path of filesUnder(harness.options.stateDir))
          assert.ok(!readFileSync(path, 'utf8').includes(secret), `a key reached ${path}`);
      }
    });
  });
});

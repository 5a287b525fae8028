import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import winston from 'winston';
import { RbdImage } from '../../src/backend/rbd-image';
import { log } from '../../src/log';
import { monitorDigest } from '../../src/csi/rbd/monitors';
import { useCephCluster } from '../support/ceph-cluster';
import { keyOf, monitorsOf } from '../support/ceph-client';
import { CsiHarness } from '../support/csi-harness';

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
    const { volume } = await create('pvc-m', { monitors, imageFeatures: 'layering,exclusive-lock' });
    assert.equal(volume.volume_id.split(':')[2], monitorDigest([monitors]));
    assert.equal(volume.volume_context.monitors, monitors);
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
    await expect(
      {
        parameters: rbdClass,
        volume_capabilities: [{ ...BLOCK, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } }],
      },
      'INVALID_ARGUMENT',
    );
    await expect(
      { parameters: rbdClass, volume_content_source: { volume: { volume_id: 'rbd:c:test:rbd::csi-vol-x' } } },
      'INVALID_ARGUMENT',
    );
    await expect({ parameters: { backend: 'rbd', pool: ceph.pool, monitors: '127.0.0.1:1' } }, 'UNAVAILABLE');
  });

  it('answers what it cannot do for RBD volumes yet with a clear code, never a wrong answer', async () => {
    const { volume } = await create(
      'pvc-q',
      { clusterID: 'test' },
      { capacity_range: { required_bytes: 8 * MiB } },
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
    await harness.expectCode(
      'controller',
      'CreateSnapshot',
      { source_volume_id: id, name: 'snap' },
      'UNIMPLEMENTED',
    );
    const confirmed = await harness.call('controller', 'ValidateVolumeCapabilities', {
      volume_id: id,
      volume_capabilities: [BLOCK],
      secrets,
    });
    assert.ok(confirmed.confirmed, JSON.stringify(confirmed));
    const refused = await harness.call('controller', 'ValidateVolumeCapabilities', {
      volume_id: id,
      volume_capabilities: [{ ...MOUNT, access_mode: { mode: 'MULTI_NODE_READER_ONLY' } }],
      secrets,
    });
    assert.equal(refused.confirmed, null);
    assert.match(refused.message, /MULTI_NODE_READER_ONLY/);
    await harness.call('controller', 'DeleteVolume', { volume_id: id, secrets });
    await harness.expectCode(
      'controller',
      'ValidateVolumeCapabilities',
      { volume_id: id, volume_capabilities: [BLOCK], secrets },
      'NOT_FOUND',
    );
    await harness.call('controller', 'DeleteVolume', { volume_id: 'rbd:not-an-id', secrets });
  });

  it('never writes a key into its logs or records', () => {
    assert.ok(
      logged.some((line) => line.includes('CreateVolume')),
      'the calls were logged',
    );
    for (const secret of [key, keyOf(ceph.adminKeyring)]) {
      assert.ok(!logged.some((line) => line.includes(secret)), 'a key reached the log');
      for (const path of filesUnder(harness.options.stateDir))
        assert.ok(!readFileSync(path, 'utf8').includes(secret), `a key reached ${path}`);
    }
  });
});

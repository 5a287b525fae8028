import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { CsiError } from '../../src/csi/errors';
import { CephClusters, UnknownClusterError, parseClusterFile } from '../../src/csi/rbd/clusters';
import { monitorDigest, parseMonitorList } from '../../src/csi/rbd/monitors';
import { NodeCephFiles } from '../../src/csi/rbd/node-credentials';
import { featureBits, parseRbdParameters, rbdVolumeContext, wantsRbd } from '../../src/csi/rbd/parameters';
import { cephCredentials, keyringText } from '../../src/csi/rbd/secrets';
import {
  isRbdDeviceName,
  isRbdSnapshotId,
  isRbdSnapshotImageName,
  isRbdVolumeId,
  parseRbdSnapshotId,
  parseRbdVolumeId,
  rbdDeviceName,
  rbdImageNameFor,
  rbdSnapshotIdText,
  rbdSnapshotImageNameFor,
  rbdVolumeIdText,
} from '../../src/csi/rbd/volume-id';
import { validateDeviceName } from '../../src/vdpa';

const KEY = 'AQBvaBNnAAAAABAAl1yBbPx6B8kq9dUm6nZb5g==';

/** A predicate for assert.throws: a CsiError with this gRPC code. */
function refusedWith(name: keyof typeof status): (error: unknown) => boolean {
  return (error) => error instanceof CsiError && status[error.code] === name;
}

function message(action: () => unknown): string {
  try {
    action();
  } catch (error) {
    return (error as Error).message;
  }
  assert.fail('expected a failure');
}

describe('RBD volumes: ids, parameters, clusters and secrets', () => {
  it('writes and reads volume ids, canonical and unambiguous', () => {
    const volume = {
      cluster: { kind: 'id' as const, clusterId: 'ceph-a.1' },
      location: { pool: 'my-pool', namespace: 'ns-1', image: rbdImageNameFor('pvc-1') },
    };
    const id = rbdVolumeIdText(volume);
    assert.equal(id, `rbd:c:ceph-a.1:my-pool:ns-1:${rbdImageNameFor('pvc-1')}`);
    assert.deepEqual(parseRbdVolumeId(id), volume);
    const digest = monitorDigest(['10.0.0.1:6789']);
    const plain = `rbd:m:${digest}:rbd::csi-vol-x`;
    assert.deepEqual(parseRbdVolumeId(plain), {
      cluster: { kind: 'monitors', digest },
      location: { pool: 'rbd', image: 'csi-vol-x' },
    });
    assert.equal(rbdImageNameFor('pvc-1'), rbdImageNameFor('pvc-1'));
    assert.notEqual(rbdImageNameFor('pvc-1'), rbdImageNameFor('pvc-2'));
    for (const bad of [
      'rbd:c:a:rbd:ns:img:extra',
      'rbd:x:a:rbd::img',
      'rbd:m:0123:rbd::img', // a digest is 16 hex digits
      'rbd:c:-a:rbd::img',
      'rbd:c:a:rbd::../etc',
      'rbd:c:a:rbd/x::img',
      'rbd:c:a:rbd::img/x',
      'rbd:c:a::ns:img',
      'rbd:c:a:rbd::img\n',
      'rbd:c:a:rbd::',
      `rbd:c:a:rbd::${'i'.repeat(120)}`, // over CSI's 128 bytes
      'vol-0123',
    ])
      assert.throws(() => parseRbdVolumeId(bad), Error, bad);
  });

  it('writes and reads snapshot ids, never taken for volume ids, never longer than their volumes', () => {
    const image = rbdSnapshotImageNameFor('snapshot-1');
    assert.match(image, /^csi-snap-[0-9a-f]{32}$/);
    assert.ok(isRbdSnapshotImageName(image));
    assert.ok(!isRbdSnapshotImageName(rbdImageNameFor('snapshot-1')));
    const snapshot = {
      cluster: { kind: 'id' as const, clusterId: 'prod' },
      location: { pool: 'rbd', namespace: 'team-a', image },
    };
    const id = rbdSnapshotIdText(snapshot);
    assert.equal(id, `rbd-snap:c:prod:rbd:team-a:${image.slice('csi-snap-'.length)}`);
    assert.ok(isRbdSnapshotId(id) && !isRbdVolumeId(id));
    assert.deepEqual(parseRbdSnapshotId(id), snapshot);
    assert.throws(() => parseRbdVolumeId(id), Error);
    const volumeId = rbdVolumeIdText({
      ...snapshot,
      location: { ...snapshot.location, image: rbdImageNameFor('v') },
    });
    assert.ok(Buffer.byteLength(id) < Buffer.byteLength(volumeId));
    for (const bad of [
      `rbd-snap:c:prod:rbd:team-a:${'0'.repeat(31)}`,
      `rbd-snap:c:prod:rbd:team-a:${'A'.repeat(32)}`,
      `rbd-snap:c:prod:rbd:team-a:csi-snap-${'0'.repeat(32)}`,
      `rbd-snap:c:prod:rbd::${'0'.repeat(32)}:x`,
      `rbd-snap:x:prod:rbd::${'0'.repeat(32)}`,
      `rbd:c:prod:rbd::${'0'.repeat(32)}`,
      `snap-${'0'.repeat(32)}`,
    ])
      assert.throws(() => parseRbdSnapshotId(bad), Error, bad);
  });

  it('derives a valid device name from any id, different per id', () => {
    const a = rbdDeviceName('rbd:c:a:rbd::img-a');
    const b = rbdDeviceName('rbd:c:a:rbd::img-b');
    assert.notEqual(a, b);
    assert.ok(isRbdDeviceName(a));
    assert.equal(validateDeviceName(a), a);
    assert.ok(!isRbdDeviceName('rbd-../x') && !isRbdDeviceName(`vol-${'0'.repeat(32)}`));
  });

  it('checks monitor lists in the forms mon_host takes', () => {
    assert.deepEqual(parseMonitorList('10.0.0.1:6789, mon-b.example.com:6789,[::1]:3300'), [
      '10.0.0.1:6789',
      'mon-b.example.com:6789',
      '[::1]:3300',
    ]);
    assert.deepEqual(
      parseMonitorList('[v2:10.0.0.1:3300,v1:10.0.0.1:6789],[v2:[fd00::2]:3300,v1:[fd00::2]:6789]'),
      ['[v2:10.0.0.1:3300,v1:10.0.0.1:6789]', '[v2:[fd00::2]:3300,v1:[fd00::2]:6789]'],
    );
    for (const bad of [
      '',
      '10.0.0.1',
      '10.0.0.1:0',
      '10.0.0.1:70000',
      '10.0.0.1:6789,',
      '[v2:10.0.0.1:3300',
      'host name:6789',
      'a:6789\nkey = x',
      'a:6789#x',
      '[v3:1.2.3.4:1]',
      '-bad.example:6789',
    ])
      assert.throws(() => parseMonitorList(bad), Error, JSON.stringify(bad));
    assert.equal(monitorDigest(['a:1', 'b:2']), monitorDigest(['b:2', 'a:1']));
    assert.notEqual(monitorDigest(['a:1']), monitorDigest(['a:2']));
  });

  it('parses RBD StorageClass parameters, refusing what does not fit', () => {
    assert.equal(wantsRbd(undefined), false);
    assert.equal(wantsRbd({ backend: 'file' }), false);
    assert.equal(wantsRbd({ backend: 'rbd' }), true);
    assert.throws(() => wantsRbd({ backend: 'nfs' }), refusedWith('INVALID_ARGUMENT'));
    const parsed = parseRbdParameters({
      backend: 'rbd',
      pool: 'rbd',
      radosNamespace: 'team-a',
      monitors: '10.0.0.1:6789',
      imageFeatures: 'layering,exclusive-lock',
      queues: '2',
      'csi.storage.k8s.io/pvc/name': 'data',
    });
    assert.deepEqual(parsed.cluster, { kind: 'monitors', monitors: ['10.0.0.1:6789'] });
    assert.deepEqual(parsed.location, { pool: 'rbd', namespace: 'team-a' });
    assert.equal(featureBits(parsed.features), 5n);
    assert.equal(parsed.serving.queues, 2);
    assert.deepEqual(rbdVolumeContext(parsed), {
      queues: '2',
      queueSize: '256',
      blockSize: '512',
      monitors: '10.0.0.1:6789',
    });
    const byId = parseRbdParameters({ backend: 'rbd', pool: 'rbd', clusterID: 'prod' });
    assert.equal(featureBits(byId.features), 1n | 4n | 8n | 16n | 32n);
    assert.deepEqual(rbdVolumeContext(byId), { queues: '1', queueSize: '256', blockSize: '512' });
    assert.equal(byId.maxCloneDepth, 8);
    for (const depth of ['0', '32'])
      assert.equal(
        parseRbdParameters({ ...byId.location, backend: 'rbd', clusterID: 'prod', maxCloneDepth: depth })
          .maxCloneDepth,
        Number(depth),
      );
    const base = { backend: 'rbd', pool: 'rbd', clusterID: 'prod' };
    const refused: Record<string, string>[] = [
      { backend: 'rbd', pool: 'rbd' },
      { ...base, monitors: '10.0.0.1:6789' },
      { backend: 'rbd', clusterID: 'prod' },
      { ...base, pool: '../x' },
      { ...base, radosNamespace: 'a/b' },
      { ...base, clusterID: 'a:b' },
      { ...base, imageFeatures: 'layering' },
      { ...base, imageFeatures: 'exclusive-lock,fast-diff' },
      { ...base, imageFeatures: 'exclusive-lock,journaling' },
      { ...base, overcommitRatio: '2' },
      { ...base, provisioning: 'thick' },
      { ...base, queues: '99' },
      { ...base, colour: 'blue' },
      { ...base, maxCloneDepth: '33' },
      { ...base, maxCloneDepth: '-1' },
      { ...base, maxCloneDepth: '1.5' },
      { ...base, maxCloneDepth: '' },
      { backend: 'rbd', pool: 'rbd', monitors: 'nope' },
    ];
    for (const bad of refused)
      assert.throws(() => parseRbdParameters(bad), refusedWith('INVALID_ARGUMENT'), JSON.stringify(bad));
  });

  it('reads ceph-csi cluster files and refuses what it would not apply', () => {
    const entries = parseClusterFile(
      JSON.stringify([
        { clusterID: 'prod', monitors: ['10.0.0.1:6789', '10.0.0.2:6789'], cephFS: { subvolumeGroup: 'x' } },
        { clusterID: 'lab', monitors: ['[v2:10.1.0.1:3300,v1:10.1.0.1:6789]'], rbd: { radosNamespace: '' } },
      ]),
    );
    assert.deepEqual(entries, [
      { clusterId: 'prod', monitors: ['10.0.0.1:6789', '10.0.0.2:6789'] },
      { clusterId: 'lab', monitors: ['[v2:10.1.0.1:3300,v1:10.1.0.1:6789]'] },
    ]);
    for (const [bad, why] of [
      ['{', /not JSON/],
      ['{}', /array/],
      ['[{"monitors": ["a:1"]}]', /clusterID/],
      ['[{"clusterID": "a", "monitors": "a:1"}]', /list of strings/],
      ['[{"clusterID": "a", "monitors": []}]', /non-empty/],
      ['[{"clusterID": "a", "monitors": ["a:1\\n"]}]', /monitor address/],
      ['[{"clusterID": "a", "monitors": ["a:1"], "rbd": {"radosNamespace": "ns"}}]', /radosNamespace/],
      ['[{"clusterID": "a", "monitors": ["a:1"]}, {"clusterID": "a", "monitors": ["b:1"]}]', /twice/],
    ] as const)
      assert.match(
        message(() => parseClusterFile(bad)),
        why,
      );
  });

  it('finds clusters by id in the file, read afresh, and monitor sets by digest', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vduse-rbd-clusters-'));
    try {
      const file = join(dir, 'config.json');
      const clusters = new CephClusters(file, join(dir, 'state'));
      assert.throws(() => clusters.monitorsOf({ kind: 'id', clusterId: 'prod' }), UnknownClusterError);
      writeFileSync(file, JSON.stringify([{ clusterID: 'prod', monitors: ['10.0.0.1:6789'] }]));
      assert.deepEqual(clusters.monitorsOf({ kind: 'id', clusterId: 'prod' }), ['10.0.0.1:6789']);
      assert.throws(() => clusters.monitorsOf({ kind: 'id', clusterId: 'lab' }), /lab is not in/);
      // A digest the file's monitors have is found there; one seen in a class is remembered.
      assert.deepEqual(clusters.monitorsOf({ kind: 'monitors', digest: monitorDigest(['10.0.0.1:6789']) }), [
        '10.0.0.1:6789',
      ]);
      const digest = clusters.remember(['10.9.9.9:6789', '10.9.9.8:6789']);
      const restarted = new CephClusters(undefined, join(dir, 'state'));
      assert.deepEqual(restarted.monitorsOf({ kind: 'monitors', digest }), [
        '10.9.9.9:6789',
        '10.9.9.8:6789',
      ]);
      assert.throws(
        () => restarted.monitorsOf({ kind: 'monitors', digest: '0123456789abcdef' }),
        /not known here/,
      );
      assert.throws(() => restarted.monitorsOf({ kind: 'id', clusterId: 'prod' }), /without --ceph-clusters/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('takes credentials from secrets without ever echoing the key', () => {
    assert.deepEqual(cephCredentials({ userID: 'csi-rbd', userKey: KEY }, 'x'), {
      user: 'csi-rbd',
      key: KEY,
    });
    assert.equal(cephCredentials({ userID: 'client.admin', userKey: KEY }, 'x').user, 'admin');
    assert.throws(() => cephCredentials(undefined, 'x'), refusedWith('INVALID_ARGUMENT'));
    assert.throws(() => cephCredentials({ userID: 'a' }, 'x'), refusedWith('INVALID_ARGUMENT'));
    assert.throws(
      () => cephCredentials({ userID: 'a\n[client.b]', userKey: KEY }, 'x'),
      refusedWith('INVALID_ARGUMENT'),
    );
    const badKey = `${KEY}\n[client.admin]`;
    const refused = message(() => cephCredentials({ userID: 'a', userKey: badKey }, 'x'));
    assert.ok(!refused.includes(KEY), refused);
    assert.equal(keyringText({ user: 'a', key: KEY }), `[client.a]\n\tkey = ${KEY}\n`);
  });

  it('keeps a node key in a 0600 file in a 0700 directory, gone on release', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vduse-rbd-files-'));
    try {
      const files = new NodeCephFiles(dir);
      const device = rbdDeviceName('rbd:c:a:rbd::img');
      const written = files.write(device, ['10.0.0.1:6789', '[v2:10.0.0.2:3300,v1:10.0.0.2:6789]'], {
        user: 'a',
        key: KEY,
      });
      assert.equal(statSync(join(dir, 'ceph')).mode & 0o777, 0o700);
      assert.equal(statSync(join(dir, 'ceph', device)).mode & 0o777, 0o700);
      for (const path of [written.keyring, written.conf]) assert.equal(statSync(path).mode & 0o777, 0o600);
      assert.equal(readFileSync(written.keyring, 'utf8'), keyringText({ user: 'a', key: KEY }));
      assert.equal(
        readFileSync(written.conf, 'utf8'),
        '[global]\nmon_host = 10.0.0.1:6789,[v2:10.0.0.2:3300,v1:10.0.0.2:6789]\n',
      );
      assert.ok(!readFileSync(written.conf, 'utf8').includes(KEY));
      files.remove(device);
      assert.ok(!existsSync(join(dir, 'ceph', device)));
      assert.throws(() => files.paths('../x'), /not an RBD device name/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

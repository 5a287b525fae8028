import assert from 'node:assert/strict';
import { parseServeOptions } from '../../src/cli/blk';

describe('blk serve options', () => {
  it('pairs --name with --file and --rbd in the order given, and names the cluster client', () => {
    const { devices } = parseServeOptions([
      '--rbd',
      'rbd/ns1/vol-a',
      '--file',
      '/data/b.img',
      '--rbd',
      'pool2/vol-c',
      '--name',
      'a',
      '--name',
      'b',
      '--name',
      'c',
      '--ceph-conf',
      '/etc/ceph/c.conf',
      '--id',
      'vduse',
      '--keyring',
      '/etc/ceph/k',
    ]);
    const client = { conf: '/etc/ceph/c.conf', user: 'vduse', keyring: '/etc/ceph/k' };
    assert.deepEqual(
      devices.map((device) => [device.name, device.backend]),
      [
        ['a', { kind: 'rbd', location: { pool: 'rbd', namespace: 'ns1', image: 'vol-a' }, client }],
        ['b', { kind: 'file', path: '/data/b.img' }],
        ['c', { kind: 'rbd', location: { pool: 'pool2', image: 'vol-c' }, client }],
      ],
    );
    assert.deepEqual(devices[1]!.copyDirs, ['/data'], 'an image file may be copied beside itself');
    assert.deepEqual(devices[0]!.copyDirs, [], 'an RBD image has no directory to copy into');
  });

  it('refuses RBD names that could reach a path or a command line unchecked', () => {
    for (const spec of ['rbd', 'rbd/', 'a/b/c/d', 'rbd/../x', 'rbd/-x', 'rbd/x y', 'rbd/x@snap', '/x']) {
      assert.throws(() => parseServeOptions(['--rbd', spec]), /RBD|RADOS/, spec);
    }
  });

  it('refuses Ceph options without --rbd and keep-allocation with it', () => {
    assert.throws(
      () => parseServeOptions(['--file', '/x.img', '--keyring', '/k']),
      /--ceph-conf, --id and --keyring go with --rbd/,
    );
    assert.throws(
      () => parseServeOptions(['--rbd', 'rbd/x', '--keep-allocation']),
      /--keep-allocation is for image files/,
    );
  });

  it('puts large requests on helper threads only with --large-io-helpers', () => {
    assert.equal(parseServeOptions(['--file', '/d/a.img']).devices[0]!.largeIoHelpers, false);
    const helped = parseServeOptions(['--file', '/d/a.img', '--file', '/d/b.img', '--large-io-helpers']);
    assert.deepEqual(
      helped.devices.map((device) => device.largeIoHelpers),
      [true, true],
    );
  });

  it('needs storage, one name per device and distinct names', () => {
    assert.throws(() => parseServeOptions([]), /--file or --rbd is required/);
    assert.throws(
      () => parseServeOptions(['--rbd', 'rbd/a', '--file', '/b', '--name', 'a']),
      /one --name per/,
    );
    assert.throws(
      () => parseServeOptions(['--rbd', 'rbd/a', '--rbd', 'rbd/b', '--name', 'x', '--name', 'x']),
      /must differ/,
    );
  });
});

import assert from 'node:assert/strict';
import {
  MountInfo,
  parseMountInfo,
  parseMountInfoLine,
  topmost,
  unescapeOctal,
} from '../../src/node/mountinfo';

describe('mountinfo parsing', () => {
  it('parses a line without optional fields', () => {
    const mount = parseMountInfoLine(
      '27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,errors=remount-ro',
    );
    assert.deepEqual(mount, {
      mountId: 27,
      parentId: 1,
      majorMinor: '254:0',
      root: '/',
      mountPoint: '/',
      options: ['rw', 'relatime'],
      optionalFields: [],
      fsType: 'ext4',
      source: '/dev/vda',
      superOptions: ['rw', 'discard', 'errors=remount-ro'],
    });
  });

  it('collects several optional fields up to the separator', () => {
    const mount = parseMountInfoLine(
      '36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:7 propagate_from:2 - ext3 /dev/root rw,errors=continue',
    );
    assert.deepEqual(mount.optionalFields, ['master:1', 'shared:7', 'propagate_from:2']);
    assert.equal(mount.fsType, 'ext3');
    assert.equal(mount.source, '/dev/root');
    assert.deepEqual(mount.superOptions, ['rw', 'errors=continue']);
  });

  it('decodes octal escapes in mount points, roots, sources and options', () => {
    const mount = parseMountInfoLine(
      '301 27 0:52 /dir\\040with\\011tab /mnt/my\\040volume\\134x rw,relatime shared:140 - fuse.sshfs user@host:/a\\040b rw,user_id=0',
    );
    assert.equal(mount.root, '/dir with\ttab');
    assert.equal(mount.mountPoint, '/mnt/my volume\\x');
    assert.equal(mount.source, 'user@host:/a b');
    assert.equal(mount.fsType, 'fuse.sshfs');
  });

  it('does not take an escaped " - " inside a path for the separator', () => {
    const mount = parseMountInfoLine('90 27 0:40 / /srv/a\\040-\\040b rw - tmpfs tmpfs rw,size=1024k');
    assert.equal(mount.mountPoint, '/srv/a - b');
    assert.equal(mount.fsType, 'tmpfs');
  });

  it('keeps the subtree root of a bind mount, and the underlying device', () => {
    const mount = parseMountInfoLine(
      '812 27 254:0 /var/lib/kubelet/plugins/vol-1/globalmount /var/lib/kubelet/pods/p/volumes/v/mount rw,relatime shared:1 - ext4 /dev/vda rw',
    );
    assert.equal(mount.root, '/var/lib/kubelet/plugins/vol-1/globalmount');
    assert.equal(mount.mountPoint, '/var/lib/kubelet/pods/p/volumes/v/mount');
    assert.equal(mount.majorMinor, '254:0');
    assert.equal(mount.source, '/dev/vda');
  });

  it('splits overlay super options, decoding commas escaped inside a value', () => {
    const mount = parseMountInfoLine(
      '1201 1180 0:120 / /var/lib/containerd/rootfs rw,relatime - overlay overlay ' +
        'rw,lowerdir=/l/3/fs:/l/2\\054x/fs,upperdir=/l/9/fs,workdir=/l/9/work,index=off',
    );
    assert.equal(mount.fsType, 'overlay');
    assert.deepEqual(mount.superOptions, [
      'rw',
      'lowerdir=/l/3/fs:/l/2,x/fs',
      'upperdir=/l/9/fs',
      'workdir=/l/9/work',
      'index=off',
    ]);
  });

  it('parses a whole file, skipping blank lines', () => {
    const mounts = parseMountInfo(
      [
        '22 27 0:21 / /proc rw,relatime - proc proc rw',
        '24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334460k,mode=755',
        '',
      ].join('\n'),
    );
    assert.deepEqual(
      mounts.map((m) => [m.mountId, m.mountPoint, m.fsType]),
      [
        [22, '/proc', 'proc'],
        [24, '/dev', 'devtmpfs'],
      ],
    );
  });

  it('rejects malformed lines', () => {
    assert.throws(
      () => parseMountInfoLine('27 1 254:0 / / rw,relatime ext4 /dev/vda rw'),
      /malformed mountinfo/,
    );
    assert.throws(() => parseMountInfoLine('x 1 254:0 / / rw - ext4 /dev/vda rw'), /malformed mount id/);
    assert.throws(() => parseMountInfoLine('27 1 254:0 / / rw - ext4'), /malformed mountinfo/);
  });

  it('decodes only three-digit octal escapes', () => {
    assert.equal(unescapeOctal('a\\040b\\134c\\9'), 'a b\\c\\9');
  });
});

describe('topmost', () => {
  const at = (mountId: number, parentId: number): MountInfo =>
    parseMountInfoLine(`${mountId} ${parentId} 0:1 / /mnt rw - tmpfs tmpfs rw`);

  it('picks the mount that nothing else at the same point is stacked on, whatever the order', () => {
    assert.equal(topmost([at(50, 27), at(51, 50), at(52, 51)])?.mountId, 52);
    assert.equal(topmost([at(52, 51), at(50, 27), at(51, 50)])?.mountId, 52);
  });

  it('returns null for no mounts', () => {
    assert.equal(topmost([]), null);
  });
});

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  checkFilesystem,
  detectFilesystem,
  DeviceNotBlankError,
  FilesystemMismatchError,
  growFilesystem,
  makeFilesystem,
  safeFormatAndMount,
  volumeStats,
} from '../../src/node/filesystem';
import { ensureDirectory, ensureFile, mount, removeMountTarget, unmount } from '../../src/node/mount';
import { isMountPoint, mountAt } from '../../src/node/mountinfo';
import { isToolExit, runTool, ToolError } from '../../src/node/run';
import { requireRoot, skipBecause } from '../support/skips';

const MiB = 1024 * 1024;
const CAP_SYS_RESOURCE = 24;

function hasCapability(bit: number): boolean {
  const effective = /^CapEff:\s*([0-9a-f]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return effective !== null && ((BigInt(`0x${effective[1]}`) >> BigInt(bit)) & 1n) === 1n;
}

/**
 * Real mounts on this host (the tests need root). Every target mounted here is recorded and
 * unmounted, and every loop device detached, in afterEach hooks, whatever the test's outcome.
 */
describe('node mount and filesystem helpers (real mounts, needs root)', function () {
  this.timeout(60_000);

  let dir: string;
  const targets: string[] = [];
  const loops: string[] = [];

  /** A fresh directory under the test directory, registered for unmounting. */
  function target(name: string): string {
    const p = path.join(dir, name);
    fs.mkdirSync(p, { recursive: true });
    targets.push(p);
    return p;
  }

  before(function () {
    requireRoot(this, 'mounting needs root');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vduse-node-test-'));
  });

  afterEach(async () => {
    const failures: unknown[] = [];
    const attempt = (work: Promise<void>) => work.catch((error: unknown) => void failures.push(error));
    // Newest first, so a mount made inside another one goes before it; stacked mounts one by one.
    for (const t of targets.splice(0).reverse()) {
      for (let i = 0; i < 8 && (await isMountPoint(t)); i++) await attempt(unmount(t));
    }
    for (const loop of loops.splice(0)) await attempt(runTool('losetup', ['-d', loop]).then(() => undefined));
    if (failures.length > 0) throw failures[0];
  });

  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  describe('runTool', () => {
    it('returns stdout and stderr and feeds input to stdin', async () => {
      const script = 'process.stdin.pipe(process.stdout); process.stderr.write("note")';
      const out = await runTool(process.execPath, ['-e', script], { input: 'hello' });
      assert.deepEqual(out, { stdout: 'hello', stderr: 'note' });
    });

    it('throws ToolError carrying the exit code, stderr and the command line', async () => {
      const script = 'process.stderr.write("one\\ntwo\\nthree\\n"); process.exit(3)';
      const error = await runTool(process.execPath, ['-e', script]).then(
        () => assert.fail('expected a failure'),
        (e: unknown) => e,
      );
      assert.ok(error instanceof ToolError);
      assert.equal(error.exitCode, 3);
      assert.equal(error.stderr, 'one\ntwo\nthree\n');
      assert.equal(error.timedOut, false);
      assert.match(error.message, /-e '.*' failed with exit code 3: one \| two \| three$/);
    });

    it('reports a missing tool and a timeout without an exit code', async () => {
      await assert.rejects(runTool('no-such-tool-vduse-csi', []), (e: unknown) => {
        return e instanceof ToolError && e.exitCode === null && /could not run: ENOENT/.test(e.message);
      });
      await assert.rejects(runTool('sleep', ['10'], { timeoutMs: 100 }), (e: unknown) => {
        return e instanceof ToolError && e.timedOut && e.exitCode === null && /timed out/.test(e.message);
      });
    });

    it("lets callers recognise blkid's 'nothing found' (exit 2)", async () => {
      const blank = path.join(dir, 'blank.img');
      fs.writeFileSync(blank, Buffer.alloc(MiB));
      await assert.rejects(runTool('blkid', ['-p', blank]), (e: unknown) => isToolExit(e, 2));
    });
  });

  describe('mount and unmount without a device (tmpfs, bind)', () => {
    it('mounts tmpfs, sees it in mountinfo, unmounts, and unmounting again is a no-op', async () => {
      const t = target('tmpfs');
      await mount('tmpfs', t, { fsType: 'tmpfs', options: ['size=4m', 'mode=0700'] });
      const info = await mountAt(t);
      assert.equal(info?.fsType, 'tmpfs');
      assert.equal(info?.mountPoint, fs.realpathSync(t));
      assert.ok(info?.superOptions.includes('size=4096k'), `super options: ${info?.superOptions.join(',')}`);
      await unmount(t);
      assert.equal(await isMountPoint(t), false);
      await unmount(t);
      await unmount(path.join(dir, 'never-existed'));
    });

    it('finds a mount point whose path has spaces, through a symlink', async () => {
      const t = target('with space -  x');
      await mount('tmpfs', t, { fsType: 'tmpfs', options: ['size=1m'] });
      const link = path.join(dir, 'link-to-space');
      fs.symlinkSync(t, link);
      assert.equal((await mountAt(link))?.mountPoint, fs.realpathSync(t));
      assert.equal(await isMountPoint(dir), false);
    });

    it('reports the topmost of stacked mounts, and the one below after unmounting it', async () => {
      const t = target('stacked');
      await mount('tmpfs', t, { fsType: 'tmpfs', options: ['size=1m'] });
      const lower = await mountAt(t);
      await mount('tmpfs', t, { fsType: 'tmpfs', options: ['size=2m'] });
      const upper = await mountAt(t);
      assert.notEqual(upper?.mountId, lower?.mountId);
      assert.equal(upper?.parentId, lower?.mountId);
      await unmount(t);
      assert.equal((await mountAt(t))?.mountId, lower?.mountId);
    });

    it('makes a read-only bind mount that refuses writes with EROFS while the source stays writable', async () => {
      const source = target('bind-source');
      await mount('tmpfs', source, { fsType: 'tmpfs', options: ['size=1m'] });
      fs.mkdirSync(path.join(source, 'sub'));
      fs.writeFileSync(path.join(source, 'sub', 'data'), 'original');

      const rw = target('bind-rw');
      await mount(path.join(source, 'sub'), rw, { bind: true });
      fs.writeFileSync(path.join(rw, 'written-through-bind'), 'x');
      assert.equal(fs.readFileSync(path.join(source, 'sub', 'written-through-bind'), 'utf8'), 'x');
      assert.equal((await mountAt(rw))?.root, '/sub');

      const ro = target('bind-ro');
      await mount(path.join(source, 'sub'), ro, { bind: true, readOnly: true, options: ['nosuid'] });
      const info = await mountAt(ro);
      assert.ok(info?.options.includes('ro'), `options: ${info?.options.join(',')}`);
      assert.ok(info?.options.includes('nosuid'));
      assert.equal(fs.readFileSync(path.join(ro, 'data'), 'utf8'), 'original');
      assert.throws(() => fs.writeFileSync(path.join(ro, 'data'), 'changed'), { code: 'EROFS' });
      assert.throws(() => fs.writeFileSync(path.join(ro, 'new'), 'x'), { code: 'EROFS' });
      fs.writeFileSync(path.join(source, 'sub', 'data'), 'still writable');
    });

    it('undoes the bind when the read-only remount fails', async () => {
      // mount(8) accepts any option on a bind remount, so the failure is injected: a `mount` found
      // first on PATH that fails remounts and hands everything else to the real one.
      const realMount = ['/usr/bin/mount', '/bin/mount'].find((p) => fs.existsSync(p));
      assert.ok(realMount, 'mount(8) not found');
      const fakeBin = path.join(dir, 'fake-bin');
      fs.mkdirSync(fakeBin, { recursive: true });
      fs.writeFileSync(
        path.join(fakeBin, 'mount'),
        `#!/bin/sh\ncase "$*" in *remount*) echo "mount: injected failure" >&2; exit 32;; esac\nexec ${realMount} "$@"\n`,
        { mode: 0o755 },
      );
      const source = target('bad-remount-source');
      const t = target('bad-remount');
      const savedPath = process.env.PATH;
      process.env.PATH = `${fakeBin}:${savedPath ?? ''}`;
      try {
        await assert.rejects(mount(source, t, { bind: true, readOnly: true }), /injected failure/);
      } finally {
        process.env.PATH = savedPath;
      }
      assert.equal(await isMountPoint(t), false, 'the writable bind was undone');
    });

    it('reports filesystem usage and inodes of a mounted filesystem', async () => {
      const t = target('stats');
      await mount('tmpfs', t, { fsType: 'tmpfs', options: ['size=16m', 'nr_inodes=1000'] });
      const empty = await volumeStats(t);
      assert.equal(empty.kind, 'filesystem');
      if (empty.kind !== 'filesystem') return;
      assert.equal(empty.totalBytes, 16 * MiB);
      assert.equal(empty.usedBytes, 0);
      assert.equal(empty.availableBytes, 16 * MiB);
      assert.equal(empty.totalInodes, 1000);
      assert.equal(empty.usedInodes + empty.freeInodes, 1000);

      for (let i = 0; i < 10; i++) fs.writeFileSync(path.join(t, `f${i}`), Buffer.alloc(MiB, 1));
      const used = await volumeStats(t);
      assert.ok(used.kind === 'filesystem');
      assert.equal(used.usedBytes, 10 * MiB);
      assert.equal(used.availableBytes, 6 * MiB);
      assert.equal(used.usedInodes, empty.usedInodes + 10);
    });
  });

  describe('mount targets', () => {
    it('ensureDirectory and ensureFile create what is missing and accept what is there', async () => {
      const d = path.join(dir, 'targets', 'a', 'b');
      await ensureDirectory(d);
      await ensureDirectory(d);
      assert.ok(fs.statSync(d).isDirectory());

      const f = path.join(dir, 'targets', 'c', 'block-target');
      await ensureFile(f);
      fs.writeFileSync(f, 'keep');
      await ensureFile(f);
      assert.equal(fs.readFileSync(f, 'utf8'), 'keep', 'an existing file is not truncated');

      await assert.rejects(ensureDirectory(f));
      await assert.rejects(ensureFile(d), /neither a regular file nor a block device/);
    });

    it('removeMountTarget removes only empty, unmounted directories and empty regular files', async () => {
      const mounted = target('remove-mounted');
      await mount('tmpfs', mounted, { fsType: 'tmpfs', options: ['size=1m'] });
      await assert.rejects(removeMountTarget(mounted), /still mounted/);
      assert.ok(fs.existsSync(mounted));
      await unmount(mounted);
      await removeMountTarget(mounted);
      assert.equal(fs.existsSync(mounted), false);
      await removeMountTarget(mounted); // already gone

      const full = path.join(dir, 'remove-full');
      fs.mkdirSync(full);
      fs.writeFileSync(path.join(full, 'data'), 'x');
      await assert.rejects(removeMountTarget(full), { code: 'ENOTEMPTY' });

      const nonEmptyFile = path.join(dir, 'remove-nonempty-file');
      fs.writeFileSync(nonEmptyFile, 'x');
      await assert.rejects(removeMountTarget(nonEmptyFile), /not an empty directory or empty regular file/);

      const link = path.join(dir, 'remove-link');
      fs.symlinkSync(full, link);
      await assert.rejects(removeMountTarget(link), /symbolic link/);

      const emptyFile = path.join(dir, 'remove-empty-file');
      fs.writeFileSync(emptyFile, '');
      await removeMountTarget(emptyFile);
      assert.equal(fs.existsSync(emptyFile), false);
      assert.ok(fs.existsSync(path.join(full, 'data')));
    });
  });

  describe('filesystems on loop devices', () => {
    let loopUnusable: string | null = null;

    before(async () => {
      const probe = path.join(dir, 'loop-probe.img');
      fs.writeFileSync(probe, Buffer.alloc(MiB));
      try {
        const device = (await runTool('losetup', ['--find', '--show', probe])).stdout.trim();
        await runTool('losetup', ['-d', device]);
      } catch (error) {
        loopUnusable = error instanceof Error ? error.message : String(error);
      }
    });

    beforeEach(function () {
      // These parts then run only in the VM, through the CSI tests.
      if (loopUnusable !== null) skipBecause(this, `loop devices unusable here: ${loopUnusable}`);
    });

    /** A sparse image of `size` bytes attached to a free loop device. */
    async function loopDevice(name: string, size: number): Promise<{ device: string; image: string }> {
      const image = path.join(dir, `${name}.img`);
      fs.writeFileSync(image, '');
      fs.truncateSync(image, size);
      const device = (await runTool('losetup', ['--find', '--show', image])).stdout.trim();
      loops.push(device);
      return { device, image };
    }

    async function growLoop(loop: { device: string; image: string }, size: number): Promise<void> {
      fs.truncateSync(loop.image, size);
      await runTool('losetup', ['-c', loop.device]);
    }

    it('detects blank devices and refuses missing ones instead of calling them blank', async () => {
      const { device } = await loopDevice('blank', 64 * MiB);
      assert.equal(await detectFilesystem(device), null);
      await assert.rejects(detectFilesystem(path.join(dir, 'no-such-device')), { code: 'ENOENT' });
    });

    it('formats a blank device as ext4, mounts it, and is idempotent when staged again', async () => {
      const { device } = await loopDevice('ext4', 64 * MiB);
      const t = target('ext4');
      await safeFormatAndMount(device, t, 'ext4', { label: 'vol-ext4', mountOptions: ['noatime'] });
      assert.equal(await detectFilesystem(device), 'ext4');
      const info = await mountAt(t);
      assert.equal(info?.fsType, 'ext4');
      assert.equal(info?.source, device);
      assert.ok(info?.options.includes('noatime'));
      const label = await runTool('blkid', ['-p', '-o', 'value', '-s', 'LABEL', device]);
      assert.equal(label.stdout.trim(), 'vol-ext4');

      await safeFormatAndMount(device, t, 'ext4');
      assert.equal((await mountAt(t))?.mountId, info?.mountId, 'no second mount');

      const other = target('ext4-other');
      await mount('tmpfs', other, { fsType: 'tmpfs', options: ['size=1m'] });
      await assert.rejects(safeFormatAndMount(device, other, 'ext4'), /already a mount point of tmpfs/);
    });

    it('refuses to reformat a formatted device as another type, and leaves its data intact', async () => {
      const { device } = await loopDevice('refuse', 64 * MiB);
      const t = target('refuse');
      await safeFormatAndMount(device, t, 'ext4');
      fs.writeFileSync(path.join(t, 'precious'), 'data');
      await unmount(t);

      await assert.rejects(safeFormatAndMount(device, t, 'xfs'), (e: unknown) => {
        assert.ok(e instanceof FilesystemMismatchError);
        assert.equal(e.message, `device ${device} has ext4, volume asked for xfs`);
        return true;
      });
      assert.equal(await isMountPoint(t), false);
      await assert.rejects(makeFilesystem(device, 'xfs'), DeviceNotBlankError);
      await assert.rejects(makeFilesystem(device, 'ext4'), DeviceNotBlankError);

      assert.equal(await detectFilesystem(device), 'ext4');
      await safeFormatAndMount(device, t, 'ext4');
      assert.equal(fs.readFileSync(path.join(t, 'precious'), 'utf8'), 'data');
    });

    it('refuses a device that carries a partition table and no filesystem', async () => {
      const { device } = await loopDevice('partitioned', 64 * MiB);
      // A minimal MBR with one Linux partition: blkid -p reports PTTYPE=dos and no TYPE.
      const mbr = Buffer.alloc(512);
      mbr[446 + 4] = 0x83;
      mbr.writeUInt32LE(2048, 446 + 8);
      mbr.writeUInt32LE(4096, 446 + 12);
      mbr.writeUInt16LE(0xaa55, 510);
      const fd = fs.openSync(device, 'r+');
      try {
        fs.writeSync(fd, mbr, 0, mbr.length, 0);
      } finally {
        fs.closeSync(fd);
      }
      assert.equal(await detectFilesystem(device), 'dos partition table');
      await assert.rejects(
        safeFormatAndMount(device, target('partitioned'), 'ext4'),
        FilesystemMismatchError,
      );
    });

    it('grows a mounted ext4 after its device grows', async function () {
      if (!hasCapability(CAP_SYS_RESOURCE))
        skipBecause(this, 'no CAP_SYS_RESOURCE, which online ext4 resize needs (the next case covers that)');
      const loop = await loopDevice('grow-ext4', 64 * MiB);
      const t = target('grow-ext4');
      await safeFormatAndMount(loop.device, t, 'ext4');
      const before = await volumeStats(t);
      assert.ok(before.kind === 'filesystem');
      assert.ok(before.totalBytes > 50 * MiB && before.totalBytes <= 64 * MiB, `total ${before.totalBytes}`);
      assert.ok(before.availableBytes < before.totalBytes);
      assert.ok(before.usedBytes > 0 && before.usedInodes > 0 && before.freeInodes > 0);

      await growLoop(loop, 128 * MiB);
      await growFilesystem(loop.device, t, 'ext4');
      const after = await volumeStats(t);
      assert.ok(after.kind === 'filesystem');
      assert.ok(
        after.totalBytes > before.totalBytes + 60 * MiB,
        `total ${before.totalBytes} -> ${after.totalBytes}`,
      );
      await growFilesystem(loop.device, t, 'ext4'); // nothing left to grow: still fine
    });

    it('explains a refused online ext4 resize by the missing CAP_SYS_RESOURCE', async function () {
      if (hasCapability(CAP_SYS_RESOURCE))
        skipBecause(
          this,
          'CAP_SYS_RESOURCE is there; this case needs it missing (the previous case grows ext4)',
        );
      const loop = await loopDevice('grow-ext4-eperm', 64 * MiB);
      const t = target('grow-ext4-eperm');
      await safeFormatAndMount(loop.device, t, 'ext4');
      await growLoop(loop, 128 * MiB);
      await assert.rejects(growFilesystem(loop.device, t, 'ext4'), /needs CAP_SYS_RESOURCE/);
    });

    it('formats, mounts and grows xfs (which needs at least 300 MB)', async () => {
      const small = await loopDevice('xfs-small', 64 * MiB);
      await assert.rejects(makeFilesystem(small.device, 'xfs'), /Filesystem must be larger than 300MB/);

      const loop = await loopDevice('xfs', 512 * MiB);
      const t = target('xfs');
      await safeFormatAndMount(loop.device, t, 'xfs', { label: 'vol-xfs' });
      assert.equal(await detectFilesystem(loop.device), 'xfs');
      assert.equal((await mountAt(t))?.fsType, 'xfs');
      const before = await volumeStats(t);
      assert.ok(before.kind === 'filesystem');

      await growLoop(loop, 768 * MiB);
      await growFilesystem(loop.device, t, 'xfs');
      const after = await volumeStats(t);
      assert.ok(after.kind === 'filesystem');
      assert.ok(
        after.totalBytes > before.totalBytes + 200 * MiB,
        `total ${before.totalBytes} -> ${after.totalBytes}`,
      );
    });

    it('rejects labels longer than the filesystem allows before touching the device', async () => {
      const { device } = await loopDevice('label', 64 * MiB);
      await assert.rejects(
        makeFilesystem(device, 'ext4', { label: 'x'.repeat(17) }),
        /longer than ext4 allows/,
      );
      assert.equal(await detectFilesystem(device), null);
    });

    it('refuses to mount an ext4 with errors that fsck.ext4 -p cannot repair', async () => {
      const { device } = await loopDevice('broken', 64 * MiB);
      await makeFilesystem(device, 'ext4');
      await checkFilesystem(device, 'ext4');
      // Wipe the root directory's inode, and mark the filesystem not clean (as after a crash):
      // fsck -p skips a filesystem whose clean flag is set.
      await runTool('debugfs', ['-w', '-f', '-', device], { input: 'clri <2>\nssv state 0\n' });
      await assert.rejects(checkFilesystem(device, 'ext4'), /could not repair/);
      const t = target('broken');
      await assert.rejects(safeFormatAndMount(device, t, 'ext4'), /could not repair/);
      assert.equal(await isMountPoint(t), false);
    });

    it('bind-mounts a block device onto a file and reports its size as a block volume', async () => {
      const loop = await loopDevice('block', 64 * MiB);
      const file = path.join(dir, 'block-volume', 'dev');
      await ensureFile(file);
      targets.push(file);
      await mount(loop.device, file, { bind: true });
      assert.ok(fs.statSync(file).isBlockDevice());
      await ensureFile(file); // a device bound over the file is accepted
      assert.deepEqual(await volumeStats(file), { kind: 'block', totalBytes: 64 * MiB });
      assert.deepEqual(await volumeStats(loop.device), { kind: 'block', totalBytes: 64 * MiB });
      await assert.rejects(removeMountTarget(file), /still mounted/);

      await unmount(file);
      await removeMountTarget(file);
      assert.equal(fs.existsSync(file), false);
    });

    it('shows that a read-only bind mount does not make a device node read-only', async () => {
      // The kernel checks a mount's ro flag for files and directories, not for device nodes, so a
      // read-only block volume must be enforced elsewhere (e.g. a read-only virtio-blk device).
      const loop = await loopDevice('block-ro', 64 * MiB);
      const file = path.join(dir, 'block-ro-volume');
      await ensureFile(file);
      targets.push(file);
      await mount(loop.device, file, { bind: true, readOnly: true });
      const info = await mountAt(file);
      assert.ok(info?.options.includes('ro'));
      assert.equal(info?.fsType, 'devtmpfs');
      assert.equal(info?.root, `/${path.basename(loop.device)}`);
      const fd = fs.openSync(file, 'r+');
      try {
        assert.equal(fs.writeSync(fd, Buffer.alloc(512, 7), 0, 512, 0), 512);
      } finally {
        fs.closeSync(fd);
      }
    });
  });
});

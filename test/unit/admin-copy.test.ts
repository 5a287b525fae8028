import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import type { Server } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { AdminServed, answerAdmin } from '../../src/cli/blk';
import { callAdmin, listenAdmin } from '../../src/daemon/admin-socket';
import { setLogLevel } from '../../src/log';

/*
 * The admin op `copy` (point-in-time snapshots and clones of a live volume) writes as root: only a
 * new file directly in one of the server's copy directories, never elsewhere through `..` or a
 * symlink, never over something that is there. Through the real admin socket and its answers, with
 * a stand-in for the device (no kernel needed).
 */
describe('admin op copy: confined to the copy directories', () => {
  let root: string;
  let data: string;
  let outside: string;
  let image: string;
  let content: Buffer;
  let socket: string;
  let admin: Server | undefined;
  let paused = 0;
  /** Outside the temporary tree: what an unconfined copy would make. */
  const etcTarget = `/etc/vduse-csi-admin-copy-test-${process.pid}.img`;

  const copy = (target: string): Promise<Record<string, unknown>> =>
    callAdmin(socket, { op: 'copy', target }, 30_000);

  /** Every file and symlink under a directory, relative to it, sorted. */
  const tree = (dir: string): string[] =>
    fs
      .readdirSync(dir, { recursive: true, encoding: 'utf8' })
      .filter((entry) => !fs.statSync(path.join(dir, entry), { throwIfNoEntry: false })?.isDirectory())
      .sort();

  before(async () => {
    setLogLevel('warn');
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'vduse-admin-copy-'));
    data = path.join(root, 'data');
    outside = path.join(root, 'outside');
    for (const dir of ['volumes', 'snapshots']) fs.mkdirSync(path.join(data, dir), { recursive: true });
    fs.mkdirSync(outside);
    image = path.join(data, 'volumes', 'vol-a.img');
    content = randomBytes(64 * 1024);
    fs.writeFileSync(image, content);
    const server: AdminServed = {
      options: {
        name: 'vol-a',
        backend: { kind: 'file', path: image },
        queues: 1,
        queueSize: 256,
        blockSize: 512,
        readOnly: false,
        keepAllocation: false,
        copyDirs: [path.join(data, 'volumes'), path.join(data, 'snapshots')],
        logLevel: 'error',
        stateDir: root,
      },
      path: '/dev/vdz',
      capacityBytes: content.length,
      resize: () => Promise.resolve(),
      whilePaused: <T>(action: () => Promise<T>): Promise<T> => {
        paused++;
        return action();
      },
    };
    socket = path.join(root, 'admin.sock');
    admin = await listenAdmin(socket, (request) => answerAdmin(server, request, () => undefined));
  });

  after(() => {
    setLogLevel('info');
    admin?.close();
    fs.rmSync(etcTarget, { force: true });
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('copies into the snapshots and volumes directories', async () => {
    await copy(path.join(data, 'snapshots', 'snap-a.img'));
    await copy(path.join(data, 'volumes', 'vol-b.img'));
    assert.deepEqual(fs.readFileSync(path.join(data, 'snapshots', 'snap-a.img')), content);
    assert.deepEqual(fs.readFileSync(path.join(data, 'volumes', 'vol-b.img')), content);
    assert.equal(paused, 2);
  });

  /** The copy is refused with a message naming the target and why, and nothing changes anywhere. */
  async function assertRefused(target: string, reason: RegExp): Promise<void> {
    const before = { data: tree(data), outside: tree(outside), paused };
    await assert.rejects(copy(target), (error: Error) => {
      assert.ok(error.message.startsWith(`refusing to copy to ${JSON.stringify(target)}: `), error.message);
      assert.match(error.message, reason);
      return true;
    });
    assert.deepEqual({ data: tree(data), outside: tree(outside), paused }, before);
  }

  it('refuses a target outside the data directory (/etc)', async () => {
    await assertRefused(etcTarget, /not one copies may go to/);
    assert.equal(fs.existsSync(etcTarget), false);
  });

  it('refuses .. escapes, even ones that would end in a copy directory', async () => {
    await assertRefused(path.join(data, 'snapshots') + '/../../outside/escaped.img', /\.\. components/);
    await assertRefused(path.join(data, 'snapshots') + '/../volumes/vol-c.img', /\.\. components/);
    await assertRefused(path.join(data, 'snapshots') + '/./snap-b.img', /\. or \.\. components/);
  });

  it('refuses a symlinked directory inside a copy directory that leads out of it', async () => {
    fs.symlinkSync(outside, path.join(data, 'snapshots', 'elsewhere'));
    try {
      await assertRefused(
        path.join(data, 'snapshots', 'elsewhere', 'snap-c.img'),
        /not one copies may go to/,
      );
    } finally {
      fs.rmSync(path.join(data, 'snapshots', 'elsewhere'));
    }
  });

  it('refuses a symlink at the target, and leaves the file it points to as it was', async () => {
    const victim = path.join(outside, 'victim');
    fs.writeFileSync(victim, 'precious');
    const link = path.join(data, 'snapshots', 'snap-d.img');
    fs.symlinkSync(victim, link);
    try {
      await assertRefused(link, /something is there already/);
      assert.equal(fs.readFileSync(victim, 'utf8'), 'precious');
      assert.equal(fs.lstatSync(link).isSymbolicLink(), true);
    } finally {
      fs.rmSync(link);
      fs.rmSync(victim);
    }
  });

  it('refuses to replace an existing image', async () => {
    const existing = path.join(data, 'volumes', 'vol-d.img');
    fs.writeFileSync(existing, 'another volume');
    await assertRefused(existing, /never replaces a file/);
    assert.equal(fs.readFileSync(existing, 'utf8'), 'another volume');
  });

  it('refuses a relative target at the socket', async () => {
    await assert.rejects(copy('snapshots/snap-e.img'), /absolute target path/);
  });
});

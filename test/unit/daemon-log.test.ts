import assert from 'node:assert/strict';
import { closeSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parsePluginOptions } from '../../src/cli/plugin';
import { DaemonLog } from '../../src/csi/daemon-log';

describe('DaemonLog (the log of the daemons a node plugin starts)', () => {
  let root: string;
  beforeEach(() => (root = mkdtempSync(join(tmpdir(), 'vduse-daemon-log-'))));
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('past its limit moves to .1 and starts again empty, and the daemon writing it keeps writing at the start', async () => {
    const log = new DaemonLog(join(root, 'logs', 'daemon.log'), 100);
    const daemon = log.openForDaemon();
    assert.deepEqual(daemon.start, { offset: 0, rotations: 0 });
    assert.equal(statSync(log.path).mode & 0o777, 0o600);
    const first = `${'{"message":"early"}\n'.repeat(5)}`;
    writeSync(daemon.fd, first);
    assert.equal(await log.rotateIfFull(), false, 'at the limit: kept');
    writeSync(daemon.fd, '{"message":"over"}\n');
    assert.equal(await log.rotateIfFull(), true);
    assert.equal(readFileSync(`${log.path}.1`, 'utf8'), `${first}{"message":"over"}\n`);
    assert.equal(statSync(`${log.path}.1`).mode & 0o777, 0o600);
    assert.equal(readFileSync(log.path, 'utf8'), '');
    writeSync(daemon.fd, '{"message":"after"}\n');
    assert.equal(
      readFileSync(log.path, 'utf8'),
      '{"message":"after"}\n',
      'appended at the new start, no hole',
    );
    closeSync(daemon.fd);
  });

  it('replaces the previous .1, so at most twice the limit is kept', async () => {
    const log = new DaemonLog(join(root, 'daemon.log'), 10);
    const daemon = log.openForDaemon();
    for (const round of ['one', 'two']) {
      writeSync(daemon.fd, `${round.repeat(10)}\n`);
      assert.equal(await log.rotateIfFull(), true);
    }
    assert.equal(readFileSync(`${log.path}.1`, 'utf8'), `${'two'.repeat(10)}\n`);
    assert.equal(existsSync(`${log.path}.2`), false);
    closeSync(daemon.fd);
  });

  it("reads a daemon's lines from where they start, and all of them once the log was rotated under it", async () => {
    const log = new DaemonLog(join(root, 'daemon.log'), 10);
    const earlier = log.openForDaemon();
    writeSync(earlier.fd, '{"daemon":"old"}\n');
    const later = log.openForDaemon();
    writeSync(later.fd, '{"standby":"daemon","pid":7}\n');
    assert.equal(log.since(later.start), '{"standby":"daemon","pid":7}\n');
    await log.rotateIfFull();
    writeSync(later.fd, '{"message":"serving"}\n');
    assert.equal(log.since(later.start), '{"message":"serving"}\n');
    assert.equal(log.lastLines(), '{"message":"serving"}');
    closeSync(earlier.fd);
    closeSync(later.fd);
  });

  it('a log that does not exist yet is neither rotated nor an error', async () => {
    const log = new DaemonLog(join(root, 'none', 'daemon.log'), 10);
    assert.equal(await log.rotateIfFull(), false);
    assert.equal(log.lastLines(), '(no log)');
  });
});

describe('plugin --daemon-log-max-size', () => {
  const required = [
    '--endpoint',
    'unix:///tmp/csi.sock',
    '--node-id',
    'n1',
    '--data-dir',
    '/d',
    '--state-dir',
    '/s',
  ];

  it('is 32 MiB unless given, takes a size with a unit, and refuses less than 64 KiB', () => {
    assert.equal(parsePluginOptions(required).daemonLogMaxBytes, 32 * 1024 * 1024);
    assert.equal(
      parsePluginOptions([...required, '--daemon-log-max-size', '1G']).daemonLogMaxBytes,
      1024 ** 3,
    );
    assert.throws(
      () => parsePluginOptions([...required, '--daemon-log-max-size', '4K']),
      /--daemon-log-max-size must be at least 64K, got 4K/,
    );
    assert.throws(() => parsePluginOptions([...required, '--daemon-log-max-size', 'lots']), /not a size/);
  });
});

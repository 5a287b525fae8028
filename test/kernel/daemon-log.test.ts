import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CsiHarness, MiB, blockCapability } from '../support/csi-harness';
import { assertNothingLeft } from '../e2e/kubelet-flow';
import { eventually } from '../support/eventually';
import { CLI, requireVduse, scratchDir } from './support';

const LOG_LIMIT = 64 * 1024;

describe('the log of the device daemon a node plugin starts', function () {
  this.timeout(600_000);
  let csi: CsiHarness | undefined;

  after(async () => {
    await csi?.stop();
  });

  it('is rotated past --daemon-log-max-size while the daemon runs, and the daemon goes on writing at the start of the emptied log', async () => {
    requireVduse();
    csi = await CsiHarness.start({
      cli: [process.execPath, CLI],
      root: scratchDir('daemon-log'),
      mode: 'all',
      standby: false,
      logLevel: 'info',
      daemonLogMaxBytes: LOG_LIMIT,
    });
    const capability = blockCapability();
    const { volume } = await csi.call('controller', 'CreateVolume', {
      name: 'logged',
      capacity_range: { required_bytes: 16 * MiB },
      volume_capabilities: [capability],
    });
    const staging = join(csi.root, 'staging');
    mkdirSync(staging);
    await csi.call('node', 'NodeStageVolume', {
      volume_id: volume.volume_id,
      staging_target_path: staging,
      volume_capability: capability,
    });
    const path = join(csi.options.stateDir, 'logs', 'daemon.log');
    assert.match(readFileSync(path, 'utf8'), /"message":"serving"/);

    // A daemon that logged a lot: the plugin's supervision (every second) finds the log too big.
    const filler = `${JSON.stringify({ level: 'info', message: 'filler' })}\n`.repeat(LOG_LIMIT / 32);
    appendFileSync(path, filler);
    await eventually(async () => {
      assert.ok(existsSync(`${path}.1`), 'daemon.log.1');
      assert.ok(statSync(path).size < filler.length, 'daemon.log emptied');
    }, 60_000);
    const rotated = readFileSync(`${path}.1`, 'utf8');
    assert.match(rotated, /"message":"serving"/);
    assert.ok(rotated.includes(filler), 'what was written is in daemon.log.1');
    assert.equal(statSync(`${path}.1`).mode & 0o777, 0o600);

    await csi.call('node', 'NodeUnstageVolume', {
      volume_id: volume.volume_id,
      staging_target_path: staging,
    });
    await csi.call('controller', 'DeleteVolume', { volume_id: volume.volume_id });
    // The daemon's descriptor appends: its next lines start the emptied log, with no hole before.
    const fresh = readFileSync(path, 'utf8');
    assert.match(fresh, /"message":"device removed"/);
    assert.ok(fresh.startsWith('{'), `the log starts with a line: ${JSON.stringify(fresh.slice(0, 40))}`);
    assertNothingLeft(csi);
  });
});

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StartFailureLine } from '../../src/daemon/start-failure';
import { VDPA_FAMILY_MISSING, VDPA_FAMILY_NOT_IN_NAMESPACE, vdpaFamilyMissingReason } from '../../src/vdpa';
import { CsiHarness } from '../support/csi-harness';
import { createVolumeToStage } from '../support/stage-request';

const BLK_MAIN = join(__dirname, '../../src/cli/blk-main.js');
const HAS_VDUSE = existsSync('/dev/vduse/control');

interface ServeResult {
  status: number | null;
  stderr: string;
  line: StartFailureLine | undefined;
}

function serve(args: string[]): ServeResult {
  const result = spawnSync(process.execPath, [BLK_MAIN, 'blk', 'serve', ...args], { encoding: 'utf8' });
  const line = result.stdout.split('\n').find((text) => text.startsWith('{"startFailed":'));
  return {
    status: result.status,
    stderr: result.stderr,
    line: line === undefined ? undefined : (JSON.parse(line) as StartFailureLine),
  };
}

/** Exit 1, the reported error as the last stderr line, of this kind and step. */
function assertStartFailed(result: ServeResult, kind: string, step: string): string {
  assert.equal(result.status, 1, result.stderr);
  assert.ok(result.line, `no failure line; stderr: ${result.stderr}`);
  assert.equal(result.stderr.trimEnd().split('\n').at(-1), `vduse-csi: ${result.line.error}`);
  assert.equal(result.line.kind, kind);
  assert.equal(result.line.step, step);
  assert.ok(result.line.error.startsWith(`${step}: `), result.line.error);
  return result.line.error;
}

describe('device server start failures a host shows', function () {
  this.timeout(60_000);
  let dir: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vduse-start-failures-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('blk serve without the vduse module: names the control device and the module, leaving no image or state', function () {
    if (HAS_VDUSE) this.skip();
    const result = serve([
      '--file',
      join(dir, 'a.img'),
      '--size',
      '16M',
      '--name',
      'a',
      '--state-dir',
      join(dir, 'state'),
    ]);
    const error = assertStartFailed(result, 'environment', 'opening the VDUSE control device');
    assert.match(error, /\/dev\/vduse\/control is missing: load the vduse module \(modprobe vduse\)/);
    assert.deepEqual(readdirSync(dir), [], 'the image it made is removed, and no state was written');
  });

  it('blk serve of a missing image without --size: names the image, creating nothing', () => {
    const image = join(dir, 'missing.img');
    const result = serve(['--file', image, '--name', 'm', '--state-dir', join(dir, 'state')]);
    const error = assertStartFailed(result, 'image', 'opening the image');
    assert.equal(
      error,
      `opening the image: image ${image} does not exist (a new image is made only when a size is given)`,
    );
    assert.deepEqual(readdirSync(dir), []);
  });

  // (A volume whose image is gone never gets that far: NodeStageVolume answers NOT_FOUND first.)
  it("NodeStageVolume without the vduse module: FAILED_PRECONDITION carrying the server's cause", async function () {
    if (HAS_VDUSE) this.skip();
    const csi = await CsiHarness.start({ mode: 'all', root: dir, standby: false });
    try {
      const { volumeId, request } = await createVolumeToStage(csi, 'start-failure');
      const message = await csi.expectCode('node', 'NodeStageVolume', request, 'FAILED_PRECONDITION');
      assert.equal(
        message,
        `add refused by the device daemon, for ${volumeId}: opening the VDUSE control device: ` +
          '/dev/vduse/control is missing: load the vduse module (modprobe vduse) on a Linux >= 5.15 kernel',
      );
      assert.deepEqual(
        readdirSync(csi.options.stateDir).sort(),
        ['daemon.lock', 'daemon.sock', 'logs', 'store'],
        'no device state',
      );
    } finally {
      await csi.stop();
    }
  });
});

describe('vdpaFamilyMissingReason', () => {
  it('blames the network namespace when the vdpa bus exists, the module otherwise', () => {
    const sysfs = mkdtempSync(join(tmpdir(), 'vduse-sysfs-'));
    try {
      assert.equal(vdpaFamilyMissingReason(sysfs), VDPA_FAMILY_MISSING);
      mkdirSync(join(sysfs, 'bus', 'vdpa'), { recursive: true });
      assert.equal(vdpaFamilyMissingReason(sysfs), VDPA_FAMILY_NOT_IN_NAMESPACE);
      assert.match(VDPA_FAMILY_NOT_IN_NAMESPACE, /initial network namespace.*hostNetwork: true/);
    } finally {
      rmSync(sysfs, { recursive: true, force: true });
    }
  });
});

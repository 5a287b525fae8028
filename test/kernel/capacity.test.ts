import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CsiHarness, MiB, Reply, blockCapability } from '../support/csi-harness';
import { SmallFilesystem } from '../support/small-filesystem';
import { daemonStatus } from '../support/daemon-processes';
import {
  Published,
  assertNothingLeft,
  readDigest,
  stageAndPublish,
  unpublishAndUnstage,
  writeData,
} from '../e2e/kubelet-flow';
import { CLI, requireVduse, scratchDir, waitFor } from './support';

/*
 * A data directory that runs full, on the real kernel: a thin volume of a class that overcommits
 * the node fills it, and only its own writes that need space fail (an I/O error on that request);
 * its device goes on serving, and a thick volume beside it, whose blocks were reserved when it was
 * made, keeps taking writes. The accounting refuses, before and after, what would not fit.
 */

const DATA_BYTES = 64 * MiB;
const KEPT_BYTES = 16 * MiB;
const FILLED_BYTES = 64 * MiB;

describe('capacity on the real kernel: a full data directory fails only the writes that need space', function () {
  const data = new SmallFilesystem(DATA_BYTES);
  let root = '';
  let csi: CsiHarness | undefined;

  before(async () => {
    requireVduse();
    root = scratchDir('capacity');
    await data.create(join(root, 'data'));
    assert.ok(data.mounted, 'the small data directory is a tmpfs (kernel tests run as root)');
    csi = await CsiHarness.start({ cli: [process.execPath, CLI], root, mode: 'all' });
  });
  after(async () => {
    await csi?.stop();
    await data.remove();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  const capacity = async (parameters: Record<string, string> = {}): Promise<number> =>
    Number((await csi!.call('controller', 'GetCapacity', { parameters })).available_capacity);
  const createBlock = async (
    name: string,
    bytes: number,
    parameters: Record<string, string>,
  ): Promise<string> => {
    const reply: Reply = await csi!.call('controller', 'CreateVolume', {
      name,
      capacity_range: { required_bytes: bytes },
      volume_capabilities: [blockCapability()],
      parameters,
    });
    return reply.volume.volume_id;
  };
  const refusedCreate = (name: string, bytes: number, parameters: Record<string, string>): Promise<string> =>
    csi!.expectCode(
      'controller',
      'CreateVolume',
      {
        name,
        capacity_range: { required_bytes: bytes },
        volume_capabilities: [blockCapability()],
        parameters,
      },
      'RESOURCE_EXHAUSTED',
    );

  it('a thin volume fills the data directory: its write fails, its device and a thick volume go on', async () => {
    const overcommit = { overcommitRatio: '2' };
    const keptId = await createBlock('capacity-kept', KEPT_BYTES, { provisioning: 'thick' });
    const keptImage = join(csi!.options.dataDir, 'volumes', `${keptId}.img`);
    assert.equal(statSync(keptImage).blocks * 512, KEPT_BYTES, 'the thick image is reserved');
    const filledId = await createBlock('capacity-filled', FILLED_BYTES, overcommit);

    // The node's room is the data directory; 80 MiB are provisioned on it.
    assert.equal(await capacity(), 0, 'the default class finds no room');
    await refusedCreate('capacity-default', MiB, {});
    const thinRoom = await capacity(overcommit);
    assert.equal(thinRoom, 2 * DATA_BYTES - KEPT_BYTES - FILLED_BYTES);
    const message = await refusedCreate('capacity-too-big', thinRoom + MiB, overcommit);
    assert.match(message, new RegExp(`${thinRoom + MiB} bytes: node ${csi!.options.nodeId} has ${thinRoom}`));

    const kept = await stageAndPublish(csi!, 'block', keptId, 'capacity-kept-pod');
    const filled = await stageAndPublish(csi!, 'block', filledId, 'capacity-filled-pod');
    const first = writeData('block', filled.target, 'capacity-first', 0);
    const fill = fillUntilError(filled);
    assert.notEqual(fill.status, 0, `dd wrote all of the volume: ${fill.stderr}`);
    assert.match(fill.stderr, /Input\/output error/);
    // Up to what the data directory had free: 48 MiB, less the first one and what tmpfs keeps.
    assert.ok(fill.writtenMiB >= 32 && fill.writtenMiB < 48, `dd wrote ${fill.writtenMiB} MiB`);

    // The full volume still serves what it holds; the thick one still takes writes.
    assert.equal(readDigest('block', filled.target, 'capacity-first', 0), first);
    const keptData = writeData('block', kept.target, 'capacity-kept', 4);
    assert.equal(readDigest('block', kept.target, 'capacity-kept', 4), keptData);
    const log = join(csi!.options.stateDir, 'logs', 'daemon.log');
    const enospcLine = (): string | undefined =>
      existsSync(log)
        ? readFileSync(log, 'utf8')
            .split('\n')
            .find((line) => line.includes('ENOSPC'))
        : undefined;
    await waitFor('a log line of the failed write naming ENOSPC', () => enospcLine() !== undefined);
    assert.match(enospcLine()!, new RegExp(filledId), 'the line names the volume');
    // The daemon tells them apart from other failures: the node plugin's VolumeNoSpace Event.
    const served = (await daemonStatus(csi!.options.stateDir))!.devices;
    const counts = (id: string): { failedRequests: number; noSpaceRequests: number; queueBreaks: number } => {
      const { failedRequests, noSpaceRequests, queueBreaks } = served.find((device) => device.name === id)!;
      return { failedRequests, noSpaceRequests, queueBreaks };
    };
    assert.ok(counts(filledId).noSpaceRequests > 0, JSON.stringify(counts(filledId)));
    assert.equal(counts(filledId).queueBreaks, 0, 'a failed write is answered, its queue goes on');
    assert.deepEqual(counts(keptId), { failedRequests: 0, noSpaceRequests: 0, queueBreaks: 0 });

    // What was written counts no more than it did: it was provisioned already.
    assert.equal(await capacity(overcommit), thinRoom);
    assert.equal(await capacity(), 0);
    await refusedCreate('capacity-after-fill', thinRoom + MiB, overcommit);

    for (const volume of [filled, kept]) {
      await unpublishAndUnstage(csi!, volume);
      await csi!.call('controller', 'DeleteVolume', { volume_id: volume.volumeId });
    }
    assert.equal(await capacity(), DATA_BYTES, 'all of the data directory is room again');
    await data.remove();
    assertNothingLeft(csi!);
  });
});

/** Writes zeroes with O_DIRECT from 1 MiB on until a write fails (or the device ends); dd's account. */
function fillUntilError(volume: Published): { status: number | null; stderr: string; writtenMiB: number } {
  const dd = spawnSync('dd', ['if=/dev/zero', `of=${volume.target}`, 'bs=1M', 'seek=1', 'oflag=direct'], {
    encoding: 'utf8',
  });
  const records = /(\d+)\+\d+ records out/.exec(dd.stderr);
  return { status: dd.status, stderr: dd.stderr, writtenMiB: Number(records?.[1] ?? NaN) };
}

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CsiHarness, MiB, blockCapability } from '../support/csi-harness';
import { assertNothingLeft } from '../e2e/kubelet-flow';
import { bindProcessesOf, daemonStatus, statusField } from '../support/daemon-processes';
import { eventually } from '../support/eventually';
import { CLI, requireVduse, scratchDir, vdpaDevices, vduseDevices } from './support';

/** Stage/unstage cycles counted for leaks (VDUSE_CSI_STAGE_CYCLES; each takes about half a second under emulation). */
const CYCLES = Number(process.env.VDUSE_CSI_STAGE_CYCLES ?? 1000);
/**
 * Volumes cycled at once, taking the cycles from one count (VDUSE_CSI_STAGE_STREAMS): stages and
 * unstages of different volumes overlap, as on a node, and the cycles take less of the CI run.
 */
const STREAMS = Number(process.env.VDUSE_CSI_STAGE_STREAMS ?? 2);
const WARM_UP_CYCLES = 10;
/** Samples (100 ms apart, so across several supervision rounds) whose lowest counts are the counts at rest. */
const REST_SAMPLES = 30;
/** How long a transient fd (a supervision call in flight) may take to close after the last cycle. */
const SETTLE_MS = 60_000;
/**
 * Resident memory either process may gain over all cycles: V8 grows its heap in steps and keeps
 * what it grew to, so some growth is no leak; a device's worth of anything kept per cycle (its
 * rings' mappings, its threads' buffers, a record) would be far more over a thousand cycles.
 */
const RSS_GROWTH_LIMIT_MIB = 48;

/** A volume and the staging path it is staged at. */
interface StagingVolume {
  id: string;
  staging: string;
}

function median(samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return Math.round(sorted[Math.floor(sorted.length / 2)]!);
}

describe('stage/unstage cycles through the CSI plugin', function () {
  this.timeout(3_600_000);
  let csi: CsiHarness;

  before(async () => {
    requireVduse();
    csi = await CsiHarness.start({ cli: [process.execPath, CLI], root: scratchDir('cycles'), mode: 'all' });
  });
  after(async () => {
    await csi?.stop();
  });

  it(`${CYCLES} NodeStageVolume/NodeUnstageVolume cycles (${STREAMS} volumes at once) beside a staged volume leave no fd, thread, device, mount, record or memory growth behind`, async () => {
    const capability = blockCapability();
    const staged = async (name: string): Promise<StagingVolume> => {
      const { volume } = await csi.call('controller', 'CreateVolume', {
        name,
        capacity_range: { required_bytes: 16 * MiB },
        volume_capabilities: [capability],
      });
      const staging = join(csi.root, `${name}-staging`);
      mkdirSync(staging);
      return { id: volume.volume_id, staging };
    };
    const stage = ({ id, staging }: StagingVolume): Promise<unknown> =>
      csi.call('node', 'NodeStageVolume', {
        volume_id: id,
        staging_target_path: staging,
        volume_capability: capability,
      });
    const unstage = ({ id, staging }: StagingVolume): Promise<unknown> =>
      csi.call('node', 'NodeUnstageVolume', { volume_id: id, staging_target_path: staging });

    const neighbour = await staged('neighbour');
    await stage(neighbour);
    const cycling: Array<StagingVolume> = [];
    for (let stream = 0; stream < STREAMS; stream++) cycling.push(await staged(`cycling-${stream}`));
    const stageMs: number[] = [];
    const unstageMs: number[] = [];
    const cycle = async (volume: StagingVolume): Promise<void> => {
      const staging = performance.now();
      await stage(volume);
      stageMs.push(performance.now() - staging);
      const unstaging = performance.now();
      await unstage(volume);
      unstageMs.push(performance.now() - unstaging);
    };
    /** `count` cycles in all, each volume taking the next one as its last ends. */
    const cycles = async (count: number): Promise<void> => {
      let started = 0;
      await Promise.all(
        cycling.map(async (volume) => {
          while (started < count) {
            started++;
            await cycle(volume);
          }
        }),
      );
    };
    const daemonPid = (await daemonStatus(csi.options.stateDir))!.pid;
    const pluginPid = csi.pid!;
    const listing = (path: string): number => (existsSync(path) ? readdirSync(path).length : 0);
    const counts = (): Record<string, number> => ({
      pluginFds: listing(`/proc/${pluginPid}/fd`),
      pluginThreads: statusField(pluginPid, 'Threads'),
      daemonFds: listing(`/proc/${daemonPid}/fd`),
      daemonThreads: statusField(daemonPid, 'Threads'),
      vduseDevices: vduseDevices().length,
      vdpaDevices: vdpaDevices().length,
      mounts: readFileSync('/proc/self/mountinfo', 'utf8').split('\n').length,
      stagedRecords: listing(join(csi.options.stateDir, 'node')),
      deviceRecords: listing(join(csi.options.stateDir, 'devices')),
      inflightLogs: listing(join(csi.options.stateDir, 'inflight')),
    });
    /** The daemon's bind process ends once binds stop (BIND_PROCESS_IDLE_MS): counts are taken without it. */
    const bindProcessEnded = (): Promise<void> =>
      eventually(async () => assert.deepEqual(bindProcessesOf(daemonPid), []), SETTLE_MS);
    /**
     * The plugin checks every staged volume's server once a second (a status call on the daemon's
     * socket, the daemon log's rotation), so one sample can count that call's socket. Those only
     * add: the lowest count of each field over a few supervision rounds is the count at rest.
     */
    const restingCounts = async (): Promise<Record<string, number>> => {
      const resting = counts();
      for (let sample = 0; sample < REST_SAMPLES; sample++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        for (const [field, count] of Object.entries(counts()))
          resting[field] = Math.min(resting[field]!, count);
      }
      return resting;
    };
    const rssMiB = (): { plugin: number; daemon: number } => ({
      plugin: statusField(pluginPid, 'VmRSS') / 1024,
      daemon: statusField(daemonPid, 'VmRSS') / 1024,
    });

    // The first cycles load what any stage needs once (modules, buffers, V8's code).
    await cycles(WARM_UP_CYCLES);
    await bindProcessEnded();
    const before = await restingCounts();
    const rssBefore = rssMiB();
    assert.equal(before.vduseDevices, 1, 'the neighbour alone is served');
    await cycles(CYCLES);
    const rssAfter = rssMiB();
    await bindProcessEnded();
    await eventually(async () => assert.deepEqual(counts(), before), SETTLE_MS);
    assert.equal((await daemonStatus(csi.options.stateDir))!.pid, daemonPid, 'one daemon served every cycle');
    const growth = {
      plugin: Math.round((rssAfter.plugin - rssBefore.plugin) * 10) / 10,
      daemon: Math.round((rssAfter.daemon - rssBefore.daemon) * 10) / 10,
    };
    if (process.env.VDUSE_CSI_OUT)
      writeFileSync(
        join(process.env.VDUSE_CSI_OUT, 'stage-cycles-figures.json'),
        JSON.stringify(
          {
            cycles: CYCLES,
            streams: STREAMS,
            ...before,
            rssBeforeMiB: rssBefore,
            rssGrowthMiB: growth,
            stageMedianMs: median(stageMs.slice(WARM_UP_CYCLES)),
            unstageMedianMs: median(unstageMs.slice(WARM_UP_CYCLES)),
          },
          null,
          2,
        ),
      );
    assert.ok(growth.plugin < RSS_GROWTH_LIMIT_MIB, `the plugin grew by ${growth.plugin} MiB`);
    assert.ok(growth.daemon < RSS_GROWTH_LIMIT_MIB, `the daemon grew by ${growth.daemon} MiB`);

    await unstage(neighbour);
    for (const { id } of [neighbour, ...cycling])
      await csi.call('controller', 'DeleteVolume', { volume_id: id });
    assertNothingLeft(csi);
  });
});

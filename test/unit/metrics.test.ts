import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { parsePluginOptions } from '../../src/cli/plugin';
import type { CustomResource } from '../../src/k8s/custom-resource';
import { kubeInventory } from '../../src/k8s/kube-inventory';
import type { KubeObject, SnapshotObject, VolumeObject } from '../../src/k8s/resources';
import { registerControllerMetrics } from '../../src/metrics/controller-metrics';
import { CsiHarness, HarnessOptions, MiB, Reply, mountCapability } from '../support/csi-harness';
import {
  Sample,
  parseSamples,
  promtoolProblems,
  samplesOf,
  scrape,
  valueOf,
} from '../support/prometheus-text';

/*
 * GET /metrics of a real plugin (in this process, on a real CSI socket) after real CSI calls:
 * the call counters and histograms by method and code, the controller's inventory gauges and the
 * process metrics, and the whole exposition through promtool's checks and lint.
 */

const CALLS = 'vduse_csi_operations_total';
const DURATION = 'vduse_csi_operation_duration_seconds';
const KUBE_PHASES = ['Pending', 'Creating', 'Ready', 'Resizing', 'Deleting', 'Failed'];

function startPlugin(options: HarnessOptions): Promise<CsiHarness> {
  return CsiHarness.start({ metricsAddress: '127.0.0.1:0', ...options });
}

let counter = 0;
function createVolume(csi: CsiHarness, request: object = {}): Promise<Reply> {
  return csi.call('controller', 'CreateVolume', {
    name: `pvc-metrics-${process.pid}-${++counter}`,
    volume_capabilities: [mountCapability()],
    capacity_range: { required_bytes: 64 * MiB },
    ...request,
  });
}

describe('metrics (--metrics-address)', function () {
  this.timeout(60_000);
  let csi: CsiHarness | undefined;

  afterEach(async () => {
    await csi?.stop();
    csi = undefined;
  });

  describe('a plugin in mode all, local store', () => {
    beforeEach(async () => {
      csi = await startPlugin({});
    });

    it('counts every CSI call by method and gRPC code, and times it', async () => {
      const before = (await scrape(csi!.metricsUrl)).samples;
      assert.deepEqual(samplesOf(before, CALLS, { method: 'CreateVolume' }), []);

      await createVolume(csi!);
      await csi!.expectCode(
        'controller',
        'CreateVolume',
        { name: 'pvc-bad', volume_capabilities: [mountCapability()], parameters: { queues: '99' } },
        'INVALID_ARGUMENT',
      );
      await csi!.call('identity', 'GetPluginInfo');
      await csi!.expectCode('controller', 'DeleteVolume', {}, 'INVALID_ARGUMENT');

      const { samples } = await scrape(csi!.metricsUrl);
      assert.equal(valueOf(samples, CALLS, { method: 'CreateVolume', code: 'OK' }), 1);
      assert.equal(valueOf(samples, CALLS, { method: 'CreateVolume', code: 'INVALID_ARGUMENT' }), 1);
      assert.equal(valueOf(samples, CALLS, { method: 'DeleteVolume', code: 'INVALID_ARGUMENT' }), 1);
      assert.equal(valueOf(samples, CALLS, { method: 'GetPluginInfo', code: 'OK' }), 1);
      assert.deepEqual(samplesOf(samples, CALLS, { method: 'DeleteVolume', code: 'OK' }), []);

      assert.equal(valueOf(samples, `${DURATION}_count`, { method: 'CreateVolume' }), 2);
      assert.ok(valueOf(samples, `${DURATION}_sum`, { method: 'CreateVolume' }) > 0);
      const buckets = samplesOf(samples, `${DURATION}_bucket`, { method: 'CreateVolume' });
      assert.deepEqual(
        buckets.map((bucket) => bucket.labels.le),
        [
          '0.005',
          '0.01',
          '0.025',
          '0.05',
          '0.1',
          '0.25',
          '0.5',
          '1',
          '2.5',
          '5',
          '10',
          '30',
          '60',
          '120',
          '300',
          '600',
          '+Inf',
        ],
      );
      assert.equal(buckets.at(-1)!.value, 2);
      for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i]!.value >= buckets[i - 1]!.value);
    });

    it('reports the volumes, snapshots and room the controller knows, as they change', async () => {
      const room = (samples: Sample[]): number =>
        valueOf(samples, 'vduse_csi_node_room_bytes', { node: 'node-1' });
      const empty = (await scrape(csi!.metricsUrl)).samples;
      assert.equal(valueOf(empty, 'vduse_csi_volumes', { phase: 'Unknown' }), 0);
      assert.deepEqual(samplesOf(empty, 'vduse_csi_provisioned_bytes'), []);
      assert.ok(room(empty) > 0);

      const { volume } = await createVolume(csi!);
      await createVolume(csi!, { capacity_range: { required_bytes: 32 * MiB } });
      await csi!.call('controller', 'CreateSnapshot', {
        name: 'snap-metrics',
        source_volume_id: volume.volume_id,
      });

      const { samples } = await scrape(csi!.metricsUrl);
      assert.equal(valueOf(samples, 'vduse_csi_volumes', { phase: 'Unknown' }), 2);
      assert.equal(valueOf(samples, 'vduse_csi_snapshots', { phase: 'Unknown' }), 1);
      assert.equal(valueOf(samples, 'vduse_csi_provisioned_bytes', { node: 'node-1' }), 96 * MiB);
      assert.equal(valueOf(samples, 'vduse_csi_snapshot_bytes', { node: 'node-1' }), 64 * MiB);
      assert.ok(room(samples) > 0);
      assert.equal(valueOf(samples, 'vduse_csi_inventory_read_failures_total'), 0);
    });

    it('has the process and Node.js metrics under their standard names', async () => {
      const { samples } = await scrape(csi!.metricsUrl);
      assert.ok(valueOf(samples, 'process_resident_memory_bytes') > 0);
      assert.ok(valueOf(samples, 'process_open_fds') > 0);
      assert.ok(valueOf(samples, 'process_cpu_seconds_total') > 0);
      assert.equal(samplesOf(samples, 'nodejs_eventloop_lag_seconds').length, 1);
      assert.deepEqual(samplesOf(samples, 'nodejs_active_handles_total'), []);
    });

    it('passes promtool check metrics, after calls of every outcome', async () => {
      await createVolume(csi!);
      await csi!.expectCode('controller', 'CreateVolume', { name: 'pvc-bad' }, 'INVALID_ARGUMENT');
      assert.equal(promtoolProblems((await scrape(csi!.metricsUrl)).text), '');
    });

    it('answers 404 for anything but GET /metrics', async () => {
      const url = new URL(csi!.metricsUrl);
      assert.equal((await fetch(new URL('/healthz', url))).status, 404);
      assert.equal((await fetch(url, { method: 'POST' })).status, 404);
    });
  });

  it('cluster store: volumes and snapshots by the phase their node agent reported', async () => {
    csi = await startPlugin({ store: 'kubernetes' });
    const { volume } = await createVolume(csi);
    const { snapshot } = await csi.call('controller', 'CreateSnapshot', {
      name: 'snap-metrics',
      source_volume_id: volume.volume_id,
    });
    const ready = (await scrape(csi.metricsUrl)).samples;
    for (const phase of KUBE_PHASES) {
      assert.equal(valueOf(ready, 'vduse_csi_volumes', { phase }), phase === 'Ready' ? 1 : 0, phase);
      assert.equal(valueOf(ready, 'vduse_csi_snapshots', { phase }), phase === 'Ready' ? 1 : 0, phase);
    }
    assert.equal(valueOf(ready, 'vduse_csi_provisioned_bytes', { node: 'node-1' }), 64 * MiB);
    assert.ok(valueOf(ready, 'vduse_csi_node_room_bytes', { node: 'node-1' }) > 0);
    assert.equal(promtoolProblems((await scrape(csi.metricsUrl)).text), '');

    await csi.call('controller', 'DeleteSnapshot', { snapshot_id: snapshot.snapshot_id });
    await csi.call('controller', 'DeleteVolume', { volume_id: volume.volume_id });
    const gone = (await scrape(csi.metricsUrl)).samples;
    assert.equal(valueOf(gone, 'vduse_csi_volumes', { phase: 'Ready' }), 0);
    assert.equal(valueOf(gone, 'vduse_csi_snapshots', { phase: 'Ready' }), 0);
    assert.deepEqual(samplesOf(gone, 'vduse_csi_provisioned_bytes'), []);
  });

  it('a node plugin counts its calls and has no controller metrics', async () => {
    csi = await startPlugin({ mode: 'node' });
    await csi.call('node', 'NodeGetInfo');
    await csi.expectCode('node', 'NodeUnstageVolume', {}, 'INVALID_ARGUMENT');
    const { text, samples } = await scrape(csi.metricsUrl);
    assert.equal(valueOf(samples, CALLS, { method: 'NodeGetInfo', code: 'OK' }), 1);
    assert.equal(valueOf(samples, CALLS, { method: 'NodeUnstageVolume', code: 'INVALID_ARGUMENT' }), 1);
    assert.deepEqual(samplesOf(samples, 'vduse_csi_volumes'), []);
    assert.equal(promtoolProblems(text), '');
  });

  it('cluster store: an object without a status is Pending, one being deleted Deleting whatever it says', async () => {
    const listing = <T>(items: T[]): CustomResource<T & KubeObject> =>
      ({ list: async () => ({ items, metadata: { resourceVersion: '1' } }) }) as unknown as CustomResource<
        T & KubeObject
      >;
    const volume = (name: string, status?: object, deletionTimestamp?: string): VolumeObject =>
      ({
        metadata: { name, ...(deletionTimestamp ? { deletionTimestamp } : {}) },
        spec: { nodeId: 'node-a', capacityBytes: 5 * MiB },
        ...(status ? { status } : {}),
      }) as unknown as VolumeObject;
    const snapshot = {
      metadata: { name: 'snap-1' },
      spec: { nodeId: 'node-b' },
    } as unknown as SnapshotObject;
    const inventory = kubeInventory(
      listing([
        volume('vol-1'),
        volume('vol-2', { phase: 'Ready' }, '2026-12-06T10:00:00Z'),
        volume('vol-3', { phase: 'Failed' }),
      ]),
      listing([snapshot]),
    );
    assert.deepEqual(await inventory.volumes(), [
      { nodeId: 'node-a', phase: 'Pending', bytes: 5 * MiB },
      { nodeId: 'node-a', phase: 'Deleting', bytes: 5 * MiB },
      { nodeId: 'node-a', phase: 'Failed', bytes: 5 * MiB },
    ]);
    assert.deepEqual(await inventory.snapshots(), [{ nodeId: 'node-b', phase: 'Pending', bytes: 0 }]);
    assert.deepEqual(inventory.phases, KUBE_PHASES);
  });

  it('a controller that cannot read its inventory still serves the scrape, without those series', async () => {
    const registry = new Registry();
    const unreachable = (): Promise<never> => Promise.reject(new Error('connect ECONNREFUSED'));
    registerControllerMetrics(registry, {
      inventory: { phases: ['Ready'], volumes: unreachable, snapshots: unreachable },
      placement: { roomsIn: unreachable },
    });
    for (const failures of [1, 2]) {
      const samples = parseSamples(await registry.metrics());
      assert.deepEqual(
        samples.map((sample) => [sample.name, sample.value]),
        [['vduse_csi_inventory_read_failures_total', failures]],
      );
    }
  });

  it('--metrics-address is off unless given, and checked like --health-address', () => {
    const required = [
      '--endpoint',
      'unix:///csi.sock',
      '--node-id',
      'n',
      '--data-dir',
      '/d',
      '--state-dir',
      '/s',
    ];
    assert.equal(parsePluginOptions(required).metricsAddress, undefined);
    assert.equal(parsePluginOptions([...required, '--metrics-address', ':9840']).metricsAddress, ':9840');
    assert.throws(
      () => parsePluginOptions([...required, '--metrics-address', '9840']),
      /--metrics-address must look like HOST:PORT or :PORT, got "9840"/,
    );
  });
});

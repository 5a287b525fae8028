import assert from 'node:assert/strict';
import { readConfig } from '../../bench/config';
import { renderStages } from '../../bench/report';
import { compareStages } from '../../bench/stage-case';

const config = (env: Record<string, string>): ReturnType<typeof readConfig> => readConfig(env, ['qemu'], []);

describe('bench: stage case', () => {
  it('runs by default for 16 volumes; VDUSE_CSI_BENCH_STAGE=0 skips it; the count must be one or more', () => {
    assert.deepEqual(config({}).stage, { enabled: true, volumes: 16 });
    assert.equal(config({ VDUSE_CSI_BENCH_STAGE: '0' }).stage.enabled, false);
    assert.equal(config({ VDUSE_CSI_BENCH_STAGE_VOLUMES: '4' }).stage.volumes, 4);
    assert.throws(
      () => config({ VDUSE_CSI_BENCH_STAGE_VOLUMES: '0' }),
      /VDUSE_CSI_BENCH_STAGE_VOLUMES: 0 is not a count/,
    );
    assert.throws(() => config({ VDUSE_CSI_BENCH_STAGE_VOLUMES: 'many' }), /must be a whole number/);
  });

  it('compares median and p95 of our stages with the reference flow', () => {
    const ours = [100, 300, 200, 400, 1000, 150, 250, 350, 120, 180];
    const qemu = [200, 200, 200, 200, 200, 200, 200, 200, 200, 500];
    assert.deepEqual(compareStages(ours, qemu), {
      nodeStageMs: { median: 200, p95: 1000 },
      qemuStorageDaemonVdpaMkfsMountMs: { median: 200, p95: 500 },
      ratioMedian: 1,
      ratioP95: 2,
    });
  });

  it('writes a line per order, or says it was not measured', () => {
    const comparison = compareStages([90], [100]);
    const text = renderStages(
      { volumes: 16, atOnce: comparison, oneAfterAnother: compareStages([300], [100]) },
      true,
    );
    assert.deepEqual(text.split('\n'), [
      '- 16 at once: NodeStageVolume median 90 ms, p95 90 ms; qemu-storage-daemon + vdpa dev add + mkfs + mount median 100 ms, p95 100 ms; ratio median 0.90x, p95 0.90x',
      '- 16 one after another: NodeStageVolume median 300 ms, p95 300 ms; qemu-storage-daemon + vdpa dev add + mkfs + mount median 100 ms, p95 100 ms; ratio median 3.00x, p95 3.00x',
    ]);
    assert.equal(renderStages(undefined, false), '(not measured)');
  });
});

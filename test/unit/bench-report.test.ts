import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BenchResults,
  median,
  renderMemory,
  renderMemoryByCount,
  renderTable,
  summarise,
  writeResults,
} from '../../bench/report';
import { runFigures as run } from './bench-figures';

function results(overrides: Partial<BenchResults>): BenchResults {
  return {
    info: {},
    baseline: 'qemu',
    layouts: [
      { name: 'qemu', description: 'q' },
      { name: 'ours', description: 'o' },
    ],
    ratios: [['ours', 'qemu']],
    failures: [],
    summary: {},
    memory: {},
    raw: {},
    ...overrides,
  };
}

describe('bench: report', () => {
  it('takes medians of what was measured', () => {
    assert.equal(median([3, null, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.equal(median([null]), null);
  });

  it('summarises the repeats and divides each layout by the baseline', () => {
    const summary = summarise({
      '1/randread-4k-qd1': {
        qemu: [run(100, 20), run(300, null), run(200, 40)],
        ours: [run(500, 10), run(400, 10)],
      },
    });
    assert.equal(summary['1/randread-4k-qd1']!.qemu!.iops, 200);
    assert.equal(summary['1/randread-4k-qd1']!.qemu!.cpuUsPerIo, 30);
    assert.equal(summary['1/randread-4k-qd1']!.ours!.runs, 2);
    const lines = renderTable(results({ summary }), false).split('\n');
    assert.match(
      lines[0]!,
      /^queues\s+job\s+daemon\s+IOPS\s+MiB\/s\s+p50 us\s+p99 us\s+CPU us\/IO\s+RSS MiB\s+HWM MiB$/,
    );
    assert.match(lines[2]!, /^1\s+randread-4k-qd1\s+qemu\s+200\s+0\.8\s+100\s+400\s+30\.0\s+80\.0\s+90\.0$/);
    assert.match(
      lines[4]!,
      /^1\s+randread-4k-qd1\s+ours\/qemu\s+2\.25\s+2\.25\s+1\.00\s+1\.00\s+0\.33\s+1\.00\s+1\.00$/,
    );
    assert.equal(
      renderTable(results({ summary }), true).split('\n')[1],
      '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    );
  });

  it('reports memory per layout and per device, and the ratio to the baseline', () => {
    const text = renderMemory(
      {
        qemu: { processes: 16, devices: 16, rssMiB: 160, pssMiB: 80, hwmMiB: 170, rssAnonMiB: 40 },
        ours: {
          processes: 1,
          devices: 16,
          rssMiB: 96,
          pssMiB: 64,
          hwmMiB: 100,
          rssAnonMiB: 50,
          pssBeforeIoMiB: 60,
        },
      },
      'qemu',
      false,
    );
    assert.deepEqual(text.split('\n'), [
      'qemu: 16 process(es), 16 devices: total VmRSS 160.0 MiB, total Pss 80.0 MiB, total VmHWM 170.0 MiB, total RssAnon 40.0 MiB; per device VmRSS 10.0 MiB, Pss 5.0 MiB',
      'ours: 1 process(es), 16 devices: total VmRSS 96.0 MiB, total Pss 64.0 MiB, total VmHWM 100.0 MiB, total RssAnon 50.0 MiB (Pss before I/O 60.0 MiB); per device VmRSS 6.0 MiB, Pss 4.0 MiB',
      'ours / qemu: RSS 0.60, Pss 0.80',
    ]);
  });

  it("writes the RBD clients' memory, each serving one image, beside the baseline's", () => {
    const dir = mkdtempSync(join(tmpdir(), 'bench-report-'));
    try {
      const one = (processes: number, pssMiB: number) => ({
        processes,
        devices: 1,
        rssMiB: pssMiB * 2,
        pssMiB,
        hwmMiB: pssMiB * 3,
        rssAnonMiB: pssMiB,
      });
      const rbd = {
        layouts: [{ name: 'daemon', description: 'd' }],
        ratios: [],
        summary: {},
        cephStartS: 1,
        prefillS: 1,
        imageMiB: 256,
        raw: {},
        kills: [],
        memory: { qemu: one(1, 40), daemon: one(2, 120), 'rbd-nbd': { skipped: 'Error: gone' } },
      };
      writeResults(dir, results({ rbd }), 'method');
      const markdown = readFileSync(join(dir, 'results.md'), 'utf8');
      const section = markdown.slice(markdown.indexOf('### Memory serving one image'));
      assert.match(
        section,
        /- daemon: 2 process\(es\), 1 devices: total VmRSS 240\.0 MiB, total Pss 120\.0 MiB/,
      );
      assert.match(section, /- daemon \/ qemu: RSS 3\.00, Pss 3\.00/);
      assert.match(section, /- rbd-nbd: skipped: Error: gone/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names a layout whose memory was not measured', () => {
    const text = renderMemory({ ours: { skipped: 'Error: no' } }, 'qemu', true);
    assert.equal(text, '- ours: skipped: Error: no');
  });

  it("reports each count of volumes, then each layout's fixed cost and cost per further volume", () => {
    const served = (processes: number, devices: number, pssMiB: number) => ({
      processes,
      devices,
      rssMiB: pssMiB,
      pssMiB,
      hwmMiB: pssMiB,
      rssAnonMiB: pssMiB,
    });
    const text = renderMemoryByCount(
      results({
        memory: {
          '64': { qemu: served(64, 64, 320), ours: served(2, 64, 192), gone: { skipped: 'Error: no' } },
          '16': { qemu: served(16, 16, 80), ours: served(2, 16, 96), gone: served(1, 16, 1) },
        },
      }),
      false,
    );
    const sections = text.split('\n\n');
    assert.equal(sections.length, 3);
    assert.match(sections[0]!, /^16 volumes:\nqemu: 16 process\(es\), 16 devices/);
    assert.match(sections[1]!, /^64 volumes:\n/);
    assert.match(sections[1]!, /\nours \/ qemu: RSS 0\.60, Pss 0\.60/);
    assert.deepEqual(sections[2]!.split('\n'), [
      'fixed and per-volume cost:',
      'qemu: Pss 0.0 MiB fixed + 5.00 MiB per further volume (from 16 and 64)',
      'ours: Pss 64.0 MiB fixed + 2.00 MiB per further volume (from 16 and 64)',
    ]);
    assert.equal(renderMemoryByCount(results({ memory: {} }), false), '(not measured)');
  });
});

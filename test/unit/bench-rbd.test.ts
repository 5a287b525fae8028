import assert from 'node:assert/strict';
import { readConfig } from '../../bench/config';
import { kernelIoErrors, KillFigures, parseVerifiedFio } from '../../bench/kill-case';
import { overBaseline, renderKills, renderTable, subjectOver, summarise } from '../../bench/report';
import { runFigures as run } from './bench-figures';

const RBD_CLIENTS = ['daemon', 'qemu', 'rbd-nbd', 'krbd', 'fio-rbd'];

function config(env: Record<string, string>): ReturnType<typeof readConfig> {
  return readConfig(env, ['qemu', 'daemon'], RBD_CLIENTS);
}

/** A fio --output-format=json report of the verified-write job, reduced to what is read. */
function verifiedReport(error: number, writeMaxNs: number): string {
  return JSON.stringify({
    jobs: [{ error, read: { clat_ns: { max: 1_000_000 } }, write: { clat_ns: { max: writeMaxNs } } }],
  });
}

describe('bench: RBD case', () => {
  it('runs no RBD client unless asked, every one for 1, or the ones listed', () => {
    assert.deepEqual(config({}).rbd.layouts, []);
    assert.deepEqual(config({ VDUSE_CSI_BENCH_RBD: '0' }).rbd.layouts, []);
    assert.deepEqual(config({ VDUSE_CSI_BENCH_RBD: '1' }).rbd.layouts, RBD_CLIENTS);
    assert.deepEqual(config({ VDUSE_CSI_BENCH_RBD: 'daemon,rbd-nbd' }).rbd.layouts, ['daemon', 'rbd-nbd']);
    assert.throws(() => config({ VDUSE_CSI_BENCH_RBD: 'daemon nbd' }), /VDUSE_CSI_BENCH_RBD: unknown nbd/);
    assert.equal(config({ VDUSE_CSI_BENCH_RBD_SIZE_MIB: '128' }).rbd.imageMiB, 128);
    assert.equal(config({}).fileCase, true);
    assert.equal(config({ VDUSE_CSI_BENCH_FILE: '0' }).fileCase, false);
  });

  it('divides ours by each other client, and every layout by a baseline', () => {
    assert.deepEqual(subjectOver('daemon', ['daemon', 'qemu', 'krbd']), [
      ['daemon', 'qemu'],
      ['daemon', 'krbd'],
    ]);
    assert.deepEqual(overBaseline('qemu', ['qemu', 'ours', 'daemon']), [
      ['ours', 'qemu'],
      ['daemon', 'qemu'],
    ]);
  });

  it('shows no CPU or memory for clients without a serving process, and ratios of ours over them', () => {
    const summary = summarise({
      '1/randread-4k-qd32': { daemon: [run(600, 50, 100)], 'fio-rbd': [run(800, null, null)] },
    });
    const lines = renderTable(
      {
        layouts: [
          { name: 'daemon', description: 'd' },
          { name: 'fio-rbd', description: 'f' },
        ],
        ratios: subjectOver('daemon', ['daemon', 'fio-rbd']),
        summary,
      },
      false,
    ).split('\n');
    assert.match(lines[3]!, /^1\s+randread-4k-qd32\s+fio-rbd\s+800\s+3\.1\s+100\s+400\s+-\s+-\s+-$/);
    assert.match(
      lines[4]!,
      /^1\s+randread-4k-qd32\s+daemon\/fio-rbd\s+0\.75\s+0\.75\s+1\.00\s+1\.00\s+-\s+-\s+-$/,
    );
  });

  it("reads a verified fio's errors, longest stall and error lines, wherever stderr put them", () => {
    assert.deepEqual(parseVerifiedFio(verifiedReport(0, 2_500_000_000)), {
      errors: 0,
      longestStallMs: 2500,
      messages: [],
    });
    const failed = parseVerifiedFio(
      `fio: io_u error on file /dev/nbd0: Input/output error: write offset=4096, buflen=4096\n` +
        `${verifiedReport(5, 3_000_000)}\nfio: pid=812, err=5/file:io_u.c:1845, func=io_u error\n`,
    );
    assert.equal(failed.errors, 5);
    assert.equal(failed.longestStallMs, 3);
    assert.deepEqual(failed.messages, [
      'fio: io_u error on file /dev/nbd0: Input/output error: write offset=4096, buflen=4096',
      'fio: pid=812, err=5/file:io_u.c:1845, func=io_u error',
    ]);
    assert.deepEqual(parseVerifiedFio('fio: killed\n'), {
      errors: null,
      longestStallMs: null,
      messages: ['fio: killed'],
    });
  });

  it("keeps the kernel's I/O error lines", () => {
    const log = [
      '[ 10.1] vduse-csi-test: mark',
      '[ 11.2] block nbd0: Receive control failed (result -32)',
      '[ 11.3] I/O error, dev nbd0, sector 2048 op 0x1:(WRITE) flags 0x8800 phys_seg 1 prio class 2',
      '[ 11.4] EXT4-fs (vda): mounted',
    ].join('\n');
    assert.deepEqual(kernelIoErrors(log), [
      '[ 11.2] block nbd0: Receive control failed (result -32)',
      '[ 11.3] I/O error, dev nbd0, sector 2048 op 0x1:(WRITE) flags 0x8800 phys_seg 1 prio class 2',
    ]);
  });

  it('tabulates what each kill did to fio', () => {
    const kill = (layout: string, overrides: Partial<KillFigures>): KillFigures => ({
      layout,
      killedPid: 100,
      outcome: 'completed',
      fioExit: 0,
      errors: 0,
      longestStallMs: 1234.4,
      fioEndS: 20.25,
      fioMessages: [],
      kernelMessages: [],
      ...overrides,
    });
    const text = renderKills(
      [
        kill('daemon', {}),
        kill('rbd-nbd', {
          fioExit: 1,
          errors: 5,
          fioMessages: ['fio: io_u error'],
          kernelMessages: ['I/O error, dev nbd0'],
        }),
      ],
      false,
    ).split('\n');
    assert.match(text[2]!, /^daemon\s+completed\s+0\s+0\s+1234\s+20\.3\s+-$/);
    assert.match(text[3]!, /^rbd-nbd\s+completed\s+1\s+5\s+1234\s+20\.3\s+fio: io_u error$/);
    assert.equal(text[4], 'rbd-nbd: kernel: I/O error, dev nbd0');
  });
});

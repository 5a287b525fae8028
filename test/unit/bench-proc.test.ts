import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseBlockStat, parseMemory, parseStat, parseSystemTicks, statName } from '../../bench/proc';
import { threadCpuDelta } from '../../bench/throughput';

/** Read in the VM from a `blk serve` process (pid 314) serving /dev/vda, after 5 s of fio on it. */
function fixture(name: string): string {
  return readFileSync(resolve(__dirname, '../../../test/unit/fixtures/bench', name), 'utf8');
}

describe('bench: /proc and /sys figures', () => {
  it('reads the parent and utime + stime of /proc/PID/stat', () => {
    assert.deepEqual(parseStat(fixture('server-stat.txt')), { ppid: 312, cpuTicks: 1600 + 1883 });
  });

  it('reads /proc/PID/stat past a command name holding spaces and parentheses', () => {
    const renamed = fixture('server-stat.txt').replace('(node)', '(a) 1 2 (b)');
    assert.deepEqual(parseStat(renamed), { ppid: 312, cpuTicks: 1600 + 1883 });
  });

  it('reads the thread name of a task stat, parentheses and spaces included', () => {
    assert.equal(statName(fixture('server-stat.txt')), 'node');
    assert.equal(statName(fixture('server-stat.txt').replace('(node)', '(msgr-worker-0)')), 'msgr-worker-0');
    assert.equal(statName(fixture('server-stat.txt').replace('(node)', '(a) 1 (b)')), 'a) 1 (b');
  });

  it("gives each thread name's CPU over a run, largest first, leaving out the idle ones", () => {
    const before = new Map([
      ['node', 100],
      ['msgr-worker-0', 50],
    ]);
    const after = new Map([
      ['node', 150],
      ['msgr-worker-0', 250],
      ['libuv-worker', 0],
      ['new-thread', 10],
    ]);
    assert.deepEqual(Object.entries(threadCpuDelta(before, after, 100)), [
      ['msgr-worker-0', 2],
      ['node', 0.5],
      ['new-thread', 0.1],
    ]);
  });

  it('reads the memory of /proc/PID/status and Pss of smaps_rollup, in KiB', () => {
    assert.deepEqual(parseMemory(fixture('server-status.txt'), fixture('server-smaps-rollup.txt')), {
      VmRSS: 49984,
      VmHWM: 52172,
      RssAnon: 27200,
      RssFile: 22768,
      RssShmem: 16,
      Pss: 49105,
    });
  });

  it("reads the machine's idle and total CPU ticks from /proc/stat", () => {
    const stat = 'cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\nintr 12345\n';
    assert.deepEqual(parseSystemTicks(stat), { idle: 840, total: 1000 });
    assert.throws(() => parseSystemTicks('intr 1\n'), /no cpu line/);
  });

  it('counts the completed reads and writes of /sys/block/DEV/stat', () => {
    assert.equal(parseBlockStat(fixture('vda-stat.txt')), 588 + 469);
  });
});

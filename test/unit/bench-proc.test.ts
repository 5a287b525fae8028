import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseBlockStat, parseMemory, parseStat } from '../../bench/proc';

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

  it('counts the completed reads and writes of /sys/block/DEV/stat', () => {
    assert.equal(parseBlockStat(fixture('vda-stat.txt')), 588 + 469);
  });
});

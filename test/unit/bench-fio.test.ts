import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fioArgs, fioEnv, firstJsonObject, MiB, parseFioReport } from '../../bench/fio';

/** fio 3.33 reports written by a bench run in the VM (fio ... --group_reporting --output-format=json). */
function fixture(name: string): string {
  return readFileSync(resolve(__dirname, '../../../test/unit/fixtures/bench', name), 'utf8');
}

describe('bench: fio', () => {
  it('reads the read figures of a random-read report', () => {
    assert.deepEqual(parseFioReport(fixture('fio-randread-4k-qd1.json'), 'randread'), {
      iops: 235.976402,
      mibS: 966559 / MiB,
      p50Us: 2473.984,
      p99Us: 8978.432,
      totalIos: 2360,
      errors: 0,
    });
  });

  it('reads the write figures of a report grouping two jobs', () => {
    assert.deepEqual(parseFioReport(fixture('fio-write-1m-qd8-2jobs.json'), 'write'), {
      iops: 121.251114,
      mibS: 128594047 / MiB,
      p50Us: 103284.736,
      p99Us: 658505.728,
      totalIos: 1225,
      errors: 0,
    });
  });

  it('skips notes fio printed ahead of the JSON', () => {
    const report = parseFioReport(`note: a note\n${fixture('fio-randread-4k-qd1.json')}`, 'randread');
    assert.equal(report.totalIos, 2360);
  });

  it('reads the first JSON object, whatever follows it', () => {
    const report = parseFioReport(`${fixture('fio-randread-4k-qd1.json')}\n]\n}\n`, 'randread');
    assert.equal(report.totalIos, 2360);
    assert.equal(firstJsonObject('x {"a": "}\\"{", "b": {"c": 1}} ]}'), '{"a": "}\\"{", "b": {"c": 1}}');
    assert.throws(() => firstJsonObject('fio: killed {"jobs": ['), /no complete JSON object/);
    assert.throws(() => firstJsonObject('fio: killed'), /no complete JSON object/);
  });

  it('gives each job its own MiB-aligned slice of the device', () => {
    const args = fioArgs({
      target: { kind: 'device', path: '/dev/vdb' },
      job: 'randwrite-4k-qd32',
      numjobs: 3,
      deviceBytes: 1024 * MiB,
      runtimeS: 10,
      rampS: 2,
      reportPath: '/tmp/r.json',
    });
    for (const expected of [
      '--numjobs=3',
      `--size=${341 * MiB}`,
      `--offset_increment=${341 * MiB}`,
      '--rw=randwrite',
      '--bs=4k',
      '--iodepth=32',
      '--output=/tmp/r.json',
      '--filename=/dev/vdb',
      '--ioengine=libaio',
      '--direct=1',
    ])
      assert.ok(args.includes(expected), `${expected} in ${args.join(' ')}`);
  });

  it("reaches an RBD image through fio's rbd engine, with the cluster's conf in CEPH_CONF", () => {
    const target = { kind: 'rbd', conf: '/c/ceph.conf', user: 'admin', pool: 'rbd', image: 'img' } as const;
    const args = fioArgs({
      target,
      job: 'read-1m-qd8',
      numjobs: 1,
      deviceBytes: 256 * MiB,
      runtimeS: 10,
      rampS: 2,
      reportPath: '/tmp/r.json',
    });
    for (const expected of ['--ioengine=rbd', '--clientname=admin', '--pool=rbd', '--rbdname=img'])
      assert.ok(args.includes(expected), `${expected} in ${args.join(' ')}`);
    assert.ok(!args.some((arg) => arg.startsWith('--filename') || arg === '--ioengine=libaio'));
    assert.equal(fioEnv(target).CEPH_CONF, '/c/ceph.conf');
    assert.equal(fioEnv({ kind: 'device', path: '/dev/vdb' }).CEPH_CONF, process.env.CEPH_CONF);
  });
});

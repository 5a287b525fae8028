import assert from 'node:assert/strict';
import { DaemonFacts, DeviceObservation, DeviceWatch, daemonFactsOf } from '../../src/csi/device-watch';
import { deviceEvent } from '../../src/csi/volume-events';

const device = (
  name: string,
  failedRequests = 0,
  noSpaceRequests = 0,
  queueBreaks = 0,
): DaemonFacts['devices'][number] => ({
  name,
  path: `/dev/vd-${name}`,
  failedRequests,
  noSpaceRequests,
  queueBreaks,
});

/** A watch over a scripted daemon: each call observes the next facts and returns what was reported. */
function scriptedWatch(): { next: (facts: DaemonFacts | null) => Promise<DeviceObservation[]> } {
  let current: DaemonFacts | null = null;
  const seen: DeviceObservation[] = [];
  const watch = new DeviceWatch(
    async () => current,
    (observation) => seen.push(observation),
  );
  return {
    next: async (facts) => {
      current = facts;
      await watch.observeOnce();
      return seen.splice(0);
    },
  };
}

describe('DeviceWatch: takeovers and failed requests of the device daemon', () => {
  const later = (): number => Date.now() + 60_000;

  it('reports the failed requests of each interval once, per device, from a running daemon', async () => {
    const { next } = scriptedWatch();
    const facts = (a: number, b: number): DaemonFacts => ({
      pid: 10,
      startedAtMs: 0,
      takeover: null,
      devices: [device('a', a), device('b', b)],
    });
    // The daemon served before this watch began: what it counted then is not this watch's to tell.
    assert.deepEqual(await next(facts(4, 0)), []);
    assert.deepEqual(await next(facts(4, 0)), []);
    assert.deepEqual(await next(facts(7, 1)), [
      { kind: 'failed-requests', device: 'a', path: '/dev/vd-a', count: 3 },
      { kind: 'failed-requests', device: 'b', path: '/dev/vd-b', count: 1 },
    ]);
    // A device added later counts from zero.
    assert.deepEqual(
      await next({ ...facts(7, 1), devices: [device('a', 7), device('b', 1), device('c', 2)] }),
      [{ kind: 'failed-requests', device: 'c', path: '/dev/vd-c', count: 2 }],
    );
    // No daemon answering: nothing to report, and nothing forgotten.
    assert.deepEqual(await next(null), []);
    assert.deepEqual(await next(facts(7, 1)), []);
    // Writes that found no space are told apart from the other failures.
    assert.deepEqual(await next({ ...facts(7, 1), devices: [device('a', 12, 4), device('b', 3, 2)] }), [
      { kind: 'no-space', device: 'a', path: '/dev/vd-a', count: 4 },
      { kind: 'failed-requests', device: 'a', path: '/dev/vd-a', count: 1 },
      { kind: 'no-space', device: 'b', path: '/dev/vd-b', count: 2 },
    ]);
    // A queue stopped on a ring the driver broke.
    assert.deepEqual(await next({ ...facts(7, 1), devices: [device('a', 12, 4, 1), device('b', 3, 2)] }), [
      { kind: 'queue-broken', device: 'a', path: '/dev/vd-a', count: 1 },
    ]);
  });

  it("reports a new daemon's takeover once per device, crash or hand-over, and counts its failures from zero", async () => {
    const { next } = scriptedWatch();
    assert.deepEqual(await next({ pid: 10, startedAtMs: 0, takeover: null, devices: [device('a', 5)] }), []);
    const killed: DaemonFacts = {
      pid: 11,
      startedAtMs: later(),
      takeover: { devices: ['a', 'gone'], seconds: 3.25, released: null },
      devices: [device('a', 1)],
    };
    assert.deepEqual(await next(killed), [
      { kind: 'taken-over', device: 'a', path: '/dev/vd-a', pid: 11, seconds: 3.25, released: null },
      { kind: 'failed-requests', device: 'a', path: '/dev/vd-a', count: 1 },
    ]);
    assert.deepEqual(await next(killed), [], 'the same daemon again');
    const handedOver: DaemonFacts = {
      ...killed,
      pid: 12,
      takeover: { devices: ['a'], seconds: 0.5, released: { pid: 11, reason: 'hand-over' } },
      devices: [device('a', 0)],
    };
    assert.deepEqual(await next(handedOver), [
      {
        kind: 'taken-over',
        device: 'a',
        path: '/dev/vd-a',
        pid: 12,
        seconds: 0.5,
        released: { pid: 11, reason: 'hand-over' },
      },
    ]);
  });

  it('reads what an older daemon leaves out as nothing to report', () => {
    assert.deepEqual(daemonFactsOf({ pid: 3, startedAtMs: 5, devices: [{ name: 'a', path: '/dev/vda' }] }), {
      pid: 3,
      startedAtMs: 5,
      takeover: null,
      devices: [{ name: 'a', path: '/dev/vda', failedRequests: 0, noSpaceRequests: 0, queueBreaks: 0 }],
    });
  });

  it('makes Warning events of crashes and failures, a Normal one of a hand-over, for the claim', () => {
    const volume = { volumeId: 'vol-1', claim: { name: 'data', namespace: 'apps' }, pods: [] };
    const crash = deviceEvent(
      { kind: 'taken-over', device: 'a', path: '/dev/vda', pid: 11, seconds: 3.25, released: null },
      volume,
    );
    assert.deepEqual(
      [crash.type, crash.reason, crash.count, crash.claim],
      ['Warning', 'DeviceTakenOver', 1, volume.claim],
    );
    assert.match(crash.message, /\/dev\/vda .*killed or crashed.*daemon 11 took it over in 3\.3 s/);
    const handOver = deviceEvent(
      {
        kind: 'taken-over',
        device: 'a',
        path: '/dev/vda',
        pid: 12,
        seconds: 0.5,
        released: { pid: 11, reason: 'hand-over' },
      },
      volume,
    );
    assert.deepEqual([handOver.type, handOver.reason], ['Normal', 'DeviceHandedOver']);
    assert.match(handOver.message, /from daemon 11, which let go of it \(hand-over\)/);
    const failures = deviceEvent(
      { kind: 'failed-requests', device: 'a', path: '/dev/vda', count: 7 },
      volume,
    );
    assert.deepEqual([failures.type, failures.reason, failures.count], ['Warning', 'VolumeIOErrors', 7]);
    assert.match(failures.message, /^7 request\(s\) on \/dev\/vda failed/);
    const full = deviceEvent({ kind: 'no-space', device: 'a', path: '/dev/vda', count: 2 }, volume);
    assert.deepEqual([full.type, full.reason, full.count], ['Warning', 'VolumeNoSpace', 2]);
    assert.match(full.message, /^2 write\(s\) on \/dev\/vda failed: the volume's storage has no space left/);
    const broken = deviceEvent({ kind: 'queue-broken', device: 'a', path: '/dev/vda', count: 1 }, volume);
    assert.deepEqual([broken.type, broken.reason, broken.count], ['Warning', 'QueueBroken', 1]);
    assert.match(broken.message, /^a queue of \/dev\/vda stopped serving 1 time\(s\)/);
  });
});

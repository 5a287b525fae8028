import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { IoCounters, LATENCY_BUCKETS } from '../../src/daemon/io-counters';
import { registerDeviceIoMetrics } from '../../src/metrics/device-io-metrics';
import { registerDaemonMetrics } from '../../src/metrics/daemon-metrics';
import { parseSamples, promtoolProblems, valueOf } from '../support/prometheus-text';
import { countTimedRequest } from '../support/timed-request';

const IN = 0;
const OUT = 1;
const FLUSH = 4;
const GET_ID = 8;
const DISCARD = 11;

describe('device request counters and their metrics', () => {
  it('sums what each queue counted, by op, bytes of data moved, errors and latency', () => {
    const counters = IoCounters.create(2);
    const [first, second] = [counters.queue(0), counters.queue(1)];
    countTimedRequest(first, IN, 4096, true, 0.0002);
    countTimedRequest(second, IN, 8192, true, 0.003);
    countTimedRequest(second, IN, 512, false, 20);
    countTimedRequest(first, OUT, 65536, true, 0.00004);
    countTimedRequest(first, FLUSH, 0, true, 0.01);
    countTimedRequest(second, DISCARD, 0, true, 0.001);
    countTimedRequest(second, GET_ID, 20, true, 0);
    countTimedRequest(second, -1, 0, false, 0);
    countTimedRequest(second, OUT, 4096, false, 0.001);
    second.noSpace();
    first.queueBroken();
    first.inFlight = 3;
    second.inFlight = 2;

    const totals = counters.totals();
    assert.deepEqual(totals.requests, { read: 3, write: 2, flush: 1, discard: 1, write_zeroes: 0, other: 2 });
    assert.deepEqual(totals.errors, { read: 1, write: 1, flush: 0, discard: 0, write_zeroes: 0, other: 1 });
    assert.equal(totals.noSpace, 1);
    assert.equal(totals.queueBreaks, 1);
    assert.equal(totals.bytes.read, 4096 + 8192, 'a failed read moved no data');
    assert.equal(totals.bytes.write, 65536);
    assert.equal(totals.inFlight, 5);
    const bucketOf = (seconds: number): number => LATENCY_BUCKETS.findIndex((bound) => seconds <= bound);
    const read = totals.latency.read;
    assert.equal(read.count, 3);
    assert.equal(read.buckets.length, LATENCY_BUCKETS.length + 1);
    assert.equal(read.buckets[bucketOf(0.0002)], 1);
    assert.equal(read.buckets[bucketOf(0.003)], 2);
    assert.equal(read.buckets[LATENCY_BUCKETS.length - 1], 2, '20 s is above every bound');
    assert.equal(read.buckets.at(-1), 3);
    assert.ok(Math.abs(read.sum - 20.0032) < 1e-9);
    assert.deepEqual(totals.latency.write.buckets.slice(0, 2), [1, 1]);
    assert.equal(totals.latency.write.buckets.at(-1), 2);
    assert.equal(totals.latency.write.count, 2, 'flush, discard and the others are not timed');
  });

  it('times a batch of reads and writes with one clock reading: each from its own start to the batch end', () => {
    const counters = IoCounters.create(1);
    const queue = counters.queue(0);
    queue.finished(IN, 4096, true, 1000);
    queue.finished(FLUSH, 0, true, 1000);
    queue.finished(OUT, 4096, true, 1000.5);
    assert.equal(counters.totals().requests.read, 1, 'counted as it finished');
    assert.equal(counters.totals().latency.read.count, 0, 'not timed before the batch ends');
    queue.timeFinished(1002);
    queue.timeFinished(5000);
    const { read, write } = counters.totals().latency;
    assert.equal(read.count, 1, 'a request is timed once');
    assert.ok(Math.abs(read.sum - 0.002) < 1e-12, `${read.sum}`);
    assert.ok(Math.abs(write.sum - 0.0015) < 1e-12, `${write.sum}`);
    assert.equal(counters.totals().requests.flush, 1);
  });

  it('times a batch longer than it holds in parts, losing no request', () => {
    const counters = IoCounters.create(1);
    const queue = counters.queue(0);
    for (let i = 0; i < 1000; i++) queue.finished(i % 2 === 0 ? IN : OUT, 512, true, performance.now());
    queue.timeFinished(performance.now());
    const { read, write } = counters.totals().latency;
    assert.equal(read.count + write.count, 1000);
    assert.equal(read.buckets.at(-1), 500);
  });

  it('keeps the queues apart: a queue view covers its own cells only', () => {
    const counters = IoCounters.create(3);
    countTimedRequest(counters.queue(2), OUT, 512, true, 0.001);
    const other = new IoCounters(counters.buffer, 3);
    assert.equal(other.totals().bytes.write, 512, 'another thread sees the same buffer');
    assert.throws(() => counters.queue(3), RangeError);
    assert.equal(IoCounters.create(1).totals().requests.write, 0);
  });

  it('exports them per device as counters, a gauge and a histogram promtool accepts', async () => {
    const counters = IoCounters.create(1);
    const queue = counters.queue(0);
    countTimedRequest(queue, IN, 4096, true, 0.0004);
    countTimedRequest(queue, OUT, 1024, false, 0.02);
    queue.noSpace();
    queue.queueBroken();
    queue.queueBroken();
    queue.inFlight = 1;
    const registry = new Registry();
    registerDeviceIoMetrics(registry, () => [
      { name: 'vol-a', io: counters.totals() },
      { name: 'vol-b', io: IoCounters.create(1).totals() },
    ]);
    const text = await registry.metrics();
    assert.equal(promtoolProblems(text), '');
    const samples = parseSamples(text);
    const device = { device: 'vol-a' };
    assert.equal(valueOf(samples, 'vduse_csi_device_requests_total', { ...device, op: 'read' }), 1);
    assert.equal(valueOf(samples, 'vduse_csi_device_errors_total', { ...device, op: 'write' }), 1);
    assert.equal(valueOf(samples, 'vduse_csi_device_bytes_total', { ...device, op: 'read' }), 4096);
    assert.equal(valueOf(samples, 'vduse_csi_device_bytes_total', { ...device, op: 'write' }), 0);
    assert.equal(valueOf(samples, 'vduse_csi_device_requests_in_flight', device), 1);
    assert.equal(valueOf(samples, 'vduse_csi_device_no_space_errors_total', device), 1);
    assert.equal(valueOf(samples, 'vduse_csi_device_queue_breaks_total', device), 2);
    assert.equal(valueOf(samples, 'vduse_csi_device_queue_breaks_total', { device: 'vol-b' }), 0);
    const histogram = 'vduse_csi_device_request_duration_seconds';
    const read = { ...device, direction: 'read' };
    assert.equal(valueOf(samples, `${histogram}_bucket`, { ...read, le: '0.00025' }), 0);
    assert.equal(valueOf(samples, `${histogram}_bucket`, { ...read, le: '0.0005' }), 1);
    assert.equal(valueOf(samples, `${histogram}_bucket`, { ...read, le: '+Inf' }), 1);
    assert.equal(valueOf(samples, `${histogram}_count`, read), 1);
    assert.equal(valueOf(samples, `${histogram}_sum`, read), 0.0004);
    assert.equal(valueOf(samples, `${histogram}_count`, { device: 'vol-b', direction: 'write' }), 0);
  });

  it("a daemon's scrape sums the queue counters once, however many families read them, and again next scrape", async () => {
    const counters = IoCounters.create(2);
    countTimedRequest(counters.queue(1), IN, 512, true, 0.001);
    let reads = 0;
    const registry = new Registry();
    registerDaemonMetrics(registry, {
      role: () => 'serving',
      devices: () => {
        reads++;
        return [{ name: 'vol-a', capacityBytes: 1 << 20, io: counters.totals(), pausedSeconds: 0.25 }];
      },
    });
    const first = parseSamples(await registry.metrics());
    assert.equal(reads, 1);
    assert.equal(valueOf(first, 'vduse_csi_device_requests_total', { device: 'vol-a', op: 'read' }), 1);
    assert.equal(valueOf(first, 'vduse_csi_device_capacity_bytes', { device: 'vol-a' }), 1 << 20);
    assert.equal(valueOf(first, 'vduse_csi_device_paused_seconds_total', { device: 'vol-a' }), 0.25);
    countTimedRequest(counters.queue(0), IN, 512, true, 0.001);
    const second = parseSamples(await registry.metrics());
    assert.equal(reads, 2);
    assert.equal(valueOf(second, 'vduse_csi_device_requests_total', { device: 'vol-a', op: 'read' }), 2);
  });
});

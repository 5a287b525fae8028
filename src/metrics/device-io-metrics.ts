import { Counter, Gauge, Metric, Registry } from 'prom-client';
import { IO_OPS, IoTotals, LATENCY_BUCKETS, LATENCY_DIRECTIONS } from '../daemon/io-counters';
import { METRIC_PREFIX } from './registry';

/** A served device and what its queue threads counted. */
export interface DeviceIo {
  name: string;
  io: IoTotals;
}

/** Ops that move data (their bytes are counted); the others move none. */
const DATA_OPS = ['read', 'write'] as const;

/**
 * Per-device request metrics of a serving process, read from the queue threads' shared counters
 * when scraped (nothing is counted here; a counter starts from zero again when a device is taken
 * over by another process, which Prometheus' rate() takes as a reset).
 */
export function registerDeviceIoMetrics(registry: Registry, devices: () => DeviceIo[]): void {
  const counter = (
    name: string,
    help: string,
    ops: readonly string[],
    pick: (io: IoTotals) => Record<string, number>,
  ): void => {
    new Counter({
      name: `${METRIC_PREFIX}${name}`,
      help,
      labelNames: ['device', 'op'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const { name: device, io } of devices())
          for (const op of ops) this.inc({ device, op }, pick(io)[op]!);
      },
    });
  };
  counter('device_requests_total', 'Requests the device completed, by op', IO_OPS, (io) => io.requests);
  counter(
    'device_errors_total',
    'Requests the device failed (I/O error or unsupported), by op',
    IO_OPS,
    (io) => io.errors,
  );
  counter('device_bytes_total', 'Bytes read from and written to the device', DATA_OPS, (io) => io.bytes);
  perDeviceCounter(
    registry,
    devices,
    'device_no_space_errors_total',
    'Failed requests (among device_errors_total) whose storage had no space left: ENOSPC, EDQUOT',
    ({ io }) => io.noSpace,
  );
  perDeviceCounter(
    registry,
    devices,
    'device_queue_breaks_total',
    'Times a queue of the device stopped serving on a ring the driver broke (until the driver resets the device)',
    ({ io }) => io.queueBreaks,
  );
  new Gauge({
    name: `${METRIC_PREFIX}device_requests_in_flight`,
    help: 'Requests taken from the device queues and not yet completed',
    labelNames: ['device'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const { name, io } of devices()) this.set({ device: name }, io.inFlight);
    },
  });
  registry.registerMetric(sharedCountsHistogram(devices));
}

/** A counter with one series per served device (label `device`), read from `devices` when scraped. */
export function perDeviceCounter<Device extends { name: string }>(
  registry: Registry,
  devices: () => Device[],
  name: string,
  help: string,
  pick: (device: Device) => number,
): void {
  new Counter({
    name: `${METRIC_PREFIX}${name}`,
    help,
    labelNames: ['device'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const device of devices()) this.inc({ device: device.name }, pick(device));
    },
  });
}

/**
 * A histogram whose buckets the queue threads already counted: rendered from them when scraped.
 * prom-client's Histogram counts observations itself; the registry takes any metric with a name
 * and get(), which its types do not say.
 */
function sharedCountsHistogram(devices: () => DeviceIo[]): Metric {
  const name = `${METRIC_PREFIX}device_request_duration_seconds`;
  const help = 'Time from taking a read or write from the queue to completing it, by direction';
  const header = { name, help, type: 'histogram', aggregator: 'sum' };
  const values = (): Array<{
    metricName: string;
    labels: Record<string, string | number>;
    value: number;
  }> => {
    const samples = [];
    for (const { name: device, io } of devices()) {
      for (const direction of LATENCY_DIRECTIONS) {
        const { buckets, sum, count } = io.latency[direction];
        const labels = { device, direction };
        buckets.forEach((value, index) => {
          const le = LATENCY_BUCKETS[index] ?? '+Inf';
          samples.push({ metricName: `${name}_bucket`, labels: { ...labels, le }, value });
        });
        samples.push({ metricName: `${name}_sum`, labels, value: sum });
        samples.push({ metricName: `${name}_count`, labels, value: count });
      }
    }
    return samples;
  };
  return { ...header, get: async () => ({ ...header, values: values() }) } as unknown as Metric;
}

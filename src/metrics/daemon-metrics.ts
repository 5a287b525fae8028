import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { DURATION_BUCKETS } from './csi-calls';
import { DeviceIo, perDeviceCounter, registerDeviceIoMetrics } from './device-io-metrics';
import { METRIC_PREFIX } from './registry';
import { oncePerScrape } from './once-per-scrape';
import { DAEMON_ROLES, DaemonRole } from '../daemon/daemon-role';

/** A served device, as its daemon's metrics read it. */
export interface ServedDeviceFacts extends DeviceIo {
  capacityBytes: number;
  /** Time its queues were held paused by this process. */
  pausedSeconds: number;
}

/** What a device daemon's metrics read when scraped. */
export interface DaemonMetricsSource {
  role(): DaemonRole;
  devices(): ServedDeviceFacts[];
}

export interface DaemonMetrics {
  /** One control request answered: its op, `ok` or the refusal's code, and how long it took. */
  request(op: string, outcome: string, seconds: number): void;
  /** This process took `devices` devices over, in `seconds` from getting the lock to serving. */
  tookOver(devices: number, seconds: number): void;
}

/** A device daemon's own metrics; per-device gauges are read from `source` at scrape time. */
export function registerDaemonMetrics(registry: Registry, source: DaemonMetricsSource): DaemonMetrics {
  // Summing every device's queue counters once per scrape, not once per metric family.
  const devices = oncePerScrape(() => source.devices());
  new Gauge({
    name: `${METRIC_PREFIX}daemon_role`,
    help: 'The role of this daemon process (1 for the current one): standby, serving, ...',
    labelNames: ['role'] as const,
    registers: [registry],
    collect() {
      const current = source.role();
      for (const role of DAEMON_ROLES) this.set({ role }, role === current ? 1 : 0);
    },
  });
  new Gauge({
    name: `${METRIC_PREFIX}daemon_devices`,
    help: 'Devices this daemon serves',
    registers: [registry],
    collect() {
      this.set(devices().length);
    },
  });
  registerDeviceIoMetrics(registry, devices);
  new Gauge({
    name: `${METRIC_PREFIX}device_capacity_bytes`,
    help: 'Capacity of each served device',
    labelNames: ['device'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const { name, capacityBytes } of devices()) this.set({ device: name }, capacityBytes);
    },
  });
  perDeviceCounter(
    registry,
    devices,
    'device_paused_seconds_total',
    "Time the device's queues were held paused by this daemon (copies, resizes), drains included",
    (device) => device.pausedSeconds,
  );
  const takeoverDevices = new Gauge({
    name: `${METRIC_PREFIX}daemon_takeover_devices`,
    help: 'Devices this daemon took over from a previous one when it started serving',
    registers: [registry],
  });
  const takeoverSeconds = new Gauge({
    name: `${METRIC_PREFIX}daemon_takeover_seconds`,
    help: 'Time from getting the daemon lock to serving every device taken over',
    registers: [registry],
  });
  const requests = new Counter({
    name: `${METRIC_PREFIX}daemon_requests_total`,
    help: 'Control requests answered, by op and outcome (ok, or the refusal code)',
    labelNames: ['op', 'outcome'] as const,
    registers: [registry],
  });
  const durations = new Histogram({
    name: `${METRIC_PREFIX}daemon_request_duration_seconds`,
    help: 'Time from a control request to its answer, by op',
    labelNames: ['op'] as const,
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  return {
    request(op, outcome, seconds) {
      requests.inc({ op, outcome });
      durations.observe({ op }, seconds);
    },
    tookOver(devices, seconds) {
      takeoverDevices.set(devices);
      takeoverSeconds.set(seconds);
    },
  };
}

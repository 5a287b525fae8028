import { Counter, Histogram, Registry } from 'prom-client';
import type { CallObserver } from '../csi/server';
import { METRIC_PREFIX } from './registry';

/**
 * From a few milliseconds (Probe, NodeGetCapabilities) to minutes (a clone or snapshot copies a
 * whole image; the provisioner allows CreateVolume 300 s).
 */
export const DURATION_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
];

/** Counts every CSI call by method and gRPC status code, and times it. */
export function csiCallMetrics(registry: Registry): CallObserver {
  const calls = new Counter({
    name: `${METRIC_PREFIX}operations_total`,
    help: 'CSI calls answered, by method and gRPC status code name',
    labelNames: ['method', 'code'] as const,
    registers: [registry],
  });
  const durations = new Histogram({
    name: `${METRIC_PREFIX}operation_duration_seconds`,
    help: 'Time from a CSI call to its answer, by method',
    labelNames: ['method'] as const,
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  return (method, code, seconds) => {
    calls.inc({ method, code });
    durations.observe({ method }, seconds);
  };
}

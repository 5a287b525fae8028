import { Registry, collectDefaultMetrics } from 'prom-client';

/** Prefix of every metric of our own; prom-client's process and Node.js metrics keep their standard names. */
export const METRIC_PREFIX = 'vduse_csi_';

/**
 * A process's one registry (a plugin's, a device daemon's): everything it exports is gathered from
 * here when scraped. Process
 * metrics (RSS, CPU, open fds, event loop lag, GC) keep prom-client's standard `process_` and
 * `nodejs_` names, which dashboards and alerts written for any exporter already use; the scrape's
 * job and instance labels tell whose they are.
 */
export function processRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // Gauges named like counters (promtool rejects them); nodejs_active_{handles,requests,resources}
  // by type are still there, and sum to the same.
  for (const kind of ['handles', 'requests', 'resources'])
    registry.removeSingleMetric(`nodejs_active_${kind}_total`);
  return registry;
}

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RecordDirectory } from '../record-directory';
import { checkMonitors, monitorDigest } from './monitors';
import { ClusterRef, isClusterId, isMonitorDigest } from './volume-id';

/** One entry of the cluster file: ceph-csi's config.json shape, of which only these fields count. */
export interface CephClusterEntry {
  clusterId: string;
  monitors: string[];
}

/**
 * Parses a cluster file (`[{"clusterID": "...", "monitors": ["host:port", ...]}, ...]`). Other fields
 * of ceph-csi's format (cephFS, readAffinity...) are ignored, except a cluster-wide RADOS namespace:
 * it would change where images go, so it is refused rather than silently not applied.
 */
export function parseClusterFile(text: string): CephClusterEntry[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new Error(`not JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (!Array.isArray(parsed)) throw new Error('must be a JSON array of {clusterID, monitors}');
  const entries = parsed.map((entry: unknown, index): CephClusterEntry => {
    const where = `entry ${index}`;
    if (typeof entry !== 'object' || entry === null) throw new Error(`${where} is not an object`);
    const { clusterID, monitors, rbd } = entry as Record<string, unknown>;
    if (typeof clusterID !== 'string' || !isClusterId(clusterID))
      throw new Error(`${where}: clusterID must be 1-64 of [A-Za-z0-9._-], not starting with . _ or -`);
    if (!Array.isArray(monitors) || !monitors.every((monitor) => typeof monitor === 'string'))
      throw new Error(`${where} (${clusterID}): monitors must be a list of strings`);
    const namespace = (rbd as { radosNamespace?: unknown } | undefined)?.radosNamespace;
    if (namespace !== undefined && namespace !== '')
      throw new Error(
        `${where} (${clusterID}): rbd.radosNamespace is not supported here; set radosNamespace in the StorageClass`,
      );
    try {
      return { clusterId: clusterID, monitors: checkMonitors(monitors as string[]) };
    } catch (error) {
      throw new Error(`${where} (${clusterID}): ${error instanceof Error ? error.message : String(error)}`);
    }
  });
  const ids = entries.map((entry) => entry.clusterId);
  const repeated = ids.find((id, index) => ids.indexOf(id) !== index);
  if (repeated !== undefined) throw new Error(`clusterID ${repeated} appears twice`);
  return entries;
}

/** Why a cluster cannot be reached from what this plugin knows: the operator must fix it. */
export class UnknownClusterError extends Error {
  override name = 'UnknownClusterError';
}

/** A monitor set the controller was given in a StorageClass, by its digest. */
interface MonitorSetRecord {
  digest: string;
  monitors: string[];
}

/**
 * The clusters this plugin can reach: the entries of its cluster file (read afresh on every
 * lookup, so an updated ConfigMap applies without a restart) and, for volumes whose StorageClass
 * listed monitors, the monitor sets it has seen (kept under the state directory: DeleteVolume and
 * ControllerExpandVolume carry only the id, which holds just the set's digest).
 */
export class CephClusters {
  private readonly monitorSets: RecordDirectory<MonitorSetRecord>;

  constructor(
    private readonly file: string | undefined,
    stateDir: string,
  ) {
    this.monitorSets = new RecordDirectory(
      join(stateDir, 'ceph-monitors'),
      isMonitorDigest,
      (record) => record.digest,
    );
  }

  /** The monitors of a cluster; UnknownClusterError when nothing here names it. */
  monitorsOf(ref: ClusterRef): string[] {
    if (ref.kind === 'id') {
      const entry = this.entries().find((candidate) => candidate.clusterId === ref.clusterId);
      if (!entry) throw new UnknownClusterError(`cluster ${ref.clusterId} is not in ${this.fileName()}`);
      return entry.monitors;
    }
    const remembered = this.monitorSets.get(ref.digest);
    if (remembered) return remembered.monitors;
    const entry =
      this.file === undefined
        ? undefined
        : this.entries().find((candidate) => monitorDigest(candidate.monitors) === ref.digest);
    if (!entry)
      throw new UnknownClusterError(
        `the monitor set ${ref.digest} of this volume is not known here: list its monitors under a clusterID in ${this.fileName()}`,
      );
    return entry.monitors;
  }

  /** Remembers a StorageClass's monitor set before a volume names it by digest. */
  remember(monitors: readonly string[]): string {
    const digest = monitorDigest(monitors);
    if (!this.monitorSets.get(digest)) this.monitorSets.put({ digest, monitors: [...monitors] });
    return digest;
  }

  private entries(): CephClusterEntry[] {
    if (this.file === undefined)
      throw new UnknownClusterError('the plugin was started without --ceph-clusters: no clusterID is known');
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (error) {
      throw new UnknownClusterError(`cannot read the cluster file ${this.file}: ${(error as Error).message}`);
    }
    try {
      return parseClusterFile(text);
    } catch (error) {
      throw new UnknownClusterError(`cluster file ${this.file}: ${(error as Error).message}`);
    }
  }

  private fileName(): string {
    return this.file === undefined ? 'a cluster file (the plugin has no --ceph-clusters)' : this.file;
  }
}

import { CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { NodeRoom } from '../csi/capacity';
import { isStatus } from './custom-resource';

/**
 * The room each node has for volume images (what they take plus what is free), for placement,
 * GetCapacity and expansion: each node agent writes its own key of one ConfigMap in the driver's
 * namespace (a JSON merge patch, so agents never conflict), the controller reads it. An entry older
 * than `staleAfterMs` counts as nothing: its agent is not running.
 */
export const CAPACITY_CONFIGMAP = 'vduse-csi-capacity';

/** What an agent reports of its data directory. */
export interface NodeSpaceReport {
  /** Free bytes of its filesystem. */
  freeBytes: number;
  /** Free bytes plus those its volume images take (ImageDirectory.roomBytes). */
  roomBytes: number;
}

interface Entry extends NodeSpaceReport {
  updatedAt: string;
}

export class NodeCapacity {
  private readonly api: CoreV1Api;

  constructor(
    config: KubeConfig,
    private readonly namespace: string,
    readonly staleAfterMs: number,
  ) {
    this.api = config.makeApiClient(CoreV1Api);
  }

  async publish(nodeId: string, space: NodeSpaceReport): Promise<void> {
    const entry: Entry = { ...space, updatedAt: new Date().toISOString() };
    const data = { [nodeId]: JSON.stringify(entry) };
    const name = CAPACITY_CONFIGMAP;
    const namespace = this.namespace;
    for (;;) {
      try {
        await this.api.patchNamespacedConfigMap(
          { name, namespace, body: { data } },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        );
        return;
      } catch (error) {
        if (!isStatus(error, 404)) throw error;
      }
      try {
        await this.api.createNamespacedConfigMap({
          namespace,
          body: { metadata: { name, namespace }, data },
        });
        return;
      } catch (error) {
        // Another agent created it first: patch that one.
        if (!isStatus(error, 409)) throw error;
      }
    }
  }

  /** What the agents last reported. */
  async read(): Promise<CapacityReports> {
    let data: Record<string, string>;
    try {
      data =
        (await this.api.readNamespacedConfigMap({ name: CAPACITY_CONFIGMAP, namespace: this.namespace }))
          .data ?? {};
    } catch (error) {
      if (isStatus(error, 404)) return new CapacityReports(new Map(), this.staleAfterMs);
      throw error;
    }
    const entries = new Map<string, Entry>();
    for (const [nodeId, text] of Object.entries(data)) {
      const entry = parseEntry(text);
      if (entry) entries.set(nodeId, entry);
    }
    return new CapacityReports(entries, this.staleAfterMs);
  }
}

/** The capacity reports as read at one time: a node whose report is fresh has a running agent. */
export class CapacityReports {
  private readonly readAtMs = Date.now();

  constructor(
    private readonly entries: ReadonlyMap<string, Entry>,
    private readonly staleAfterMs: number,
  ) {}

  /** The room of every node whose agent reported recently. */
  rooms(): NodeRoom[] {
    return [...this.entries]
      .filter(([, entry]) => this.isFresh(entry))
      .map(([node, entry]) => ({ node, roomBytes: entry.roomBytes }));
  }

  isLive(nodeId: string): boolean {
    const entry = this.entries.get(nodeId);
    return entry !== undefined && this.isFresh(entry);
  }

  /** Why the node counts as having no running agent (for error messages). */
  absence(nodeId: string): string {
    const entry = this.entries.get(nodeId);
    if (!entry) return 'its node agent never reported';
    return `its node agent last reported at ${entry.updatedAt}, more than ${this.staleAfterMs / 1000} s ago`;
  }

  private isFresh(entry: Entry): boolean {
    return this.readAtMs - Date.parse(entry.updatedAt) <= this.staleAfterMs;
  }
}

/** An entry of an agent from before roomBytes existed counts its free bytes as its room. */
function parseEntry(text: string): Entry | null {
  try {
    const entry = JSON.parse(text) as Partial<Entry>;
    if (typeof entry.freeBytes !== 'number' || typeof entry.updatedAt !== 'string') return null;
    const roomBytes = typeof entry.roomBytes === 'number' ? entry.roomBytes : entry.freeBytes;
    return { freeBytes: entry.freeBytes, roomBytes, updatedAt: entry.updatedAt };
  } catch {
    return null;
  }
}

import { CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { isStatus } from './custom-resource';

/**
 * Free bytes per node, for GetCapacity and for placing volumes with no topology requirement: each
 * node agent writes its own key of one ConfigMap in the driver's namespace (a JSON merge patch, so
 * agents never conflict), the controller reads it. An entry older than `staleAfterMs` counts as
 * nothing: its agent is not running.
 */
export const CAPACITY_CONFIGMAP = 'vduse-csi-capacity';

interface Entry {
  freeBytes: number;
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

  async publish(nodeId: string, freeBytes: number): Promise<void> {
    const entry: Entry = { freeBytes, updatedAt: new Date().toISOString() };
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

  /** Free bytes of every node whose agent reported recently. */
  freeBytes(): Map<string, number> {
    const fresh = new Map<string, number>();
    for (const [nodeId, entry] of this.entries) if (this.isFresh(entry)) fresh.set(nodeId, entry.freeBytes);
    return fresh;
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

function parseEntry(text: string): Entry | null {
  try {
    const entry = JSON.parse(text) as Partial<Entry>;
    return typeof entry.freeBytes === 'number' && typeof entry.updatedAt === 'string'
      ? (entry as Entry)
      : null;
  } catch {
    return null;
  }
}

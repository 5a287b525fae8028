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

  /** Free bytes of every node whose agent reported recently. */
  async read(): Promise<Map<string, number>> {
    let data: Record<string, string>;
    try {
      data =
        (await this.api.readNamespacedConfigMap({ name: CAPACITY_CONFIGMAP, namespace: this.namespace }))
          .data ?? {};
    } catch (error) {
      if (isStatus(error, 404)) return new Map();
      throw error;
    }
    const fresh = new Map<string, number>();
    for (const [nodeId, text] of Object.entries(data)) {
      const entry = parseEntry(text);
      if (entry && Date.now() - Date.parse(entry.updatedAt) <= this.staleAfterMs)
        fresh.set(nodeId, entry.freeBytes);
    }
    return fresh;
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

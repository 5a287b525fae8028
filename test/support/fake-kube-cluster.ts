import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControllerService } from '../../src/csi/controller';
import { LocalRealizer } from '../../src/csi/local-realizer';
import { OperationLocks } from '../../src/csi/operation-locks';
import { VolumeServers } from '../../src/csi/volume-servers';
import { Cluster } from '../../src/k8s/cluster';
import { NodeAgent } from '../../src/k8s/node-agent';
import { CAPACITY_CONFIGMAP } from '../../src/k8s/node-capacity';
import { ImageDirectory } from '../../src/storage/images';
import { eventually } from './eventually';
import { FakeKubeApi } from './fake-kube-api';

export const NAMESPACE = 'vduse-csi';

export interface FakeNode {
  id: string;
  images: ImageDirectory;
  agent: NodeAgent | undefined;
}

export interface FakeClusterOptions {
  nodes?: string[];
  waitTimeoutMs?: number;
  capacityIntervalMs?: number;
  /** Data directory of a node, when not the default one under the test's root. */
  dataDir?: (nodeId: string, root: string) => string;
}

/**
 * A controller and one node agent per node, each with its own image directory, talking to each
 * other only through a FakeKubeApi: the controller's side of cluster mode and the nodes' side.
 */
export class FakeKubeCluster {
  readonly nodes = new Map<string, FakeNode>();
  readonly controller: ControllerService;
  private readonly nodeClusters = new Map<string, Cluster>();

  private constructor(
    readonly api: FakeKubeApi,
    readonly root: string,
    readonly cluster: Cluster,
    options: FakeClusterOptions,
  ) {
    this.controller = new ControllerService({
      store: cluster.store,
      realizer: cluster.realizer(),
      placement: cluster.placement(),
      locks: new OperationLocks(),
      maximumVolumeBytes: 2 ** 44,
    });
    for (const id of options.nodes ?? ['node-a', 'node-b']) {
      const dataDir = options.dataDir?.(id, root) ?? join(root, id, 'data');
      this.nodes.set(id, { id, images: new ImageDirectory(dataDir), agent: undefined });
      // Each node has its own client, as each node's plugin would.
      this.nodeClusters.set(id, this.clusterFor(id, options));
    }
  }

  static async start(options: FakeClusterOptions = {}): Promise<FakeKubeCluster> {
    const api = await FakeKubeApi.start();
    const root = mkdtempSync(join(tmpdir(), 'vduse-kube-'));
    const cluster = new Cluster({
      config: api.kubeConfig(),
      namespace: NAMESPACE,
      instance: 'controller',
      waitTimeoutMs: options.waitTimeoutMs ?? 10_000,
      capacityIntervalMs: options.capacityIntervalMs ?? 60_000,
    });
    const fake = new FakeKubeCluster(api, root, cluster, options);
    for (const id of fake.nodes.keys()) fake.startAgent(id);
    try {
      await fake.waitForCapacityReports();
    } catch (error) {
      await fake.stop();
      throw error;
    }
    return fake;
  }

  node(id: string): FakeNode {
    const node = this.nodes.get(id);
    if (!node) throw new Error(`no node ${id}`);
    return node;
  }

  startAgent(id: string): void {
    const node = this.node(id);
    const servers = new VolumeServers({
      stateDir: join(this.root, id, 'state'),
      command: [process.execPath, '/nonexistent'],
      logLevel: 'warn',
      standby: false,
      copyDirs: [],
    });
    node.agent = this.nodeClusters
      .get(id)!
      .nodeAgent(id, node.images, new LocalRealizer(node.images, servers));
    node.agent.start();
  }

  async stopAgent(id: string): Promise<void> {
    const node = this.node(id);
    await node.agent?.stop();
    node.agent = undefined;
  }

  async stop(): Promise<void> {
    for (const id of this.nodes.keys()) await this.stopAgent(id);
    await this.api.stop();
    rmSync(this.root, { recursive: true, force: true });
  }

  /** As in a running cluster: the controller places volumes only on nodes whose agent reported. */
  private async waitForCapacityReports(): Promise<void> {
    await eventually(async () => {
      const data = (this.api.object('/configmaps', CAPACITY_CONFIGMAP, NAMESPACE)?.data ?? {}) as object;
      const missing = [...this.nodes.keys()].filter((id) => !(id in data));
      if (missing.length > 0) throw new Error(`no capacity report from the agents of ${missing.join(', ')}`);
    }, 10_000);
  }

  private clusterFor(id: string, options: FakeClusterOptions): Cluster {
    return new Cluster({
      config: this.api.kubeConfig(),
      namespace: NAMESPACE,
      instance: id,
      capacityIntervalMs: options.capacityIntervalMs ?? 60_000,
      retryMs: 200,
    });
  }
}

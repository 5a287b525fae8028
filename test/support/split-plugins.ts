import { CsiHarness, HarnessOptions, Reply, ServiceName } from './csi-harness';
import { FakeKubeApi } from './fake-kube-api';

/**
 * Cluster mode as Kubernetes deploys it: a controller plugin and a node plugin, each its own process
 * with its own socket and directories, sharing nothing but one (fake) Kubernetes API server.
 * Controller calls go to the controller, Identity and Node calls to the node plugin.
 */
export class SplitPlugins {
  private constructor(
    readonly api: FakeKubeApi,
    readonly controller: CsiHarness,
    readonly node: CsiHarness,
  ) {}

  static async start(
    cli: string[],
    roots: { controller: string; node: string },
    options: HarnessOptions = {},
  ): Promise<SplitPlugins> {
    const api = await FakeKubeApi.start();
    const started: CsiHarness[] = [];
    try {
      const shared = { ...options, cli, store: 'kubernetes' as const, kubeApi: api };
      started.push(await CsiHarness.start({ ...shared, mode: 'node', root: roots.node }));
      started.push(await CsiHarness.start({ ...shared, mode: 'controller', root: roots.controller }));
      return new SplitPlugins(api, started[1]!, started[0]!);
    } catch (error) {
      for (const harness of started) await harness.stop();
      await api.stop();
      throw error;
    }
  }

  /** The node plugin's root: where kubelet's directories and the node's images are. */
  get root(): string {
    return this.node.root;
  }

  get options(): CsiHarness['options'] {
    return this.node.options;
  }

  call(service: ServiceName, method: string, request: object = {}): Promise<Reply> {
    return (service === 'controller' ? this.controller : this.node).call(service, method, request);
  }

  async stop(): Promise<void> {
    await this.controller.stop();
    await this.node.stop();
    await this.api.stop();
  }
}
